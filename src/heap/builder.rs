//! [`HeapBuilder`]: a heap's strategy, lock and region sizes, checked and
//! turned into its [`Config`].

use std::cell::UnsafeCell;

use lock_api::{Mutex, RawMutex};

use super::Heap;
use super::allocator::State;
use super::fork;
use super::lock::{NoLock, SharedLock};
use super::locked::Locked;
use super::region::DUAL_GRANULE_SHIFT;
use super::shard::AddressSpace;
use super::thread_cache::{GiveBack, ThreadCaches};
use crate::error::{Error, Result};
use crate::policy::{HEAP_PREFERENCE, THUNK_PREFERENCE, capabilities};
use crate::strategy::{CodeStrategy, Strategy, ThunkStrategy};
use crate::sys;
use crate::trampoline::TableCode;

/// What a heap does with its thunks and with the code written into it: the
/// only two combinations there are (generated thunks are spans, so they
/// share the spans' strategy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Thunks are generated code, in spans under this strategy.
    Generated(CodeStrategy),
    /// Thunks are static trampolines; spans and pages use `spans`, or
    /// cannot be allocated when no strategy for written code works here.
    StaticTrampolines { spans: Option<CodeStrategy> },
}

impl Mode {
    pub(super) fn thunks(self) -> ThunkStrategy {
        match self {
            Mode::Generated(code) => ThunkStrategy::Generated(code),
            Mode::StaticTrampolines { .. } => ThunkStrategy::StaticTrampolines,
        }
    }

    pub(super) fn spans(self) -> Option<CodeStrategy> {
        match self {
            Mode::Generated(code) => Some(code),
            Mode::StaticTrampolines { spans } => spans,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Config {
    pub(super) mode: Mode,
    pub(super) strict: bool,
    pub(super) granule_shift: u32,
    pub(super) first_region: usize,
    pub(super) max_region: usize,
    /// The largest span ([`max_region_bytes`] of the granule).
    pub(super) max_span: usize,
    /// Debug mode ([`HeapBuilder::debug`]).
    pub(super) debug: bool,
    /// Guarded code pages ([`HeapBuilder::branch_protection`]).
    pub(super) branch_protection: bool,
    /// Where the code of the heap's thunk tables comes from, if its thunks
    /// are table entries: mapped from the image (static trampolines) or
    /// sealed copies (a protect heap, where this build can make them).
    pub(super) tables: Option<TableCode>,
    /// Where a thunk's code slot is, with the data slot beside it: worked
    /// out once here, read by every creation.
    pub(super) slots: ThunkSlots,
}

/// Where a heap's thunks of small closures get their code slot and the
/// data slot beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThunkSlots {
    /// An entry of a trampoline table (static trampolines, or a protect
    /// heap's sealed tables).
    Table,
    /// A granule of a dual-mapped region (register placements only).
    Granule,
    /// Neither: generated code in a span of its own.
    None,
}

/// Builds a [`Heap`] with a chosen strategy and region sizes.
///
/// ```
/// use wxthunk::{Heap, Strategy};
///
/// let heap = Heap::builder()
///     .region_size(64 * 1024)
///     .max_region_size(1 << 20)
///     .max_reserved(64 << 20)
///     .build()?;
/// assert!(wxthunk::probe().allows(heap.strategy()));
/// # Ok::<(), wxthunk::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct HeapBuilder {
    thunks: Option<ThunkStrategy>,
    strict: bool,
    region_size: usize,
    max_region_size: usize,
    max_reserved: usize,
    /// Per-thread caches of ready granules, and how they give granules
    /// back at thread exit (the global heap's, see `thread_cache.rs`).
    thread_caches: Option<GiveBack>,
    /// Debug mode ([`HeapBuilder::debug`]); `None` follows `WXTHUNK_DEBUG`.
    debug: Option<bool>,
    /// Guarded code pages ([`HeapBuilder::branch_protection`]).
    branch_protection: bool,
}

impl Default for HeapBuilder {
    fn default() -> Self {
        HeapBuilder {
            thunks: None,
            strict: false,
            region_size: 64 * 1024,
            max_region_size: 4 * 1024 * 1024,
            max_reserved: DEFAULT_MAX_RESERVED,
            thread_caches: None,
            branch_protection: true,
            debug: None,
        }
    }
}

/// See [`HeapBuilder::max_reserved`]: 4 GiB (half the address space on
/// 32-bit targets).
const DEFAULT_MAX_RESERVED: usize = if (4u64 << 30) > usize::MAX as u64 {
    usize::MAX / 2
} else {
    (4u64 << 30) as usize
};

impl HeapBuilder {
    /// The default of [`max_reserved`](Self::max_reserved): 4 GiB of address
    /// space per heap.
    pub const DEFAULT_MAX_RESERVED: usize = DEFAULT_MAX_RESERVED;

    /// Forces a strategy instead of the probed one.
    ///
    /// [`Strategy::StaticTrampolines`] applies to thunks; spans and pages
    /// of such a heap use the best strategy for written code that works
    /// here (see [`Heap::span_strategy`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{Heap, Strategy};
    /// // Thunks as records read by the library's own trampolines: no code is
    /// // written, so this works where nothing may become executable.
    /// if wxthunk::probe().allows(Strategy::StaticTrampolines) {
    ///     let heap = Heap::builder().strategy(Strategy::StaticTrampolines).build()?;
    ///     assert_eq!(heap.strategy(), Strategy::StaticTrampolines);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.thunks = Some(strategy.thunks());
        self
    }

    /// Forces how thunks are made: generated code under a
    /// [`CodeStrategy`] (which spans and pages then share), or static
    /// trampolines (spans and pages then use the best strategy for written
    /// code that works here). The same as [`strategy`](Self::strategy) with
    /// the flat name.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{CodeStrategy, Heap, ThunkStrategy};
    /// let thunks = ThunkStrategy::Generated(CodeStrategy::Protect);
    /// if wxthunk::probe().allows(thunks.strategy()) {
    ///     let heap = Heap::builder().thunk_strategy(thunks).build()?;
    ///     assert_eq!(heap.thunk_strategy(), thunks);
    ///     assert_eq!(heap.code_strategy(), Some(CodeStrategy::Protect));
    /// }
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn thunk_strategy(mut self, thunks: ThunkStrategy) -> Self {
        self.thunks = Some(thunks);
        self
    }

    /// Strict dual mapping: no writable mapping of code ever exists; bytes
    /// are written into the memfd with `pwrite` (one system call per write
    /// and per free). No effect on [`Strategy::Protect`].
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::builder().strict(true).build()?;
    /// // Strict where its code is dual-mapped (not under protect).
    /// if heap.span_strategy() == Some(wxthunk::Strategy::DualMap) {
    ///     assert!(heap.is_strict());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The size of the first region (rounded up to whole pages; default
    /// 64 KiB). Each new region doubles the last, up to
    /// [`max_region_size`](Self::max_region_size).
    ///
    /// # Examples
    ///
    /// ```
    /// // Start with 64 KiB regions (the heap grows in steps from there).
    /// let heap = wxthunk::Heap::builder().region_size(64 << 10).build()?;
    /// let _span = heap.alloc(32)?;
    /// assert_eq!(heap.stats().regions, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn region_size(mut self, bytes: usize) -> Self {
        self.region_size = bytes;
        self
    }

    /// The largest region made by growth (default 4 MiB). An allocation
    /// larger than this gets a region of its own size.
    pub fn max_region_size(mut self, bytes: usize) -> Self {
        self.max_region_size = bytes;
        self
    }

    /// The most address space the heap may reserve in all (default 4 GiB,
    /// [`DEFAULT_MAX_RESERVED`](HeapBuilder::DEFAULT_MAX_RESERVED)).
    /// Allocations beyond it fail with [`Error::HeapExhausted`](crate::Error::HeapExhausted).
    ///
    /// Reserved is not resident: a page of a region uses memory only once
    /// code is written on it, so a 1 GiB span holding 6 bytes of code uses
    /// one page. A dual-mapped region also reserves 16 bytes of private
    /// data slots per 32-byte granule (for small closures), counted here
    /// too; all shards of a heap share the one limit. The limit bounds the address space and the bookkeeping (a
    /// bit per 32-byte granule of ordinary regions, a bit per page for a
    /// span larger than [`max_region_size`](Self::max_region_size), which
    /// gets a region of its own, unmapped when it is freed).
    ///
    /// # Examples
    ///
    /// ```
    /// // At most 1 MiB of address space: past it, `alloc` fails cleanly.
    /// let heap = wxthunk::Heap::builder().region_size(1 << 20).max_reserved(1 << 20).build()?;
    /// assert!(heap.alloc(2 << 20).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_reserved(mut self, bytes: usize) -> Self {
        self.max_reserved = bytes;
        self
    }

    /// Debug mode for this heap's thunks (default: on where
    /// `WXTHUNK_DEBUG=1` was set when the process first used wxthunk, see
    /// [`Policy::debug_thunks`](crate::Policy::debug_thunks)).
    ///
    /// In debug mode a call through the pointer of a dropped thunk prints
    /// one line to stderr, naming wxthunk, the address, the thunk's
    /// signature and its closure's type, and aborts the process. Each
    /// thunk's code reads its context and entry from a record, and a
    /// dropped thunk's record is pointed at the report; its code and slot
    /// are **quarantined**, never reused, so a stale pointer reaches the
    /// report and not a newer thunk. The closure itself is dropped as
    /// usual.
    ///
    /// The quarantine holds at most [`DEBUG_QUARANTINE`](crate::DEBUG_QUARANTINE) thunks
    /// for the whole process (65,536: about 7 MiB of a dual-mapped heap's
    /// code and records, 256 MiB under [`Strategy::Protect`], which gives
    /// each thunk a page). Past it, wxthunk says so once on stderr and
    /// frees dropped thunks as in the default mode (trap-filled and
    /// reused), so stale calls through those trap without a report.
    /// Quarantined memory goes with its heap: dropping the heap unmaps it,
    /// and a stale call then faults.
    ///
    /// Thunks in debug mode call through their record (a load more than
    /// the default code), are all boxed (`SLOW`), and take no
    /// per-thread cache: creation is several times slower. Thunk pages are
    /// freed whole, as in the default mode.
    ///
    /// # Examples
    ///
    /// ```
    /// type F = unsafe extern "C" fn(u64) -> u64;
    /// let heap = wxthunk::Heap::builder().debug(true).build()?;
    /// assert!(heap.is_debug());
    /// let t = heap.thunk::<F, _>(|x: u64| x + 1)?;
    /// // SAFETY: the thunk is alive.
    /// assert_eq!(unsafe { (t.as_fn())(1) }, 2);
    /// drop(t); // a call through its pointer now reports and aborts
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }

    /// Whether the heap's code pages are guarded against branches into the
    /// middle of code, where the kernel offers it (on by default).
    ///
    /// On AArch64 with BTI (Linux 5.8 or later on a CPU that has it; the
    /// probe's `branch protection` line says whether it does), guarded
    /// pages are mapped with `PROT_BTI`: an indirect branch (`br`, `blr`,
    /// a call through a function pointer) into them must land on a `bti c`
    /// (or `paciasp`) instruction, or the process gets `SIGILL`. Every thunk
    /// wxthunk generates starts with `bti c`. Code you write into a
    /// [`Span`](crate::Span) of a guarded heap must start each function
    /// that is called through a pointer with one too, as compilers do under
    /// `-mbranch-protection=bti`; build the heap with `false` for code
    /// without landing pads (thunks and spans share the heap's pages, so the
    /// setting is the heap's). Elsewhere, and on other architectures, it
    /// changes nothing. [`Block`](crate::Block)s are unguarded unless asked
    /// ([`Block::set_branch_protection`](crate::Block::set_branch_protection)).
    ///
    /// # Examples
    ///
    /// ```
    /// // A heap for JIT code without landing pads.
    /// let heap = wxthunk::Heap::builder().branch_protection(false).build()?;
    /// assert!(!heap.branch_protection());
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn branch_protection(mut self, on: bool) -> Self {
        self.branch_protection = on;
        self
    }

    /// Gives a `Sync` heap per-thread caches of ready thunk granules, where
    /// its thunks are dual-mapped and not strict and the process-wide
    /// barrier works; `give_back` frees granules of an ending thread into
    /// the heap. For the global heap, which is never dropped.
    #[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
    pub(super) fn thread_caches(mut self, give_back: GiveBack) -> Self {
        self.thread_caches = Some(give_back);
        self
    }

    /// Builds a heap with the [`DefaultLock`](crate::DefaultLock).
    ///
    /// # Errors
    ///
    /// [`Error::StrategyUnavailable`](crate::Error::StrategyUnavailable) if the forced strategy does not work
    /// here, [`Error::NoExecutableMemory`](crate::Error::NoExecutableMemory) if none does,
    /// [`Error::SizeOverflow`](crate::Error::SizeOverflow) for region sizes that cannot be rounded to
    /// pages, [`Error::TooLarge`](crate::Error::TooLarge) for a region size past the largest region
    /// (`u32::MAX` allocation units: about 128 GiB with 32-byte granules).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::builder().build()?; // as `Heap::new()`
    /// let k = std::hint::black_box(2);
    /// let double = heap.thunk::<unsafe extern "C" fn(i32) -> i32, _>(move |x| x * k)?;
    /// // SAFETY: the thunk is alive.
    /// assert_eq!(unsafe { (double.as_fn())(21) }, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Heap> {
        self.build_shared()
    }

    /// Builds a heap with the lock `L`, any `Sync` [`lock_api::RawMutex`].
    /// Its state is split into one shard per core (at most 8), each with
    /// its own lock, and each thread allocates from one, so threads do not
    /// contend for one lock. The heap is safe to use in a child of `fork()`
    /// (the crate docs' "Fork" section): its locks are held across `fork()`
    /// and re-initialised in the child. A `!Sync` lock cannot take part in that; use
    /// [`build_unlocked`](Self::build_unlocked) for a single-threaded heap.
    ///
    /// The heap's lock type is [`SharedLock<L>`](crate::SharedLock), which
    /// is `L` and lets the heap make thunks of closures that may go to
    /// other threads.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{Heap, SharedLock};
    /// // parking_lot's mutex alone, without the fork-child switch of `DefaultLock`.
    /// let heap: Heap<SharedLock<parking_lot::RawMutex>> =
    ///     Heap::builder().build_with_lock::<parking_lot::RawMutex>()?;
    /// let k = std::hint::black_box(1);
    /// let t = heap.thunk::<unsafe extern "C" fn(u32) -> u32, _>(move |x| x + k)?;
    /// std::thread::scope(|s| {
    ///     // SAFETY: the thunk is alive during the call.
    ///     s.spawn(|| assert_eq!(unsafe { (t.as_fn())(1) }, 2));
    /// });
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn build_with_lock<L: RawMutex + Sync>(self) -> Result<Heap<SharedLock<L>>> {
        self.build_shared()
    }

    /// [`build_with_lock`](Self::build_with_lock) with the lock type as
    /// given.
    fn build_shared<L: RawMutex + Sync>(self) -> Result<Heap<L>> {
        let give_back = self.thread_caches;
        let mut heap = self.build_any::<L>(super::shard::shard_count())?;
        // Registered before the shards: the fork handlers stop the caches
        // first (`thread_cache.rs`).
        // Ready granules need writable views; ready slots need nothing.
        let cacheable = match heap.config.mode {
            _ if heap.config.tables.is_some() => true,
            Mode::Generated(code) => code.dual_maps() && !heap.config.strict,
            Mode::StaticTrampolines { .. } => true,
        };
        heap.caches = give_back.filter(|_| cacheable).and_then(ThreadCaches::new);
        for shard in heap.shards.iter_mut() {
            let target: *const () = std::ptr::from_ref::<Locked<L>>(shard).cast();
            let hooks = fork::Hooks {
                prepare: Locked::<L>::fork_prepare,
                parent: Locked::<L>::fork_parent,
                child: Locked::<L>::fork_child,
            };
            // SAFETY: the boxed shards do not move and each unregisters in
            // its `Drop` (`registered` is set just below, before anything
            // can fork with it registered and unflagged: the flag only
            // matters at drop).
            unsafe { fork::register(target, hooks) };
            shard.registered = true;
        }
        Ok(heap)
    }

    /// Builds a single-threaded heap without a lock ([`NoLock`](crate::NoLock)).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::builder().strict(true).build_unlocked()?;
    /// let span = heap.alloc(16)?;
    /// assert_eq!(heap.stats().live_allocations, 1);
    /// # drop(span);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_unlocked(self) -> Result<Heap<NoLock>> {
        self.build_any(1)
    }

    fn build_any<L: RawMutex>(self, shards: usize) -> Result<Heap<L>> {
        let caps = capabilities();
        let thunks = match self.thunks {
            Some(t) => {
                caps.require(t)?;
                t
            }
            None => caps.choose(THUNK_PREFERENCE)?,
        };
        let mode = match thunks {
            ThunkStrategy::Generated(code) => Mode::Generated(code),
            ThunkStrategy::StaticTrampolines => Mode::StaticTrampolines {
                spans: caps.choose(HEAP_PREFERENCE).ok(),
            },
        };
        let span_strategy = mode.spans();
        let page = sys::page_size();
        let first_region = crate::block::round_to_pages(self.region_size)?;
        let max_region = crate::block::round_to_pages(self.max_region_size)?.max(first_region);
        let granule_shift = match span_strategy {
            Some(CodeStrategy::Protect) => page.trailing_zeros(),
            _ => DUAL_GRANULE_SHIFT,
        };
        let limit = max_region_bytes(granule_shift);
        for requested in [first_region, max_region] {
            if requested > limit {
                return Err(Error::TooLarge {
                    what: "a heap region",
                    requested,
                    limit,
                });
            }
        }
        let tables = match mode {
            Mode::StaticTrampolines { .. } => Some(TableCode::Image),
            Mode::Generated(CodeStrategy::Protect) if TableCode::can_seal() => {
                Some(TableCode::Sealed)
            }
            Mode::Generated(_) => None,
        };
        let config = Config {
            mode,
            strict: self.strict && span_strategy.is_some_and(CodeStrategy::dual_maps),
            granule_shift,
            first_region,
            max_region,
            max_span: limit,
            debug: self.debug.unwrap_or_else(crate::policy::debug_setting),
            branch_protection: self.branch_protection,
            tables,
            slots: match (tables, mode) {
                (Some(_), _) => ThunkSlots::Table,
                (None, Mode::Generated(code)) if code.dual_maps() => ThunkSlots::Granule,
                _ => ThunkSlots::None,
            },
        };
        if config.debug {
            crate::creation_hooks::set(crate::creation_hooks::DEBUG);
        }
        let shards = (0..shards)
            .map(|shard| Locked {
                mutex: UnsafeCell::new(Mutex::new(State::new(first_region, shard as u8))),
                registered: false,
            })
            .collect();
        Ok(Heap {
            shards,
            space: AddressSpace::new(self.max_reserved),
            config,
            caches: None,
            quarantined: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

/// The largest region (and so the largest span) for granules of
/// `1 << shift` bytes: allocations record their first granule and their
/// length as `u32`, so a region holds at most `u32::MAX` granules (about
/// 128 GiB of 32-byte granules); rounded down to whole pages.
pub(super) fn max_region_bytes(shift: u32) -> usize {
    let page = sys::page_size();
    ((u32::MAX as usize) << shift) & !(page - 1)
}
