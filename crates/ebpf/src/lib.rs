//! eBPF bytecode, generated in Rust.
//!
//! weft's kernel switch program ([`switch`]) is written here as Rust that
//! emits instructions, not as C or Rust compiled for the BPF target:
//! aya-ebpf needs a nightly toolchain and `bpf-linker`, and clang's BPF
//! backend would add a C toolchain, none of which the README's commands
//! install; a prebuilt object file is not allowed in the repository. The
//! well-kept assembler crates do not fit either: `rbpf`'s assembler reads
//! text with numeric jump offsets only (no labels) and has no way to write
//! a map file descriptor load (`BPF_PSEUDO_MAP_FD`), which every program
//! that uses a map needs. So this crate is a small typed builder: one
//! method per instruction class, labels resolved at [`Asm::finish`], and
//! the 8-byte encoding of the kernel's `struct bpf_insn`.

pub mod switch;

use std::collections::HashMap;

/// A register, r0..=r10 (r10 is the read-only frame pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

/// One encoded instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The kernel's layout: opcode, dst in the low nibble and src in the
    /// high nibble of the second byte (little-endian hosts), offset, imm.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// As the `u64` the kernel reads on this (little-endian) host.
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.to_bytes())
    }
}

/// Every instruction's bytes, in order.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// Sources.
const K: u8 = 0x00;
const X: u8 = 0x08;
// Modes.
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;

/// Access size of a load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// Arithmetic operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Xor = 0xa0,
    Mov = 0xb0,
}

/// Jump conditions (unsigned unless named `S...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Set = 0x40,
    Ne = 0x50,
    Sgt = 0x60,
    Lt = 0xa0,
    Le = 0xb0,
}

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(u32);

/// What can go wrong assembling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("label {0} is used but never bound")]
    Unbound(u32),
    #[error("label {0} is bound twice")]
    Rebound(u32),
    #[error("a jump to label {0} is further than 32767 instructions")]
    TooFar(u32),
}

/// Instructions under construction.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: u32,
    bound: HashMap<Label, usize>,
    fixups: Vec<(usize, Label)>,
    error: Option<AsmError>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Instructions so far (a 64-bit load counts two).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels)
    }

    /// The next instruction is `l`'s target.
    pub fn bind(&mut self, l: Label) {
        if self.bound.insert(l, self.insns.len()).is_some() && self.error.is_none() {
            self.error = Some(AsmError::Rebound(l.0));
        }
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        });
        self
    }

    /// 64-bit `dst op= imm`.
    pub fn alu64_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | K | op as u8, dst, R0, 0, imm)
    }

    /// 64-bit `dst op= src`.
    pub fn alu64_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | X | op as u8, dst, src, 0, 0)
    }

    /// 32-bit `dst op= imm` (the upper half becomes zero).
    pub fn alu32_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU | K | op as u8, dst, R0, 0, imm)
    }

    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(Alu::Mov, dst, imm)
    }

    pub fn mov_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(Alu::Mov, dst, src)
    }

    /// `dst = htobe16(dst)`: swaps the low two bytes on this host and
    /// clears the rest, so a big-endian field read as a `u16` compares
    /// with its written value.
    pub fn be16(&mut self, dst: Reg) -> &mut Self {
        // BPF_ALU | BPF_END | BPF_TO_BE
        self.push(ALU | 0xd0 | X, dst, R0, 0, 16)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(ST | MEM | size as u8, dst, R0, off, imm)
    }

    /// `dst = imm` with all 64 bits (two instruction slots).
    pub fn load_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.push(LD | IMM | Size::DW as u8, dst, R0, 0, imm as u32 as i32);
        self.push(0, R0, R0, 0, (imm >> 32) as u32 as i32)
    }

    /// `dst = the map behind file descriptor fd` (`BPF_PSEUDO_MAP_FD`).
    pub fn load_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(LD | IMM | Size::DW as u8, dst, R1, 0, fd);
        self.push(0, R0, R0, 0, 0)
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(code, dst, src, 0, imm)
    }

    /// `if dst cond imm goto to` (64-bit compare).
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(JMP | K | cond as u8, dst, R0, imm, to)
    }

    /// `if dst cond src goto to`.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, to: Label) -> &mut Self {
        self.jump(JMP | X | cond as u8, dst, src, 0, to)
    }

    pub fn goto(&mut self, to: Label) -> &mut Self {
        self.jump(JMP, R0, R0, 0, to)
    }

    /// Calls helper number `helper` (`enum bpf_func_id`).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(JMP | 0x80, R0, R0, 0, helper)
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | 0x90, R0, R0, 0, 0)
    }

    /// The instructions, jumps resolved.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        for &(at, l) in &self.fixups {
            let &to = self.bound.get(&l).ok_or(AsmError::Unbound(l.0))?;
            let off = to as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).map_err(|_| AsmError::TooFar(l.0))?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_s() {
        // Expected bytes as `llvm-objdump -d` prints them for the same
        // instructions.
        let mut a = Asm::new();
        a.mov_imm(R0, 2); // b7 00 00 00 02 00 00 00
        a.mov_reg(R6, R1); // bf 16 00 00 00 00 00 00
        a.load(Size::W, R1, R6, 20); // 61 61 14 00 00 00 00 00
        a.store(Size::H, R10, -8, R2); // 6b 2a f8 ff 00 00 00 00
        a.store_imm(Size::W, R10, -4, 7); // 62 0a fc ff 07 00 00 00
        a.be16(R1); // dc 01 00 00 10 00 00 00
        a.load_map_fd(R1, 5); // 18 11 00 00 05 00 00 00 / 00 ...
        a.call(1); // 85 00 00 00 01 00 00 00
        a.alu64_imm(Alu::And, R3, 0xfff); // 57 03 00 00 ff 0f 00 00
        a.alu64_reg(Alu::Add, R2, R1); // 0f 12 00 00 00 00 00 00
        a.alu32_imm(Alu::Mov, R0, -1); // b4 00 00 00 ff ff ff ff
        a.exit(); // 95 00 00 00 00 00 00 00
        let b = encode(&a.finish().unwrap());
        let want: [[u8; 8]; 13] = [
            [0xb7, 0x00, 0, 0, 2, 0, 0, 0],
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0],
            [0x61, 0x61, 0x14, 0, 0, 0, 0, 0],
            [0x6b, 0x2a, 0xf8, 0xff, 0, 0, 0, 0],
            [0x62, 0x0a, 0xfc, 0xff, 7, 0, 0, 0],
            [0xdc, 0x01, 0, 0, 0x10, 0, 0, 0],
            [0x18, 0x11, 0, 0, 5, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0x85, 0, 0, 0, 1, 0, 0, 0],
            [0x57, 0x03, 0, 0, 0xff, 0x0f, 0, 0],
            [0x0f, 0x12, 0, 0, 0, 0, 0, 0],
            [0xb4, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
        ];
        assert_eq!(b, want.concat());
    }

    #[test]
    fn jumps_count_from_the_next_instruction_and_wide_loads_take_two_slots() {
        let mut a = Asm::new();
        let out = a.label();
        let back = a.label();
        a.bind(back);
        a.jump_imm(Cond::Eq, R1, 0x8100, out); // 0: to 4 -> +3
        a.load_imm64(R2, 0x1122_3344_5566_7788); // 1, 2
        a.jump_reg(Cond::Gt, R1, R2, back); // 3: to 0 -> -4
        a.bind(out);
        a.goto(out); // 4: to 4 -> -1
        let i = a.finish().unwrap();
        assert_eq!(i.len(), 5);
        assert_eq!(i[0].to_bytes(), [0x15, 0x01, 3, 0, 0x00, 0x81, 0, 0]);
        assert_eq!(
            encode(&i[1..3]),
            [0x18, 0x02, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(i[3].to_bytes(), [0x2d, 0x21, 0xfc, 0xff, 0, 0, 0, 0]);
        assert_eq!(i[4].to_bytes(), [0x05, 0, 0xff, 0xff, 0, 0, 0, 0]);
    }

    #[test]
    fn unbound_and_rebound_labels_are_errors() {
        let mut a = Asm::new();
        let l = a.label();
        a.goto(l);
        assert_eq!(a.finish(), Err(AsmError::Unbound(1)));
        let mut a = Asm::new();
        let l = a.label();
        a.bind(l);
        a.bind(l);
        a.exit();
        assert_eq!(a.finish(), Err(AsmError::Rebound(1)));
    }
}
