//! AArch64. Built for `aarch64-unknown-linux-gnu` in CI by
//! `.ci/aarch64-build` (Debian's rustc), which runs the library's tests
//! under `qemu-aarch64`; never run on hardware. The thunk API here is still
//! the `Unsupported` stubs: the encoders in `aarch64_thunk.rs` are not
//! wired in yet.

use core::arch::asm;

/// The architecture's name as reported by the probe.
pub(crate) const NAME: &str = "aarch64";

/// `brk #0`, little-endian.
pub(crate) const TRAP: &[u8] = &[0x00, 0x00, 0x20, 0xd4];

/// `ret`, little-endian.
pub(crate) const RET: &[u8] = &[0xc0, 0x03, 0x5f, 0xd6];

/// Cleans the data cache and invalidates the instruction cache for
/// `ptr..ptr+len` to the point of unification, the sequence the Arm ARM
/// gives for self-modifying code. Linux lets user space run these
/// instructions and read `CTR_EL0`.
pub(crate) fn flush_icache(ptr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects; Linux enables EL0 access.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let start = ptr as usize;
    let end = start + len;
    let mut addr = start & !(dline - 1);
    while addr < end {
        // SAFETY: cache maintenance by address on memory this process maps
        // changes no architectural state visible to Rust.
        unsafe { asm!("dc cvau, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += dline;
    }
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    let mut addr = start & !(iline - 1);
    while addr < end {
        // SAFETY: as for `dc cvau` above.
        unsafe { asm!("ic ivau, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += iline;
    }
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

pub(crate) use super::no_thunks::{
    ENTRY_SIZE, TABLE_KINDS, TABLE_SIZE, float_thunk, frame_adapters, frame_thunk, placement,
    record_thunk, register_thunk, register_thunk_len, trampoline_dropped, trampoline_freed,
    trampoline_kind, trampoline_table, trampoline_target,
};
