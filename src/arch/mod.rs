//! Per-architecture facts and code: the trap instruction that fills unused
//! code, the instruction-cache flush, and the calling conventions that exist
//! only on some architectures. Chosen by `cfg_attr(path)`; no other module
//! tests `target_arch`.

#[cfg_attr(target_arch = "x86_64", path = "x86_64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "aarch64.rs")]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    path = "other.rs"
)]
mod imp;

pub(crate) use imp::*;

/// Fills `buf` with trap instructions. Each byte gets the byte of the trap
/// encoding that matches its address, so the traps line up with instruction
/// boundaries even when `buf` starts in the middle of an instruction slot.
pub(crate) fn fill_traps(buf: &mut [u8]) {
    let base = buf.as_ptr() as usize;
    fill_traps_at(buf, base);
}

/// Fills `buf` with the trap bytes that belong at address `addr` onwards
/// (for a buffer that will be copied to `addr`).
pub(crate) fn fill_traps_at(buf: &mut [u8], addr: usize) {
    if let [byte] = TRAP {
        buf.fill(*byte);
        return;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        *b = TRAP[(addr + i) % TRAP.len()];
    }
}
