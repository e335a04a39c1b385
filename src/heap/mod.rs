//! [`Heap`]: many small pieces of code sharing pages, under W^X.
//!
//! # Lock order
//!
//! A heap has exactly one lock, around all of its state (regions, bit
//! vectors, counters); regions have none of their own. While holding it,
//! wxthunk takes no other lock, calls no user code and never touches another
//! heap. The only other lock is the fork registry's (`fork.rs`), always
//! taken *before* heap locks: by the prepare handler, which then takes every
//! registered heap's lock across `fork()`, and alone by a heap being built
//! or dropped. So the one order is registry, then heap (the member_thunk
//! deadlock, heap->region on one path and region->heap on another, cannot
//! happen).

mod default;
mod fork;
mod lock;
mod placement;
mod region;
mod span;
mod trampoline_slot;

use std::cell::UnsafeCell;
use std::fmt;

use lock_api::{Mutex, RawMutex};

use fork::Stamp;
pub use lock::{DefaultLock, NoLock};
use region::Region;
pub use span::{ExecSpan, Span};
pub(crate) use trampoline_slot::TrampolineSlot;

use crate::error::{Error, Result};
use crate::policy::{HEAP_PREFERENCE, THUNK_PREFERENCE, capabilities};
use crate::strategy::{CodeStrategy, Strategy, ThunkStrategy};
use crate::sys;
use crate::trampoline::{self, TablePool};

/// The allocation unit of dual-mapped regions: 32 bytes (a thunk fits one).
const DUAL_GRANULE_SHIFT: u32 = 5;

/// Freed dual-mapped allocations of 1 to `CACHE_CLASSES` granules are kept
/// (already filled with traps, still marked in use in their region) in a
/// small stack per size, up to `CACHE_DEPTH` each, and handed out again
/// before any bit vector is searched: the steady-state alloc/free pair
/// touches neither the bit vectors nor the region list.
const CACHE_CLASSES: usize = 8;
const CACHE_DEPTH: usize = 64;

/// A code heap: regions of pages from which small pieces of machine code
/// ([`Span`]s) are allocated, written, made executable and freed
/// individually, or a whole page at a time
/// ([`allocate_page`](Heap::allocate_page)).
///
/// `L` is the lock: any [`lock_api::RawMutex`] ([`DefaultLock`] by default),
/// or [`NoLock`] for a heap that stays on one thread (`Heap<NoLock>` is not
/// `Sync`, so the compiler enforces that).
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// let heap = wxthunk::Heap::new()?;
/// let mut span = heap.alloc(6)?;
/// span.write_all(&[0xb8, 42, 0, 0, 0, 0xc3])?; // x86_64: mov eax, 42; ret
/// let code = span.exec()?;
/// if cfg!(target_arch = "x86_64") {
///     // SAFETY: the span holds a C function returning u32.
///     let f: extern "C" fn() -> u32 = unsafe { code.func(0)? };
///     assert_eq!(f(), 42);
/// }
/// assert_eq!(heap.stats().live_allocations, 1);
/// drop(code);
/// assert_eq!(heap.stats().live_allocations, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Allocations borrow the heap, so they cannot outlive it:
///
/// ```compile_fail
/// let span = {
///     let heap = wxthunk::Heap::new().unwrap();
///     heap.alloc(16).unwrap() // error: `heap` does not live long enough
/// };
/// ```
///
/// # Strategies
///
/// - [`Strategy::DualMap`] (preferred): each region is a memfd mapped
///   read+exec and read-write at once. Allocation, writing and freeing make
///   no system call in the steady state; freed bytes become traps and are
///   reused at once. [`HeapBuilder::strict`] drops the read-write view:
///   bytes then reach the file by `pwrite`, and no writable mapping of code
///   exists at any time. After `fork()` each process moves a region to a file
///   of its own before writing to it, so neither can change the other's code
///   (the crate docs' "Fork" section says what a child may do).
/// - [`Strategy::Protect`]: the allocation unit is a page. Writing a span
///   makes its pages read-write, copies, and makes them read+exec; a page is
///   never made writable again while anything on it is live, because another
///   thread may be running it. A freed page gets traps and is read+exec
///   again, so the kernel merges it back into its neighbours' mapping (the
///   mapping count stays bounded); [`compact`](Heap::compact) gives its
///   memory back. Pages never written stay `PROT_NONE`.
/// - [`Strategy::StaticTrampolines`] (thunks only): a thunk takes a slot in
///   a trampoline table mapped from the binary's own file, and creating it
///   writes a four-word record, never code. Tables are mapped as earlier
///   ones fill and unmapped as they empty (one empty table is kept against
///   churn; [`compact`](Heap::compact) releases it). Spans and pages of such
///   a heap use the best strategy for written code that works here
///   ([`span_strategy`](Heap::span_strategy)). Chosen automatically for
///   thunks where dual mapping does not work (a generated thunk is cheaper
///   to call: one direct jump instead of two indirect ones), or forced with
///   [`HeapBuilder::strategy`].
pub struct Heap<L: RawMutex = DefaultLock> {
    state: Box<Locked<L>>,
    config: Config,
}

/// A heap's state behind its lock, boxed so that its address stays put for
/// the fork registry (see `fork.rs`) however the `Heap` moves.
struct Locked<L: RawMutex> {
    /// Replaced (re-initialised) only by the fork child handler, when the
    /// child has one thread and no reference to it is in use.
    mutex: UnsafeCell<Mutex<L, State>>,
    /// In the fork registry (the lock is `Sync`).
    registered: bool,
}

// SAFETY: `Locked` is the mutex plus a flag; the cell is written only by the
// fork child handler (see the field), so the mutex's own auto traits hold.
unsafe impl<L: RawMutex> Sync for Locked<L> where Mutex<L, State>: Sync {}
// SAFETY: as above.
unsafe impl<L: RawMutex> Send for Locked<L> where Mutex<L, State>: Send {}

impl<L: RawMutex> Locked<L> {
    #[inline]
    fn mutex(&self) -> &Mutex<L, State> {
        // SAFETY: only the fork child handler writes the cell, when no
        // reference to it is in use (see the field).
        unsafe { &*self.mutex.get() }
    }

    #[inline]
    fn lock(&self) -> lock_api::MutexGuard<'_, L, State> {
        self.mutex().lock()
    }

    /// Before `fork()`: takes the lock, so no operation is half done in the
    /// copy; the parent or child handler ends it.
    unsafe fn fork_prepare(this: *const ()) {
        // SAFETY: registered heaps are alive until they unregister, which
        // waits for the fork handlers (the registry's lock).
        let this = unsafe { &*this.cast::<Self>() };
        std::mem::forget(this.lock());
    }

    /// In the parent after `fork()`: releases what `fork_prepare` took.
    unsafe fn fork_parent(this: *const ()) {
        // SAFETY: as in `fork_prepare`.
        let this = unsafe { &*this.cast::<Self>() };
        // SAFETY: `fork_prepare` took the lock on this thread and forgot
        // the guard.
        unsafe { this.mutex().force_unlock() };
    }

    /// In the child after `fork()`: a fresh lock around the same state
    /// (consistent: `fork_prepare` held the lock across the copy).
    unsafe fn fork_child(this: *const ()) {
        // SAFETY: as in `fork_prepare`; the child has one thread, this one,
        // and no reference to the mutex is in use, so replacing it in the
        // cell is exclusive. `into_inner` takes the state without locking.
        unsafe {
            let cell = (*this.cast::<Self>()).mutex.get();
            let state = std::ptr::read(cell).into_inner();
            std::ptr::write(cell, Mutex::new(state));
        }
    }
}

impl<L: RawMutex> Drop for Locked<L> {
    fn drop(&mut self) {
        if self.registered {
            fork::unregister(std::ptr::from_ref(self).cast());
        }
    }
}

/// What a heap does with its thunks and with the code written into it: the
/// only two combinations there are (generated thunks are spans, so they
/// share the spans' strategy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Thunks are generated code, in spans under this strategy.
    Generated(CodeStrategy),
    /// Thunks are static trampolines; spans and pages use `spans`, or
    /// cannot be allocated when no strategy for written code works here.
    StaticTrampolines { spans: Option<CodeStrategy> },
}

impl Mode {
    fn thunks(self) -> ThunkStrategy {
        match self {
            Mode::Generated(code) => ThunkStrategy::Generated(code),
            Mode::StaticTrampolines { .. } => ThunkStrategy::StaticTrampolines,
        }
    }

    fn spans(self) -> Option<CodeStrategy> {
        match self {
            Mode::Generated(code) => Some(code),
            Mode::StaticTrampolines { spans } => spans,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    mode: Mode,
    strict: bool,
    granule_shift: u32,
    first_region: usize,
    max_region: usize,
    max_reserved: usize,
    /// The largest span ([`max_region_bytes`] of the granule).
    max_span: usize,
}

struct State {
    regions: Vec<Option<Region>>,
    /// Freed allocations ready for reuse, by size in granules (see
    /// `CACHE_CLASSES`).
    cache: [Vec<Allocation>; CACHE_CLASSES],
    /// The region to try first (where something was last freed or found).
    hint: usize,
    next_region_size: usize,
    reserved: usize,
    live: usize,
    bytes_in_use: usize,
    /// Static trampoline tables (thunks of a static-trampoline heap).
    tables: TablePool,
}

/// Where an allocation is: its region, its first granule and its size in
/// granules, and the address it runs at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allocation {
    region: u32,
    start: u32,
    /// Length in granules of the region's size (`1 << shift` bytes).
    granules: u32,
    /// The region's granule shift: the heap's, or the page size's for a
    /// region of its own (an allocation larger than the largest region).
    shift: u8,
    /// The executable address (kept as an integer so that allocations take
    /// their auto traits from the heap they borrow).
    addr: usize,
}

impl Allocation {
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// Bytes the allocation spans.
    fn bytes(&self) -> usize {
        (self.granules as usize) << self.shift
    }
}

/// Counters describing a heap, from [`Heap::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapStats {
    /// The heap's strategy.
    pub strategy: Strategy,
    /// Regions currently reserved.
    pub regions: usize,
    /// Address space reserved by those regions, in bytes.
    pub bytes_reserved: usize,
    /// Pages holding bytes (code or traps), i.e. using memory.
    pub pages_committed: usize,
    /// `pages_committed` in bytes.
    pub bytes_committed: usize,
    /// Live allocations (unsealed spans, sealed spans, pages).
    pub live_allocations: usize,
    /// Bytes of the live allocations, rounded up to the allocation unit.
    pub bytes_in_use: usize,
    /// Bytes of bookkeeping kept outside the code (region records and bit
    /// vectors).
    pub metadata_bytes: usize,
    /// Static trampoline tables mapped (each a page of code mapped from the
    /// binary's file and a page of records).
    pub trampoline_tables: usize,
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
}

impl Default for HeapBuilder {
    fn default() -> Self {
        HeapBuilder {
            thunks: None,
            strict: false,
            region_size: 64 * 1024,
            max_region_size: 4 * 1024 * 1024,
            max_reserved: DEFAULT_MAX_RESERVED,
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
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The size of the first region (rounded up to whole pages; default
    /// 64 KiB). Each new region doubles the last, up to
    /// [`max_region_size`](Self::max_region_size).
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
    /// Allocations beyond it fail with [`Error::HeapExhausted`].
    ///
    /// Reserved is not resident: a page of a region uses memory only once
    /// code is written on it, so a 1 GiB span holding 6 bytes of code uses
    /// one page. The limit bounds the address space and the bookkeeping (a
    /// bit per 32-byte granule of ordinary regions, a bit per page for a
    /// span larger than [`max_region_size`](Self::max_region_size), which
    /// gets a region of its own, unmapped when it is freed).
    pub fn max_reserved(mut self, bytes: usize) -> Self {
        self.max_reserved = bytes;
        self
    }

    /// Builds a heap with the [`DefaultLock`].
    ///
    /// # Errors
    ///
    /// [`Error::StrategyUnavailable`] if the forced strategy does not work
    /// here, [`Error::NoExecutableMemory`] if none does,
    /// [`Error::SizeOverflow`] for region sizes that cannot be rounded to
    /// pages, [`Error::TooLarge`] for a region size past the largest region
    /// (`u32::MAX` allocation units: about 128 GiB with 32-byte granules).
    pub fn build(self) -> Result<Heap> {
        self.build_with_lock()
    }

    /// Builds a heap with the lock `L`, any `Sync` [`lock_api::RawMutex`].
    /// The heap is safe to use in a child of `fork()` (the crate docs'
    /// "Fork" section): its lock is held across `fork()` and re-initialised
    /// in the child. A `!Sync` lock cannot take part in that; use
    /// [`build_unlocked`](Self::build_unlocked) for a single-threaded heap.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_lock<L: RawMutex + Sync>(self) -> Result<Heap<L>> {
        let heap = self.build_any::<L>()?;
        let target: *const () = std::ptr::from_ref::<Locked<L>>(&heap.state).cast();
        let hooks = fork::Hooks {
            prepare: Locked::<L>::fork_prepare,
            parent: Locked::<L>::fork_parent,
            child: Locked::<L>::fork_child,
        };
        // SAFETY: the boxed state does not move and unregisters in its
        // `Drop` (`registered` is set just below, before anything can fork
        // with it registered and unflagged: the flag only matters at drop).
        unsafe { fork::register(target, hooks) };
        let mut heap = heap;
        heap.state.registered = true;
        Ok(heap)
    }

    /// Builds a single-threaded heap without a lock ([`NoLock`]).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_unlocked(self) -> Result<Heap<NoLock>> {
        self.build_any()
    }

    fn build_any<L: RawMutex>(self) -> Result<Heap<L>> {
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
        let config = Config {
            mode,
            strict: self.strict && span_strategy == Some(CodeStrategy::DualMap),
            granule_shift,
            first_region,
            max_region,
            max_reserved: self.max_reserved,
            max_span: limit,
        };
        let state = State {
            regions: Vec::new(),
            cache: std::array::from_fn(|_| Vec::with_capacity(CACHE_DEPTH)),
            hint: 0,
            next_region_size: first_region,
            reserved: 0,
            live: 0,
            bytes_in_use: 0,
            tables: TablePool::default(),
        };
        Ok(Heap {
            state: Box::new(Locked {
                mutex: UnsafeCell::new(Mutex::new(state)),
                registered: false,
            }),
            config,
        })
    }
}

impl Heap {
    /// A heap with the [`DefaultLock`] and the strategies
    /// [`probe`](crate::probe) picked: [`Policy::thunk_strategy`] for its
    /// thunks ([`strategy`](Heap::strategy)), [`Policy::heap_strategy`] for
    /// the code written into it ([`span_strategy`](Heap::span_strategy)).
    /// (Only the default heaps obey `WXTHUNK_STRATEGY`.)
    ///
    /// [`Policy::thunk_strategy`]: crate::Policy::thunk_strategy
    /// [`Policy::heap_strategy`]: crate::Policy::heap_strategy
    ///
    /// # Errors
    ///
    /// [`Error::NoExecutableMemory`] if no strategy works in this process.
    pub fn new() -> Result<Heap> {
        HeapBuilder::default().build()
    }

    /// A single-threaded heap without a lock.
    ///
    /// # Errors
    ///
    /// As [`new`](Heap::new).
    pub fn unlocked() -> Result<Heap<NoLock>> {
        HeapBuilder::default().build_unlocked()
    }

    /// A builder for a heap with a chosen strategy, lock and region sizes.
    pub fn builder() -> HeapBuilder {
        HeapBuilder::default()
    }
}

impl<L: RawMutex> Heap<L> {
    /// The strategy of this heap's thunks. For [`Strategy::Protect`] and
    /// [`Strategy::DualMap`] it is also the strategy of its spans and pages;
    /// for [`Strategy::StaticTrampolines`] see
    /// [`span_strategy`](Heap::span_strategy).
    pub fn strategy(&self) -> Strategy {
        self.config.mode.thunks().strategy()
    }

    /// How this heap makes thunks: generated code under its
    /// [`code_strategy`](Heap::code_strategy), or static trampolines.
    pub fn thunk_strategy(&self) -> ThunkStrategy {
        self.config.mode.thunks()
    }

    /// The strategy of this heap's spans and pages (and generated thunks),
    /// `None` when no strategy for written code works in this process
    /// (then the heap holds static-trampoline thunks only).
    pub fn code_strategy(&self) -> Option<CodeStrategy> {
        self.config.mode.spans()
    }

    /// The strategy of this heap's spans and pages (code written into it),
    /// `None` when no strategy for written code works in this process: then
    /// the heap holds thunks only (as static trampolines) and
    /// [`alloc`](Heap::alloc) returns [`Error::NoExecutableMemory`].
    pub fn span_strategy(&self) -> Option<Strategy> {
        self.config.mode.spans().map(Strategy::from)
    }

    /// Whether this heap is strict (no writable mapping of code, ever).
    pub fn is_strict(&self) -> bool {
        self.config.strict
    }

    /// The allocation unit in bytes: 32 with dual mapping, a page with
    /// [`Strategy::Protect`].
    pub fn granule(&self) -> usize {
        1 << self.config.granule_shift
    }

    /// A writable span of at least `len` bytes (rounded up to the
    /// allocation unit), at an address fixed now
    /// ([`Span::exec_ptr`]). Write the code, then [`Span::exec`].
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] for `len == 0`; [`Error::TooLarge`] past the
    /// largest span, which is the largest region (`u32::MAX` allocation
    /// units, rounded down to pages); [`Error::HeapExhausted`] past the
    /// builder's [`max_reserved`](HeapBuilder::max_reserved); [`Error::Os`]
    /// if a new region cannot be mapped. The heap is unchanged by a failed
    /// allocation.
    pub fn alloc(&self, len: usize) -> Result<Span<'_, L>> {
        let alloc = self.allocate(len, 1)?;
        Ok(Span::new(self, alloc))
    }

    /// A whole page, page-aligned, for member_thunk's workflow: write
    /// several entries into it (a full page fails the write with
    /// `WriteZero`), make it executable once with [`Span::exec`], and free
    /// it as a unit when the [`ExecSpan`] is dropped.
    ///
    /// # Errors
    ///
    /// As [`alloc`](Heap::alloc).
    pub fn allocate_page(&self) -> Result<Span<'_, L>> {
        let page = sys::page_size();
        let alloc = self.allocate(page, page >> self.config.granule_shift)?;
        Ok(Span::new(self, alloc))
    }

    /// Releases every empty region back to the system, and the memory of
    /// free pages in the others. Returns the bytes released (address space
    /// unmapped plus memory decommitted).
    pub fn compact(&self) -> usize {
        let mut state = self.state.lock();
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let state = &mut *state;
        for class in &mut state.cache {
            for alloc in class.drain(..) {
                let region = state.regions[alloc.region as usize]
                    .as_mut()
                    .expect("cached in a live region");
                region.release_bits(alloc.start as usize, alloc.granules as usize);
            }
        }
        let mut released = 0;
        let mut reserved = state.reserved;
        for slot in &mut state.regions {
            let Some(region) = slot else { continue };
            if region.live() == 0 {
                released += region.size();
                reserved -= region.size();
                *slot = None;
            } else if region.size() <= self.config.max_region
                && region.unshare_after_fork(stamp).is_ok()
            {
                // (A region of its own holds one live allocation and no
                // free page; it is given back when that is freed.)
                released += region.decommit_free_pages();
            }
        }
        state.reserved = reserved;
        while matches!(state.regions.last(), Some(None)) {
            state.regions.pop();
        }
        state.hint = 0;
        let tables = state.tables.release_empty();
        released += tables;
        state.reserved -= tables;
        if state.regions.is_empty() {
            // Start growing from the first size again.
            state.next_region_size = self.config.first_region;
        }
        released
    }

    /// Counters describing the heap now.
    pub fn stats(&self) -> HeapStats {
        let state = self.state.lock();
        let page = sys::page_size();
        let regions = state.regions.iter().flatten();
        let tables = state.tables.tables();
        // A table's code page is the binary's own (page cache, shared); its
        // record pages use memory.
        let pages_committed = regions.clone().map(Region::committed_pages).sum::<usize>()
            + tables * trampoline::TABLE_SIZE / page;
        HeapStats {
            strategy: self.strategy(),
            regions: regions.clone().count(),
            bytes_reserved: state.reserved,
            pages_committed,
            bytes_committed: pages_committed * page,
            live_allocations: state.live,
            bytes_in_use: state.bytes_in_use,
            metadata_bytes: regions.map(Region::metadata_bytes).sum::<usize>()
                + state.regions.capacity() * std::mem::size_of::<Option<Region>>()
                + state.tables.metadata_bytes(),
            trampoline_tables: tables,
        }
    }

    /// Allocates `len` bytes aligned to `align` granules.
    pub(crate) fn allocate(&self, len: usize, align: usize) -> Result<Allocation> {
        self.allocate_with(len, align, |_| None::<&[u8]>)
    }

    /// Allocates, and if `code` is given writes it and makes it executable,
    /// all under one lock.
    #[inline]
    pub(crate) fn allocate_with<C: AsRef<[u8]>>(
        &self,
        len: usize,
        align: usize,
        code: impl FnOnce(usize) -> Option<C>,
    ) -> Result<Allocation> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        if self.config.mode.spans().is_none() {
            return Err(no_span_strategy());
        }
        let shift = self.config.granule_shift;
        let limit = self.config.max_span;
        if len > limit {
            return Err(Error::TooLarge {
                what: "a code span",
                requested: len,
                limit,
            });
        }
        // Cannot overflow, nor exceed `u32::MAX` granules: `len <= limit`.
        let granules = len.next_multiple_of(1 << shift) >> shift;
        let granules32 = granules as u32;
        let mut state = self.state.lock();
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let alloc = self.take_locked(&mut state, granules, granules32, align, stamp)?;
        if let Some(code) = code(alloc.addr) {
            let code = code.as_ref();
            let region = state.regions[alloc.region as usize]
                .as_mut()
                .expect("allocation's region is live");
            if let Err(e) = region.write(alloc.start as usize, alloc.granules as usize, code) {
                self.free_locked(&mut state, &alloc, stamp);
                return Err(e);
            }
        }
        Ok(alloc)
    }

    #[inline]
    fn take_locked(
        &self,
        state: &mut State,
        granules: usize,
        granules32: u32,
        align: usize,
        stamp: Stamp,
    ) -> Result<Allocation> {
        if align == 1 && granules <= CACHE_CLASSES {
            if let Some(alloc) = state.cache[granules - 1].pop() {
                let region = state.regions[alloc.region as usize]
                    .as_mut()
                    .expect("cached in a live region");
                if let Err(e) = region.unshare_after_fork(stamp) {
                    state.cache[granules - 1].push(alloc);
                    return Err(e);
                }
                state.live += 1;
                state.bytes_in_use += alloc.bytes();
                return Ok(alloc);
            }
        }
        self.allocate_slow(state, granules, granules32, align, stamp)
    }

    #[cold]
    fn allocate_slow(
        &self,
        state: &mut State,
        granules: usize,
        granules32: u32,
        align: usize,
        stamp: Stamp,
    ) -> Result<Allocation> {
        let shift = self.config.granule_shift;
        let (index, start, shift, granules) = match self.find(state, granules, align) {
            Some((index, start)) => (index, start, shift, granules32),
            None => self.grow(state, granules)?,
        };
        let region = state.regions[index]
            .as_mut()
            .expect("found in a live region");
        region.unshare_after_fork(stamp)?;
        if self.is_own_region(region) {
            region.take_whole();
        } else {
            region.take(start, granules as usize);
        }
        let alloc = Allocation {
            region: index as u32,
            start: start as u32,
            granules,
            shift: shift as u8,
            addr: region.exec_base().as_ptr() as usize + (start << shift),
        };
        state.hint = index;
        state.live += 1;
        state.bytes_in_use += alloc.bytes();
        Ok(alloc)
    }

    /// Whether `region` holds one allocation larger than the largest
    /// region, in page-sized granules, and is released with it.
    fn is_own_region(&self, region: &Region) -> bool {
        region.size() > self.config.max_region
    }

    fn find(&self, state: &State, granules: usize, align: usize) -> Option<(usize, usize)> {
        let try_region = |i: usize| {
            let region = state.regions.get(i)?.as_ref()?;
            if self.is_own_region(region) {
                return None;
            }
            region.find(granules, align).map(|start| (i, start))
        };
        try_region(state.hint).or_else(|| {
            (0..state.regions.len())
                .filter(|&i| i != state.hint)
                .filter(|&i| {
                    state.regions[i]
                        .as_ref()
                        .is_some_and(|r| r.free_granules() >= granules)
                })
                .find_map(try_region)
        })
    }

    /// Maps a new region for `granules` (in the heap's granules) and returns
    /// where the allocation goes: the region's index, the first granule, the
    /// region's granule shift and the allocation's length in its granules.
    ///
    /// An allocation larger than the largest region gets a region of its
    /// own with page-sized granules, so that its bookkeeping is a bit per
    /// page, not per 32 bytes; it is unmapped when the allocation is freed.
    #[cold]
    fn grow(&self, state: &mut State, granules: usize) -> Result<(usize, usize, u32, u32)> {
        let mut shift = self.config.granule_shift;
        let needed = crate::block::round_to_pages(granules << shift)?;
        let own = needed > self.config.max_region;
        let mut granules = granules;
        if own {
            shift = sys::page_size().trailing_zeros();
            granules = needed >> shift;
        }
        let size = if own {
            needed
        } else {
            state.next_region_size.max(needed)
        };
        if state
            .reserved
            .checked_add(size)
            .is_none_or(|total| total > self.config.max_reserved)
        {
            return Err(Error::HeapExhausted {
                requested: needed,
                reserved: state.reserved,
                limit: self.config.max_reserved,
            });
        }
        let region = Region::new(
            size,
            self.config.mode.spans().expect("checked by allocate_with"),
            self.config.strict,
            shift,
            Stamp::now(),
        )?;
        let start = region
            .find(granules, 1)
            .expect("a new region fits the allocation");
        let index = match state.regions.iter().position(Option::is_none) {
            Some(i) => {
                state.regions[i] = Some(region);
                i
            }
            None => {
                state.regions.push(Some(region));
                state.regions.len() - 1
            }
        };
        state.reserved += size;
        if !own {
            state.next_region_size = (state.next_region_size * 2).min(self.config.max_region);
        }
        // At most `max_region_bytes` granules, checked by `allocate_with`.
        Ok((index, start, shift, granules as u32))
    }

    /// Writes `code` into an allocation and makes it executable.
    pub(crate) fn commit(&self, alloc: &Allocation, code: &[u8]) -> Result<()> {
        let mut state = self.state.lock();
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        region.unshare_after_fork(Stamp::now())?;
        region.write(alloc.start as usize, alloc.granules as usize, code)
    }

    /// Frees an allocation.
    pub(crate) fn free(&self, alloc: &Allocation) {
        let mut state = self.state.lock();
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        self.free_locked(&mut state, alloc, stamp);
    }

    #[inline]
    fn free_locked(&self, state: &mut State, alloc: &Allocation, stamp: Stamp) {
        let granules = alloc.granules as usize;
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        if region.unshare_after_fork(stamp).is_err() {
            // The region is still shared with a forked process and could not
            // be moved to a file of its own: keep the bytes as they are (the
            // other process may run them) and leak the granules.
            state.live -= 1;
            return;
        }
        if self.is_own_region(region) {
            // Its only allocation: give the whole region back now.
            state.reserved -= region.size();
            state.regions[alloc.region as usize] = None;
            state.live -= 1;
            state.bytes_in_use -= alloc.bytes();
            return;
        }
        let cache = (self.config.mode.spans() == Some(CodeStrategy::DualMap)
            && granules <= CACHE_CLASSES)
            .then(|| &mut state.cache[granules - 1])
            .filter(|c| c.len() < CACHE_DEPTH);
        match cache {
            Some(cache) => {
                region.scrub(alloc.start as usize, granules);
                cache.push(*alloc);
            }
            None => region.release(alloc.start as usize, granules),
        }
        state.live -= 1;
        state.bytes_in_use -= alloc.bytes();
        state.hint = alloc.region as usize;
    }

    /// Allocates `len` bytes, writes the code `make` returns for the
    /// address it will run at (at most `len` bytes) and makes it executable,
    /// in one step under one lock.
    pub(crate) fn exec_code_at<C: AsRef<[u8]>>(
        &self,
        len: usize,
        make: impl FnOnce(usize) -> C,
    ) -> Result<ExecSpan<'_, L>> {
        let mut written = 0;
        let alloc = self.allocate_with(len, 1, |addr| {
            let code = make(addr);
            written = code.as_ref().len();
            debug_assert!(written <= len);
            Some(code)
        })?;
        Ok(ExecSpan::from_parts(self, alloc, written))
    }

    /// Bytes a read of `alloc` may cover.
    pub(crate) fn capacity_of(&self, alloc: &Allocation) -> usize {
        alloc.bytes()
    }
}

/// The largest region (and so the largest span) for granules of
/// `1 << shift` bytes: allocations record their first granule and their
/// length as `u32`, so a region holds at most `u32::MAX` granules (about
/// 128 GiB of 32-byte granules); rounded down to whole pages.
fn max_region_bytes(shift: u32) -> usize {
    let page = sys::page_size();
    ((u32::MAX as usize) << shift) & !(page - 1)
}

/// The error of a span allocated from a heap that holds thunks only.
#[cold]
fn no_span_strategy() -> Error {
    let reason = match capabilities().choose(HEAP_PREFERENCE) {
        Err(Error::NoExecutableMemory { reason }) => reason,
        _ => String::new(),
    };
    Error::NoExecutableMemory {
        reason: format!(
            "this heap holds thunks as static trampolines only; no strategy for written code \
             works here ({reason})"
        ),
    }
}

impl<L: RawMutex> fmt::Debug for Heap<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lock_refuses_a_second_lock() {
        let lock = <NoLock as RawMutex>::INIT;
        lock.lock();
        assert!(!lock.try_lock());
        // SAFETY: locked just above on this thread.
        unsafe { lock.unlock() };
        assert!(lock.try_lock());
    }
}
