//! What the switch asks its caller to do. The received frame is never
//! copied: `Forward` names a port and a tag operation, and `OutFrame` gives
//! the bytes as up to three slices, ready for a vectored write.

use crate::config::PortId;
use weft_wire::ethernet::EtherType;
use weft_wire::Tci;

/// What to do with the 802.1Q tag of the received frame on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOp {
    /// Send the bytes as received.
    Keep,
    /// Remove the outer tag.
    Pop,
    /// Insert this tag after the source address.
    Push(Tci),
    /// Replace the outer tag's TCI (priority-tagged frames get their VLAN).
    Rewrite(Tci),
}

impl TagOp {
    /// The output frame as slices of `frame`. Never panics: a tag operation
    /// on a frame too short for it degrades to sending what is there.
    pub fn apply(self, frame: &[u8]) -> OutFrame<'_> {
        let head = frame.get(..12).unwrap_or(frame);
        let after_tag = frame.get(16..).unwrap_or(&[]);
        match self {
            TagOp::Keep => OutFrame {
                head: frame,
                tag: None,
                tail: &[],
            },
            TagOp::Pop => OutFrame {
                head,
                tag: None,
                tail: after_tag,
            },
            TagOp::Push(tci) => OutFrame {
                head,
                tag: Some(tci.tag_bytes(EtherType::VLAN)),
                tail: frame.get(12..).unwrap_or(&[]),
            },
            TagOp::Rewrite(tci) => OutFrame {
                head,
                tag: Some(tci.tag_bytes(EtherType::VLAN)),
                tail: after_tag,
            },
        }
    }

    /// Length of `apply(frame)` without building it.
    pub fn out_len(self, frame_len: usize) -> usize {
        match self {
            TagOp::Keep => frame_len,
            TagOp::Pop => frame_len.saturating_sub(4),
            TagOp::Push(_) => frame_len + 4,
            TagOp::Rewrite(_) => frame_len,
        }
    }
}

/// A frame to send, in three parts: `head`, then `tag` if any, then `tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutFrame<'a> {
    pub head: &'a [u8],
    pub tag: Option<[u8; 4]>,
    pub tail: &'a [u8],
}

impl OutFrame<'_> {
    pub fn len(&self) -> usize {
        self.head.len() + self.tag.map_or(0, |t| t.len()) + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head);
        if let Some(t) = &self.tag {
            out.extend_from_slice(t);
        }
        out.extend_from_slice(self.tail);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.write_to(&mut v);
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the frame just received out of `port`, applying `tag`.
    Forward { port: PortId, tag: TagOp },
    /// Send a frame the switch made (a BPDU), stored in the `Actions` buffer.
    Transmit { port: PortId, start: u32, end: u32 },
}

impl Action {
    pub fn port(&self) -> PortId {
        match self {
            Action::Forward { port, .. } | Action::Transmit { port, .. } => *port,
        }
    }
}

/// Output buffer, reused from call to call so that handling a frame does not
/// allocate once it has warmed up.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    list: Vec<Action>,
    bytes: Vec<u8>,
}

impl Actions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.bytes.clear();
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn as_slice(&self) -> &[Action] {
        &self.list
    }

    /// Each action as (port, bytes to send). `input` is the frame that was
    /// passed to `receive` (ignored for actions from `tick`).
    pub fn frames<'a>(&'a self, input: &'a [u8]) -> impl Iterator<Item = (PortId, OutFrame<'a>)> {
        self.list.iter().map(move |a| match *a {
            Action::Forward { port, tag } => (port, tag.apply(input)),
            Action::Transmit { port, start, end } => (
                port,
                OutFrame {
                    head: self.bytes.get(start as usize..end as usize).unwrap_or(&[]),
                    tag: None,
                    tail: &[],
                },
            ),
        })
    }

    pub(crate) fn forward(&mut self, port: PortId, tag: TagOp) {
        self.list.push(Action::Forward { port, tag });
    }

    /// Appends a generated frame written by `write` into `len` fresh bytes.
    pub(crate) fn transmit(&mut self, port: PortId, len: usize, write: impl FnOnce(&mut [u8])) {
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        write(&mut self.bytes[start..]);
        self.list.push(Action::Transmit {
            port,
            start: start as u32,
            end: (start + len) as u32,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_ops() {
        let untagged: Vec<u8> = (0u8..20).collect();
        let push = TagOp::Push(Tci::new(5, 10)).apply(&untagged).to_vec();
        assert_eq!(&push[..12], &untagged[..12]);
        assert_eq!(&push[12..16], &[0x81, 0x00, 0xa0, 0x0a]);
        assert_eq!(&push[16..], &untagged[12..]);
        assert_eq!(TagOp::Push(Tci::new(5, 10)).out_len(20), push.len());
        let popped = TagOp::Pop.apply(&push).to_vec();
        assert_eq!(popped, untagged);
        let rw = TagOp::Rewrite(Tci::new(5, 20)).apply(&push).to_vec();
        assert_eq!(&rw[12..16], &[0x81, 0x00, 0xa0, 0x14]);
        assert_eq!(rw.len(), push.len());
        assert_eq!(TagOp::Keep.apply(&untagged).to_vec(), untagged);
        // Short input never panics.
        assert!(TagOp::Pop.apply(&[1, 2, 3]).len() <= 3);
    }
}
