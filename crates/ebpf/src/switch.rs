//! The weft switch's kernel program, one per port, in two forms that
//! share every decision:
//!
//! - [`Kind::Tc`], a `tc` classifier in direct-action mode on the port's
//!   ingress: frames it can decide leave by `bpf_redirect` (or
//!   `bpf_clone_redirect` for a mirror copy) with their 802.1Q tag pushed
//!   or popped for the out port, and are counted per port and VLAN;
//!   everything else returns `TC_ACT_OK` and reaches the userspace
//!   switch's packet socket as before.
//! - [`Kind::Socket`], a socket filter on that packet socket: it runs
//!   before tc (packet taps come first on receive) and drops from the
//!   socket exactly the frames the classifier will forward, so no frame
//!   is forwarded twice.
//!
//! The program decides only what needs no state change in the switch
//! core: a unicast frame whose source the core has learned on this port
//! and whose destination it knows, between ports that are forwarding, not
//! impaired, and members of the VLAN. Unknown sources (learning, moves),
//! group addresses (BPDUs, floods), priority tags, double tags, oversize
//! frames and whatever the core would drop go to userspace, which decides
//! and counts them as before.
//!
//! Every frame a port receives runs both programs, so their per-frame work
//! is kept small: two hash lookups (source, destination) whose values
//! carry everything about the entry's port in that VLAN that the decision
//! needs (interface, usable, tagged, mirrored), worked out by the datapath
//! whenever a port or the table changes; the port's own entry and the
//! switch-wide entry are array lookups the verifier inlines; no clock is
//! read (ageing uses an epoch the datapath advances, see
//! [`FdbValue::used`]). Maps (written by the datapath from the core):
//!
//! - `ports`: array, [`PORT_VALUE_SIZE`]-byte [`PortValue`]s, one per port
//!   and one more (index = port count) for the switch: mirror output,
//!   MTU, ageing epoch.
//! - `fdb`: hash, [`FDB_KEY_SIZE`]-byte key (VLAN, MAC) to
//!   [`FDB_VALUE_SIZE`]-byte [`FdbValue`].
//! - `port_stats`: per-CPU array per port of (rx frames, rx bytes, tx
//!   frames, tx bytes); `vlan_stats`: per-CPU array per VLAN (frames, bytes).

use crate::{
    Alu, Asm, AsmError, Cond, Insn, Label, Reg, Size, R0, R1, R10, R2, R3, R4, R5, R6, R7, R8,
};

/// `struct __sk_buff` offsets.
pub mod skb {
    pub const LEN: i16 = 0;
    pub const VLAN_PRESENT: i16 = 20;
    pub const VLAN_TCI: i16 = 24;
    pub const VLAN_PROTO: i16 = 28;
    pub const DATA: i16 = 76;
    pub const DATA_END: i16 = 80;
    pub const GSO_SIZE: i16 = 176;
}

/// Helper numbers (`enum bpf_func_id`).
pub mod helper {
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    pub const KTIME_GET_NS: i32 = 5;
    pub const CLONE_REDIRECT: i32 = 13;
    pub const SKB_VLAN_PUSH: i32 = 18;
    pub const SKB_VLAN_POP: i32 = 19;
    pub const REDIRECT: i32 = 23;
    pub const SKB_LOAD_BYTES_RELATIVE: i32 = 68;
}

/// tc verdicts.
pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

/// Port flag: frames may enter and leave (enabled, carrier, forwarding in
/// the spanning tree, not the mirror output).
pub const F_FORWARDING: u32 = 1;
/// Port flag: impaired, so every frame in or out goes through userspace.
pub const F_SLOW: u32 = 2;
/// Port flag: a trunk (takes tagged frames).
pub const F_TRUNK: u32 = 4;

/// FDB entry flag: the entry's port forwards the entry's VLAN (forwarding,
/// not impaired, a member of the VLAN).
pub const E_USABLE: u32 = 1;
/// FDB entry flag: frames of the VLAN leave the entry's port tagged.
pub const E_TAGGED: u32 = 2;
/// FDB entry flag: frames of the VLAN received on the entry's port are
/// mirrored (the port's ingress or the VLAN is selected).
pub const E_MIRROR_IN: u32 = 4;
/// FDB entry flag: frames of the VLAN sent out of the entry's port are
/// mirrored (the port's egress or the VLAN is selected).
pub const E_MIRROR_OUT: u32 = 8;

/// Bytes of a `ports` value.
pub const PORT_VALUE_SIZE: u32 = 16;
pub const FDB_KEY_SIZE: u32 = 8;
pub const FDB_VALUE_SIZE: u32 = 16;
pub const PORT_STATS_SIZE: u32 = 32;
pub const VLAN_STATS_SIZE: u32 = 16;

// Offsets in a `ports` value.
const P_IFINDEX: i16 = 0;
const P_FLAGS: i16 = 4;
const P_UNTAGGED: i16 = 8;
const P_EPOCH: i16 = 12;
// Offsets in an `fdb` value.
const E_PORT: i16 = 0;
const E_IFINDEX: i16 = 4;
const E_FLAGS: i16 = 8;
const E_USED: i16 = 12;

/// One `ports` map value. For the last entry (the switch's), `ifindex` is
/// the mirror output (0: none), `flags` its [`F_FORWARDING`]/[`F_SLOW`],
/// `untagged` the switch's MTU (the largest untagged payload) and `epoch`
/// the current ageing epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortValue {
    pub ifindex: u32,
    pub flags: u32,
    /// The VLAN that enters and leaves untagged (access VLAN or native), 0: none.
    pub untagged: u16,
    pub epoch: u32,
}

impl PortValue {
    pub fn to_bytes(&self) -> [u8; PORT_VALUE_SIZE as usize] {
        let mut b = [0u8; PORT_VALUE_SIZE as usize];
        b[0..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..10].copy_from_slice(&self.untagged.to_ne_bytes());
        b[12..16].copy_from_slice(&self.epoch.to_ne_bytes());
        b
    }
}

/// An `fdb` key.
pub fn fdb_key(vid: u16, mac: [u8; 6]) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..2].copy_from_slice(&vid.to_ne_bytes());
    k[2..].copy_from_slice(&mac);
    k
}

/// One `fdb` map value: the entry's port and what the program needs to
/// know about that port in the entry's VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbValue {
    pub port: u16,
    /// The port's interface.
    pub ifindex: u32,
    /// [`E_USABLE`], [`E_TAGGED`], [`E_MIRROR_IN`], [`E_MIRROR_OUT`].
    pub flags: u32,
    /// The ageing epoch in which the classifier last took a frame from
    /// this source (0: never): it writes the switch entry's epoch here
    /// when it differs, so a busy entry's cache line is written once per
    /// epoch, and the datapath, which advances the epoch every second,
    /// refreshes the core's entries whose mark is recent. This replaces
    /// a `bpf_ktime_get_ns` per frame.
    pub used: u32,
}

impl FdbValue {
    pub fn to_bytes(&self) -> [u8; FDB_VALUE_SIZE as usize] {
        let mut v = [0u8; FDB_VALUE_SIZE as usize];
        v[0..4].copy_from_slice(&u32::from(self.port).to_ne_bytes());
        v[4..8].copy_from_slice(&self.ifindex.to_ne_bytes());
        v[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        v[12..16].copy_from_slice(&self.used.to_ne_bytes());
        v
    }

    pub fn from_bytes(b: &[u8]) -> Option<FdbValue> {
        let w = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        Some(FdbValue {
            port: w(0)? as u16,
            ifindex: w(4)?,
            flags: w(8)?,
            used: w(12)?,
        })
    }
}

/// Which of the two programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tc,
    Socket,
}

/// The maps' file descriptors.
#[derive(Debug, Clone, Copy)]
pub struct Maps {
    pub ports: i32,
    pub fdb: i32,
    pub port_stats: i32,
    pub vlan_stats: i32,
}

/// What one port's program is built for.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub kind: Kind,
    /// This port's index.
    pub port: u16,
    /// Ports of the switch (the switch's own entry is at this index).
    pub ports: u16,
    pub maps: Maps,
}

// Stack layout (offsets from r10).
const HDR: i16 = -24; // 14 bytes: dst, src, EtherType
const HDR_SRC: i16 = HDR + 6;
const HDR_TYPE: i16 = HDR + 12;
const TAG: i16 = -8; // 4 bytes: TCI, inner EtherType (tag in the packet)
const KEY: i16 = -40; // 8 bytes: fdb key
const IDX: i16 = -44; // 4 bytes: array index
const IN_TAGGED: i16 = -56; // u64: the frame carries a tag now
const LEN_IN: i16 = -64; // u64: length as the core counts it
const OUT_PORT: i16 = -72; // u64: out port index
const MIRRORED: i16 = -80; // u64: the mirror output's interface, 0: no copy
const OUT_FLAGS: i16 = -88; // u64: the destination entry's flags
const ARRIVED: i16 = -96; // u64: 4 if the frame arrived tagged
const MIRROR_IDX: i16 = -104; // u64: the switch entry's index
const GLOBAL: i16 = -112; // pointer to the switch's `ports` entry
const SRC_FLAGS: i16 = -120; // u64: the source entry's flags
const OUT_IFINDEX: i16 = -128; // u64: the out port's interface

struct Gen {
    a: Asm,
    p: Params,
    pass: Label,
}

impl Gen {
    /// `r0 = lookup(map, &key at fp+key_off)`, null to `pass`.
    fn lookup(&mut self, map: i32, key_off: i16) {
        let pass = self.pass;
        self.a
            .load_map_fd(R1, map)
            .mov_reg(R2, R10)
            .alu64_imm(Alu::Add, R2, i32::from(key_off))
            .call(helper::MAP_LOOKUP_ELEM)
            .jump_imm(Cond::Eq, R0, 0, pass);
    }

    /// `r0 = &array[idx]` for a constant index.
    fn lookup_index(&mut self, map: i32, idx: u32) {
        self.a.store_imm(Size::W, R10, IDX, idx as i32);
        self.lookup(map, IDX);
    }

    /// Copies the 6 bytes at fp+from into the key's MAC.
    fn key_mac(&mut self, from: i16) {
        // Halfword copies: the verifier wants stack accesses aligned.
        self.a.store(Size::H, R10, KEY, R8);
        for k in 0..3 {
            self.a
                .load(Size::H, R1, R10, from + 2 * k)
                .store(Size::H, R10, KEY + 2 + 2 * k, R1);
        }
    }

    /// `*(u64 *)(r0 + off) += reg`.
    fn add_to(&mut self, off: i16, reg: Reg) {
        self.a
            .load(Size::DW, R1, R0, off)
            .alu64_reg(Alu::Add, R1, reg)
            .store(Size::DW, R0, off, R1);
    }

    /// Puts the frame in the tag state `want` (a register or stack value
    /// already compared): pushes VLAN r8 or pops. Clobbers r1-r5.
    fn set_tagged(&mut self, want: bool) {
        let done = self.a.label();
        self.a
            .load(Size::DW, R1, R10, IN_TAGGED)
            .jump_imm(Cond::Eq, R1, i32::from(want), done);
        if want {
            self.a
                .mov_reg(R1, R6)
                .mov_imm(R2, i32::from(0x8100u16.to_be()))
                .mov_reg(R3, R8)
                .call(helper::SKB_VLAN_PUSH);
        } else {
            self.a.mov_reg(R1, R6).call(helper::SKB_VLAN_POP);
        }
        // A failed push or pop leaves the frame as it was: nothing has
        // been sent yet but maybe a mirror copy, so userspace sending it
        // would duplicate that copy; drop instead (as a full queue would).
        let ok = self.a.label();
        self.a
            .jump_imm(Cond::Eq, R0, 0, ok)
            .mov_imm(R0, TC_ACT_SHOT)
            .exit();
        self.a.bind(ok);
        self.a.store_imm(Size::DW, R10, IN_TAGGED, i32::from(want));
        self.a.bind(done);
    }

    /// Counts a frame, in its current tag state, sent out of the port
    /// whose index is the stack u64 at `idx_off`. Clobbers r0-r5.
    fn count_tx(&mut self, idx_off: i16) {
        let skip = self.a.label();
        self.a
            .load(Size::DW, R1, R10, idx_off)
            .store(Size::W, R10, IDX, R1)
            .load_map_fd(R1, self.p.maps.port_stats)
            .mov_reg(R2, R10)
            .alu64_imm(Alu::Add, R2, i32::from(IDX))
            .call(helper::MAP_LOOKUP_ELEM)
            .jump_imm(Cond::Eq, R0, 0, skip)
            .mov_imm(R2, 1);
        self.add_to(16, R2);
        // Length now: the core's length, plus 4 if a tag was pushed,
        // minus 4 if one was popped.
        self.a
            .load(Size::DW, R2, R10, LEN_IN)
            .load(Size::DW, R3, R10, IN_TAGGED)
            .alu64_imm(Alu::Lsh, R3, 2)
            .alu64_reg(Alu::Add, R2, R3)
            .load(Size::DW, R3, R10, ARRIVED)
            .alu64_reg(Alu::Sub, R2, R3);
        self.add_to(24, R2);
        self.a.bind(skip);
    }
}

/// The program for one port.
pub fn program(p: Params) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let pass = a.label();
    let mut g = Gen { a, p, pass };
    let tc = p.kind == Kind::Tc;
    let m = p.maps;

    g.a.mov_reg(R6, R1);
    // r7: this port's value; frames of a port that is not forwarding or is
    // impaired are all for userspace.
    g.lookup_index(m.ports, u32::from(p.port));
    g.a.mov_reg(R7, R0)
        .load(Size::W, R1, R7, P_FLAGS)
        .alu64_imm(Alu::And, R1, (F_FORWARDING | F_SLOW) as i32)
        .jump_imm(Cond::Ne, R1, F_FORWARDING as i32, pass);
    // Oversize frames (but GSO ones, which the core never sees whole);
    // the MTU is in the switch's entry, so that it can change in place.
    let size_ok = g.a.label();
    g.lookup_index(m.ports, u32::from(p.ports));
    g.a.store(Size::DW, R10, GLOBAL, R0)
        .load(Size::H, R2, R0, P_UNTAGGED)
        .alu64_imm(Alu::Add, R2, 14)
        .load(Size::W, R1, R6, skb::LEN)
        .jump_reg(Cond::Le, R1, R2, size_ok)
        .load(Size::W, R1, R6, skb::GSO_SIZE)
        .jump_imm(Cond::Eq, R1, 0, pass);
    g.a.bind(size_ok);
    if tc {
        // The Ethernet header, read in place: a classifier's data starts
        // at the link header (on ingress and in a test run), and reading
        // it directly costs no helper call.
        g.a.load(Size::W, R2, R6, skb::DATA)
            .load(Size::W, R3, R6, skb::DATA_END)
            .mov_reg(R1, R2)
            .alu64_imm(Alu::Add, R1, 14)
            .jump_reg(Cond::Gt, R1, R3, pass);
        for k in 0..7 {
            g.a.load(Size::H, R1, R2, 2 * k)
                .store(Size::H, R10, HDR + 2 * k, R1);
        }
    } else {
        // The Ethernet header, counted from the link header
        // (`BPF_HDR_START_MAC`): a socket filter's data starts there on a
        // packet socket but at the network header in a test run (and it
        // may not read the packet directly).
        g.a.mov_reg(R1, R6)
            .mov_imm(R2, 0)
            .mov_reg(R3, R10)
            .alu64_imm(Alu::Add, R3, i32::from(HDR))
            .mov_imm(R4, 14)
            .mov_imm(R5, 0)
            .call(helper::SKB_LOAD_BYTES_RELATIVE)
            .jump_imm(Cond::Ne, R0, 0, pass);
    }
    // Group destinations (floods, BPDUs) and group sources: userspace.
    g.a.load(Size::B, R1, R10, HDR)
        .jump_imm(Cond::Set, R1, 1, pass)
        .load(Size::B, R1, R10, HDR_SRC)
        .jump_imm(Cond::Set, R1, 1, pass);

    // r8: the VLAN; IN_TAGGED: whether the frame has a tag; LEN_IN: its
    // length with the tag, as the core counts it.
    let meta = g.a.label();
    let in_pkt = g.a.label();
    let tagged = g.a.label();
    let have_vid = g.a.label();
    g.a.load(Size::W, R1, R6, skb::LEN)
        .store(Size::DW, R10, LEN_IN, R1)
        .load(Size::W, R1, R6, skb::VLAN_PRESENT)
        .jump_imm(Cond::Ne, R1, 0, meta)
        .load(Size::H, R1, R10, HDR_TYPE)
        .be16(R1)
        .jump_imm(Cond::Eq, R1, 0x8100, in_pkt)
        .jump_imm(Cond::Eq, R1, 0x88a8, pass)
        // Untagged: the port's untagged VLAN, if it has one.
        .load(Size::H, R8, R7, P_UNTAGGED)
        .jump_imm(Cond::Eq, R8, 0, pass)
        .store_imm(Size::DW, R10, IN_TAGGED, 0)
        .goto(have_vid);
    // Tag in the metadata (the device took it off): the EtherType read
    // is the inner one.
    g.a.bind(meta);
    g.a.load(Size::W, R1, R6, skb::VLAN_PROTO)
        .be16(R1)
        .jump_imm(Cond::Ne, R1, 0x8100, pass)
        .load(Size::W, R8, R6, skb::VLAN_TCI)
        .load(Size::H, R1, R10, HDR_TYPE)
        .be16(R1)
        .jump_imm(Cond::Eq, R1, 0x8100, pass)
        .jump_imm(Cond::Eq, R1, 0x88a8, pass)
        .load(Size::DW, R1, R10, LEN_IN)
        .alu64_imm(Alu::Add, R1, 4)
        .store(Size::DW, R10, LEN_IN, R1)
        .goto(tagged);
    // Tag in the packet (BPF_PROG_TEST_RUN, devices that keep it).
    g.a.bind(in_pkt);
    g.a.mov_reg(R1, R6)
        .mov_imm(R2, 14)
        .mov_reg(R3, R10)
        .alu64_imm(Alu::Add, R3, i32::from(TAG))
        .mov_imm(R4, 4)
        .mov_imm(R5, 0)
        .call(helper::SKB_LOAD_BYTES_RELATIVE)
        .jump_imm(Cond::Ne, R0, 0, pass)
        .load(Size::H, R8, R10, TAG)
        .be16(R8)
        .load(Size::H, R1, R10, TAG + 2)
        .be16(R1)
        .jump_imm(Cond::Eq, R1, 0x8100, pass)
        .jump_imm(Cond::Eq, R1, 0x88a8, pass);
    g.a.bind(tagged);
    // Priority tags (VLAN 0) get their VLAN rewritten: userspace. Tags on
    // access ports are dropped there.
    g.a.alu64_imm(Alu::And, R8, 0xfff)
        .jump_imm(Cond::Eq, R8, 0, pass)
        .jump_imm(Cond::Eq, R8, 0xfff, pass)
        .store_imm(Size::DW, R10, IN_TAGGED, 1)
        .load(Size::W, R1, R7, P_FLAGS)
        .jump_imm(Cond::Set, R1, F_TRUNK as i32, have_vid)
        .goto(pass);
    g.a.bind(have_vid);

    // The source must be known on this very port, and the port a member
    // of the VLAN (the entry says so): anything else is learning, a move
    // or a drop, which the core does.
    g.key_mac(HDR_SRC);
    g.lookup(m.fdb, KEY);
    g.a.load(Size::W, R1, R0, E_PORT)
        .jump_imm(Cond::Ne, R1, i32::from(p.port), pass)
        .load(Size::W, R1, R0, E_FLAGS)
        .store(Size::DW, R10, SRC_FLAGS, R1)
        .alu64_imm(Alu::And, R1, E_USABLE as i32)
        .jump_imm(Cond::Eq, R1, 0, pass);
    if tc {
        // Marked used in this epoch (written once per epoch).
        let fresh = g.a.label();
        g.a.load(Size::DW, R2, R10, GLOBAL)
            .load(Size::W, R2, R2, P_EPOCH)
            .load(Size::W, R1, R0, E_USED)
            .jump_reg(Cond::Eq, R1, R2, fresh)
            .store(Size::W, R0, E_USED, R2);
        g.a.bind(fresh);
    }
    // The destination, on another port that forwards this VLAN.
    g.key_mac(HDR);
    g.lookup(m.fdb, KEY);
    g.a.load(Size::W, R1, R0, E_PORT)
        .jump_imm(Cond::Eq, R1, i32::from(p.port), pass)
        .jump_imm(Cond::Ge, R1, i32::from(p.ports), pass)
        .store(Size::DW, R10, OUT_PORT, R1)
        .load(Size::W, R1, R0, E_IFINDEX)
        .store(Size::DW, R10, OUT_IFINDEX, R1)
        .load(Size::W, R1, R0, E_FLAGS)
        .store(Size::DW, R10, OUT_FLAGS, R1)
        .alu64_imm(Alu::And, R1, E_USABLE as i32)
        .jump_imm(Cond::Eq, R1, 0, pass);

    // Mirrored if the in port's ingress, the out port's egress or the
    // VLAN is selected (the entries' flags say), and the mirror output is
    // there and up.
    let no_mirror = g.a.label();
    g.a.store_imm(Size::DW, R10, MIRRORED, 0)
        .load(Size::DW, R1, R10, SRC_FLAGS)
        .alu64_imm(Alu::And, R1, E_MIRROR_IN as i32)
        .load(Size::DW, R2, R10, OUT_FLAGS)
        .alu64_imm(Alu::And, R2, E_MIRROR_OUT as i32)
        .alu64_reg(Alu::Or, R1, R2)
        .jump_imm(Cond::Eq, R1, 0, no_mirror)
        .load(Size::DW, R0, R10, GLOBAL)
        .load(Size::W, R1, R0, P_IFINDEX)
        .jump_imm(Cond::Eq, R1, 0, no_mirror)
        .load(Size::W, R2, R0, P_FLAGS)
        .jump_imm(Cond::Set, R2, F_SLOW as i32, pass)
        .jump_imm(Cond::Eq, R2, 0, no_mirror)
        .store(Size::DW, R10, MIRRORED, R1);
    g.a.bind(no_mirror);

    if !tc {
        // Decided: the classifier forwards it, the socket must not see it.
        g.a.mov_imm(R0, 0).exit();
        g.a.bind(pass);
        g.a.alu32_imm(Alu::Mov, R0, -1).exit();
        return g.a.finish();
    }

    // Counters: rx on this port and the VLAN.
    let skip = g.a.label();
    g.lookup_index(m.port_stats, u32::from(p.port));
    g.a.mov_imm(R2, 1);
    g.add_to(0, R2);
    g.a.load(Size::DW, R2, R10, LEN_IN);
    g.add_to(8, R2);
    g.a.store(Size::W, R10, IDX, R8)
        .load_map_fd(R1, m.vlan_stats)
        .mov_reg(R2, R10)
        .alu64_imm(Alu::Add, R2, i32::from(IDX))
        .call(helper::MAP_LOOKUP_ELEM)
        .jump_imm(Cond::Eq, R0, 0, skip)
        .mov_imm(R2, 1);
    g.add_to(0, R2);
    g.a.load(Size::DW, R2, R10, LEN_IN);
    g.add_to(8, R2);
    g.a.bind(skip);
    // The tag's bytes the core counted the frame with, which count_tx
    // takes off again.
    g.a.load(Size::DW, R1, R10, IN_TAGGED)
        .alu64_imm(Alu::Lsh, R1, 2)
        .store(Size::DW, R10, ARRIVED, R1);

    // The mirror copy carries its VLAN as a tag.
    let after_copy = g.a.label();
    g.a.load(Size::DW, R1, R10, MIRRORED)
        .jump_imm(Cond::Eq, R1, 0, after_copy);
    g.set_tagged(true);
    g.a.load(Size::DW, R2, R10, MIRRORED)
        .mov_reg(R1, R6)
        .mov_imm(R3, 0)
        .call(helper::CLONE_REDIRECT)
        .store_imm(Size::DW, R10, MIRROR_IDX, i32::from(p.ports));
    g.count_tx(MIRROR_IDX);
    g.a.bind(after_copy);

    // The out port: tagged unless the VLAN is its untagged one.
    let want_tag = g.a.label();
    let send = g.a.label();
    g.a.load(Size::DW, R1, R10, OUT_FLAGS)
        .jump_imm(Cond::Set, R1, E_TAGGED as i32, want_tag);
    g.set_tagged(false);
    g.a.goto(send);
    g.a.bind(want_tag);
    g.set_tagged(true);
    g.a.bind(send);
    g.count_tx(OUT_PORT);
    g.a.load(Size::DW, R1, R10, OUT_IFINDEX)
        .mov_imm(R2, 0)
        .call(helper::REDIRECT)
        .exit();
    g.a.bind(pass);
    g.a.mov_imm(R0, TC_ACT_OK).exit();
    g.a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: Kind) -> Params {
        Params {
            kind,
            port: 1,
            ports: 4,
            maps: Maps {
                ports: 3,
                fdb: 4,
                port_stats: 5,
                vlan_stats: 6,
            },
        }
    }

    #[test]
    fn both_programs_assemble_and_load_only_their_maps() {
        for kind in [Kind::Tc, Kind::Socket] {
            let prog = program(params(kind)).unwrap();
            assert!(prog.len() < 4096, "{kind:?}: {} instructions", prog.len());
            let fds: Vec<i32> = prog
                .iter()
                .filter(|i| i.code == 0x18 && i.src == 1)
                .map(|i| i.imm)
                .collect();
            assert!(fds.iter().all(|f| (3..=6).contains(f)));
            let stats = fds.iter().any(|&f| f == 5 || f == 6);
            assert_eq!(stats, kind == Kind::Tc, "only tc counts");
            // Only the classifier calls the helpers a socket filter may not.
            let calls: Vec<i32> = prog
                .iter()
                .filter(|i| i.code == 0x85)
                .map(|i| i.imm)
                .collect();
            let tc_only = [
                helper::REDIRECT,
                helper::CLONE_REDIRECT,
                helper::SKB_VLAN_PUSH,
                helper::SKB_VLAN_POP,
            ];
            assert_eq!(calls.iter().any(|c| tc_only.contains(c)), kind == Kind::Tc);
            // It ends in an exit.
            assert_eq!(prog.last().unwrap().code, 0x95);
        }
    }

    #[test]
    fn a_forwarded_frame_costs_two_hash_lookups_and_no_clock_read() {
        // Per-frame work that every received frame pays, twice (both
        // programs): the hash lookups are the FDB's source and
        // destination; the rest are array lookups the verifier inlines.
        for kind in [Kind::Tc, Kind::Socket] {
            let prog = program(params(kind)).unwrap();
            let mut fdb_lookups = 0;
            let mut last_map = 0;
            for i in &prog {
                if i.code == 0x18 && i.src == 1 {
                    last_map = i.imm;
                }
                if i.code == 0x85 && i.imm == helper::MAP_LOOKUP_ELEM && last_map == 4 {
                    fdb_lookups += 1;
                }
                assert!(
                    !(i.code == 0x85 && i.imm == helper::KTIME_GET_NS),
                    "{kind:?} reads the clock"
                );
            }
            assert_eq!(fdb_lookups, 2, "{kind:?}");
        }
    }

    #[test]
    fn values_lay_out_as_the_program_reads_them() {
        let v = PortValue {
            ifindex: 7,
            flags: F_FORWARDING | F_TRUNK,
            untagged: 10,
            epoch: 9,
        };
        let b = v.to_bytes();
        assert_eq!(b.len(), PORT_VALUE_SIZE as usize);
        assert_eq!(&b[0..4], &7u32.to_ne_bytes());
        assert_eq!(&b[4..8], &5u32.to_ne_bytes());
        assert_eq!(&b[8..10], &10u16.to_ne_bytes());
        assert_eq!(&b[12..16], &9u32.to_ne_bytes());
        let k = fdb_key(10, [2, 0, 0, 0, 0, 1]);
        assert_eq!(k, [10, 0, 2, 0, 0, 0, 0, 1]);
        let e = FdbValue {
            port: 3,
            ifindex: 70,
            flags: E_USABLE | E_TAGGED,
            used: 5,
        };
        let b = e.to_bytes();
        assert_eq!(b.len(), FDB_VALUE_SIZE as usize);
        assert_eq!(&b[0..4], &3u32.to_ne_bytes());
        assert_eq!(&b[4..8], &70u32.to_ne_bytes());
        assert_eq!(&b[8..12], &3u32.to_ne_bytes());
        assert_eq!(&b[12..16], &5u32.to_ne_bytes());
        assert_eq!(FdbValue::from_bytes(&b), Some(e));
        assert_eq!(FdbValue::from_bytes(&b[..15]), None);
    }
}
