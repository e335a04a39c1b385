//! Control Flow Guard's registration where there is none (every platform
//! but Windows): shared by `linux/mod.rs` and `unsupported.rs`.

use std::io;

/// No: Control Flow Guard is Windows'. Every address of executable memory
/// may be called (what guards branch targets here is the page's
/// `branch_targets_guarded`).
#[inline(always)]
pub(crate) fn call_targets_registered() -> bool {
    false
}

/// Nothing to do: no call targets are registered here
/// ([`call_targets_registered`]).
#[inline(always)]
pub(crate) fn set_call_target(_addr: usize, _valid: bool) -> io::Result<()> {
    Ok(())
}
