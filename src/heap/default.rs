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

    use crate::heap::{Heap, HeapBuilder, NoLock};
    use crate::policy::strategy_setting;
    use crate::{Error, Result};

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
        /// # Errors
        ///
        /// As [`Heap::new`], on the first call (a failed first call is
        /// retried by the next); [`Error::InvalidSetting`] if
        /// `WXTHUNK_STRATEGY` names no strategy, and
        /// [`Error::StrategyUnavailable`] if it names one that does not work
        /// here.
        pub fn global() -> Result<&'static Heap> {
            GLOBAL.get_or_try_init(|| Ok(Box::new(builder()?.build()?)))
        }

        /// This thread's heap: no locking at all, and not `Send` (the
        /// compiler keeps it and its allocations on this thread).
        ///
        /// It is created on first use and its record is never freed, so
        /// allocations dropped by other thread-local destructors during
        /// thread exit still have a heap to return to. When the thread ends,
        /// its empty regions are released (`compact`); regions still holding
        /// allocations that were leaked (`mem::forget`) stay mapped, as the
        /// leak asked.
        ///
        /// Its strategy is chosen as for [`Heap::global`].
        ///
        /// # Errors
        ///
        /// As [`Heap::global`]; [`Error::HeapUnavailable`] once the thread
        /// has begun to exit and its thread-local storage is gone.
        pub fn thread_local() -> Result<&'static Heap<NoLock>> {
            LOCAL
                .try_with(|slot| match slot.heap.get() {
                    Some(heap) => Ok(heap),
                    None => {
                        let heap: &'static Heap<NoLock> =
                            Box::leak(Box::new(builder()?.build_unlocked()?));
                        slot.heap.set(Some(heap));
                        Ok(heap)
                    }
                })
                .map_err(|_| Error::HeapUnavailable {
                    reason: "this thread's heap is gone: the thread is exiting",
                })?
        }
    }

    struct LocalSlot {
        heap: Cell<Option<&'static Heap<NoLock>>>,
    }

    impl Drop for LocalSlot {
        fn drop(&mut self) {
            if let Some(heap) = self.heap.get() {
                heap.compact();
            }
        }
    }

    thread_local! {
        static LOCAL: LocalSlot = const { LocalSlot { heap: Cell::new(None) } };
    }
}
