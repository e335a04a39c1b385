//! Fork generations: a counter that changes in both processes whenever the
//! process forks, so that file-backed code regions notice they are now
//! shared with another process and move to a file of their own before
//! anything writes to them.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation. The first call installs the fork handlers.
pub(crate) fn generation() -> u64 {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // Where there are no fork handlers there is no fork() to guard
        // against either (the platform stub has no dual mapping).
        let _ = sys::register_at_fork(prepare, after_in_parent, after_in_child);
    });
    GENERATION.load(Ordering::Acquire)
}

/// Before `fork()`: hold the global heap's lock so that no thread is in the
/// middle of writing code when the address space is copied.
unsafe extern "C" fn prepare() {
    super::default::lock_for_fork();
}

unsafe extern "C" fn after_in_parent() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    // SAFETY: `prepare` took the lock on this thread.
    unsafe { super::default::unlock_after_fork() };
}

unsafe extern "C" fn after_in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    // SAFETY: `prepare` took the lock on this thread, which is the only
    // thread of the child.
    unsafe { super::default::unlock_after_fork() };
}
