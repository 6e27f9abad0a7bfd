//! Classic BPF (`struct sock_filter`) and an interpreter with the kernel's
//! semantics: a load past the end of the packet ends the program with 0
//! (drop), division by zero too, and the Linux ancillary loads weft's
//! filters use (`SKF_AD_VLAN_TAG`, `SKF_AD_VLAN_TAG_PRESENT`) read the
//! packet's metadata.

/// One instruction, laid out like the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub const fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
}

// Instruction classes, sizes, modes and operations (linux/bpf_common.h).
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const STX: u16 = 0x03;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;
pub const W: u16 = 0x00;
pub const H: u16 = 0x08;
pub const B: u16 = 0x10;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const IND: u16 = 0x40;
pub const MEM: u16 = 0x60;
pub const LEN: u16 = 0x80;
pub const MSH: u16 = 0xa0;
pub const ADD: u16 = 0x00;
pub const SUB: u16 = 0x10;
pub const MUL: u16 = 0x20;
pub const DIV: u16 = 0x30;
pub const OR: u16 = 0x40;
pub const AND: u16 = 0x50;
pub const LSH: u16 = 0x60;
pub const RSH: u16 = 0x70;
pub const NEG: u16 = 0x80;
pub const MOD: u16 = 0x90;
pub const XOR: u16 = 0xa0;
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const JGT: u16 = 0x20;
pub const JGE: u16 = 0x30;
pub const JSET: u16 = 0x40;
pub const K: u16 = 0x00;
pub const X: u16 = 0x08;
pub const A: u16 = 0x10;
pub const TAX: u16 = 0x00;
pub const TXA: u16 = 0x80;

/// `SKF_AD_OFF`: absolute loads at this offset and above read metadata.
pub const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
pub const SKF_AD_VLAN_TAG: u32 = 44;
pub const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;

/// What the kernel knows about a packet beside its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// The 802.1Q TCI the kernel took out of the frame (`skb->vlan_tci`).
    pub vlan_tci: Option<u16>,
}

/// Run a program over a packet; the return value is the number of bytes
/// to keep (0: drop). Malformed programs (jumps out of range, unknown
/// opcodes) return `None`; the kernel would have refused them.
pub fn run(prog: &[Insn], pkt: &[u8], meta: Meta) -> Option<u32> {
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let load = |off: u32, size: u16| -> Option<u32> {
        if off >= SKF_AD_OFF {
            return match (off - SKF_AD_OFF, size) {
                (SKF_AD_VLAN_TAG, W) => Some(meta.vlan_tci.unwrap_or(0) as u32),
                (SKF_AD_VLAN_TAG_PRESENT, W) => Some(meta.vlan_tci.is_some() as u32),
                _ => None,
            };
        }
        let o = off as usize;
        let n = match size {
            W => 4,
            H => 2,
            _ => 1,
        };
        let b = pkt.get(o..o.checked_add(n)?)?;
        Some(b.iter().fold(0u32, |v, &c| (v << 8) | c as u32))
    };
    loop {
        let i = *prog.get(pc)?;
        pc += 1;
        let class = i.code & 0x07;
        match class {
            LD | LDX => {
                let size = i.code & 0x18;
                let mode = i.code & 0xe0;
                let v = match mode {
                    IMM => i.k,
                    LEN => pkt.len() as u32,
                    MEM => *mem.get(i.k as usize)?,
                    ABS => match load(i.k, size) {
                        Some(v) => v,
                        None => return Some(0),
                    },
                    IND => match load(x.wrapping_add(i.k), size) {
                        Some(v) => v,
                        None => return Some(0),
                    },
                    MSH if class == LDX => match load(i.k, B) {
                        Some(v) => (v & 0xf) * 4,
                        None => return Some(0),
                    },
                    _ => return None,
                };
                if class == LD {
                    a = v
                } else {
                    x = v
                }
            }
            ST => *mem.get_mut(i.k as usize)? = a,
            STX => *mem.get_mut(i.k as usize)? = x,
            ALU => {
                let src = if i.code & X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    ADD => a.wrapping_add(src),
                    SUB => a.wrapping_sub(src),
                    MUL => a.wrapping_mul(src),
                    DIV if src == 0 => return Some(0),
                    DIV => a / src,
                    MOD if src == 0 => return Some(0),
                    MOD => a % src,
                    OR => a | src,
                    AND => a & src,
                    LSH => a.checked_shl(src).unwrap_or(0),
                    RSH => a.checked_shr(src).unwrap_or(0),
                    NEG => a.wrapping_neg(),
                    XOR => a ^ src,
                    _ => return None,
                };
            }
            JMP => {
                let src = if i.code & X != 0 { x } else { i.k };
                let op = i.code & 0xf0;
                if op == JA {
                    pc = pc.checked_add(i.k as usize)?;
                    continue;
                }
                let taken = match op {
                    JEQ => a == src,
                    JGT => a > src,
                    JGE => a >= src,
                    JSET => a & src != 0,
                    _ => return None,
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
            RET => return Some(if i.code & 0x18 == A { a } else { i.k }),
            MISC => {
                if i.code & 0xf8 == TXA {
                    a = x
                } else {
                    x = a
                }
            }
            _ => return None,
        }
    }
}

/// Parse the output of `tcpdump -dd` (`{ 0x28, 0, 0, 0x0000000c },` lines).
pub fn parse_dd(text: &str) -> Option<Vec<Insn>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim().trim_end_matches(',');
        let Some(l) = l.strip_prefix('{').and_then(|l| l.strip_suffix('}')) else {
            continue;
        };
        let f: Vec<u32> = l
            .split(',')
            .map(|s| {
                let s = s.trim();
                match s.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                }
            })
            .collect::<Option<_>>()?;
        let [code, jt, jf, k] = f[..] else {
            return None;
        };
        out.push(Insn {
            code: code as u16,
            jt: jt as u8,
            jf: jf as u8,
            k,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_program_from_tcpdump() {
        // `tcpdump -dd -y EN10MB icmp`
        let p = parse_dd(
            "{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 3, 0x00000800 },\n{ 0x30, 0, 0, 0x00000017 },\n{ 0x15, 0, 1, 0x00000001 },\n{ 0x6, 0, 0, 0x00040000 },\n{ 0x6, 0, 0, 0x00000000 },",
        )
        .unwrap();
        let mut f = vec![0u8; 34];
        f[12] = 0x08;
        f[23] = 1;
        assert_eq!(run(&p, &f, Meta::default()), Some(0x40000));
        f[23] = 17;
        assert_eq!(run(&p, &f, Meta::default()), Some(0));
        // Too short to hold byte 23: the kernel drops, it does not read on.
        assert_eq!(run(&p, &f[..20], Meta::default()), Some(0));
    }

    #[test]
    fn msh_ind_and_metadata() {
        let p = [
            Insn::stmt(LDX | B | MSH, 0),
            Insn::stmt(LD | H | IND, 2),
            Insn::stmt(MISC | TAX, 0),
            Insn::stmt(LD | W | ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT),
            Insn::stmt(ALU | ADD | X, 0),
            Insn::stmt(RET | A, 0),
        ];
        // IHL 5 -> X = 20; halfword at 22 = 0x0102.
        let mut pkt = vec![0x45u8; 24];
        pkt[22] = 1;
        pkt[23] = 2;
        assert_eq!(run(&p, &pkt, Meta::default()), Some(0x102));
        let m = Meta { vlan_tci: Some(7) };
        assert_eq!(run(&p, &pkt, m), Some(0x103));
        // Out-of-range jump: malformed, not "accept".
        let bad = [Insn {
            code: JMP | JEQ,
            jt: 9,
            jf: 9,
            k: 0,
        }];
        assert_eq!(run(&bad, &pkt, m), None);
    }
}
