//! Every lab snippet in README.md and docs/*.md is one a user can paste:
//! each ```toml block with a `name` is a whole lab and parses as it is;
//! every other block is a part of one, and once given a name it draws no
//! complaint but about what lies outside it (the nodes, ports, paths and
//! gateways the surrounding text supplies). A misspelt key, a value of
//! the wrong form or a setting the format dropped fails here, with the
//! page and line, instead of on the reader's machine.
//!
//! Links between the pages lead to files and headings that exist.
//!
//! Two kinds of block are not lab files and are checked elsewhere:
//! Cargo manifests (library.md; examples/lib-test builds from one) and
//! `weft tunnel -c` files (tunnel.md; crates/cli/src/tunnel.rs parses
//! that block with the tunnel's own reader).

use std::path::{Path, PathBuf};

use weft_topo::parse;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    v.sort();
    v.push(root().join("README.md"));
    v
}

/// The ```toml blocks of a page: (line of the opening fence, text).
fn toml_blocks(page: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in page.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match cur.take() {
            None if fence && line.trim_start().trim_start_matches('`').trim() == "toml" => {
                cur = Some((i + 1, String::new()))
            }
            None => {}
            Some(b) if fence => out.push(b),
            Some((n, mut text)) => {
                text.push_str(line);
                text.push('\n');
                cur = Some((n, text));
            }
        }
    }
    assert!(cur.is_none(), "a ```toml block is never closed");
    out
}

/// Complaints that only say a part of a lab refers to what the rest of
/// the lab (not shown) would declare.
const OUTSIDE: &[&str] = &[
    "there is no node",
    "which is not a node",
    "no link uses it",
    "there is no port",
    "is not a port of",
    "the host path",
    "is not reachable",
    "is not in any subnet",
    "has the interfaces",
    "uses dev",
];

#[test]
fn every_lab_snippet_in_the_docs_parses() {
    let mut labs = 0;
    let mut parts = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for (line, block) in toml_blocks(&text) {
            let at = format!("{name}:{line}");
            let table: toml::Table = match block.parse() {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{at}: not TOML: {e}"));
                    continue;
                }
            };
            if ["package", "dependencies", "dev-dependencies"]
                .iter()
                .any(|k| table.contains_key(*k))
                || table.contains_key("peer-key")
            {
                continue;
            }
            if table.contains_key("name") {
                labs += 1;
                if let Err(e) = parse(&block) {
                    failures.push(format!("{at}: a whole lab, refused: {:#?}", e.0));
                }
                continue;
            }
            parts += 1;
            let named = format!("name = \"doc\"\n{block}");
            if let Err(e) = parse(&named) {
                for d in e.0 {
                    let said = format!("{} {}", d.message, d.help.as_deref().unwrap_or(""));
                    if !OUTSIDE.iter().any(|w| said.contains(w)) {
                        failures.push(format!("{at}: {said}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "lab snippets in the docs a user cannot paste:\n{}",
        failures.join("\n")
    );
    // The pages have whole labs and many parts; an extractor that finds
    // none would pass everything.
    assert!(labs >= 3 && parts >= 20, "found {labs} labs, {parts} parts");
}

#[test]
fn the_block_reader_finds_blocks_and_their_lines() {
    let page = "text\n```toml\na = 1\n```\n```sh\nx\n```\n  ```toml\nb = 2\n  ```\n";
    assert_eq!(
        toml_blocks(page),
        vec![(2, "a = 1\n".to_string()), (8, "b = 2\n".to_string())]
    );
}

/// The lines of a page outside fenced code blocks, numbered from 1. A
/// line of three backticks followed by more backticks is an inline code
/// span, not a fence (CommonMark: a backtick fence's info string has
/// none).
fn prose(page: &str) -> Vec<(usize, &str)> {
    let mut code = false;
    let mut out = Vec::new();
    for (i, line) in page.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            if !rest.trim_matches('`').contains('`') {
                code = !code;
                continue;
            }
        }
        if !code {
            out.push((i + 1, line));
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped,
/// spaces as `-`; a repeated one gets `-1`, `-2`...
fn anchors(page: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (_, line) in prose(page) {
        let Some(h) = line.strip_prefix('#') else {
            continue;
        };
        let h = h.trim_start_matches('#');
        if !h.starts_with(' ') {
            continue;
        }
        let slug: String = h
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.iter().filter(|s| **s == slug).count();
        seen.push(slug.clone());
        out.push(if n == 0 { slug } else { format!("{slug}-{n}") });
    }
    out
}

/// Every relative link in README.md and docs/ leads to a file that
/// exists and, with `#anchor`, to a heading of that page.
#[test]
fn every_link_in_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    let mut n = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for (line, l) in prose(&text) {
            for part in l.split("](").skip(1) {
                let Some(target) = part.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.contains(' ') || target.starts_with("mailto:") {
                    continue;
                }
                n += 1;
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    page.clone()
                } else {
                    dir.join(path)
                };
                if !file.exists() {
                    broken.push(format!("{name}:{line}: {target}: no file {path}"));
                    continue;
                }
                if !anchor.is_empty() && (path.is_empty() || path.ends_with(".md")) {
                    let t = std::fs::read_to_string(&file).unwrap();
                    if !anchors(&t).iter().any(|a| a == anchor) {
                        broken.push(format!("{name}:{line}: {target}: no heading #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that lead nowhere:\n{}",
        broken.join("\n")
    );
    assert!(n > 50, "only {n} links found");
}

#[test]
fn anchors_are_githubs() {
    let page = "# weft\n## Switches: `kind = \"switch\"`\n```sh\n# not a heading\n```\n## Runtime control: `weft link` and `weft impair`\n## A b\n## A b\n``` `x` inline ```\n## After\n";
    assert_eq!(
        anchors(page),
        [
            "weft",
            "switches-kind--switch",
            "runtime-control-weft-link-and-weft-impair",
            "a-b",
            "a-b-1",
            "after"
        ]
    );
}
