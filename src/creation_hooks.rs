//! Whether making a thunk must leave its fast path: perf's map may be on
//! (`perf_map.rs`), or some heap is in debug mode (`thunk/debug.rs`). One
//! relaxed load of one byte tells [`Heap::thunk`](crate::Heap::thunk); the
//! slow path then asks each hook's own state (the map's setting, the heap's
//! `is_debug`), so a stale read here costs a detour, never a missed hook.

use std::sync::atomic::{AtomicU8, Ordering};

/// perf's map is on, or not read yet from the environment.
pub(crate) const PERF_MAP: u8 = 1;
/// A heap in debug mode has been built.
pub(crate) const DEBUG: u8 = 2;

static HOOKS: AtomicU8 = AtomicU8::new(PERF_MAP);

/// Whether any hook may want to see a new thunk.
#[inline(always)]
pub(crate) fn any() -> bool {
    HOOKS.load(Ordering::Relaxed) != 0
}

/// Turns `hook` on.
pub(crate) fn set(hook: u8) {
    HOOKS.fetch_or(hook, Ordering::Relaxed);
}

/// Turns `hook` off.
pub(crate) fn clear(hook: u8) {
    HOOKS.fetch_and(!hook, Ordering::Relaxed);
}
