//! AArch64 thunk code: where the context goes (AAPCS64) and the bytes that
//! put it there. Plain functions that return bytes, compiled and unit-tested
//! on every host (the exact encodings below were checked against `llvm-mc
//! -triple=aarch64 -mattr=+bti`); `aarch64.rs` wires them into the crate
//! on AArch64.
//!
//! # Placement (AAPCS64, Linux)
//!
//! Integer-class arguments take `x0..x7` in order, floats `v0..v7`; what
//! does not fit goes to the stack, each argument in an 8-byte slot. The
//! context is one more argument after the others:
//! - a trailing pointer in the next free `x` register, when fewer than
//!   eight integer-class arguments are passed;
//! - otherwise, when a SIMD/FP register is free, a trailing `f64` in the
//!   next free `v` register (as `d<k>`), the same sound trick as on System
//!   V: the entry function declares that parameter and reads the pointer
//!   from its bits;
//! - otherwise on the stack, after the caller's stack arguments: a frame
//!   adapter copies them and stores the context after them.
//!
//! **Apple arm64** differs in one rule that matters here: stack arguments
//! are packed at their natural size and alignment (a `u8` takes one byte),
//! not one 8-byte slot each, and the context's slot is then at the next
//! 8-aligned offset after them. The registers are the same, so the
//! register and float placements are the same; only the frame path's
//! count becomes a byte size, computed from the argument sizes in order
//! (`stack_bytes` below, for the design; Linux is what is verified). With
//! at most sixteen scalar arguments the difference never shows: the frame
//! path needs all eight `x` and all eight `v` registers taken, which leaves
//! no argument on the stack before the context on either platform. It
//! shows for structs by value and for more arguments, neither of which
//! AArch64 thunks take yet.
//!
//! # Code
//!
//! Every thunk is one 32-byte granule, position-independent (the context
//! and target are literals the code loads PC-relative, so the bytes can be
//! made on one machine and placed anywhere), with `bti c` at its entry and
//! only `x16`/`x17` (the intra-procedure-call scratch registers) as
//! scratch:
//!
//! ```text
//!  0  bti c
//!  4  ldr x<n>, ctx        (float path: ldr d<k>, ctx; frame path: ldr x16, record)
//!  8  ldr x16, target      (frame path: ldr x17, adapter)
//! 12  br x16               (frame path: br x17; BTI lets `br` through x16/x17 land on `bti c`)
//! 16  ctx (8 bytes)        (frame path: record)
//! 24  target (8 bytes)     (frame path: adapter)
//! ```
//!
//! Unused and freed code is `brk #0`.
//!
//! The frame adapter (`aarch64_adapters.s`) and the static-trampoline
//! table (`aarch64_trampolines.s`) are assembly, assembled into the crate
//! on AArch64; the signature matrix below assembles both into its harness
//! too. Instruction-cache maintenance (`aarch64.rs`: clean by
//! address to the point of unification, `dsb ish`, invalidate, `dsb ish;
//! isb`, line sizes from `CTR_EL0`) is reviewed, not proven: qemu does not
//! model caches.

use super::Placement;
use crate::abi::ArgClass;

/// Integer-class argument registers (`x0..x7`).
const INT_REGS: usize = 8;
/// SIMD/FP argument registers (`v0..v7`).
const FLOAT_REGS: usize = 8;

/// `bti c`: the landing pad of every entry.
pub(crate) const BTI_C: u32 = 0xd503_245f;
/// `brk #0`: fills unused and freed code.
pub(crate) const BRK_0: u32 = 0xd420_0000;
/// The intra-procedure-call scratch registers, the only ones thunks use.
const X16: u8 = 16;
const X17: u8 = 17;

/// The size of every thunk.
pub(crate) const THUNK_SIZE: usize = 32;

/// Where the context goes after `classes` (Linux AAPCS64).
///
/// Scalars take the next register of their file, or an 8-byte stack slot
/// once it is full. A struct by value (at most 16 bytes here) follows rules
/// C.2-C.16 of the standard: a homogeneous float aggregate of `n` members
/// takes `n` SIMD/FP registers if that many are free, otherwise it goes on
/// the stack and the SIMD/FP file counts as full (NSRN = 8); any other
/// struct takes one or two `x` registers (one per 8 bytes; none is aligned
/// to 16, which would start it at an even register), otherwise it goes on
/// the stack and the `x` file counts as full (NGRN = 8). Later arguments
/// then never take a register of the file that was closed.
pub(crate) const fn placement(classes: &[ArgClass]) -> Placement {
    let (ngrn, nsrn, stack) = usage(classes);
    if ngrn < INT_REGS {
        Placement::Register(ngrn as u8)
    } else if nsrn < FLOAT_REGS {
        Placement::Float(nsrn as u8)
    } else {
        // Every argument that missed its registers is in 8-byte slots.
        Placement::Stack(stack)
    }
}

/// Where a context the target declares as a trailing pointer goes after
/// `classes`: [`placement`] without the float-register path (an `x`
/// register, else the 8-byte slot after the stack arguments).
pub(crate) const fn pointer_placement(classes: &[ArgClass]) -> Placement {
    let (ngrn, _, stack) = usage(classes);
    if ngrn < INT_REGS {
        Placement::Register(ngrn as u8)
    } else {
        Placement::Stack(stack)
    }
}

/// The `x` and `v` registers `classes` take (NGRN, NSRN) and the 8-byte
/// stack slots of those that missed theirs.
const fn usage(classes: &[ArgClass]) -> (usize, usize, usize) {
    let (mut ngrn, mut nsrn, mut stack) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < classes.len() {
        match classes[i] {
            ArgClass::Integer if ngrn < INT_REGS => ngrn += 1,
            ArgClass::Float if nsrn < FLOAT_REGS => nsrn += 1,
            ArgClass::Integer | ArgClass::Float => stack += 1,
            ArgClass::Struct(s) => {
                let hfa = s.hfa_members();
                let words = s.size().div_ceil(8);
                if hfa > 0 && nsrn + hfa <= FLOAT_REGS {
                    nsrn += hfa;
                } else if hfa > 0 {
                    nsrn = FLOAT_REGS;
                    stack += words;
                } else if ngrn + words <= INT_REGS {
                    ngrn += words;
                } else {
                    ngrn = INT_REGS;
                    stack += words;
                }
            }
        }
        i += 1;
    }
    (ngrn, nsrn, stack)
}

/// Apple arm64's frame path (the design; not verified here): the bytes of
/// stack arguments before the context's 8-byte slot, for arguments of
/// `classes` with sizes `sizes` (each packed at its natural size and
/// alignment once its register file is full).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const fn stack_bytes(classes: &[ArgClass], sizes: &[usize]) -> usize {
    let (mut ints, mut floats, mut bytes) = (0, 0, 0usize);
    let mut i = 0;
    while i < classes.len() {
        let in_register = match classes[i] {
            ArgClass::Integer => {
                ints += 1;
                ints <= INT_REGS
            }
            ArgClass::Float => {
                floats += 1;
                floats <= FLOAT_REGS
            }
            ArgClass::Struct(_) => {
                panic!("wxthunk: structs by value are not placed for AArch64 yet")
            }
        };
        if !in_register {
            let size = sizes[i];
            bytes = bytes.next_multiple_of(size) + size;
        }
        i += 1;
    }
    bytes.next_multiple_of(8)
}

/// `ldr x<rt>, label` (64-bit literal), `offset` bytes ahead.
const fn ldr_x_literal(rt: u8, offset: u32) -> u32 {
    0x5800_0000 | ((offset / 4) << 5) | rt as u32
}

/// `ldr d<rt>, label` (64-bit SIMD/FP literal), `offset` bytes ahead.
const fn ldr_d_literal(rt: u8, offset: u32) -> u32 {
    0x5c00_0000 | ((offset / 4) << 5) | rt as u32
}

/// `br x<rn>`.
const fn br(rn: u8) -> u32 {
    0xd61f_0000 | ((rn as u32) << 5)
}

/// The four instructions and two literals of a thunk, little-endian.
fn granule(insns: [u32; 4], literals: [u64; 2]) -> [u8; THUNK_SIZE] {
    let mut b = [0; THUNK_SIZE];
    for (i, insn) in insns.into_iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&insn.to_le_bytes());
    }
    b[16..24].copy_from_slice(&literals[0].to_le_bytes());
    b[24..32].copy_from_slice(&literals[1].to_le_bytes());
    b
}

/// The register-path thunk: `ctx` into `x<reg>`, then on to `entry`.
pub(crate) fn register_thunk(reg: u8, ctx: usize, entry: usize) -> [u8; THUNK_SIZE] {
    assert!(
        (reg as usize) < INT_REGS,
        "x{reg} is not an argument register"
    );
    granule(
        [
            BTI_C,
            ldr_x_literal(reg, 12),
            ldr_x_literal(X16, 16),
            br(X16),
        ],
        [ctx as u64, entry as u64],
    )
}

/// The float-register-path thunk: `ctx`'s bits into `d<reg>` (the entry's
/// trailing `f64`), then on to `entry`.
pub(crate) fn float_thunk(reg: u8, ctx: usize, entry: usize) -> [u8; THUNK_SIZE] {
    assert!(
        (reg as usize) < FLOAT_REGS,
        "v{reg} is not an argument register"
    );
    granule(
        [
            BTI_C,
            ldr_d_literal(reg, 12),
            ldr_x_literal(X16, 16),
            br(X16),
        ],
        [ctx as u64, entry as u64],
    )
}

/// The frame-path thunk: the record (`[ctx, entry, ..]`) in `x16` for the
/// frame adapter at `adapter`, which copies the stack arguments, stores
/// the context after them and calls the entry.
pub(crate) fn frame_thunk(record: usize, adapter: usize) -> [u8; THUNK_SIZE] {
    granule(
        [
            BTI_C,
            ldr_x_literal(X16, 12),
            ldr_x_literal(X17, 16),
            br(X17),
        ],
        [record as u64, adapter as u64],
    )
}

/// `ldr x<rt>, [x<rn>, #offset]` (64-bit, unsigned offset, a multiple of 8).
const fn ldr_x_offset(rt: u8, rn: u8, offset: u32) -> u32 {
    0xf940_0000 | ((offset / 8) << 10) | ((rn as u32) << 5) | rt as u32
}

/// `ldr d<rt>, [x<rn>, #offset]` (64-bit SIMD/FP, unsigned offset).
const fn ldr_d_offset(rt: u8, rn: u8, offset: u32) -> u32 {
    0xfd40_0000 | ((offset / 8) << 10) | ((rn as u32) << 5) | rt as u32
}

/// `nop`.
const NOP: u32 = 0xd503_201f;

/// The thunk that reads its context and target from a record (`[ctx,
/// entry, report, target]`, debug mode's layout, as a static trampoline's
/// record): `bti c; ldr x16, record; <ctx from [x16] where placement
/// says>; ldr x17, [x16, #24]; br x17`, the record's address a literal at
/// 24. The frame path loads no context (its target, the frame adapter,
/// reads the record through x16). A dropped debug thunk is diverted to its
/// report by one store to the record's target.
pub(crate) fn record_thunk(placement: Placement, record: usize) -> [u8; THUNK_SIZE] {
    let load = match placement {
        Placement::Register(reg) => ldr_x_offset(reg, X16, 0),
        Placement::Float(reg) => ldr_d_offset(reg, X16, 0),
        Placement::Stack(_) => NOP,
    };
    let mut b = [0; THUNK_SIZE];
    let insns = [
        BTI_C,
        ldr_x_literal(X16, 20),
        load,
        ldr_x_offset(X17, X16, 24),
        br(X17),
        BRK_0,
    ];
    for (i, insn) in insns.into_iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&insn.to_le_bytes());
    }
    b[24..].copy_from_slice(&(record as u64).to_le_bytes());
    b
}

/// A granule of `brk #0`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn trap_granule() -> [u8; THUNK_SIZE] {
    granule([BRK_0; 4], [u64::from(BRK_0) | u64::from(BRK_0) << 32; 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArgClass::{Float as F, Integer as I};

    fn words(b: &[u8; THUNK_SIZE]) -> Vec<u32> {
        b.chunks(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }

    /// The encodings llvm-mc gives (`-triple=aarch64 -mattr=+bti
    /// -show-encoding`).
    #[test]
    fn instructions_are_the_assemblers() {
        assert_eq!(BTI_C.to_le_bytes(), [0x5f, 0x24, 0x03, 0xd5]);
        assert_eq!(BRK_0.to_le_bytes(), [0x00, 0x00, 0x20, 0xd4]);
        assert_eq!(ldr_x_literal(0, 16).to_le_bytes(), [0x80, 0x00, 0x00, 0x58]); // ldr x0, #16
        assert_eq!(ldr_x_literal(7, 16).to_le_bytes(), [0x87, 0x00, 0x00, 0x58]); // ldr x7, #16
        assert_eq!(
            ldr_x_literal(16, 20).to_le_bytes(),
            [0xb0, 0x00, 0x00, 0x58]
        ); // ldr x16, #20
        assert_eq!(ldr_d_literal(0, 16).to_le_bytes(), [0x80, 0x00, 0x00, 0x5c]); // ldr d0, #16
        assert_eq!(ldr_d_literal(7, 12).to_le_bytes(), [0x67, 0x00, 0x00, 0x5c]); // ldr d7, #12
        assert_eq!(br(16).to_le_bytes(), [0x00, 0x02, 0x1f, 0xd6]); // br x16
    }

    #[test]
    fn register_thunk_bytes() {
        let code = register_thunk(3, 0x1122_3344_5566_7788, 0x0000_7f00_1234_5678);
        // bti c; ldr x3, #12 (-> 16); ldr x16, #16 (-> 24); br x16
        assert_eq!(
            code[..16],
            [
                0x5f, 0x24, 0x03, 0xd5, 0x63, 0x00, 0x00, 0x58, 0x90, 0x00, 0x00, 0x58, 0x00, 0x02,
                0x1f, 0xd6
            ]
        );
        assert_eq!(code[16..24], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(code[24..], 0x0000_7f00_1234_5678u64.to_le_bytes());
    }

    #[test]
    fn record_thunk_bytes() {
        // bti c; ldr x16, #20 (-> 24); ldr x2, [x16]; ldr x17, [x16, #24]; br x17; brk #0
        let code = record_thunk(Placement::Register(2), 0x1122_3344_5566_7788);
        assert_eq!(
            words(&code)[..6],
            [
                BTI_C,
                0x5800_00b0,
                0xf940_0202,
                0xf940_0e11,
                0xd61f_0220,
                BRK_0
            ]
        );
        assert_eq!(code[24..], 0x1122_3344_5566_7788u64.to_le_bytes());
        // ldr d7, [x16]
        assert_eq!(words(&record_thunk(Placement::Float(7), 0))[2], 0xfd40_0207);
        assert_eq!(words(&record_thunk(Placement::Stack(0), 0))[2], NOP);
    }

    #[test]
    fn float_and_frame_thunk_bytes() {
        let code = float_thunk(5, 1, 2);
        // ldr d5, #12
        assert_eq!(words(&code)[1], 0x5c00_0065);
        assert_eq!(words(&code)[2..4], [ldr_x_literal(X16, 16), br(X16)]);
        let code = frame_thunk(3, 4);
        // ldr x16, #12; ldr x17, #16; br x17
        assert_eq!(words(&code)[1..4], [0x5800_0070, 0x5800_0091, 0xd61f_0220]);
        assert_eq!(code[16..24], 3u64.to_le_bytes());
        assert_eq!(code[24..], 4u64.to_le_bytes());
    }

    /// Every entry starts with `bti c`; every instruction writes only the
    /// context's register or x16/x17 and branches only through x16/x17;
    /// each literal load reaches its literal.
    #[test]
    fn landing_pads_scratch_registers_and_literals() {
        let cases = (0..8)
            .map(|r| (register_thunk(r, 0xaaaa, 0xbbbb), Some(r), false))
            .chain((0..8).map(|r| (float_thunk(r, 0xaaaa, 0xbbbb), Some(r), true)))
            .chain([(frame_thunk(0xaaaa, 0xbbbb), None, false)]);
        for (code, ctx_reg, float) in cases {
            let w = words(&code);
            assert_eq!(w[0], BTI_C);
            for (i, &insn) in w[1..3].iter().enumerate() {
                let pc = 4 * (i + 1);
                let is_d = insn & 0xff00_0000 == 0x5c00_0000;
                assert!(insn & 0xff00_0000 == 0x5800_0000 || is_d, "{insn:#x}");
                let rt = (insn & 0x1f) as u8;
                let target = pc + 4 * ((insn >> 5) & 0x7ffff) as usize;
                assert_eq!(target, 16 + 8 * i, "literal {i}");
                match (i, ctx_reg) {
                    (0, Some(r)) => assert!(rt == r && is_d == float),
                    _ => assert!(!is_d && (rt == X16 || rt == X17), "x{rt}"),
                }
            }
            assert!(w[3] == br(X16) || w[3] == br(X17));
            assert_eq!(u64::from_le_bytes(code[16..24].try_into().unwrap()), 0xaaaa);
            assert_eq!(u64::from_le_bytes(code[24..].try_into().unwrap()), 0xbbbb);
        }
        assert!(words(&trap_granule()).iter().all(|&w| w == BRK_0));
    }

    /// A context declared as a trailing pointer (a `DynThunk`'s C target)
    /// never takes a `v` register: with the eight `x` registers taken it
    /// follows the stack arguments, up to eight of them within sixteen.
    #[test]
    fn pointer_placement_skips_the_float_registers() {
        const I: ArgClass = ArgClass::Integer;
        const F: ArgClass = ArgClass::Float;
        let cases: [(Vec<ArgClass>, Placement); 7] = [
            (vec![], Placement::Register(0)),
            (
                vec![F; 8].into_iter().chain([I; 3]).collect(),
                Placement::Register(3),
            ),
            (vec![I; 7], Placement::Register(7)),
            (vec![I; 8], Placement::Stack(0)),
            (vec![I; 9], Placement::Stack(1)),
            (vec![I; 16], Placement::Stack(8)),
            (
                vec![I; 8].into_iter().chain([F; 8]).collect(),
                Placement::Stack(0),
            ),
        ];
        for (classes, want) in cases {
            assert_eq!(pointer_placement(&classes), want, "{classes:?}");
        }
        // Where a Rust entry's context (an `f64`) would go instead.
        assert_eq!(placement(&[I; 9]), Placement::Float(0));
        let nine_floats: Vec<_> = [I; 8].into_iter().chain([F; 9]).collect();
        assert_eq!(pointer_placement(&nine_floats), Placement::Stack(1));
    }

    /// Structs by value: floats-only ones of up to four members in `v`
    /// registers, others in one or two `x` registers; one that misses its
    /// registers goes on the stack and closes its file (C.3, C.11).
    #[test]
    fn placement_of_structs_follows_aapcs64() {
        let hfa2 = ArgClass::of_struct::<(f64, f64)>();
        let hfa4 = ArgClass::of_struct::<(f32, f32, f32, f32)>();
        let pair = ArgClass::of_struct::<(u64, u64)>();
        let small = ArgClass::of_struct::<(u8, u32)>(); // 8 bytes: one x register
        let mixed = ArgClass::of_struct::<(f64, u32)>(); // not an HFA: two x registers
        assert_eq!(placement(&[hfa2]), Placement::Register(0));
        assert_eq!(placement(&[pair]), Placement::Register(2));
        assert_eq!(placement(&[small, I]), Placement::Register(2));
        assert_eq!(placement(&[mixed, pair, I]), Placement::Register(5));
        // Seven x registers taken: a two-register struct misses and closes
        // the file (NGRN = 8), so a later integer goes on the stack too and
        // the context to the first free v register.
        assert_eq!(
            placement(&[[I; 7].as_slice(), &[pair, I]].concat()),
            Placement::Float(0)
        );
        // HFAs fill v registers; one that does not fit closes that file.
        assert_eq!(
            placement(&[[I; 8].as_slice(), &[hfa4, hfa2]].concat()),
            Placement::Float(6)
        );
        // Both files full: the frame path, after the stack arguments (which
        // `arch::placement` refuses while the adapter serves none).
        assert_eq!(
            placement(&[[I; 8].as_slice(), &[hfa4, hfa4, F]].concat()),
            Placement::Stack(1)
        );
        assert_eq!(
            placement(&[[I; 8].as_slice(), &[hfa4, F, F, F, hfa2]].concat()),
            Placement::Stack(2)
        );
    }

    #[test]
    fn placement_follows_aapcs64() {
        assert_eq!(placement(&[]), Placement::Register(0));
        assert_eq!(placement(&[I, F, I]), Placement::Register(2));
        assert_eq!(placement(&[I; 7]), Placement::Register(7));
        assert_eq!(placement(&[I; 8]), Placement::Float(0));
        assert_eq!(
            placement(&[I, I, I, I, I, I, I, I, F, F, F]),
            Placement::Float(3)
        );
        assert_eq!(placement(&[I; 16]), Placement::Float(0));
        assert_eq!(
            placement(&[[I; 8].as_slice(), &[F; 8]].concat()),
            Placement::Stack(0)
        );
        assert_eq!(
            placement(&[[I; 9].as_slice(), &[F; 7]].concat()),
            Placement::Float(7)
        );
        assert_eq!(
            placement(&[[I; 10].as_slice(), &[F; 9]].concat()),
            Placement::Stack(3)
        );
    }

    /// Apple's packing (the design): a `u8` and a `u32` past the
    /// registers take 1 + 3 (padding) + 4 bytes, rounded to 8 for the
    /// context; Linux would give them a slot each (16).
    #[test]
    fn apple_stack_bytes() {
        let classes = [[I; 8].as_slice(), &[I, I], &[F; 8]].concat();
        let mut sizes = vec![8; 8];
        sizes.extend([1, 4]);
        sizes.extend([8; 8]);
        assert_eq!(stack_bytes(&classes, &sizes), 8);
        sizes[9] = 8;
        assert_eq!(stack_bytes(&classes, &sizes), 16);
        assert_eq!(stack_bytes(&[I; 4], &[8; 4]), 0);
    }
}

/// The signature matrix run under `qemu-aarch64` by `.ci/aarch64` (its
/// own file).
#[cfg(test)]
mod matrix;
