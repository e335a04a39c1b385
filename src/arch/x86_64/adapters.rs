//! The frame-building adapters of the frame path, assembled into this
//! library's own text with unwind information (`.cfi_*` on ELF, `.seh_*`
//! on PE/COFF), so a panic in an
//! `-unwind` thunk's closure unwinds through them to the caller.
//!
//! On entry r11 points to the thunk's record `[ctx, entry, stack_args]`
//! (r10 and r11 are the only registers the adapters use besides rsp/rbp;
//! every argument register is left as the caller set it). The adapter
//! copies the caller's `stack_args` stack arguments into a new frame, puts
//! `ctx` in the slot after them, calls `entry`, and returns its result.
//! There is one adapter per convention and count of stack arguments, for
//! every count a signature of up to 16 arguments can have: a constant
//! frame, unrolled copies.

use std::arch::global_asm;

use crate::abi::CallConv;

// The adapters, in `adapters.s` (ELF assembly with `.cfi_*` unwind
// directives) or, on PE/COFF (Windows), `adapters_coff.s` (`.seh_*`
// directives: Windows x64 unwind information in the image's `.pdata`).
#[cfg(not(windows))]
global_asm!(include_str!("adapters.s"));
#[cfg(windows)]
global_asm!(include_str!("adapters_coff.s"));

unsafe extern "C" {
    fn wxthunk_0_1_sysv_frame_adapter_0();
    fn wxthunk_0_1_sysv_frame_adapter_1();
    fn wxthunk_0_1_sysv_frame_adapter_2();
    fn wxthunk_0_1_sysv_frame_adapter_3();
    fn wxthunk_0_1_sysv_frame_adapter_4();
    fn wxthunk_0_1_sysv_frame_adapter_5();
    fn wxthunk_0_1_sysv_frame_adapter_6();
    fn wxthunk_0_1_sysv_frame_adapter_7();
    fn wxthunk_0_1_sysv_frame_adapter_8();
    fn wxthunk_0_1_sysv_frame_adapter_9();
    fn wxthunk_0_1_sysv_frame_adapter_10();
    fn wxthunk_0_1_sysv_frame_adapter_11();
    fn wxthunk_0_1_sysv_frame_adapter_12();
    fn wxthunk_0_1_sysv_frame_adapter_13();
    fn wxthunk_0_1_sysv_frame_adapter_14();
    fn wxthunk_0_1_sysv_frame_adapter_15();
    fn wxthunk_0_1_sysv_frame_adapter_16();
    fn wxthunk_0_1_sysv_frame_adapter_17();
    fn wxthunk_0_1_sysv_frame_adapter_18();
    fn wxthunk_0_1_win64_frame_adapter_0();
    fn wxthunk_0_1_win64_frame_adapter_1();
    fn wxthunk_0_1_win64_frame_adapter_2();
    fn wxthunk_0_1_win64_frame_adapter_3();
    fn wxthunk_0_1_win64_frame_adapter_4();
    fn wxthunk_0_1_win64_frame_adapter_5();
    fn wxthunk_0_1_win64_frame_adapter_6();
    fn wxthunk_0_1_win64_frame_adapter_7();
    fn wxthunk_0_1_win64_frame_adapter_8();
    fn wxthunk_0_1_win64_frame_adapter_9();
    fn wxthunk_0_1_win64_frame_adapter_10();
    fn wxthunk_0_1_win64_frame_adapter_11();
    fn wxthunk_0_1_win64_frame_adapter_12();
    /// Each adapter's size in bytes, System V's then Windows x64's, in the
    /// order of [`SYSV`] and [`WIN64`] (adapters.s).
    static wxthunk_0_1_frame_adapter_sizes: [u32; 32];
}

/// The adapters with a built-in count of stack arguments, by count.
static SYSV: [unsafe extern "C" fn(); 19] = [
    wxthunk_0_1_sysv_frame_adapter_0,
    wxthunk_0_1_sysv_frame_adapter_1,
    wxthunk_0_1_sysv_frame_adapter_2,
    wxthunk_0_1_sysv_frame_adapter_3,
    wxthunk_0_1_sysv_frame_adapter_4,
    wxthunk_0_1_sysv_frame_adapter_5,
    wxthunk_0_1_sysv_frame_adapter_6,
    wxthunk_0_1_sysv_frame_adapter_7,
    wxthunk_0_1_sysv_frame_adapter_8,
    wxthunk_0_1_sysv_frame_adapter_9,
    wxthunk_0_1_sysv_frame_adapter_10,
    wxthunk_0_1_sysv_frame_adapter_11,
    wxthunk_0_1_sysv_frame_adapter_12,
    wxthunk_0_1_sysv_frame_adapter_13,
    wxthunk_0_1_sysv_frame_adapter_14,
    wxthunk_0_1_sysv_frame_adapter_15,
    wxthunk_0_1_sysv_frame_adapter_16,
    wxthunk_0_1_sysv_frame_adapter_17,
    wxthunk_0_1_sysv_frame_adapter_18,
];
static WIN64: [unsafe extern "C" fn(); 13] = [
    wxthunk_0_1_win64_frame_adapter_0,
    wxthunk_0_1_win64_frame_adapter_1,
    wxthunk_0_1_win64_frame_adapter_2,
    wxthunk_0_1_win64_frame_adapter_3,
    wxthunk_0_1_win64_frame_adapter_4,
    wxthunk_0_1_win64_frame_adapter_5,
    wxthunk_0_1_win64_frame_adapter_6,
    wxthunk_0_1_win64_frame_adapter_7,
    wxthunk_0_1_win64_frame_adapter_8,
    wxthunk_0_1_win64_frame_adapter_9,
    wxthunk_0_1_win64_frame_adapter_10,
    wxthunk_0_1_win64_frame_adapter_11,
    wxthunk_0_1_win64_frame_adapter_12,
];

/// The frame adapter for `conv` (System V unless Windows x64) and a thunk
/// with `stack_args` stack arguments.
///
/// # Panics
///
/// For a count no signature of up to 16 arguments has (`placement` never
/// returns one; the `const` checks below keep the tables that wide).
pub(super) fn frame_adapter(conv: CallConv, stack_args: usize) -> usize {
    // Windows x64: positions 4..16 are stack slots. System V: the context
    // needs the stack only when six integer and eight `xmm` registers are
    // taken, by at least seven arguments (a struct takes two), so the
    // other nine put at most two eightbytes each there.
    const { assert!(WIN64.len() == crate::abi::MAX_ARITY - 4 + 1) };
    const { assert!(SYSV.len() == 2 * (crate::abi::MAX_ARITY - 7) + 1) };
    let counted: &[unsafe extern "C" fn()] = match conv {
        CallConv::Win64 => &WIN64,
        _ => &SYSV,
    };
    match counted.get(stack_args) {
        Some(&f) => f as usize,
        None => unreachable!("no signature has {stack_args} stack arguments"),
    }
}

/// Every frame adapter as `(address, size in bytes, name)`, for perf's map
/// of code.
pub(crate) fn frame_adapters() -> Vec<(usize, usize, String)> {
    const { assert!(SYSV.len() + WIN64.len() == 32) };
    // SAFETY: an immutable table of 32 `u32`s that adapters.s assembles
    // in `.rodata`, one per adapter in the order of SYSV then WIN64.
    let sizes = unsafe { &wxthunk_0_1_frame_adapter_sizes };
    let sysv = SYSV.iter().enumerate().map(|(n, f)| (*f, "System V", n));
    let win64 = WIN64
        .iter()
        .enumerate()
        .map(|(n, f)| (*f, "Windows x64", n));
    sysv.chain(win64)
        .zip(sizes)
        .map(|((f, conv, n), &size)| {
            let name = format!("wxthunk frame adapter ({conv}, {n} stack arguments)");
            (f as usize, size as usize, name)
        })
        .collect()
}
