//! Forwarding: frames read from a port in batches, through the switch
//! core, queued per output port and sent as one batch per port.

use weft_switch::{Action, Actions, TagOp};
use weft_sys::port::{RxBatch, TxFrame, VnetHdr};

use super::{impaired, Dp, Src, BATCHES_PER_WAKEUP};
use crate::fastpath;

impl Dp {
    pub(super) fn read_port(&mut self, g: usize, rx: &mut RxBatch) {
        for _ in 0..BATCHES_PER_WAKEUP {
            let Some(sock) = &self.ports[g].sock else {
                return;
            };
            let n = match sock.recv_batch(rx) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(port = %self.ports[g].name, "receive: {e}");
                    self.check_carrier(g);
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let now = self.now();
            let (s, id) = (self.ports[g].switch, self.ports[g].id);
            for i in 0..n {
                let Some((vnet, frame)) = rx.frame(i) else {
                    continue;
                };
                if impaired::take_in(&mut self.ports[g], vnet, frame, now) {
                    continue;
                }
                if frame.starts_with(&[0x01, 0x80, 0xc2, 0x00, 0x00, 0x00]) {
                    self.watch.stp_dirty = true;
                }
                // Group addresses, except the IEEE reserved ones (BPDUs
                // must always pass, or STP itself would starve).
                if frame.first().is_some_and(|b| b & 1 == 1)
                    && !frame.starts_with(&[0x01, 0x80, 0xc2, 0x00, 0x00])
                    && !self.ports[g].storm.admit(now)
                {
                    continue;
                }
                let sw = &mut self.switches[s];
                sw.core.receive(id, frame, now, &mut self.acts);
                if let [Action::Forward {
                    port,
                    tag: TagOp::Keep,
                }] = self.acts.as_slice()
                {
                    let to = sw.ports[port.index()];
                    // An impaired port must see every frame.
                    let plain = self.ports[g].imp.is_none() && self.ports[to].imp.is_none();
                    if let Some(pair) = fastpath::eligible(frame).filter(|_| plain) {
                        if sw.fast.observe(g, pair, to) {
                            self.offload.push((s, g, pair, to));
                        }
                    }
                }
                for (a, (_, out)) in self.acts.as_slice().iter().zip(self.acts.frames(frame)) {
                    match *a {
                        Action::Forward { port, tag } => {
                            let to = sw.ports[port.index()];
                            let delta = tag.out_len(frame.len()) as i32 - frame.len() as i32;
                            let v = vnet.shifted(delta);
                            if impaired::take_out(&mut self.ports[to], v, &out, now) {
                                continue;
                            }
                            if self.queues[to].is_empty() {
                                self.dirty.push(to);
                            }
                            self.queues[to].push((Src::Rx(i, tag), vnet.shifted(delta)));
                        }
                        Action::Transmit { port, .. } => {
                            let to = sw.ports[port.index()];
                            let v = VnetHdr::default();
                            if impaired::take_out(&mut self.ports[to], v, &out, now) {
                                continue;
                            }
                            if self.queues[to].is_empty() {
                                self.dirty.push(to);
                            }
                            self.owned.push(out.to_vec());
                            self.queues[to]
                                .push((Src::Owned(self.owned.len() - 1), VnetHdr::default()));
                        }
                    }
                }
            }
            self.flush(rx);
            // Ring slots go back to the kernel as soon as the batch is sent.
            rx.release();
            self.install_fast();
            self.check_fast(s);
            if n < rx.capacity() {
                return;
            }
        }
    }

    pub(super) fn flush(&mut self, rx: &RxBatch) {
        self.flush_from(Some(rx));
    }

    /// Sends every queued frame; without a receive batch, only the ones
    /// the datapath holds itself (`Src::Owned`) can be queued.
    pub(super) fn flush_from(&mut self, rx: Option<&RxBatch>) {
        let mut tx: Vec<TxFrame<'_>> = Vec::new();
        for &to in &self.dirty {
            tx.clear();
            for (src, vnet) in &self.queues[to] {
                match *src {
                    Src::Rx(i, tag) => {
                        let Some((_, frame)) = rx.and_then(|rx| rx.frame(i)) else {
                            continue;
                        };
                        let out = tag.apply(frame);
                        tx.push(TxFrame {
                            vnet: *vnet,
                            head: out.head,
                            tag: out.tag,
                            tail: out.tail,
                        });
                    }
                    Src::Owned(k) => tx.push(TxFrame {
                        vnet: *vnet,
                        head: &self.owned[k],
                        tag: None,
                        tail: &[],
                    }),
                }
            }
            let p = &mut self.ports[to];
            if let Some(sock) = &p.sock {
                match sock.send_batch(&tx) {
                    Ok((_, dropped)) => p.tx_errors += dropped as u64,
                    Err(e) => {
                        p.tx_errors += 1;
                        tracing::debug!(port = %p.name, "send: {e}");
                    }
                }
            }
        }
        for &to in &self.dirty {
            self.queues[to].clear();
        }
        self.dirty.clear();
        self.owned.clear();
    }

    /// Sends the frames the switch made by itself (from `tick` or
    /// `set_link`): BPDUs.
    pub(super) fn send_generated(&mut self, s: usize, acts: &Actions) {
        let now = self.now();
        for (port, out) in acts.frames(&[]) {
            let g = self.switches[s].ports[port.index()];
            let p = &mut self.ports[g];
            if impaired::take_out(p, VnetHdr::default(), &out, now) {
                continue;
            }
            if let Some(sock) = &p.sock {
                let f = TxFrame {
                    vnet: VnetHdr::default(),
                    head: out.head,
                    tag: out.tag,
                    tail: out.tail,
                };
                if sock.send_batch(&[f]).is_err() {
                    p.tx_errors += 1;
                }
            }
        }
    }
}
