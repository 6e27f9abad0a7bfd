//! Impaired ports: frames through them are copied into a release queue
//! ([`weft_switch::impair::Impair`]) and sent (or, coming in, switched)
//! when their time comes. Ports without impairment never come here, so
//! their frames are not copied.

use weft_switch::impair::{Fate, Impair};
use weft_switch::{Action, Actions, Instant};
use weft_sys::port::{TxFrame, VnetHdr, VNET_F_NEEDS_CSUM};
use weft_topo::impair::{core_config, Impairment};
use weft_topo::Lab;

use super::{Dp, Port, Src};
use crate::control::ImpairInfo;

/// A frame held by an impairment queue.
#[derive(Clone)]
pub(super) struct Held {
    pub(super) frame: Vec<u8>,
    pub(super) vnet: VnetHdr,
}

/// The impairment of one port: each direction its own queue and PRNG
/// stream, so what happens one way does not shift the other's choices.
pub(super) struct PortImpair {
    pub(super) settings: Impairment,
    seed: u64,
    out: Option<Impair<Held>>,
    inn: Option<Impair<Held>>,
}

/// Second stream of a seed, for the direction into the switch.
pub(super) const IN_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

/// Seed of a port that gives none: from the lab, switch and port names,
/// so a run replays the same way without one too.
pub fn derived_seed(lab: &str, switch: &str, port: &str) -> u64 {
    crate::config::stable_hash(&[lab, switch, port])
}

impl PortImpair {
    pub(super) fn new(i: Impairment, seed: u64) -> PortImpair {
        PortImpair {
            out: i
                .direction
                .has_out()
                .then(|| Impair::new(core_config(&i, seed))),
            inn: match &i.inbound {
                // Asymmetric: the `in` direction has settings of its own.
                Some(inb) => Some(Impair::new(core_config(inb, seed ^ IN_STREAM))),
                None => i
                    .direction
                    .has_in()
                    .then(|| Impair::new(core_config(&i, seed ^ IN_STREAM))),
            },
            settings: i,
            seed,
        }
    }

    fn next_release(&self) -> Option<Instant> {
        let a = self.out.as_ref().and_then(|q| q.next_release());
        let b = self.inn.as_ref().and_then(|q| q.next_release());
        a.into_iter().chain(b).min()
    }

    pub(super) fn info(&self) -> ImpairInfo {
        let z = Default::default();
        let o = self.out.as_ref().map_or(&z, |q| q.counters());
        let i = self.inn.as_ref().map_or(&z, |q| q.counters());
        ImpairInfo {
            settings: self.settings.summary(),
            seed: self.seed,
            seed_given: self.settings.seed.is_some(),
            lost: o.lost + i.lost,
            queue_full: o.queue_full + i.queue_full,
            duplicated: o.duplicated + i.duplicated,
            reordered: o.reordered + i.reordered,
            delayed: o.released + i.released,
            held: self.out.as_ref().map_or(0, |q| q.len())
                + self.inn.as_ref().map_or(0, |q| q.len()),
        }
    }

    /// Drops by reason, for `weft status`.
    pub(super) fn drops(&self) -> impl Iterator<Item = (String, u64)> {
        let i = self.info();
        [("impair-loss", i.lost), ("impair-queue", i.queue_full)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.to_string(), n))
    }
}

#[inline]
/// True if frames into the switch on port `p` are impaired; the frame
/// was then taken (copied: the receive buffer is reused at once).
pub(super) fn take_in(p: &mut Port, vnet: VnetHdr, frame: &[u8], now: Instant) -> bool {
    let Some(q) = p.imp.as_mut().and_then(|i| i.inn.as_mut()) else {
        return false;
    };
    let held = Held {
        frame: frame.to_vec(),
        vnet,
    };
    q.push_with(held, frame.len(), now, corrupt);
    true
}

/// Flips one bit of a held frame, as netem's `corrupt` does: a checksum
/// the sender left to the kernel (offload) is finished first, so that the
/// receiver sees the damage. A GSO super-frame is left alone: the kernel
/// computes its segments' checksums after, over the flipped bit, and the
/// damage would pass unseen into the application.
pub(super) fn corrupt(h: &mut Held, bit: usize) {
    if h.vnet.gso_type != 0 {
        return;
    }
    if h.vnet.flags & VNET_F_NEEDS_CSUM != 0 {
        let start = usize::from(h.vnet.csum_start);
        let at = start + usize::from(h.vnet.csum_offset);
        if at + 2 > h.frame.len() || start > h.frame.len() {
            return;
        }
        // The field holds the pseudo-header sum already (folded, not
        // inverted); the sum over the whole range gives the checksum.
        let mut sum: u32 = 0;
        for c in h.frame[start..].chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let csum = !(sum as u16);
        h.frame[at..at + 2].copy_from_slice(&csum.to_be_bytes());
        h.vnet.flags &= !VNET_F_NEEDS_CSUM;
    }
    if let Some(b) = h.frame.get_mut(bit / 8) {
        *b ^= 0x80 >> (bit % 8);
    }
}

#[inline]
/// True if frames out of port `p` are impaired; the frame was then taken.
pub(super) fn take_out(
    p: &mut Port,
    vnet: VnetHdr,
    out: &weft_switch::OutFrame<'_>,
    now: Instant,
) -> bool {
    let Some(q) = p.imp.as_mut().and_then(|i| i.out.as_mut()) else {
        return false;
    };
    let held = Held {
        frame: out.to_vec(),
        vnet,
    };
    let len = held.frame.len();
    if let Fate::Lost | Fate::QueueFull = q.push_with(held, len, now, corrupt) {
        tracing::trace!(port = %p.name, "impairment dropped a frame");
    }
    true
}

impl Dp {
    /// Impairments written in the file, on the ports just opened.
    pub(super) fn init_impair(&mut self, lab: &Lab) {
        for node in lab.nodes.values() {
            let Some(sw) = &node.switch else { continue };
            for (pname, p) in &sw.ports {
                if let Some(i) = &p.impair {
                    if let Some(g) = self.port_index(&node.name, pname) {
                        let seed = i
                            .seed
                            .unwrap_or_else(|| derived_seed(&lab.name, &node.name, pname));
                        self.ports[g].imp = Some(Box::new(PortImpair::new(i.clone(), seed)));
                    }
                }
            }
        }
        self.lab_name = lab.name.clone();
    }

    pub(super) fn port_index(&self, switch: &str, port: &str) -> Option<usize> {
        let s = self.switches.iter().position(|s| s.name == switch)?;
        self.switches[s]
            .ports
            .iter()
            .copied()
            .find(|&g| self.ports[g].name == port && !self.ports[g].retired)
    }

    /// Sets (or with `None` clears) a port's impairment at run time.
    /// New queues, so the PRNG starts again from the seed; frames still
    /// held by the old ones go out at once.
    pub(super) fn set_impair(&mut self, g: usize, i: Option<Impairment>) {
        // Flows through this port may be in the kernel fast path, which
        // would bypass the queues.
        self.invalidate_fast(self.ports[g].switch);
        let now = self.now();
        let old = self.ports[g].imp.take();
        if let Some(mut old) = old {
            let outs: Vec<Held> = old.out.as_mut().map(|q| q.drain()).unwrap_or_default();
            let ins: Vec<Held> = old.inn.as_mut().map(|q| q.drain()).unwrap_or_default();
            for h in outs {
                self.send_owned(g, &h);
            }
            for h in ins {
                self.switch_held(g, h, now);
            }
            self.flush_from(None);
        }
        if let Some(i) = i {
            let (s, p) = (self.ports[g].switch, &self.ports[g].name);
            let seed = i
                .seed
                .unwrap_or_else(|| derived_seed(&self.lab_name, &self.switches[s].name, p));
            self.ports[g].imp = Some(Box::new(PortImpair::new(i, seed)));
        }
    }

    /// The earliest time an impaired frame is due.
    pub(super) fn impair_deadline(&self) -> Option<Instant> {
        self.ports
            .iter()
            .filter_map(|p| p.imp.as_ref().and_then(|i| i.next_release()))
            .min()
    }

    /// Sends (or switches, for frames coming in) every frame that is due.
    /// The frames due out of one port leave in one batch (one system call,
    /// not one per frame: at 64 bytes the call is most of the cost).
    pub(super) fn release_impaired(&mut self, now: Instant) {
        let mut due: Vec<Held> = Vec::new();
        for g in 0..self.ports.len() {
            while let Some(imp) = self.ports[g].imp.as_mut() {
                if let Some(h) = imp.out.as_mut().and_then(|q| q.pop_due(now)) {
                    due.push(h);
                    continue;
                }
                if let Some(h) = imp.inn.as_mut().and_then(|q| q.pop_due(now)) {
                    self.switch_held(g, h, now);
                    continue;
                }
                break;
            }
            if !due.is_empty() {
                self.send_held(g, &due);
                due.clear();
            }
        }
        // What the frames that came in were switched to.
        self.flush_from(None);
    }

    fn send_held(&mut self, g: usize, held: &[Held]) {
        let p = &mut self.ports[g];
        if let Some(sock) = &p.sock {
            let tx: Vec<TxFrame<'_>> = held
                .iter()
                .map(|h| TxFrame {
                    vnet: h.vnet,
                    head: &h.frame,
                    tag: None,
                    tail: &[],
                })
                .collect();
            match sock.send_batch(&tx) {
                Ok((_, dropped)) => p.tx_errors += dropped as u64,
                Err(_) => p.tx_errors += 1,
            }
        }
    }

    fn send_owned(&mut self, g: usize, h: &Held) {
        let p = &mut self.ports[g];
        if let Some(sock) = &p.sock {
            let f = TxFrame {
                vnet: h.vnet,
                head: &h.frame,
                tag: None,
                tail: &[],
            };
            if sock.send_batch(&[f]).is_err() {
                p.tx_errors += 1;
            }
        }
    }

    /// A frame that came in on impaired port `g` and waited: now the
    /// switch handles it like one just received.
    fn switch_held(&mut self, g: usize, h: Held, now: Instant) {
        let frame = &h.frame;
        if frame.first().is_some_and(|b| b & 1 == 1)
            && !frame.starts_with(&[0x01, 0x80, 0xc2, 0x00, 0x00])
            && !self.ports[g].storm.admit(now)
        {
            return;
        }
        let (s, id) = (self.ports[g].switch, self.ports[g].id);
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.receive(id, frame, now, &mut acts);
        self.send_actions(s, &acts, frame, h.vnet, now);
        self.acts = acts;
    }

    /// Queues what the core said about `frame` (only frames that were
    /// held come here) as frames of the datapath's own, sent by the next
    /// [`flush_from`](Dp::flush_from) in one batch per port.
    fn send_actions(
        &mut self,
        s: usize,
        acts: &Actions,
        frame: &[u8],
        vnet: VnetHdr,
        now: Instant,
    ) {
        for (a, (_, out)) in acts.as_slice().iter().zip(acts.frames(frame)) {
            let (to, v) = match *a {
                Action::Forward { port, tag } => {
                    let delta = tag.out_len(frame.len()) as i32 - frame.len() as i32;
                    (self.switches[s].ports[port.index()], vnet.shifted(delta))
                }
                Action::Transmit { port, .. } => {
                    (self.switches[s].ports[port.index()], VnetHdr::default())
                }
            };
            if take_out(&mut self.ports[to], v, &out, now) {
                continue;
            }
            if self.queues[to].is_empty() {
                self.dirty.push(to);
            }
            self.owned.push(out.to_vec());
            self.queues[to].push((Src::Owned(self.owned.len() - 1), v));
        }
    }
}
