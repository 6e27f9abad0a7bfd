//! Which lab a namespace belongs to: weft tags each namespace it makes
//! with its lab's name, as the alias of `lo` (`weft:LAB`; `ip -n NETNS
//! link show lo` shows it).

use crate::apply::{owner_tag, NsHandle};
use crate::Error;

/// The lab named by a namespace's ownership tag, if it has one.
pub(crate) fn owner_of(netns: &str) -> Option<String> {
    let links = NsHandle::open("", netns).ok()?.nl.links().ok()?;
    let alias = links.into_iter().find(|l| l.index == 1)?.alias?;
    let prefix = owner_tag("");
    alias.strip_prefix(&prefix).map(str::to_string)
}

/// The refusal for a node whose namespace exists and is not this lab's.
/// Deleting the namespace is advised only when no weft lab owns it: the
/// one `ip netns del` would destroy another lab's node.
pub(crate) fn taken(node: &str, netns: &str, lab: &str) -> Error {
    Error::NamespaceTaken {
        lab: lab.to_string(),
        node: node.to_string(),
        netns: netns.to_string(),
        owner: owner_of(netns),
    }
}

/// What [`Error::NamespaceTaken`] says, with what to do: deleting the
/// namespace only when no weft lab owns it.
pub(crate) fn taken_message(node: &str, netns: &str, lab: &str, owner: Option<&str>) -> String {
    match owner {
        Some(o) if o == lab => format!(
            "node {node}: network namespace {netns} carries lab {lab}'s tag but its state does not list it (a lost state directory?); `weft down {lab}` removes it"
        ),
        Some(o) => format!(
            "node {node}: network namespace {netns} already exists: it is a node of weft lab {o}, whose namespace names clash with lab {lab}'s; rename lab {lab} or the node (or `weft down {o}` if lab {o} is no longer needed)"
        ),
        None => format!(
            "node {node}: network namespace {netns} already exists and is not part of lab {lab}; remove it (`ip netns del {netns}`) or rename the lab"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::taken_message;

    #[test]
    fn another_labs_namespace_is_named_and_never_deleted() {
        let m = taken_message("y", "weft-a-x-y", "a-x", Some("a"));
        assert!(m.contains("weft lab a,"), "{m}");
        assert!(!m.contains("ip netns del"), "{m}");
        let m = taken_message("y", "weft-a-x-y", "a-x", None);
        assert!(m.contains("ip netns del weft-a-x-y"), "{m}");
        let m = taken_message("y", "weft-a-x-y", "a-x", Some("a-x"));
        assert!(
            m.contains("weft down a-x") && !m.contains("ip netns del"),
            "{m}"
        );
    }
}
