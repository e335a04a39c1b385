//! The default heaps, matching member_thunk's modes: one lazily created,
//! thread-safe global heap (the default), and one heap per thread without
//! locking. Both are left out when the `default-heap` feature is off.
//!
//! Both take their strategy from the environment variable
//! `WXTHUNK_STRATEGY` when it is set (`protect`, `dual-map` or
//! `static-trampolines`), so a program can be run under another strategy
//! without a change; otherwise from the probe.

#[cfg(feature = "default-heap")]
mod enabled {
    use std::cell::Cell;

    use once_cell::race::OnceBox;

    use crate::error::{Error, Result};
    use crate::heap::ready::Magazines;
    use crate::heap::{Heap, HeapBuilder, NoLock};
    use crate::policy::strategy_setting;
    use crate::sys;

    /// The builder of the default heaps: the strategy `WXTHUNK_STRATEGY`
    /// forces, or the probed one; an error naming the variable and its value
    /// if it names no strategy.
    fn builder() -> Result<HeapBuilder> {
        let setting = strategy_setting();
        if let Some(e) = setting.error() {
            return Err(e);
        }
        Ok(match setting.forced() {
            Some(s) => Heap::builder().strategy(s),
            None => Heap::builder(),
        })
    }

    /// Published by compare-and-swap, not behind a `Once`: a thread frozen
    /// by `fork()` in the middle of creating it cannot leave the child
    /// waiting (see `fork.rs`). Racing first calls may each build a heap;
    /// one wins and the others are dropped, unused.
    static GLOBAL: OnceBox<Heap> = OnceBox::new();

    impl Heap {
        /// The global, thread-safe default heap, created on first use with
        /// the probed strategy, or the one the environment variable
        /// `WXTHUNK_STRATEGY` names (`protect`, `dual-map`,
        /// `static-trampolines`). It is never dropped.
        ///
        /// Each thread that makes thunks on it keeps a small cache of free
        /// thunk slots (at most 64 granules and 64 trampoline slots, about
        /// 3 KiB of code and data slots), so that making and dropping a
        /// thunk of a small closure takes no lock; the cache goes back when
        /// the thread ends, and [`Heap::compact`] takes it back at any time.
        /// The caches need `membarrier(2)`; where it is refused there are
        /// none.
        ///
        /// # Errors
        ///
        /// As [`Heap::new`], on the first call (a failed first call is
        /// retried by the next); [`Error::InvalidSetting`] if
        /// `WXTHUNK_STRATEGY` names no strategy, and
        /// [`Error::StrategyUnavailable`] if it names one that does not work
        /// here.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::io::Write;
        /// let heap = wxthunk::Heap::global()?; // made on the first call, then shared
        /// let mut span = heap.alloc(1)?;
        /// span.write_all(&[0xc3])?;
        /// let code = span.exec()?;
        /// assert_eq!(code.heap() as *const _, heap as *const _);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        #[inline]
        pub fn global() -> Result<&'static Heap> {
            GLOBAL.get_or_try_init(|| {
                Ok(Box::new(
                    builder()?.thread_caches(give_back_to_global).build()?,
                ))
            })
        }

        /// This thread's heap: no locking at all, and not `Send` (the
        /// compiler keeps it and its allocations on this thread).
        ///
        /// It is created on first use and lives until its thread has ended:
        /// allocations dropped by thread-local destructors during thread
        /// exit still have a heap to return to. It is released by a
        /// `pthread_key` destructor (after every `thread_local!` destructor,
        /// in glibc's order), also when it was first made during the
        /// thread's exit (from a C library's per-thread cleanup, say): the
        /// heap is freed with everything it holds (its record, regions,
        /// files) if no allocation of it is alive; if some are (leaked on
        /// purpose, with `mem::forget`), it keeps exactly what they need and
        /// the rest is released.
        ///
        /// Its strategy is chosen as for [`Heap::global`].
        ///
        /// # Errors
        ///
        /// As [`Heap::global`]; [`Error::HeapUnavailable`] once the thread
        /// has begun to exit and its thread-local storage is gone.
        ///
        /// # Examples
        ///
        /// ```
        /// let heap = wxthunk::Heap::thread_local()?; // this thread's, no lock
        /// let offset = std::hint::black_box(100);
        /// let add = heap.thunk::<unsafe extern "C" fn(i64) -> i64, _>(move |x| x + offset)?;
        /// // SAFETY: the thunk is alive.
        /// assert_eq!(unsafe { (add.as_fn())(1) }, 101);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn thread_local() -> Result<&'static Heap<NoLock>> {
            if let Some(record) = LOCAL.get() {
                return Ok(&record.heap);
            }
            if RELEASED.get() {
                return Err(Error::HeapUnavailable {
                    reason: "this thread's heap is gone: the thread is exiting",
                });
            }
            let record = LocalRecord::new(builder()?.build_unlocked()?);
            LOCAL.set(Some(record));
            Ok(&record.heap)
        }
    }

    /// A per-thread heap and what its release at thread exit needs to know.
    /// Frees what an ending thread's cache holds into the global heap (the
    /// only heap with thread caches; it exists once a cache does).
    fn give_back_to_global(magazines: &mut Magazines) {
        if let Some(heap) = GLOBAL.get() {
            heap.give_back_magazines(magazines);
        }
    }

    struct LocalRecord {
        heap: Heap<NoLock>,
    }

    impl LocalRecord {
        /// Makes the record, and has the thread-exit destructor free it.
        fn new(heap: Heap<NoLock>) -> &'static LocalRecord {
            let record: &'static LocalRecord = Box::leak(Box::new(LocalRecord { heap }));
            // Without the key the record stays for the rest of the process
            // (as all did before): safe, only not released.
            if let Some(key) = exit_key() {
                let _ = key.set(std::ptr::from_ref(record).cast_mut().cast());
            }
            record
        }
    }

    /// Runs at thread exit after every `thread_local!` destructor of the
    /// thread (glibc runs `pthread_key` destructors last), and also for a
    /// heap first made by another key's destructor (a key set then has its
    /// destructor run in the next round). `LOCAL` forgets the heap first
    /// and `RELEASED` keeps the thread from making another, so no
    /// thread-local of wxthunk's reaches it any more, and no
    /// `&'static Heap<NoLock>` survives its thread in safe code (the heap
    /// is not `Sync`, so no static holds one, and it is not `Send`; a
    /// `thread_local!` that holds one has run its destructor by now).
    unsafe extern "C" fn release_at_thread_exit(record: *mut std::ffi::c_void) {
        LOCAL.set(None);
        RELEASED.set(true);
        // SAFETY: the value is the record `LocalRecord::new` leaked.
        let r = unsafe { &*record.cast::<LocalRecord>() };
        r.heap.compact();
        // Only quarantined debug code left (debug mode): it stays mapped,
        // the rest goes, its descriptor included.
        if r.heap.stats().live_allocations == 0 || r.heap.keep_only_quarantined_code() {
            // SAFETY: made by `Box::leak` in `LocalRecord::new`; nothing can
            // reach it (see above) and nothing of it is alive (quarantined
            // code was taken out of it and stays mapped).
            drop(unsafe { Box::from_raw(record.cast::<LocalRecord>()) });
        }
    }

    /// The key whose destructor releases per-thread heaps, created once
    /// (racing first uses may each create one; one is kept, published by
    /// compare-and-swap, fork-safe like the rest).
    fn exit_key() -> Option<sys::ThreadExitKey> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static KEY: AtomicUsize = AtomicUsize::new(0);
        match KEY.load(Ordering::Acquire) {
            0 => {}
            raw => return Some(sys::ThreadExitKey::from_raw(raw - 1)),
        }
        let key = sys::ThreadExitKey::new(release_at_thread_exit).ok()?;
        let raw = key.into_raw() + 1;
        match KEY.compare_exchange(0, raw, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(sys::ThreadExitKey::from_raw(raw - 1)),
            Err(winner) => {
                sys::ThreadExitKey::from_raw(raw - 1).delete();
                Some(sys::ThreadExitKey::from_raw(winner - 1))
            }
        }
    }

    thread_local! {
        /// This thread's heap, once made (until its release at exit).
        /// Without a destructor: readable at any point of the thread's
        /// exit, and nothing to register that could be too late to run.
        static LOCAL: Cell<Option<&'static LocalRecord>> = const { Cell::new(None) };
        /// Set when this thread's heap was released at its exit.
        static RELEASED: Cell<bool> = const { Cell::new(false) };
    }
}
