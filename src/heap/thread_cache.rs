//! Per-thread caches in front of the global heap: each thread that makes
//! thunks there keeps a [`Magazine`] of ready granules, so that making and
//! dropping a thunk in the steady state takes no lock and no atomic
//! read-modify-write, only a flag store, a compiler fence and a load.
//!
//! # What a cache may hold
//!
//! At most [`MAGAZINE_DEPTH`] (64) ready one-granule thunk allocations
//! per thread (2 KiB of code granules and 1 KiB of data slots), as many
//! two-granule ones (4 KiB and 2 KiB), and as many static-trampoline slots
//! (entries, records and data slots) on a static-trampoline heap. A thread
//! takes them from its shard [`REFILL`] at a time when a magazine is
//! empty, and gives [`REFILL`] back when a free finds it full. All of them go back to the
//! shards when the thread ends and when
//! [`Heap::compact`](super::Heap::compact) runs, which takes them from
//! every thread's cache. [`Heap::stats`](super::Heap::stats) does not count
//! them as live.
//!
//! # Thread exit
//!
//! A cache is retired by a `pthread_key` destructor, not a `thread_local!`
//! destructor: a thread whose first thunk is made from a C library's
//! per-thread cleanup (a key destructor, which glibc runs after every
//! `thread_local!` destructor) would register a `thread_local!` destructor
//! that never runs, and its cache would stay on the list forever. A key
//! set from a key destructor has its own destructor run in the next round,
//! so the cache goes back whenever it was made. The thread-locals the fast
//! path reads (`FAST`, `RETIRED`) have no destructor: readable at any point
//! of the thread's exit. A thread whose cache was retired takes the shard
//! path for the rest of its exit.
//!
//! # How `compact` takes another thread's cache
//!
//! The owner brackets every use of its magazine with `busy`: it stores
//! true, fences the compiler, and then reads `steal`; if set, it stores
//! false again and takes the shard path instead. `compact` sets `steal` on
//! every cache, then runs a process-wide memory barrier (`membarrier(2)`,
//! the heavy side of an asymmetric fence), then waits until each `busy`
//! reads false, then empties the magazines and clears `steal`. The barrier
//! makes every other running thread execute a full fence, so for each
//! owner either its `busy` store is visible to `compact` after the
//! barrier, or its later load of `steal` sees true (the store-buffer race
//! a plain Dekker handshake would need a fence on both sides for). Where
//! the barrier cannot be registered the global heap has no thread caches.
//!
//! # Fork
//!
//! The caches' list is in the fork registry, registered before the heap's
//! shards (so the order is caches, then shards). The prepare handler takes
//! the list's lock and stops every other thread's cache the way `compact`
//! does (`steal`, the barrier, then waiting for `busy` to clear), so when
//! the address space is copied no thread is inside its magazine: none is
//! between a stamp check and the write through a view that it guards (a
//! thunk's code, or a freed one's traps, are written inside `busy`). The
//! parent handler lets the caches go on (the epoch is bumped by then, so
//! every ready granule is stale); the child handler re-initialises the
//! lock and keeps only the forking thread's cache. The other threads do
//! not exist in the child, so their caches are abandoned (their granules
//! stay marked in use: at most 64 per thread of the parent, for the
//! child's life). No stale granule is written through its old view: a
//! magazine of an older stamp is flushed through the shards' general path
//! on its next use, which moves regions to files of their own first.
//!
//! Where the barrier fails in the prepare handler (a seccomp filter
//! installed after the heap was made refuses `membarrier`), a thread that
//! entered its cache just as the fork began may still be inside it: a thunk
//! it drops then could turn the child's copy of that one thunk into traps.

use std::cell::{Cell, UnsafeCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence};

use lock_api::Mutex;

use super::fork;
use super::lock::DefaultLock;
use super::ready::{Held, MAGAZINE_DEPTH, Magazines, Ready, ReadySlot};
use crate::sys;

/// Ready granules moved between a magazine and its shard at a time.
pub(super) const REFILL: usize = 16;

/// [`ThreadCaches::with`] on the magazine of `n`-granule thunks (1 or 2).
pub(super) const fn thunks(n: usize) -> usize {
    n - 1
}
/// [`ThreadCaches::with`] on the magazine of trampoline slots.
pub(super) const SLOTS: usize = 2;

/// What [`ThreadCaches::drain`] took from every thread's cache.
#[derive(Default)]
pub(super) struct Drained {
    /// One- and two-granule thunk allocations.
    pub(super) thunks: [Vec<Ready>; 2],
    pub(super) slots: Vec<ReadySlot>,
}

/// Gives everything in a thread's magazines back to the heap that owns the
/// caches (its general free paths), emptying them: called when a thread
/// ends.
pub(super) type GiveBack = fn(&mut Magazines);

/// One thread's cache (see the module docs for the protocol). In this
/// order (`repr(C)`): the flags and counters, then the granules' magazine,
/// whose top the steady state touches, then the slots'.
#[repr(C)]
struct Cache {
    /// The caches this one is registered with.
    owner: *const ThreadCaches,
    /// Set by the owner around every use of `magazine`.
    busy: AtomicBool,
    /// Set by `compact` while it empties the magazine.
    steal: AtomicBool,
    /// The magazines' lengths (one- and two-granule thunks, trampoline
    /// slots), for `stats` (written by whoever holds the magazines).
    held: [AtomicUsize; 3],
    magazine: UnsafeCell<Magazines>,
}

impl Cache {
    /// Publishes the magazines' lengths for `stats`.
    #[inline(always)]
    fn set_held(&self, magazines: &Magazines) {
        let held = magazines.held();
        self.held[0].store(held.thunks[0], Ordering::Relaxed);
        self.held[1].store(held.thunks[1], Ordering::Relaxed);
        self.held[SLOTS].store(held.slots, Ordering::Relaxed);
    }
}

// SAFETY: the magazine is only touched by its owner inside `busy` (with
// `steal` clear) or by `compact` with `steal` set after seeing `busy`
// clear (release/acquire on `busy` and `steal`); see the module docs.
unsafe impl Sync for Cache {}
// SAFETY: as above; the magazine's `Ready`s are `Send`.
unsafe impl Send for Cache {}

/// The thread caches of one heap (the global heap).
pub(super) struct ThreadCaches {
    /// Every live thread's cache. Replaced only by the fork child handler.
    caches: UnsafeCell<Mutex<DefaultLock, Vec<Arc<Cache>>>>,
    give_back: GiveBack,
    /// Each thread's value is its `Arc<Cache>` (`Arc::into_raw`); the
    /// destructor retires it at the thread's exit.
    exit_key: sys::ThreadExitKey,
}

// SAFETY: the mutex serialises the list; the cell is replaced only by the
// fork child handler, when the child has one thread and no reference into
// the list is in use.
unsafe impl Sync for ThreadCaches {}
// SAFETY: as above.
unsafe impl Send for ThreadCaches {}

thread_local! {
    /// This thread's cache, once made; null before, and again from the
    /// moment it is retired. Without a destructor, so reading it needs no
    /// check of the thread-local's state. The thread's strong count of the
    /// cache is its exit key's value.
    static FAST: Cell<*const Cache> = const { Cell::new(std::ptr::null()) };
    /// Set when this thread's cache was retired at its exit: no new cache
    /// is made after that.
    static RETIRED: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread makes its cache: a thunk made meanwhile (by a
    /// global allocator the registration called) takes the shard path.
    static REGISTERING: Cell<bool> = const { Cell::new(false) };
}

/// The exit key's destructor: retires the ending thread's cache (its
/// value, an `Arc<Cache>` from `Arc::into_raw`).
unsafe extern "C" fn retire_at_thread_exit(value: *mut std::ffi::c_void) {
    // SAFETY: the value `first_use` set: the thread's strong count of its
    // cache, given to this destructor once.
    let cache = unsafe { Arc::from_raw(value.cast_const().cast::<Cache>()) };
    // No use of the cache through `FAST` from now on.
    FAST.set(std::ptr::null());
    RETIRED.set(true);
    // SAFETY: a cache's owner is a leaked `ThreadCaches`, valid forever.
    let owner = unsafe { &*cache.owner };
    owner.retire(&cache);
}

impl ThreadCaches {
    /// The caches of a heap, for the rest of the process (they are leaked:
    /// the global heap is never dropped), or `None` where the process-wide
    /// barrier `compact` needs cannot be registered. `give_back` returns
    /// granules to the heap.
    pub(super) fn new(give_back: GiveBack) -> Option<&'static ThreadCaches> {
        sys::register_process_barrier().ok()?;
        let exit_key = sys::ThreadExitKey::new(retire_at_thread_exit).ok()?;
        let caches: &'static ThreadCaches = Box::leak(Box::new(ThreadCaches {
            caches: UnsafeCell::new(Mutex::new(Vec::new())),
            give_back,
            exit_key,
        }));
        let hooks = fork::Hooks {
            prepare: Self::fork_prepare,
            parent: Self::fork_parent,
            child: Self::fork_child,
        };
        // SAFETY: the caches are leaked, so valid forever; never
        // unregistered.
        unsafe { fork::register(std::ptr::from_ref(caches).cast(), hooks) };
        Some(caches)
    }

    fn list(&self) -> &Mutex<DefaultLock, Vec<Arc<Cache>>> {
        // SAFETY: only the fork child handler writes the cell, when no
        // reference to it is in use (see the field).
        unsafe { &*self.caches.get() }
    }

    /// Runs `f` on this thread's magazine, made on first use; `None` when
    /// the magazine is unavailable (this thread's locals are gone, `compact`
    /// or a `fork()` is holding it, or a signal handler interrupted its
    /// use): the caller takes the shard path then. While `f` runs no
    /// `fork()` can happen (the prepare handler waits for it).
    /// `m` is the magazine `f` changes ([`thunks`] or [`SLOTS`]), whose
    /// length `stats` then sees.
    #[inline(always)]
    pub(super) fn with<R>(
        &'static self,
        m: usize,
        f: impl FnOnce(&mut Magazines) -> R,
    ) -> Option<R> {
        let cache = FAST.get();
        let cache = if cache.is_null() {
            self.first_use()?
        } else {
            // SAFETY: a non-null `FAST` is this thread's cache, which the
            // exit key's value (an `Arc`) keeps alive until its destructor,
            // which nulls `FAST` first; `with` does not run inside it.
            unsafe { &*cache }
        };
        if !std::ptr::eq(cache.owner, self) {
            return None;
        }
        // A use interrupted by a signal handler that uses it too.
        if cache.busy.load(Ordering::Relaxed) {
            return None;
        }
        cache.busy.store(true, Ordering::Relaxed);
        // The light side of the asymmetric fence (module docs): the heavy
        // side, the stealer's barrier, orders this store before the load
        // below on the hardware.
        compiler_fence(Ordering::SeqCst);
        if cache.steal.load(Ordering::Acquire) {
            cache.busy.store(false, Ordering::Release);
            return None;
        }
        // SAFETY: `busy` is set and `steal` was clear after it, so a
        // stealer leaves the magazine alone until `busy` is clear again;
        // only this thread sets `busy`.
        let magazine = unsafe { &mut *cache.magazine.get() };
        let r = f(magazine);
        let len = match m {
            SLOTS => magazine.slots.len(),
            n => magazine.thunks[n].len(),
        };
        cache.held[m].store(len, Ordering::Relaxed);
        cache.busy.store(false, Ordering::Release);
        Some(r)
    }

    /// This thread's cache, made and registered on its first use (`None`
    /// once it was retired at this thread's exit, or where the exit key
    /// cannot be set).
    #[cold]
    #[inline(never)]
    fn first_use(&'static self) -> Option<&'static Cache> {
        if RETIRED.get() || REGISTERING.replace(true) {
            return None;
        }
        let cache = self.register();
        REGISTERING.set(false);
        let ptr = Arc::into_raw(cache);
        if self.exit_key.set(ptr.cast_mut().cast()).is_err() {
            // SAFETY: from `into_raw` just above; nobody else has it.
            let cache = unsafe { Arc::from_raw(ptr) };
            self.retire(&cache);
            return None;
        }
        FAST.set(ptr);
        // SAFETY: as in `with`: the exit key's value keeps it until its
        // destructor nulls `FAST`.
        Some(unsafe { &*ptr })
    }

    #[cold]
    #[inline(never)]
    fn register(&self) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            owner: self,
            busy: AtomicBool::new(false),
            steal: AtomicBool::new(false),
            held: [
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ],
            magazine: UnsafeCell::new(Magazines::new()),
        });
        // The list grows before its lock is taken: nothing allocates under
        // it (an allocator that makes a thunk would wait for itself).
        let mut list = self.list().lock();
        while list.len() == list.capacity() {
            let want = list.capacity() * 2 + 8;
            drop(list);
            let mut bigger = Vec::with_capacity(want);
            list = self.list().lock();
            // (Another thread may have grown it meanwhile: then look again.)
            if list.len() == list.capacity() && list.len() < want {
                bigger.extend(list.drain(..));
                let old = std::mem::replace(&mut *list, bigger);
                drop(list);
                drop(old); // its buffer, freed outside the lock
                list = self.list().lock();
            } else {
                drop(list);
                drop(bigger);
                list = self.list().lock();
            }
        }
        list.push(cache.clone());
        cache
    }

    /// At thread exit: the cache leaves the list and its granules go back.
    fn retire(&self, cache: &Arc<Cache>) {
        {
            let mut list = self.list().lock();
            let Some(i) = list.iter().position(|c| Arc::ptr_eq(c, cache)) else {
                // Abandoned in a fork child (module docs).
                return;
            };
            list.swap_remove(i);
        }
        // SAFETY: off the list, so `compact` cannot reach it; this thread
        // is its owner and is not inside `with` (its exit destructor, or `first_use`).
        let magazine = unsafe { &mut *cache.magazine.get() };
        (self.give_back)(magazine);
        cache.set_held(magazine);
    }

    /// Ready thunk allocations and trampoline slots held by all caches
    /// (not live, for `stats`).
    pub(super) fn held(&self) -> Held {
        let list = self.list().lock();
        list.iter().fold(Held::default(), |held, c| {
            held.plus(Held {
                thunks: [
                    c.held[0].load(Ordering::Relaxed),
                    c.held[1].load(Ordering::Relaxed),
                ],
                slots: c.held[SLOTS].load(Ordering::Relaxed),
            })
        })
    }

    /// Takes every thread's ready granules and slots (`compact`, which
    /// frees them).
    /// `None`, taking nothing, when the process-wide barrier fails (a
    /// seccomp filter installed since refuses it, say).
    pub(super) fn drain(&self) -> Option<Drained> {
        let list = self.list().lock();
        let mut taken = Drained::default();
        let held = stop_all(&list, None);
        if held {
            for cache in list.iter() {
                // SAFETY: `stop_all` saw every `busy` clear with `steal`
                // set, after the barrier: no owner is inside, and none
                // enters until `steal` is cleared (module docs).
                let magazine = unsafe { &mut *cache.magazine.get() };
                for (n, thunks) in magazine.thunks.iter_mut().enumerate() {
                    taken.thunks[n].extend(thunks.take(MAGAZINE_DEPTH));
                }
                taken.slots.extend(magazine.slots.take(MAGAZINE_DEPTH));
                cache.set_held(magazine);
            }
        }
        resume_all(&list);
        held.then_some(taken)
    }

    /// Before `fork()`: takes the list's lock (the guard is forgotten) and
    /// stops every other thread's cache, so no thread is between a stamp
    /// check and a write through a view when the address space is copied.
    unsafe fn fork_prepare(this: *const ()) {
        // SAFETY: registered caches are leaked, so valid.
        let this = unsafe { &*this.cast::<Self>() };
        let list = this.list().lock();
        // Where the barrier fails, see the module docs' "Fork".
        stop_all(&list, this_thread_cache());
        std::mem::forget(list);
    }

    /// In the parent after `fork()`: resumes the caches (the epoch is
    /// bumped by now, so every ready granule is stale) and releases the
    /// lock.
    unsafe fn fork_parent(this: *const ()) {
        // SAFETY: as in `fork_prepare`.
        let this = unsafe { &*this.cast::<Self>() };
        // SAFETY: `fork_prepare` took the lock on this thread and forgot
        // the guard; no other thread touches the list meanwhile.
        resume_all(unsafe { &*this.list().data_ptr() });
        // SAFETY: as above.
        unsafe { this.list().force_unlock() };
    }

    /// In the child after `fork()`: a fresh lock around the list, which
    /// keeps only this thread's cache (module docs), resumed.
    unsafe fn fork_child(this: *const ()) {
        let mine = this_thread_cache();
        // SAFETY: as in `Locked::fork_child`: the child has one thread,
        // this one, and no reference to the mutex is in use, so replacing
        // it in the cell is exclusive; `into_inner` takes the list without
        // locking (`fork_prepare` held it across the copy, so it is whole).
        unsafe {
            let cell = (*this.cast::<Self>()).caches.get();
            let mut list = std::ptr::read(cell).into_inner();
            list.retain(|c| Some(Arc::as_ptr(c)) == mine);
            resume_all(&list);
            std::ptr::write(cell, Mutex::new(list));
        }
    }
}

/// This thread's cache, if it has one.
fn this_thread_cache() -> Option<*const Cache> {
    Some(FAST.get()).filter(|c| !c.is_null())
}

/// Sets `steal` on every cache, runs the process-wide barrier, and waits
/// until every cache but `except` (the caller's own, when a signal handler
/// forks) is out of use. Returns whether the barrier ran: without it an
/// owner may still be inside (module docs).
fn stop_all(list: &[Arc<Cache>], except: Option<*const Cache>) -> bool {
    for cache in list {
        cache.steal.store(true, Ordering::Relaxed);
    }
    if sys::process_barrier().is_err() {
        return false;
    }
    for cache in list.iter().filter(|c| Some(Arc::as_ptr(c)) != except) {
        while cache.busy.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
    true
}

/// Clears `steal` on every cache.
fn resume_all(list: &[Arc<Cache>]) {
    for cache in list {
        cache.steal.store(false, Ordering::Release);
    }
}
