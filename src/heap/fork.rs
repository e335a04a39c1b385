//! The fork model, in one place: what a process made by copying this one
//! (a *child*) may do with the heaps it inherits, and how wxthunk makes sure
//! it can never change its parent's code.
//!
//! The promises (what a child may do after libc `fork()`, after a raw
//! `clone()` or `SYS_fork`, and after `vfork()`-like spawns) are in the
//! crate docs' "Fork" section; this is how they are kept.
//!
//! # How
//!
//! Only dual-mapped regions share memory with a child (a `memfd` mapped
//! `MAP_SHARED`); protect regions, static-trampoline records, the data
//! slots that hold small closures (`crate::data_slot`) and blocks' buffers
//! are private and copied on write by the kernel.
//!
//! 1. **No writable alias is inherited.** The read-write view of every
//!    dual-mapped region is `MADV_DONTFORK`: in a child (any fork path) it is
//!    not mapped at all, so no store of the child can reach the parent's
//!    file.
//! 2. **Every write through the file is preceded by a check** of the region's
//!    [`Stamp`] against the current one (the heap's lock is held). A region
//!    stamped by another process, or before the last libc fork, is first
//!    moved to a new memfd holding the same bytes (a fresh read-write view
//!    anywhere, the read+exec view replaced in place with `MAP_FIXED`), so
//!    `pwrite` (strict heaps), hole punching (`compact`) and trap filling only
//!    ever touch a file no other process maps.
//! 3. **Who "this process" is** comes from a page marked `MADV_WIPEONFORK`:
//!    the kernel zero-fills it in every child, on every fork path, so the
//!    first check in a child sees zero and takes a new process token (larger
//!    than every token an ancestor used). Without `MADV_WIPEONFORK` (Linux
//!    before 4.14) the token is the process id.
//! 4. **After a libc fork the parent moves too** (the parent handler bumps
//!    the epoch in [`Stamp`]), before its next write to a region it shares
//!    with the child, so the parent's later frees and reuse never reach the
//!    child's inherited thunks. After a raw fork the parent does not know:
//!    the child's inherited thunks may then see the parent's later writes
//!    until the child first writes to that region (the parent is safe
//!    either way).
//! 5. **Locks are consistent across libc `fork()`.** Every heap whose lock is
//!    `Sync` is in a registry; the prepare handler takes the registry's lock
//!    and then each heap's lock (so no heap is mid-operation when the address
//!    space is copied), the parent handler releases them, and the child
//!    handler *re-initialises* them (never unlocks: an unlock could hand the
//!    lock to a waiter that does not exist in the child). A lock whose
//!    waiters live outside the lock word cannot be re-initialised that way
//!    (parking_lot's global queue still links the parent's threads, whose
//!    stacks glibc hands to the child's new threads), so the child handler
//!    also switches every [`DefaultLock`] to a futex mutex whose whole state
//!    is its word.
//!    The global heap's per-thread caches (`thread_cache.rs`) are in the
//!    registry too, before the heap's shards: the prepare handler takes
//!    their list's lock and waits, behind a process-wide barrier, until no
//!    thread is inside its cache (so none is between a stamp check and a
//!    write through a view when the address space is copied); the parent
//!    handler lets them go on, and the child keeps only the forking
//!    thread's cache.
//!    Heaps with a `!Sync` lock ([`NoLock`](super::NoLock), per-thread heaps)
//!    are only ever used by one thread at a time: the forking thread is not
//!    inside an operation on its own, and cannot reach another thread's.
//! 6. **No lazily initialised state blocks.** The probe, the trampoline
//!    table's source, the marker page and the global heap are published with
//!    a compare-and-swap (first to finish wins), never behind a lock or a
//!    `Once` that a thread frozen by `fork()` could leave held.
//!
//! # Lock order
//!
//! The registry's lock, then the thread caches' list lock, then heap locks
//! (in registration order, by the prepare handler only; unregistering keeps
//! the order). Nothing takes the registry's lock while holding a
//! heap's lock: heaps register when built and unregister when dropped, never
//! inside an operation.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use lock_api::Mutex;

use super::lock::DefaultLock;
use crate::sys;

/// Which copy of the address space state belongs to: the process, and the
/// number of libc forks this process made before (so that a parent also
/// notices a fork).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    process: u64,
    epoch: u64,
}

impl Stamp {
    /// A stamp no process has (tokens are never zero).
    pub(crate) const NONE: Stamp = Stamp {
        process: 0,
        epoch: 0,
    };

    /// The stamp's two words (for `RegionInfo`, which publishes them).
    #[inline]
    pub(crate) fn parts(self) -> (u64, u64) {
        (self.process, self.epoch)
    }

    /// The stamp of two words from [`parts`](Self::parts).
    #[inline]
    pub(crate) fn from_parts(process: u64, epoch: u64) -> Stamp {
        Stamp { process, epoch }
    }

    /// The stamp of this process now.
    #[inline]
    pub(crate) fn now() -> Stamp {
        Stamp {
            process: process_token(),
            epoch: EPOCH.load(Ordering::Acquire),
        }
    }

    /// Whether `self` was taken in this same process (mappings made under it
    /// are still this process's own, not absent as `MADV_DONTFORK` leaves
    /// them in a child).
    #[inline]
    pub(crate) fn is_this_process(self) -> bool {
        self.process == process_token()
    }
}

/// Bumped in the parent after each libc `fork()`.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// The `MADV_WIPEONFORK` page holding this process's token (null until the
/// first use, or when the kernel has no such advice).
static MARKER: AtomicPtr<AtomicU64> = AtomicPtr::new(ptr::null_mut());
/// Set when the marker page cannot be made: tokens are process ids then.
static NO_MARKER: AtomicBool = AtomicBool::new(false);
/// The next token to hand out. A child inherits it, so its token is larger
/// than every token its ancestors took.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
/// Marks process-id tokens, so that they never equal a counter token.
const PID_TOKEN: u64 = 1 << 63;

/// A number that differs between this process and every process it was
/// copied from (and between it and any of its children). Two loads in the
/// steady state.
#[inline]
pub(crate) fn process_token() -> u64 {
    let marker = MARKER.load(Ordering::Acquire);
    if !marker.is_null() {
        // SAFETY: the marker page is mapped once and never unmapped; it
        // holds one `AtomicU64` at its start.
        let token = unsafe { &*marker }.load(Ordering::Acquire);
        if token != 0 {
            return token;
        }
    }
    process_token_slow(marker)
}

#[cold]
fn process_token_slow(mut marker: *mut AtomicU64) -> u64 {
    if marker.is_null() {
        if NO_MARKER.load(Ordering::Relaxed) {
            return PID_TOKEN | sys::process_id();
        }
        match sys::map_wipe_on_fork_page() {
            Ok(page) => {
                let ours = page.as_ptr().cast::<AtomicU64>();
                marker = match MARKER.compare_exchange(
                    ptr::null_mut(),
                    ours,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // Ours is the marker for the rest of the process.
                    Ok(_) => page.leak().as_ptr().cast(),
                    // Ours lost the race and is unmapped (nothing refers to
                    // it); the winner's is used.
                    Err(winner) => winner,
                };
            }
            Err(_) => {
                NO_MARKER.store(true, Ordering::Relaxed);
                return PID_TOKEN | sys::process_id();
            }
        }
    }
    let fresh = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as in `process_token`.
    let slot = unsafe { &*marker };
    match slot.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(token) => token,
    }
}

/// What the fork handlers do with one registered heap.
#[derive(Clone, Copy)]
pub(crate) struct Hooks {
    /// Before `fork()`: take the heap's lock (the guard is forgotten).
    pub(crate) prepare: unsafe fn(*const ()),
    /// In the parent after `fork()`: release it.
    pub(crate) parent: unsafe fn(*const ()),
    /// In the child after `fork()`: re-initialise it.
    pub(crate) child: unsafe fn(*const ()),
}

#[derive(Clone, Copy)]
struct Entry {
    target: *const (),
    hooks: Hooks,
}

/// The heaps whose locks the fork handlers hold across `fork()`.
struct Registry(UnsafeCell<Mutex<DefaultLock, Vec<Entry>>>);

// SAFETY: the mutex serialises every access to the entries; the cell is
// replaced only by the child fork handler, when the child has one thread and
// no reference into the registry is in use.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry(UnsafeCell::new(Mutex::new(Vec::new())));

fn registry() -> &'static Mutex<DefaultLock, Vec<Entry>> {
    // SAFETY: see `Registry`: shared references only, except in `child`.
    unsafe { &*REGISTRY.0.get() }
}

/// Adds a heap to the registry: from now on `fork()` holds its lock.
///
/// # Safety
/// `target` stays valid for `hooks` until [`unregister`] is called with it.
pub(crate) unsafe fn register(target: *const (), hooks: Hooks) {
    install_handlers();
    registry().lock().push(Entry { target, hooks });
}

/// Removes a heap from the registry.
pub(crate) fn unregister(target: *const ()) {
    let mut entries = registry().lock();
    if let Some(i) = entries.iter().position(|e| e.target == target) {
        // In order: the handlers rely on registration order (a heap's
        // thread caches come before its shards).
        entries.remove(i);
    }
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Set by the first prepare handler of a fork, cleared by the first parent
/// or child handler: racing first uses may register the handlers twice, and
/// the second copy of each must do nothing.
static IN_FORK: AtomicBool = AtomicBool::new(false);

/// Registers the fork handlers, without ever waiting for another thread (a
/// thread that waited could be frozen by a fork): racing callers may both
/// register, which the handlers tolerate (`IN_FORK`).
fn install_handlers() {
    if INSTALLED.load(Ordering::Acquire) {
        return;
    }
    // Where there are no fork handlers there is no fork() either.
    if sys::register_at_fork(prepare, after_in_parent, after_in_child).is_ok() {
        INSTALLED.store(true, Ordering::Release);
    }
}

unsafe extern "C" fn prepare() {
    if IN_FORK.swap(true, Ordering::AcqRel) {
        return;
    }
    std::mem::forget(registry().lock());
    // SAFETY: the registry's lock is held (forgotten guard) until a parent
    // or child handler; nothing else reads the entries meanwhile.
    for e in unsafe { &*registry().data_ptr() } {
        // SAFETY: registered targets are valid until unregistered, which
        // takes the registry's lock we hold.
        unsafe { (e.hooks.prepare)(e.target) };
    }
}

unsafe extern "C" fn after_in_parent() {
    if !IN_FORK.swap(false, Ordering::AcqRel) {
        return;
    }
    EPOCH.fetch_add(1, Ordering::AcqRel);
    // SAFETY: `prepare` holds the registry's lock on this thread.
    for e in unsafe { &*registry().data_ptr() } {
        // SAFETY: as in `prepare`; this thread holds each heap's lock.
        unsafe { (e.hooks.parent)(e.target) };
    }
    // SAFETY: taken by `prepare` on this thread, guard forgotten.
    unsafe { registry().force_unlock() };
}

unsafe extern "C" fn after_in_child() {
    if !IN_FORK.swap(false, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the child has one thread, this one; every registered lock and
    // the registry's are held by it (taken in `prepare`) and replaced by
    // fresh ones below, never unlocked through the old mutex.
    unsafe { super::lock::use_futex_locks() };
    // SAFETY: the child has one thread, this one, which holds the
    // registry's lock (taken in `prepare`).
    for e in unsafe { &*registry().data_ptr() } {
        // SAFETY: as in `prepare`.
        unsafe { (e.hooks.child)(e.target) };
    }
    // SAFETY: one thread, no reference into the registry in use: replace the
    // mutex (held by `prepare`) with a fresh one holding the same entries.
    unsafe {
        let cell = REGISTRY.0.get();
        let entries = ptr::read(cell).into_inner();
        ptr::write(cell, Mutex::new(entries));
    }
}
