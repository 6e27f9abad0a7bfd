//! The switch in the kernel for every configuration the `u32` fast path
//! refuses (trunks, several VLANs, mirrors): one tc BPF classifier per
//! port (crates/ebpf, [`weft_ebpf::switch`]) forwards what the switch
//! core has already decided, reading the core's FDB, port states and VLAN
//! membership from BPF maps this module keeps in step with the core, and
//! a socket filter on each port's packet socket keeps those frames from
//! userspace. Frames the program cannot decide reach the userspace switch
//! as before.
//!
//! [`KernelSwitch::sync`] runs after every receive batch and timer: it
//! rewrites the port entries that changed and, when the core's table or a
//! port may have changed, the FDB entries that differ. Each FDB entry
//! carries what the program needs to know about its port in its VLAN
//! (usable, tagged, mirrored, the interface), so that a frame costs the
//! program two hash lookups and nothing else per port: a port change
//! rewrites the entries whose flags it changes. [`KernelSwitch::harvest`]
//! runs every second: it credits the programs' per-port and per-VLAN
//! counters to the core, refreshes the FDB entries the kernel used since
//! the last harvest (marked with the current epoch) and starts a new
//! epoch, so busy flows neither vanish from the counters nor age out.

use std::collections::HashMap;
use std::io;

use weft_ebpf::switch::{self as prog, FdbValue, Kind, Maps, Params, PortValue};
use weft_switch::{Instant, PortId, PortMode, Switch, SwitchConfig, VlanSet};
use weft_sys::bpf::{LoadError, Map, MapType, ProgType, Program};
use weft_wire::MacAddr;

/// The core's settings generation and, per core port, (forwarding,
/// usable, impaired).
type PortsFrom = (u64, Vec<(bool, bool, bool)>);

/// What an FDB entry's value says about its port, per core port.
#[derive(Debug, Clone, Default)]
struct PortInfo {
    ifindex: u32,
    /// Forwarding and not impaired.
    ok: bool,
    mode: Option<PortMode>,
    mirror_in: bool,
    mirror_out: bool,
}

/// One switch's maps and programs.
pub struct KernelSwitch {
    ports: Map,
    fdb: Map,
    port_stats: Map,
    vlan_stats: Map,
    /// Per core port: (classifier, socket filter).
    progs: Vec<(Program, Program)>,
    n: u16,
    /// What the `ports` map holds, per index (the switch's entry last).
    port_shadow: Vec<Option<[u8; prog::PORT_VALUE_SIZE as usize]>>,
    /// What the `ports` map was last built from: the core's settings
    /// generation and, per core port, (forwarding, usable, impaired). The
    /// map is rebuilt only when this changes, not after every batch.
    ports_from: Option<PortsFrom>,
    /// Per core port, as of the last port sync: what its FDB entries say.
    port_info: Vec<PortInfo>,
    /// The VLANs the mirror selects, as of the last port sync.
    mirror_vlans: VlanSet,
    /// What the `fdb` map holds (the `used` mark left out).
    fdb_shadow: HashMap<(u16, [u8; 6]), FdbValue>,
    fdb_sig: (usize, u64, u64, u64, u64),
    /// The ageing epoch the classifiers mark used entries with.
    epoch: u32,
    /// Counters already credited: per port index (rx frames, rx bytes,
    /// tx frames, tx bytes), per VLAN (frames, bytes).
    port_seen: Vec<[u64; 4]>,
    vlan_seen: HashMap<u16, [u64; 2]>,
    /// The core's mirror output port, as of the last sync.
    mirror_out: Option<PortId>,
}

/// Why the kernel switch could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("creating BPF map {0}: {1}")]
    Map(&'static str, io::Error),
    #[error("{0}")]
    Refused(#[from] LoadError),
    #[error("assembling the program: {0}")]
    Asm(#[from] weft_ebpf::AsmError),
}

impl KernelSwitch {
    /// Maps and programs for a switch of `cfg`'s ports; nothing attached.
    pub fn load(cfg: &SwitchConfig) -> Result<KernelSwitch, SetupError> {
        let n = cfg.ports.len().min(4095) as u16;
        let map = |name: &'static str, kind, k, v, max: usize| {
            Map::create(kind, name, k, v, max.max(1) as u32).map_err(|e| SetupError::Map(name, e))
        };
        let ports = map(
            "weft_ports",
            MapType::Array,
            4,
            prog::PORT_VALUE_SIZE,
            usize::from(n) + 1,
        )?;
        let fdb = map(
            "weft_fdb",
            MapType::Hash,
            prog::FDB_KEY_SIZE,
            prog::FDB_VALUE_SIZE,
            cfg.fdb_max_entries,
        )?;
        let port_stats = map(
            "weft_port_stats",
            MapType::PercpuArray,
            4,
            prog::PORT_STATS_SIZE,
            usize::from(n) + 1,
        )?;
        let vlan_stats = map(
            "weft_vlan_stats",
            MapType::PercpuArray,
            4,
            prog::VLAN_STATS_SIZE,
            4096,
        )?;
        let maps = Maps {
            ports: ports.raw_fd(),
            fdb: fdb.raw_fd(),
            port_stats: port_stats.raw_fd(),
            vlan_stats: vlan_stats.raw_fd(),
        };
        let mut progs = Vec::new();
        for port in 0..n {
            let build = |kind| -> Result<Vec<u64>, SetupError> {
                let insns = prog::program(Params {
                    kind,
                    port,
                    ports: n,
                    maps,
                })?;
                Ok(insns.iter().map(|i| i.to_u64()).collect())
            };
            let tc = Program::load(ProgType::SchedCls, "weft_switch", &build(Kind::Tc)?)?;
            let sock = Program::load(
                ProgType::SocketFilter,
                "weft_switch_sk",
                &build(Kind::Socket)?,
            )?;
            progs.push((tc, sock));
        }
        Ok(KernelSwitch {
            ports,
            fdb,
            port_stats,
            vlan_stats,
            progs,
            n,
            port_shadow: vec![None; usize::from(n) + 1],
            ports_from: None,
            port_info: vec![PortInfo::default(); usize::from(n)],
            mirror_vlans: VlanSet::empty(),
            fdb_shadow: HashMap::new(),
            fdb_sig: (usize::MAX, 0, 0, 0, 0),
            epoch: 1,
            port_seen: vec![[0; 4]; usize::from(n) + 1],
            vlan_seen: HashMap::new(),
            mirror_out: cfg.mirror.output,
        })
    }

    /// Core port `i`'s classifier.
    pub fn classifier(&self, i: usize) -> Option<&Program> {
        self.progs.get(i).map(|p| &p.0)
    }

    /// Core port `i`'s socket filter.
    pub fn socket_filter(&self, i: usize) -> Option<&Program> {
        self.progs.get(i).map(|p| &p.1)
    }

    /// Writes what changed in `core` since the last call into the maps.
    /// `ifindex(i)` is core port `i`'s interface, `slow(i)` whether it
    /// is impaired (its frames all go through userspace).
    pub fn sync(
        &mut self,
        core: &Switch,
        ifindex: impl Fn(usize) -> u32,
        slow: impl Fn(usize) -> bool,
    ) -> io::Result<()> {
        // Checked in place: this runs after every batch of frames, and the
        // ports change rarely, so the key is built only when they did.
        let generation = core.config_generation();
        let state = |i: u16| {
            let id = PortId(i);
            (
                core.port_forwarding(id),
                core.port_usable(id),
                slow(usize::from(i)),
            )
        };
        let same_ports = self.ports_from.as_ref().is_some_and(|(g, v)| {
            *g == generation
                && v.len() == usize::from(self.n)
                && (0..self.n).all(|i| v[usize::from(i)] == state(i))
        });
        let fc = core.fdb_counters();
        let sig = (core.fdb().len(), fc.learned, fc.moves, fc.aged, fc.flushed);
        if !same_ports {
            let from = (generation, (0..self.n).map(state).collect());
            self.sync_ports(core, &ifindex, &slow)?;
            self.ports_from = Some(from);
            // The entries' flags come from the ports.
            self.sync_fdb(core)?;
            self.fdb_sig = sig;
        } else if sig != self.fdb_sig {
            self.sync_fdb(core)?;
            self.fdb_sig = sig;
        }
        Ok(())
    }

    /// Makes the `ports` map hold each port's mode and state, and the
    /// switch's entry the mirror output, MTU and epoch.
    fn sync_ports(
        &mut self,
        core: &Switch,
        ifindex: &impl Fn(usize) -> u32,
        slow: &impl Fn(usize) -> bool,
    ) -> io::Result<()> {
        let (mirror_out, mirror_vlans) = core.mirror();
        self.mirror_out = mirror_out;
        self.mirror_vlans = mirror_vlans.clone();
        for i in 0..=usize::from(self.n) {
            let v = if i < usize::from(self.n) {
                let id = PortId(i as u16);
                let Some(mode) = core.port_mode(id) else {
                    self.port_info[i] = PortInfo::default();
                    continue;
                };
                let (mi, mo) = core.port_mirrored(id);
                let forwarding = core.port_forwarding(id);
                let mut flags = 0;
                if forwarding {
                    flags |= prog::F_FORWARDING;
                }
                if slow(i) {
                    flags |= prog::F_SLOW;
                }
                let untagged = match mode {
                    PortMode::Access(v) => *v,
                    PortMode::Trunk { native, .. } => {
                        flags |= prog::F_TRUNK;
                        native.unwrap_or(0)
                    }
                };
                self.port_info[i] = PortInfo {
                    ifindex: ifindex(i),
                    ok: forwarding && !slow(i),
                    mode: Some(mode.clone()),
                    mirror_in: mi,
                    mirror_out: mo,
                };
                PortValue {
                    ifindex: ifindex(i),
                    flags,
                    untagged,
                    epoch: 0,
                }
            } else {
                // The switch's entry: mirror output, MTU, epoch.
                let mut flags = 0;
                let mut ix = 0;
                if let Some(m) = mirror_out {
                    ix = ifindex(m.index());
                    if core.port_usable(m) {
                        flags |= prog::F_FORWARDING;
                    }
                    if slow(m.index()) {
                        flags |= prog::F_SLOW;
                    }
                }
                PortValue {
                    ifindex: ix,
                    flags,
                    untagged: core.mtu().min(usize::from(u16::MAX - 18)) as u16,
                    epoch: self.epoch,
                }
            };
            let bytes = v.to_bytes();
            if self.port_shadow[i] != Some(bytes) {
                self.ports.update(&(i as u32).to_ne_bytes(), &bytes)?;
                self.port_shadow[i] = Some(bytes);
            }
        }
        Ok(())
    }

    /// The value of the FDB entry for (`vid`, a MAC) on `port`, as of the
    /// last port sync.
    fn entry_value(&self, vid: u16, port: u16) -> FdbValue {
        let Some(pi) = self.port_info.get(usize::from(port)) else {
            return FdbValue {
                port,
                ifindex: 0,
                flags: 0,
                used: 0,
            };
        };
        let (member, untagged) = match &pi.mode {
            Some(PortMode::Access(v)) => (*v == vid, Some(*v)),
            Some(PortMode::Trunk { allowed, native }) => {
                (allowed.contains(vid) || *native == Some(vid), *native)
            }
            None => (false, None),
        };
        let vlan_mirrored = self.mirror_vlans.contains(vid);
        let mut flags = 0;
        if pi.ok && member {
            flags |= prog::E_USABLE;
        }
        if untagged != Some(vid) {
            flags |= prog::E_TAGGED;
        }
        if pi.mirror_in || vlan_mirrored {
            flags |= prog::E_MIRROR_IN;
        }
        if pi.mirror_out || vlan_mirrored {
            flags |= prog::E_MIRROR_OUT;
        }
        FdbValue {
            port,
            ifindex: pi.ifindex,
            flags,
            used: 0,
        }
    }

    /// Makes the `fdb` map hold exactly the core's table, each entry with
    /// its port's flags in its VLAN.
    pub fn sync_fdb(&mut self, core: &Switch) -> io::Result<()> {
        let mut live = HashMap::with_capacity(core.fdb().len());
        for (vid, mac, e) in core.fdb().iter() {
            live.insert((vid, mac.0), self.entry_value(vid, e.port.0));
        }
        let gone: Vec<(u16, [u8; 6])> = self
            .fdb_shadow
            .keys()
            .filter(|k| !live.contains_key(k))
            .copied()
            .collect();
        for k in gone {
            self.fdb.delete(&prog::fdb_key(k.0, k.1))?;
            self.fdb_shadow.remove(&k);
        }
        for (k, v) in live {
            if self.fdb_shadow.get(&k) != Some(&v) {
                // A rewrite clears the entry's `used` mark: at worst one
                // epoch's use of a busy entry is not seen, far inside the
                // ageing time.
                self.fdb.update(&prog::fdb_key(k.0, k.1), &v.to_bytes())?;
                self.fdb_shadow.insert(k, v);
            }
        }
        Ok(())
    }

    /// Folds what the programs forwarded since the last call into `core`:
    /// counters, and FDB entries the classifiers used refreshed to `now`
    /// (the core's clock). Call it about once a second: the refresh is as
    /// precise as the time between calls, far below the ageing time.
    pub fn harvest(&mut self, core: &mut Switch, now: Instant) -> io::Result<()> {
        let (mirror_out, _) = core.mirror();
        for i in 0..=usize::from(self.n) {
            let s = self.port_stats.sum_percpu(&(i as u32).to_ne_bytes())?;
            let seen = &mut self.port_seen[i];
            let d: Vec<u64> = (0..4).map(|k| s[k].saturating_sub(seen[k])).collect();
            seen.copy_from_slice(&s[..4]);
            // The mirror entry's tx is the mirror output's.
            let port = if i < usize::from(self.n) {
                PortId(i as u16)
            } else if let Some(m) = mirror_out {
                m
            } else {
                continue;
            };
            core.credit_port(port, (d[0], d[1]), (d[2], d[3]));
        }
        let mut vlans: Vec<u16> = Vec::new();
        for i in 0..self.n {
            match core.port_mode(PortId(i)) {
                Some(PortMode::Access(v)) => vlans.push(*v),
                Some(PortMode::Trunk { allowed, native }) => {
                    vlans.extend(allowed.iter());
                    vlans.extend(*native);
                }
                None => {}
            }
        }
        vlans.sort_unstable();
        vlans.dedup();
        for vid in vlans {
            let s = self.vlan_stats.sum_percpu(&u32::from(vid).to_ne_bytes())?;
            let seen = self.vlan_seen.entry(vid).or_default();
            let (f, b) = (s[0].saturating_sub(seen[0]), s[1].saturating_sub(seen[1]));
            *seen = [s[0], s[1]];
            core.credit_vlan(vid, f, b);
        }
        // A new epoch first, then the marks: an entry marked with the old
        // epoch was used since the last harvest, one marked with the new
        // one just now; both are refreshed.
        let old = self.epoch;
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let last = usize::from(self.n);
        if let Some(mut b) = self.port_shadow[last] {
            b[12..16].copy_from_slice(&self.epoch.to_ne_bytes());
            self.ports.update(&(last as u32).to_ne_bytes(), &b)?;
            self.port_shadow[last] = Some(b);
        }
        for (k, v) in &self.fdb_shadow {
            let Some(b) = self.fdb.lookup(&prog::fdb_key(k.0, k.1))? else {
                continue;
            };
            let used = FdbValue::from_bytes(&b).map_or(0, |e| e.used);
            if used != 0 && (used == old || used == self.epoch) {
                core.touch(k.0, MacAddr(k.1), PortId(v.port), now);
            }
        }
        Ok(())
    }
}

/// What the kernel program did with one frame, as a test run shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Left to the userspace switch.
    Userspace,
    /// Sent out of these core ports, with these lengths, in port order.
    Sent(Vec<(u16, usize)>),
    /// Dropped in the kernel.
    Dropped,
}

impl Verdict {
    /// The userspace core's decision on `frame` (its actions) in the same
    /// terms, for the tests that hold the kernel switch to the core's.
    pub fn of_core(frame: &[u8], out: &weft_switch::Actions) -> Verdict {
        let mut sent: Vec<(u16, usize)> = out
            .as_slice()
            .iter()
            .map(|a| match *a {
                weft_switch::Action::Forward { port, tag } => (port.0, tag.out_len(frame.len())),
                weft_switch::Action::Transmit { port, start, end } => {
                    (port.0, (end - start) as usize)
                }
            })
            .collect();
        sent.sort_unstable();
        if sent.is_empty() {
            Verdict::Dropped
        } else {
            Verdict::Sent(sent)
        }
    }
}

impl KernelSwitch {
    /// Runs core port `port`'s programs on `frame` (`BPF_PROG_TEST_RUN`,
    /// no device involved: redirects are decided, not carried out) and
    /// reads the decision from the counters. Errors if the socket filter
    /// and the classifier disagree about who takes the frame.
    pub fn test_decide(&mut self, port: usize, frame: &[u8]) -> io::Result<Verdict> {
        let before = self.tx_counts()?;
        let (tc, sock) = &self.progs[port];
        let (ret, _) = tc.test_run(frame)?;
        let (kept, _) = sock.test_run(frame)?;
        let after = self.tx_counts()?;
        let v = match ret as i32 {
            prog::TC_ACT_OK => Verdict::Userspace,
            prog::TC_ACT_SHOT => Verdict::Dropped,
            prog::TC_ACT_REDIRECT => {
                let mut sent = Vec::new();
                for (i, (a, b)) in after.iter().zip(&before).enumerate() {
                    if a.0 != b.0 {
                        // The mirror entry counts for the mirror output.
                        let p = match self.mirror_out {
                            Some(m) if i == usize::from(self.n) => m.0,
                            _ => i as u16,
                        };
                        sent.push((p, (a.1 - b.1) as usize));
                    }
                }
                sent.sort_unstable();
                Verdict::Sent(sent)
            }
            r => return Err(io::Error::other(format!("unexpected verdict {r}"))),
        };
        if (kept == 0) == (v == Verdict::Userspace) {
            return Err(io::Error::other(format!(
                "the socket filter kept {kept} bytes of a frame the classifier gave {v:?}"
            )));
        }
        // Keep later credits to the core from counting test frames.
        self.port_seen = after.iter().map(|_| [0; 4]).collect();
        for i in 0..=usize::from(self.n) {
            let s = self.port_stats.sum_percpu(&(i as u32).to_ne_bytes())?;
            self.port_seen[i].copy_from_slice(&s[..4]);
        }
        Ok(v)
    }

    /// Per port index (the mirror entry last): tx (frames, bytes).
    fn tx_counts(&self) -> io::Result<Vec<(u64, u64)>> {
        (0..=u32::from(self.n))
            .map(|i| {
                let s = self.port_stats.sum_percpu(&i.to_ne_bytes())?;
                Ok((s[2], s[3]))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_switch::{Actions, PortConfig};
    use weft_wire::testing::{frame, mac};

    /// Payload bytes of the test frames: untagged, a minimum-size frame.
    const MIN: usize = 46;

    fn bpf_or_skip() -> bool {
        if let Some(why) = weft_sys::bpf::unavailable() {
            eprintln!("SKIPPED: {why}; the kernel switch is not tested here");
            return false;
        }
        true
    }

    /// The core's decision as a verdict: the ports and lengths it sends to.
    fn core_decides(core: &mut Switch, port: u16, f: &[u8], now: Instant) -> Verdict {
        let mut out = Actions::new();
        core.receive(PortId(port), f, now, &mut out);
        Verdict::of_core(f, &out)
    }

    fn sync(ks: &mut KernelSwitch, core: &Switch) {
        ks.sync(core, |i| 100_000 + i as u32, |_| false).unwrap();
    }

    #[test]
    fn the_verifier_takes_both_programs_for_every_port() {
        if !bpf_or_skip() {
            return;
        }
        let cfg = SwitchConfig::new(
            mac(0xfe),
            vec![
                PortConfig::access(10).edge(),
                PortConfig::access(20).edge(),
                PortConfig::trunk([10, 20, 30], Some(1)).edge(),
            ],
        );
        let ks = match KernelSwitch::load(&cfg) {
            Ok(k) => k,
            Err(SetupError::Refused(e)) => panic!("{e}\n{}", e.log),
            Err(e) => panic!("{e}"),
        };
        assert!(ks.classifier(2).is_some() && ks.socket_filter(2).is_some());
    }

    #[test]
    fn learned_unicast_crosses_access_and_trunk_ports_with_the_right_tags() {
        if !bpf_or_skip() {
            return;
        }
        let cfg = SwitchConfig::new(
            mac(0xfe),
            vec![
                PortConfig::access(10).edge(),
                PortConfig::access(20).edge(),
                PortConfig::trunk([10, 20], None).edge(),
                PortConfig::trunk([10], Some(20)).edge(),
            ],
        );
        let mut core = Switch::new(cfg.clone());
        let mut ks = KernelSwitch::load(&cfg).unwrap();
        let t = Instant::from_secs(1);
        // Unknown: userspace learns.
        sync(&mut ks, &core);
        let a = frame(mac(2), mac(1), &[], MIN);
        assert_eq!(ks.test_decide(0, &a).unwrap(), Verdict::Userspace);
        core_decides(&mut core, 0, &a, t);
        let b = frame(mac(1), mac(2), &[10], MIN);
        sync(&mut ks, &core);
        assert_eq!(
            ks.test_decide(2, &b).unwrap(),
            Verdict::Userspace,
            "source unknown"
        );
        core_decides(&mut core, 2, &b, t);
        sync(&mut ks, &core);
        // Both known: the kernel decides, as the core does.
        for (port, f) in [(0u16, &a), (2, &b)] {
            let v = ks.test_decide(usize::from(port), f).unwrap();
            assert!(matches!(v, Verdict::Sent(_)), "{v:?}");
            assert_eq!(v, core_decides(&mut core, port, f, t));
        }
        assert_eq!(
            ks.test_decide(0, &a).unwrap(),
            Verdict::Sent(vec![(2, a.len() + 4)]),
            "tag pushed toward the trunk"
        );
        assert_eq!(
            ks.test_decide(2, &b).unwrap(),
            Verdict::Sent(vec![(0, b.len() - 4)]),
            "tag popped toward the access port"
        );
        // A tagged frame on an access port, a VLAN the trunk does not
        // carry, a group address: userspace (which drops or floods).
        for (port, f) in [
            (0, frame(mac(2), mac(1), &[10], MIN)),
            (2, frame(mac(1), mac(2), &[30], MIN)),
            (0, frame(MacAddr([0xff; 6]), mac(1), &[], MIN)),
            (
                0,
                frame(MacAddr([1, 0x80, 0xc2, 0, 0, 0]), mac(1), &[], MIN),
            ),
        ] {
            assert_eq!(ks.test_decide(port, &f).unwrap(), Verdict::Userspace);
        }
        // A port that stops forwarding takes the pair back to userspace.
        let mut out = Actions::new();
        core.set_enabled(PortId(2), false, t, &mut out);
        sync(&mut ks, &core);
        assert_eq!(ks.test_decide(0, &a).unwrap(), Verdict::Userspace);
    }

    #[test]
    fn mirrored_frames_get_a_tagged_copy() {
        if !bpf_or_skip() {
            return;
        }
        let mut cfg = SwitchConfig::new(
            mac(0xfe),
            vec![
                PortConfig::access(10).edge(),
                PortConfig::access(10).edge(),
                PortConfig::access(1).edge(),
            ],
        );
        cfg.mirror.output = Some(PortId(2));
        cfg.mirror.select_ingress = vec![PortId(0)];
        let mut core = Switch::new(cfg.clone());
        let mut ks = KernelSwitch::load(&cfg).unwrap();
        let t = Instant::from_secs(1);
        let a = frame(mac(2), mac(1), &[], MIN);
        let b = frame(mac(1), mac(2), &[], MIN);
        core_decides(&mut core, 0, &a, t);
        core_decides(&mut core, 1, &b, t);
        sync(&mut ks, &core);
        let want = core_decides(&mut core, 0, &a, t);
        assert_eq!(want, Verdict::Sent(vec![(1, a.len()), (2, a.len() + 4)]));
        assert_eq!(ks.test_decide(0, &a).unwrap(), want);
        // Not selected: no copy.
        assert_eq!(
            ks.test_decide(1, &b).unwrap(),
            core_decides(&mut core, 1, &b, t)
        );
    }

    #[test]
    fn harvest_credits_the_kernel_s_frames_and_keeps_used_entries_fresh() {
        if !bpf_or_skip() {
            return;
        }
        let cfg = SwitchConfig::new(
            mac(0xfe),
            vec![
                PortConfig::access(10).edge(),
                PortConfig::trunk([10], None).edge(),
            ],
        );
        let mut core = Switch::new(cfg.clone());
        let mut ks = KernelSwitch::load(&cfg).unwrap();
        let t = Instant::from_secs(1);
        let a = frame(mac(2), mac(1), &[], MIN);
        let b = frame(mac(1), mac(2), &[10], MIN);
        core_decides(&mut core, 0, &a, t);
        core_decides(&mut core, 1, &b, t);
        sync(&mut ks, &core);
        let before = (
            *core.port_counters(PortId(0)).unwrap(),
            *core.port_counters(PortId(1)).unwrap(),
            core.vlan_counters(10),
        );
        // Ten frames the kernel forwards, as a classifier run does.
        for _ in 0..10 {
            let (ret, _) = ks.classifier(0).unwrap().test_run(&a).unwrap();
            assert_eq!(ret as i32, prog::TC_ACT_REDIRECT);
        }
        let now = Instant::from_secs(200);
        ks.harvest(&mut core, now).unwrap();
        let (p0, p1) = (
            *core.port_counters(PortId(0)).unwrap(),
            *core.port_counters(PortId(1)).unwrap(),
        );
        assert_eq!(p0.rx_frames - before.0.rx_frames, 10);
        assert_eq!(p0.rx_bytes - before.0.rx_bytes, 10 * a.len() as u64);
        assert_eq!(p1.tx_frames - before.1.tx_frames, 10);
        assert_eq!(p1.tx_bytes - before.1.tx_bytes, 10 * (a.len() as u64 + 4));
        assert_eq!(core.vlan_counters(10).frames - before.2.frames, 10);
        // The source's entry was used just now (kernel time), so it is as
        // fresh as `now`; the destination's was not used as a source.
        let seen = core.fdb().get(10, mac(1)).unwrap().last_seen;
        assert!(seen > Instant::from_secs(190), "{seen:?}");
        assert_eq!(core.fdb().get(10, mac(2)).unwrap().last_seen, t);
        // A second harvest adds nothing, and refreshes nothing: the mark
        // is of an epoch that is over.
        ks.harvest(&mut core, Instant::from_secs(201)).unwrap();
        assert_eq!(
            core.port_counters(PortId(0)).unwrap().rx_frames,
            p0.rx_frames
        );
        ks.harvest(&mut core, Instant::from_secs(202)).unwrap();
        assert_eq!(core.fdb().get(10, mac(1)).unwrap().last_seen, seen);
        // Used again: refreshed again, once.
        ks.classifier(0).unwrap().test_run(&a).unwrap();
        ks.harvest(&mut core, Instant::from_secs(203)).unwrap();
        assert_eq!(
            core.fdb().get(10, mac(1)).unwrap().last_seen,
            Instant::from_secs(203)
        );
    }

    #[test]
    fn an_impaired_or_blocked_port_takes_its_entries_back_to_userspace() {
        if !bpf_or_skip() {
            return;
        }
        let cfg = SwitchConfig::new(
            mac(0xfe),
            vec![
                PortConfig::access(10).edge(),
                PortConfig::trunk([10, 20], None).edge(),
                PortConfig::access(20).edge(),
            ],
        );
        let mut core = Switch::new(cfg.clone());
        let mut ks = KernelSwitch::load(&cfg).unwrap();
        let t = Instant::from_secs(1);
        let a = frame(mac(2), mac(1), &[], MIN);
        let b = frame(mac(1), mac(2), &[10], MIN);
        core_decides(&mut core, 0, &a, t);
        core_decides(&mut core, 1, &b, t);
        sync(&mut ks, &core);
        assert_eq!(
            ks.test_decide(0, &a).unwrap(),
            Verdict::Sent(vec![(1, a.len() + 4)])
        );
        // The trunk impaired: its entries (and frames from it) go to
        // userspace, with the table unchanged.
        ks.sync(&core, |i| 100_000 + i as u32, |i| i == 1).unwrap();
        assert_eq!(ks.test_decide(0, &a).unwrap(), Verdict::Userspace);
        assert_eq!(ks.test_decide(1, &b).unwrap(), Verdict::Userspace);
        sync(&mut ks, &core);
        assert_eq!(
            ks.test_decide(1, &b).unwrap(),
            core_decides(&mut core, 1, &b, t)
        );
        // The access port's link down: the same.
        let mut out = Actions::new();
        core.set_link(PortId(0), false, t, &mut out);
        sync(&mut ks, &core);
        assert_eq!(ks.test_decide(1, &b).unwrap(), Verdict::Userspace);
        // The same MAC in another VLAN is another entry, with its own
        // port's flags: mac(2) in VLAN 20 on the trunk reaches the access
        // port of VLAN 20, tag popped.
        core.set_link(PortId(0), true, t, &mut out);
        let c = frame(mac(3), mac(2), &[20], MIN);
        let d = frame(mac(2), mac(3), &[], MIN);
        core_decides(&mut core, 1, &c, t);
        core_decides(&mut core, 2, &d, t);
        sync(&mut ks, &core);
        assert_eq!(
            ks.test_decide(1, &c).unwrap(),
            Verdict::Sent(vec![(2, c.len() - 4)])
        );
        assert_eq!(
            ks.test_decide(1, &c).unwrap(),
            core_decides(&mut core, 1, &c, t)
        );
    }
}
