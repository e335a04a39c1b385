//! The frame-building adapters of the frame path, assembled into this
//! library's own text with unwind information (`.cfi_*`), so a panic in an
//! `-unwind` thunk's closure unwinds through them to the caller.
//!
//! On entry r11 points to the thunk's record `[ctx, entry, stack_args]`
//! (r10 and r11 are the only registers the adapters use besides rsp/rbp;
//! every argument register is left as the caller set it). The adapter
//! copies the caller's `stack_args` stack arguments into a new frame, puts
//! `ctx` in the slot after them, calls `entry`, and returns its result.

use std::arch::global_asm;

use crate::abi::CallConv;

// The adapters, in `adapters.s` (ELF assembly with `.cfi_*` unwind
// directives).
global_asm!(include_str!("adapters.s"));

unsafe extern "C" {
    fn wxthunk_0_1_sysv_frame_adapter();
    fn wxthunk_0_1_win64_frame_adapter();
}

/// The frame adapter for `conv` (System V unless Windows x64).
pub(super) fn frame_adapter(conv: CallConv) -> usize {
    let f: unsafe extern "C" fn() = match conv {
        CallConv::Win64 => wxthunk_0_1_win64_frame_adapter,
        _ => wxthunk_0_1_sysv_frame_adapter,
    };
    f as usize
}
