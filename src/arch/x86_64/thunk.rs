//! Thunk code for x86_64: where the context argument goes, and the bytes
//! that put it there.
//!
//! Register path (the context fits an argument register): the thunk is
//! `endbr64; mov <reg>, ctx; jmp rel32 entry` (19 bytes; `mov r11, entry;
//! jmp r11`, 27 bytes, when the entry is out of reach). Arguments, stack
//! and return address are untouched and the closure's entry function
//! returns straight to the caller, so unwinding and shadow stacks see no
//! extra frame.
//!
//! Float-register path (System V, the six integer registers taken but a
//! float one free): the entry's trailing context parameter is declared
//! `f64`, so the ABI passes it in the next free `xmm` register, and the
//! thunk is `endbr64; mov r11, ctx; movq xmm<k>, r11; jmp rel32 entry` (24
//! bytes; 32 with the far jump). The context is a real, declared argument
//! of the function that reads it, as on the register path: no register is
//! assumed untouched, and `movq` keeps every bit pattern.
//!
//! Frame path (the context would go on the stack, beyond the caller's
//! arguments): the thunk is `endbr64; mov r11, record; mov r10, adapter;
//! jmp r10`, and a precompiled adapter in this library's text (with unwind
//! information) builds a new frame with the stack arguments and the context,
//! calls the entry and returns.

use super::super::{Placement, ThunkCode};
use crate::abi::{ArgClass, CallConv};

/// Register numbers (as in the ModRM/REX encoding).
const RCX: u8 = 1;
const RDX: u8 = 2;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;

const SYSV_INT_REGS: [u8; 6] = [RDI, RSI, RDX, RCX, R8, R9];
const SYSV_FLOAT_REGS: usize = 8;
const WIN64_REGS: [u8; 4] = [RCX, RDX, R8, R9];

/// Where the context goes: after `classes`, as one more pointer argument.
/// A `const fn`, so each signature's placement is computed at compile time.
pub(crate) const fn placement(conv: CallConv, classes: &[ArgClass]) -> Option<Placement> {
    match conv {
        CallConv::SysV64 => {
            let (ints, floats, stack) = sysv_usage(classes);
            Some(if ints < SYSV_INT_REGS.len() {
                Placement::Register(SYSV_INT_REGS[ints])
            } else if floats < SYSV_FLOAT_REGS {
                // The next free `xmm` register, as a trailing `f64`.
                Placement::Float(floats as u8)
            } else {
                // After every argument that missed its registers, in
                // order, on the stack.
                Placement::Stack(stack)
            })
        }
        CallConv::Win64 => Some(if classes.len() < WIN64_REGS.len() {
            Placement::Register(WIN64_REGS[classes.len()])
        } else {
            // Positions 4.. are stack slots after the 32-byte shadow space.
            Placement::Stack(classes.len() - WIN64_REGS.len())
        }),
        CallConv::Aapcs64 | CallConv::Unknown => None,
    }
}

/// Where a context that the target declares as a trailing *pointer*
/// argument goes after `classes` (a [`DynThunk`](crate::DynThunk)'s C
/// target, `void *ctx` last): [`placement`] without the float-register
/// path, which only an entry that declares the context `f64` can take.
pub(crate) const fn pointer_placement(conv: CallConv, classes: &[ArgClass]) -> Option<Placement> {
    match conv {
        CallConv::SysV64 => {
            let (ints, _, stack) = sysv_usage(classes);
            Some(if ints < SYSV_INT_REGS.len() {
                Placement::Register(SYSV_INT_REGS[ints])
            } else {
                Placement::Stack(stack)
            })
        }
        // Positional: the float-register path never applies.
        CallConv::Win64 => placement(conv, classes),
        CallConv::Aapcs64 | CallConv::Unknown => None,
    }
}

/// System V: the integer and `xmm` registers `classes` take, and the 8-byte
/// stack slots of those that missed theirs. A scalar takes one register of
/// its file, or one slot once that file is full; a struct takes all the
/// registers its eightbytes need if they are all free, else it goes on the
/// stack whole (one slot per eightbyte) and leaves the free registers to
/// the arguments after it.
const fn sysv_usage(classes: &[ArgClass]) -> (usize, usize, usize) {
    let (mut ints, mut floats, mut stack) = (0, 0, 0);
    let mut i = 0;
    while i < classes.len() {
        match classes[i] {
            ArgClass::Integer if ints < SYSV_INT_REGS.len() => ints += 1,
            ArgClass::Float if floats < SYSV_FLOAT_REGS => floats += 1,
            ArgClass::Integer | ArgClass::Float => stack += 1,
            ArgClass::Struct(s) => {
                let (need_ints, need_floats) = s.sysv_registers();
                if ints + need_ints <= SYSV_INT_REGS.len()
                    && floats + need_floats <= SYSV_FLOAT_REGS
                {
                    ints += need_ints;
                    floats += need_floats;
                } else {
                    stack += s.stack_slots();
                }
            }
        }
        i += 1;
    }
    (ints, floats, stack)
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// `mov <reg>, imm64`.
fn mov_imm64(code: &mut ThunkCode, reg: u8, imm: usize) {
    let rex = 0x48 | (reg >> 3);
    code.push(&[rex, 0xb8 + (reg & 7)]);
    code.push(&(imm as u64).to_le_bytes());
}

/// `jmp target` from code whose jump instruction starts at `from`: a
/// direct `jmp rel32` when `target` is within reach, else `mov scratch,
/// target; jmp scratch` (scratch is r11 or r10, free at every call).
fn jump(code: &mut ThunkCode, from: usize, target: usize, scratch: u8) {
    let next = from.wrapping_add(code.len() + 5);
    let disp = (target as i64).wrapping_sub(next as i64);
    if let Ok(disp) = i32::try_from(disp) {
        code.push(&[0xe9]);
        code.push(&disp.to_le_bytes());
    } else {
        mov_imm64(code, scratch, target);
        code.push(&[0x41, 0xff, 0xe0 | (scratch & 7)]); // jmp r10/r11
    }
}

/// The register-path thunk, to run at address `at`: written at fixed
/// offsets (it is on every thunk's creation), with the same bytes as
/// `endbr64`, [`mov_imm64`] and [`jump`] would push.
#[inline]
pub(crate) fn register_thunk(reg: u8, ctx: usize, entry: usize, at: usize) -> ThunkCode {
    let mut b = super::super::TRAP_GRANULE;
    b[..4].copy_from_slice(&ENDBR64);
    b[4] = 0x48 | (reg >> 3); // REX.W (+B)
    b[5] = 0xb8 + (reg & 7); // mov reg, imm64
    b[6..14].copy_from_slice(&(ctx as u64).to_le_bytes());
    let len = tail_jump(&mut b, 14, entry, at);
    ThunkCode::from_bytes(b, len)
}

/// Writes the jump to `entry` at offset `off` of the thunk `b` that runs at
/// `at`, the same bytes as [`jump`] with r11 as scratch: `jmp rel32` when
/// within reach, else `mov r11, entry; jmp r11`. Returns the thunk's
/// length.
#[inline(always)]
fn tail_jump(
    b: &mut [u8; super::super::THUNK_CODE_MAX],
    off: usize,
    entry: usize,
    at: usize,
) -> usize {
    let disp = (entry as i64).wrapping_sub(at.wrapping_add(off + 5) as i64);
    match i32::try_from(disp) {
        Ok(disp) => {
            b[off] = 0xe9;
            b[off + 1..off + 5].copy_from_slice(&disp.to_le_bytes());
            off + 5
        }
        Err(_) => {
            b[off..off + 2].copy_from_slice(&[0x49, 0xbb]); // mov r11, imm64
            b[off + 2..off + 10].copy_from_slice(&(entry as u64).to_le_bytes());
            b[off + 10..off + 13].copy_from_slice(&[0x41, 0xff, 0xe3]); // jmp r11
            off + 13
        }
    }
}

/// The float-register-path thunk, to run at address `at`: the context into
/// `xmm<xmm>` through r11, then on to `entry`. Written at fixed offsets
/// like [`register_thunk`].
#[inline]
pub(crate) fn float_thunk(xmm: u8, ctx: usize, entry: usize, at: usize) -> ThunkCode {
    debug_assert!(xmm < 8);
    let mut b = super::super::TRAP_GRANULE;
    b[..4].copy_from_slice(&ENDBR64);
    b[4..6].copy_from_slice(&[0x49, 0xbb]); // mov r11, imm64
    b[6..14].copy_from_slice(&(ctx as u64).to_le_bytes());
    b[14..19].copy_from_slice(&movq_xmm_r11(xmm));
    let len = tail_jump(&mut b, 19, entry, at);
    ThunkCode::from_bytes(b, len)
}

/// `movq xmm<xmm>, r11` (`66 REX.W+B 0f 6e /r`).
const fn movq_xmm_r11(xmm: u8) -> [u8; 5] {
    [0x66, 0x49, 0x0f, 0x6e, 0xc0 | (xmm << 3) | (11 & 7)]
}

/// The length of the register-path or float-register-path thunk whose
/// granule is `code` (as [`register_thunk`] or [`float_thunk`] wrote it):
/// a float thunk starts with `mov r11` (a register thunk never moves its
/// context there), and each short form has its `jmp rel32` where the long
/// form has `mov r11`.
pub(crate) fn register_thunk_len(code: &[u8; super::super::THUNK_CODE_MAX]) -> usize {
    match (code[5] == 0xbb, code[14] == 0xe9, code[19] == 0xe9) {
        (false, true, _) => 19,
        (false, false, _) => 27,
        (true, _, true) => 24,
        (true, _, false) => 32,
    }
}

/// The frame-path thunk, to run at address `at`: hands `record`
/// (`[ctx, entry, stack_args]`) in r11 to the adapter for `conv` and
/// `stack_args`.
pub(crate) fn frame_thunk(
    conv: CallConv,
    stack_args: usize,
    record: usize,
    at: usize,
) -> ThunkCode {
    let adapter = super::adapters::frame_adapter(conv, stack_args);
    let mut code = ThunkCode::new();
    code.push(&ENDBR64);
    mov_imm64(&mut code, 11, record);
    jump(&mut code, at, adapter, 10);
    code
}

/// The thunk that reads its context and target from a record (`[ctx,
/// entry, report, target]`, a static trampoline's layout), to run at `at`:
/// `endbr64; mov r11, record; <ctx from [r11] where placement says>; jmp
/// [r11 + 24]`. The frame path loads nothing (its target is the frame
/// adapter, which reads the record through r11). Debug mode's thunks are
/// these, so that a dropped one is diverted to its report by one store to
/// the record, as a static trampoline's is.
pub(crate) fn record_thunk(placement: Placement, record: usize) -> ThunkCode {
    let mut code = ThunkCode::new();
    code.push(&ENDBR64);
    mov_imm64(&mut code, 11, record);
    match placement {
        // mov reg, [r11]: REX.W, R from the register, B for r11.
        Placement::Register(reg) => {
            code.push(&[0x49 | ((reg >> 3) << 2), 0x8b, ((reg & 7) << 3) | 3])
        }
        // movq xmm<k>, [r11]: F3 REX.B 0F 7E /r.
        Placement::Float(k) => code.push(&[0xf3, 0x41, 0x0f, 0x7e, (k << 3) | 3]),
        Placement::Stack(_) => {}
    }
    code.push(&[0x41, 0xff, 0x63, 0x18]); // jmp qword ptr [r11 + 24]
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArgClass::{Float as F, Integer as I};

    #[test]
    fn record_thunk_bytes() {
        let rec = 0x1122_3344_5566_7788usize;
        let head = |code: &ThunkCode| {
            assert_eq!(code.as_slice()[..4], ENDBR64);
            assert_eq!(code.as_slice()[4..6], [0x49, 0xbb]); // mov r11, imm64
            assert_eq!(code.as_slice()[6..14], rec.to_le_bytes());
            code.as_slice()[14..].to_vec()
        };
        // mov rdi, [r11]; mov rsi, [r11]; mov r8, [r11]; mov r9, [r11]
        for (reg, load) in [
            (RDI, [0x49, 0x8b, 0x3b]),
            (RSI, [0x49, 0x8b, 0x33]),
            (RDX, [0x49, 0x8b, 0x13]),
            (RCX, [0x49, 0x8b, 0x0b]),
            (R8, [0x4d, 0x8b, 0x03]),
            (R9, [0x4d, 0x8b, 0x0b]),
        ] {
            let tail = head(&record_thunk(Placement::Register(reg), rec));
            assert_eq!(tail, [&load[..], &[0x41, 0xff, 0x63, 0x18]].concat());
        }
        // movq xmm0, [r11]; movq xmm7, [r11]
        for (k, modrm) in [(0, 0x03), (7, 0x3b)] {
            let tail = head(&record_thunk(Placement::Float(k), rec));
            assert_eq!(
                tail,
                [0xf3, 0x41, 0x0f, 0x7e, modrm, 0x41, 0xff, 0x63, 0x18]
            );
        }
        let tail = head(&record_thunk(Placement::Stack(2), rec));
        assert_eq!(tail, [0x41, 0xff, 0x63, 0x18]);
    }

    #[test]
    fn a_register_thunk_says_its_length() {
        for (entry, at, len) in [(0x1000, 0x2000, 19), (0x7f00_0000_0000, 0x1000, 27)] {
            for reg in SYSV_INT_REGS {
                let code = register_thunk(reg, 0x1234, entry, at);
                assert_eq!(code.len(), len);
                assert_eq!(register_thunk_len(&code.into_granule()), len);
            }
        }
        for (entry, at, len) in [(0x1000, 0x2000, 24), (0x7f00_0000_0000, 0x1000, 32)] {
            for xmm in 0..8 {
                let code = float_thunk(xmm, 0x1234, entry, at);
                assert_eq!(code.len(), len);
                assert_eq!(register_thunk_len(&code.into_granule()), len);
            }
        }
    }

    #[test]
    fn float_thunk_bytes() {
        // Near: `jmp rel32`, measured from the end of the 24-byte thunk.
        let code = float_thunk(3, 0x1122334455667788, 0x1000, 0x2000);
        assert_eq!(
            &code.as_slice()[..19],
            &[
                0xf3, 0x0f, 0x1e, 0xfa, // endbr64
                0x49, 0xbb, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov r11, ctx
                0x66, 0x49, 0x0f, 0x6e, 0xdb, // movq xmm3, r11
            ]
        );
        assert_eq!(code.as_slice()[19], 0xe9);
        let disp = i32::from_le_bytes(code.as_slice()[20..24].try_into().unwrap());
        assert_eq!(0x2000 + 24 + disp as i64, 0x1000);
        // `movq xmm0, r11` and `movq xmm7, r11`, as assemblers encode them.
        assert_eq!(movq_xmm_r11(0), [0x66, 0x49, 0x0f, 0x6e, 0xc3]);
        assert_eq!(movq_xmm_r11(7), [0x66, 0x49, 0x0f, 0x6e, 0xfb]);
        // Far: through r11 again (free once the context is in xmm).
        let code = float_thunk(0, 1, 0x0102030405060708, 0x7000_0000_0000);
        assert_eq!(
            &code.as_slice()[19..],
            &[
                0x49, 0xbb, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // mov r11, entry
                0x41, 0xff, 0xe3, // jmp r11
            ]
        );
    }

    #[test]
    fn sysv_placement() {
        assert_eq!(
            placement(CallConv::SysV64, &[]),
            Some(Placement::Register(RDI))
        );
        assert_eq!(
            placement(CallConv::SysV64, &[I, F, I]),
            Some(Placement::Register(RDX))
        );
        assert_eq!(
            placement(CallConv::SysV64, &[I; 5]),
            Some(Placement::Register(R9))
        );
        // Six integers take every integer register: the context goes to
        // the first free float register.
        assert_eq!(
            placement(CallConv::SysV64, &[I; 6]),
            Some(Placement::Float(0))
        );
        assert_eq!(
            placement(CallConv::SysV64, &[I; 8]),
            Some(Placement::Float(0))
        );
        assert_eq!(
            placement(CallConv::SysV64, &[I, F, I, I, F, I, I, I, F]),
            Some(Placement::Float(3))
        );
        let mut seven_floats = vec![I; 6];
        seven_floats.extend([F; 7]);
        assert_eq!(
            placement(CallConv::SysV64, &seven_floats),
            Some(Placement::Float(7))
        );
        // Both register files full: the frame path.
        let mut full = vec![I; 6];
        full.extend([F; 8]);
        assert_eq!(
            placement(CallConv::SysV64, &full),
            Some(Placement::Stack(0))
        );
        // Nine floats spill one to the stack, but the context still has a
        // register.
        assert_eq!(
            placement(CallConv::SysV64, &[F; 9]),
            Some(Placement::Register(RDI))
        );
        let mut mixed = vec![I; 7];
        mixed.extend([F; 10]);
        assert_eq!(
            placement(CallConv::SysV64, &mixed[..16]),
            Some(Placement::Stack(1 + 1))
        );
    }

    #[test]
    fn win64_placement() {
        assert_eq!(
            placement(CallConv::Win64, &[F, F]),
            Some(Placement::Register(R8))
        );
        assert_eq!(
            placement(CallConv::Win64, &[I, F, I]),
            Some(Placement::Register(R9))
        );
        assert_eq!(
            placement(CallConv::Win64, &[I; 4]),
            Some(Placement::Stack(0))
        );
        assert_eq!(
            placement(CallConv::Win64, &[F; 7]),
            Some(Placement::Stack(3))
        );
    }

    proptest::proptest! {
        /// The fixed-offset encoders write exactly what the general one
        /// (`mov_imm64`, `jump`) pushes, near and far, for every register.
        #[test]
        fn register_thunk_matches_the_general_encoder(
            reg in proptest::sample::select(vec![RDI, RSI, RDX, RCX, R8, R9]),
            ctx: usize,
            at in 0usize..(1 << 47),
            near: bool,
            offset in -(1i64 << 31)..(1i64 << 31),
            far: usize,
        ) {
            let entry = if near { (at as i64).wrapping_add(offset) as usize } else { far };
            let mut general = ThunkCode::new();
            general.push(&ENDBR64);
            mov_imm64(&mut general, reg, ctx);
            jump(&mut general, at, entry, 11);
            let fixed = register_thunk(reg, ctx, entry, at);
            proptest::prop_assert_eq!(fixed.as_slice(), general.as_slice());
            // The float form: `mov r11, ctx; movq xmm, r11`, then the jump.
            let xmm = reg % 8;
            let mut general = ThunkCode::new();
            general.push(&ENDBR64);
            mov_imm64(&mut general, 11, ctx);
            general.push(&movq_xmm_r11(xmm));
            jump(&mut general, at, entry, 11);
            let fixed = float_thunk(xmm, ctx, entry, at);
            proptest::prop_assert_eq!(fixed.as_slice(), general.as_slice());
        }
    }

    #[test]
    fn register_thunk_bytes() {
        // Far away: an absolute jump through r11.
        let code = register_thunk(
            RSI,
            0x1122334455667788,
            0x0102030405060708,
            0x7000_0000_0000,
        );
        assert_eq!(
            code.as_slice(),
            &[
                0xf3, 0x0f, 0x1e, 0xfa, // endbr64
                0x48, 0xbe, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rsi, ctx
                0x49, 0xbb, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // mov r11, entry
                0x41, 0xff, 0xe3, // jmp r11
            ]
        );
        let code = register_thunk(R9, 1, 2, 0x7000_0000_0000);
        assert_eq!(&code.as_slice()[4..6], &[0x49, 0xb9]); // mov r9, imm64
        // Near: `jmp rel32`, measured from the end of the 19-byte thunk.
        let code = register_thunk(RDI, 5, 0x1000, 0x2000);
        assert_eq!(code.as_slice().len(), 19);
        assert_eq!(code.as_slice()[14], 0xe9);
        let disp = i32::from_le_bytes(code.as_slice()[15..19].try_into().unwrap());
        assert_eq!(0x2000 + 19 + disp as i64, 0x1000);
    }

    /// Structs by value: all their registers or the stack, whole.
    #[test]
    fn sysv_placement_of_structs() {
        let two_ints = ArgClass::of_struct::<(u64, u64)>();
        let two_doubles = ArgClass::of_struct::<(f64, f64)>();
        let mixed = ArgClass::of_struct::<(f64, u32)>(); // an xmm, then an integer register
        let small = ArgClass::of_struct::<(f32, i32)>(); // one eightbyte, integer
        let floats = ArgClass::of_struct::<(f32, f32, f32)>(); // two eightbytes, both xmm
        assert_eq!(
            placement(CallConv::SysV64, &[two_ints]),
            Some(Placement::Register(RDX))
        );
        assert_eq!(
            placement(CallConv::SysV64, &[small, mixed]),
            Some(Placement::Register(RDX))
        );
        assert_eq!(
            placement(CallConv::SysV64, &[floats, two_doubles, F]),
            Some(Placement::Register(RDI))
        );
        // Five integers leave one register: a two-register struct goes on
        // the stack, and the context takes that register.
        let mut args = [I; 6];
        args[5] = two_ints;
        assert_eq!(
            placement(CallConv::SysV64, &args),
            Some(Placement::Register(R9))
        );
        // Seven floats leave one xmm register: a struct of two doubles
        // goes on the stack and the context (six integers taken) takes it.
        let mut args = [I; 14];
        for a in &mut args[6..13] {
            *a = F;
        }
        args[13] = two_doubles;
        assert_eq!(
            placement(CallConv::SysV64, &args),
            Some(Placement::Float(7))
        );
        // Both files full: stack slots are eightbytes, in order.
        let mut args = [I; 16];
        for a in &mut args[6..14] {
            *a = F;
        }
        args[14] = two_ints;
        args[15] = small;
        assert_eq!(
            placement(CallConv::SysV64, &args),
            Some(Placement::Stack(3))
        );
        // The most a signature can put on the stack before the context:
        // three integer pairs and four double pairs fill both files, nine
        // more pairs take two slots each.
        let mut args = [two_ints; 16];
        for a in &mut args[3..7] {
            *a = two_doubles;
        }
        assert_eq!(
            placement(CallConv::SysV64, &args),
            Some(Placement::Stack(18))
        );
    }

    /// Windows x64: a struct is one position (by value or by pointer).
    #[test]
    fn win64_placement_of_structs() {
        let wide = ArgClass::of_struct::<(u64, u64)>();
        let odd = ArgClass::of_struct::<(u8, u8, u8)>();
        assert_eq!(
            placement(CallConv::Win64, &[wide, odd]),
            Some(Placement::Register(R8))
        );
        assert_eq!(
            placement(CallConv::Win64, &[wide; 6]),
            Some(Placement::Stack(2))
        );
    }
}
