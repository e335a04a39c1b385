//! x86_64.

/// The architecture's name as reported by the probe.
pub(crate) const NAME: &str = "x86_64";

/// `int3`: fills unused and freed code so that a stray jump traps at once.
pub(crate) const TRAP: &[u8] = &[0xCC];

/// `mov eax, 1; ret` and `mov eax, 2; ret`: C functions returning 1 and 2,
/// which the probe writes, runs, rewrites at the same address and runs
/// again, to check that memory it made executable really runs what was
/// last written there.
pub(crate) const RETURN_ONE: &[u8] = &[0xb8, 1, 0, 0, 0, 0xc3];
/// See [`RETURN_ONE`].
pub(crate) const RETURN_TWO: &[u8] = &[0xb8, 2, 0, 0, 0, 0xc3];

/// x86_64 keeps instruction fetch coherent with stores made by the same or
/// another core (the kernel's page-table changes serialize), so there is
/// nothing to flush.
#[inline]
pub(crate) fn flush_icache(_ptr: *const u8, _len: usize) {}

/// x86 keeps instruction fetches coherent with stores through any view.
pub(crate) fn flush_icache_views(_written: *const u8, _executed: *const u8, _len: usize) {}

mod adapters;
mod thunk;
mod trampolines;

pub(crate) use adapters::frame_adapters;
pub(crate) use thunk::{
    float_thunk, frame_thunk, placement, pointer_placement, record_thunk, register_thunk,
    register_thunk_len,
};
pub(crate) use trampolines::{
    BUILTIN_UNITS, ENTRY_SIZE, TABLE_KINDS, TABLE_SIZE, trampoline_dropped, trampoline_freed,
    trampoline_kind, trampoline_records, trampoline_table, trampoline_target,
};
