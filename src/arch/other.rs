//! Architectures without code of their own: nothing here can run code the
//! crate generates, but the crate still builds.

/// The architecture's name as reported by the probe.
pub(crate) const NAME: &str = std::env::consts::ARCH;

/// A placeholder trap (zero bytes); no code is generated on this
/// architecture.
pub(crate) const TRAP: &[u8] = &[0x00];

/// No known code: the probe reports execution as untested.
pub(crate) const RETURN_ONE: &[u8] = &[];
/// See [`RETURN_ONE`].
pub(crate) const RETURN_TWO: &[u8] = &[];

/// Unknown cache model: nothing is flushed, and no code is generated.
pub(crate) fn flush_icache(_ptr: *const u8, _len: usize) {}

/// Unknown cache model: nothing is flushed.
pub(crate) fn flush_icache_views(_written: *const u8, _executed: *const u8, _len: usize) {}

pub(crate) use super::no_thunks::{
    BUILTIN_UNITS, ENTRY_SIZE, TABLE_KINDS, TABLE_SIZE, float_thunk, frame_adapters, frame_thunk,
    placement, pointer_placement, record_thunk, register_thunk, register_thunk_len,
    trampoline_dropped, trampoline_freed, trampoline_kind, trampoline_records, trampoline_table,
    trampoline_target,
};
