//! [`Heap`]: many small pieces of code sharing pages, under W^X.
//!
//! # Design
//!
//! A heap is a list of **regions**, each one contiguous reservation of
//! pages (`region/`) mapped under the heap's [`CodeStrategy`]: a memfd
//! seen through a read+exec view that is never writable and a read-write
//! view to write through (dual map), or private pages flipped between
//! read-write and read+exec by `mprotect` (protect). Regions grow
//! geometrically, from [`HeapBuilder::region_size`](crate::HeapBuilder::region_size) doubling up to
//! [`HeapBuilder::max_region_size`](crate::HeapBuilder::max_region_size); an allocation larger than that gets a
//! region of its own, unmapped when it is freed. Regions are placed just
//! below this library's text (`placement.rs`) so thunks reach their entry
//! functions with a direct `jmp rel32`.
//!
//! A region is cut into **granules**: 32 bytes with dual mapping (one
//! generated thunk fits one), a page with protect (a page that may be
//! running is never made writable again, so each allocation owns whole
//! pages). Which granules are in use, and which pages hold bytes, are **bit
//! vectors kept outside the code** (`crate::bitmap`), in ordinary heap
//! memory, as asmjit's JitAllocator keeps them: nothing about the
//! allocator lives in executable memory, so code can never corrupt it and
//! it never needs a writable view of code pages to do its bookkeeping.
//!
//! Freed dual-mapped allocations of 1 to 8 granules go to a small stack per
//! **size class** (`allocator.rs`), already filled with traps, and are
//! handed out again before any bit vector is searched: the steady-state
//! create/drop pair of a thunk touches neither the bit vectors nor the
//! region list. Everything else is first-fit over the bit vectors, starting
//! at the region last used.
//!
//! Each granule of a dual-mapped region has a 16-byte **data slot** in a
//! private anonymous mapping beside the region (`region/data.rs`): a small
//! closure lives there, so making a thunk allocates nothing but its
//! granule.
//!
//! Thunks take **ready granules** (`ready.rs`): free allocations of one
//! granule (or two, for a closure of up to 32 bytes, which takes both data
//! slots) looked up once under the shard's lock (writable view, page
//! holding bytes, data slot), kept in small stacks (**magazines**, 64 deep,
//! one per length) and written later without any lookup (`fast.rs`).
//! Magazines are filled from the bit vectors a run of neighbours at a time
//! and give runs back the same way. The global heap keeps one
//! magazine per thread (**thread caches**, `thread_cache.rs`): in the
//! steady state making and dropping a thunk takes no lock and no atomic
//! read-modify-write; `compact` and `fork()` stop the caches with an
//! asymmetric fence (`membarrier(2)`). Other heaps keep one magazine per
//! shard, under its lock. Static-trampoline slots go the same way
//! (`trampoline_slot.rs`). A thunk's handle keeps only its function pointer
//! and the address of its region's lock-free side (`region/info.rs`: where
//! the views are, and the writable view and stamp under a sequence lock)
//! or its table's; the heap's address is recorded there too
//! (`crate::owner`).
//!
//! Freed code always becomes **traps** first (a stale call stops at once);
//! [`Heap::compact`] unmaps empty regions and gives the memory of free
//! pages back.
//!
//! # Lock order
//!
//! A heap's state is split into **shards** (`shard.rs`): one for a heap
//! without a lock, one per core (at most 8) for a `Sync` heap. Each thread
//! allocates from one shard, and an allocation is freed into its own, so
//! threads creating and dropping at once do not share a lock. The shards
//! share one address-space budget (an atomic counter against
//! [`HeapBuilder::max_reserved`]).
//!
//! Each shard has exactly one lock, around all of its state (regions, bit
//! vectors, size classes, trampoline tables, counters); regions have none
//! of their own. While holding it, wxthunk takes no other lock and never
//! touches another shard or heap (`stats` and `compact` visit the shards
//! one at a time). It does call user code there: the global allocator
//! (bit vectors, region records and the like are allocated under it), and
//! a signal handler may run on the thread at any point. Either may make or
//! drop a thunk on the same heap: `reentry.rs` keeps which shard locks a
//! thread holds, so such a nested creation fails with an error instead of
//! waiting for itself, and a nested drop is done when the thread leaves. The only other lock is the
//! fork registry's (`fork.rs`), always taken *before* shard locks: by the
//! prepare handler, which then takes every registered shard's lock across
//! `fork()`, and alone by a heap being built or dropped. So the one order
//! is registry, then shard (the member_thunk deadlock, heap->region on one
//! path and region->heap on another, cannot happen).
//!
//! # Fork model
//!
//! `fork.rs` holds it whole: no writable view is inherited
//! (`MADV_DONTFORK`), every write through a shared file first checks the
//! region's process stamp and moves the region to a file of its own when
//! it is shared, and locks are held across `fork()` and re-initialised in
//! the child (`locked.rs`).
//!
//! # Files
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | [`Heap`] and the methods every user calls |
//! | `builder.rs` | [`HeapBuilder`](crate::HeapBuilder), the heap's configuration and mode |
//! | `allocator.rs` | the state behind the lock: size classes, first fit, growth, freeing |
//! | `compact.rs` | [`Heap::compact`]: giving back ready granules, empty regions and free pages |
//! | `region/` | one region: its mappings, its bit vectors, writing and scrubbing (`mod.rs`), its data slots (`data.rs`), its lock-free side for thunk handles (`info.rs`), page commit and decommit (`pages.rs`), moving to a file of its own after fork (`unshare.rs`) |
//! | `fast.rs` | the fast paths of granule thunks: made from and freed into magazines |
//! | `give_back.rs` | ready granules going back from magazines to their regions, a run at a time |
//! | `ready.rs` | ready granules (looked up once, written without a lookup), magazines of them, and the handle of a thunk in one |
//! | `thread_cache.rs` | the global heap's per-thread caches of ready granules, and how `compact` and `fork()` stop them |
//! | `span.rs` | [`Span`] and [`ExecSpan`], the handles of allocations |
//! | `stats.rs` | [`HeapStats`] |
//! | `locked.rs` | a shard's lock and its fork hooks |
//! | `retire.rs` | what a heap gives up for good: stranded allocations, an ended thread's heap but its quarantined code |
//! | `reentry.rs` | a thread entering a shard it holds (an allocator or a signal handler that makes thunks): refused, or its frees deferred |
//! | `shard.rs` | which shard a thread uses; the shared address-space budget |
//! | `lock.rs` | [`DefaultLock`] and [`NoLock`] |
//! | `fork.rs` | the fork model and registry |
//! | `default.rs` | the global and per-thread heaps |
//! | `placement.rs` | where regions are mapped |
//! | `trampoline_slot.rs` | the heap's side of static trampolines (the feature is `crate::trampoline`) |
//!
//! Thunks are made *on* a heap but live in `crate::thunk`: [`Heap::thunk`],
//! [`Heap::thunk_mut`] and [`Heap::thunk_once`] are in `thunk/mod.rs`,
//! [`Heap::thunk_page`] in `thunk/page.rs`.

mod allocator;
mod builder;
mod compact;
mod default;
mod fast;
mod fork;
mod give_back;
mod lock;
mod locked;
mod placement;
mod ready;
mod reentry;
mod region;
mod retire;
mod shard;
mod span;
mod stats;
mod thread_cache;
mod trampoline_slot;

use std::fmt;

use lock_api::RawMutex;

pub(crate) use allocator::Allocation;
use builder::Config;
pub use builder::HeapBuilder;
pub(crate) use builder::ThunkSlots;
pub(crate) use fast::GranuleThunk;
pub use lock::{DefaultLock, NoLock, SendsClosure, SharedLock, SharesClosure, ThreadSafeLock};
use locked::Locked;
pub(crate) use region::RegionInfo;
use shard::AddressSpace;
pub use span::{ExecSpan, Span};
pub use stats::HeapStats;
use thread_cache::ThreadCaches;
pub(crate) use trampoline_slot::{SlotThunk, TrampolineSlot};

use crate::error::Result;
use crate::strategy::{CodeStrategy, Strategy, ThunkStrategy};
use crate::sys;

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
/// # Methods
///
/// Here: building ([`new`](Heap::new), [`builder`](Heap::builder),
/// [`unlocked`](Heap::unlocked)), allocating code
/// ([`alloc`](Heap::alloc), [`allocate_page`](Heap::allocate_page)),
/// [`compact`](Heap::compact), [`stats`](Heap::stats) and the strategy
/// accessors. Thunks: [`thunk`](Heap::thunk),
/// [`thunk_mut`](Heap::thunk_mut), [`thunk_once`](Heap::thunk_once) and
/// [`thunk_page`](Heap::thunk_page) (defined with [`Thunk`](crate::Thunk)).
/// The default heaps: [`global`](Heap::global) and
/// [`thread_local`](Heap::thread_local).
///
/// # Strategies
///
/// - [`Strategy::DualMap`] (preferred): each region is a memfd mapped
///   read+exec and read-write at once. Allocation, writing and freeing make
///   no system call in the steady state; freed bytes become traps and are
///   reused at once. [`HeapBuilder::strict`](crate::HeapBuilder::strict) drops the read-write view:
///   bytes then reach the file by `pwrite`, and no writable mapping of code
///   exists at any time. After `fork()` each process moves a region to a file
///   of its own before writing to it, so neither can change the other's code
///   (the crate docs' "Fork" section says what a child may do).
/// - [`Strategy::DualMapFile`]: the same, with each region a file without a
///   name in the directory the probe found (where memfds are refused).
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
///   ones fill and kept when they empty, as regions are, so that a burst
///   made and dropped again maps nothing the next time;
///   [`compact`](Heap::compact) unmaps the empty ones. Spans and pages of such
///   a heap use the best strategy for written code that works here
///   ([`span_strategy`](Heap::span_strategy)). Chosen automatically for
///   thunks where dual mapping does not work (a generated thunk is cheaper
///   to call: one direct jump instead of an indirect one), or forced with
///   [`HeapBuilder::strategy`](crate::HeapBuilder::strategy).
pub struct Heap<L: RawMutex = DefaultLock> {
    /// The heap's state, in one shard per thread group (`shard.rs`): one
    /// for a single-threaded heap, a few for a `Sync` one, so that threads
    /// creating and dropping at once do not share one lock.
    shards: Box<[Locked<L>]>,
    /// The address space all shards reserve together, against the limit.
    space: AddressSpace,
    config: Config,
    /// Per-thread caches of ready thunk granules (`thread_cache.rs`): the
    /// global heap's, where the process-wide barrier works.
    caches: Option<&'static ThreadCaches>,
    /// Allocations debug mode kept in quarantine: live, and never freed.
    quarantined: std::sync::atomic::AtomicUsize,
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
    /// [`Error::NoExecutableMemory`](crate::Error::NoExecutableMemory) if no strategy works in this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(1)?;
    /// span.write_all(&[0xc3])?;
    /// let code = span.exec()?;
    /// assert_eq!(code.as_slice(), &[0xc3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Result<Heap> {
        HeapBuilder::default().build()
    }

    /// A single-threaded heap without a lock.
    ///
    /// # Errors
    ///
    /// As [`new`](Heap::new).
    ///
    /// # Examples
    ///
    /// ```
    /// // A heap for one thread: no lock taken. (`Heap<NoLock>` is not `Sync`.)
    /// let heap = wxthunk::Heap::unlocked()?;
    /// let k = std::hint::black_box(3);
    /// let triple = heap.thunk::<unsafe extern "C" fn(u32) -> u32, _>(move |x| x * k)?;
    /// // SAFETY: the thunk is alive.
    /// assert_eq!(unsafe { (triple.as_fn())(5) }, 15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlocked() -> Result<Heap<NoLock>> {
        HeapBuilder::default().build_unlocked()
    }

    /// A builder for a heap with a chosen strategy, lock and region sizes.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::builder().region_size(1 << 20).build()?;
    /// assert!(heap.stats().live_allocations == 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> HeapBuilder {
        HeapBuilder::default()
    }
}

impl<L: RawMutex> Heap<L> {
    /// The strategy of this heap's thunks. For [`Strategy::Protect`] and
    /// [`Strategy::DualMap`] it is also the strategy of its spans and pages;
    /// for [`Strategy::StaticTrampolines`] see
    /// [`span_strategy`](Heap::span_strategy).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// println!("thunks and spans use {}", heap.strategy());
    /// assert!(wxthunk::probe().allows(heap.strategy()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strategy(&self) -> Strategy {
        self.config.mode.thunks().strategy()
    }

    /// Whether this heap asks for guarded code pages
    /// ([`HeapBuilder::branch_protection`]; on by default). They are
    /// guarded where the kernel offers it
    /// ([`Policy::branch_protection`](crate::Policy::branch_protection)).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// assert!(heap.branch_protection());
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn branch_protection(&self) -> bool {
        self.config.branch_protection
    }

    /// Whether this heap is in debug mode ([`HeapBuilder::debug`]): calls
    /// through its dropped thunks are reported, and their memory is
    /// quarantined.
    #[inline(always)]
    pub fn is_debug(&self) -> bool {
        self.config.debug
    }

    /// How this heap makes thunks: generated code under its
    /// [`code_strategy`](Heap::code_strategy), or static trampolines.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{Heap, Strategy, ThunkStrategy};
    /// if wxthunk::probe().allows(Strategy::StaticTrampolines) {
    ///     let heap = Heap::builder().strategy(Strategy::StaticTrampolines).build()?;
    ///     assert_eq!(heap.thunk_strategy(), ThunkStrategy::StaticTrampolines);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn thunk_strategy(&self) -> ThunkStrategy {
        self.config.mode.thunks()
    }

    /// Where the code of this heap's trampoline tables comes from, if its
    /// thunks are entries of tables (static trampolines, and a protect
    /// heap's sealed tables) rather than generated code.
    #[inline(always)]
    pub(crate) fn table_code(&self) -> Option<crate::trampoline::TableCode> {
        self.config.tables
    }

    /// Where this heap's thunks of small closures get their code and data
    /// slots.
    #[inline(always)]
    pub(crate) fn thunk_slots(&self) -> ThunkSlots {
        self.config.slots
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
    /// [`alloc`](Heap::alloc) returns [`Error::NoExecutableMemory`](crate::Error::NoExecutableMemory).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// if let Some(strategy) = heap.span_strategy() {
    ///     assert!(strategy.writes_code());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// [`Error::ZeroSize`](crate::Error::ZeroSize) for `len == 0`; [`Error::TooLarge`](crate::Error::TooLarge) past the
    /// largest span, which is the largest region (`u32::MAX` allocation
    /// units, rounded down to pages); [`Error::HeapExhausted`](crate::Error::HeapExhausted) past the
    /// builder's [`max_reserved`](HeapBuilder::max_reserved); [`Error::Os`](crate::Error::Os)
    /// if a new region cannot be mapped. The heap is unchanged by a failed
    /// allocation.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(6)?;
    /// span.write_all(&[0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3])?; // mov eax, 42; ret
    /// let code = span.exec()?;
    /// if cfg!(all(target_arch = "x86_64", not(windows))) {
    ///     // SAFETY: the span holds a C function taking nothing, returning an i32.
    ///     let answer: extern "C" fn() -> i32 = unsafe { code.func(0)? };
    ///     assert_eq!(answer(), 42);
    /// }
    /// drop(code); // back to the heap
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.allocate_page()?;
    /// assert_eq!(page.capacity(), wxthunk::page_size());
    /// // Many small functions, one seal.
    /// for value in 0u8..4 {
    ///     page.write_all(&[0xb8, value, 0x00, 0x00, 0x00, 0xc3])?; // mov eax, value; ret
    /// }
    /// let code = page.exec()?;
    /// assert_eq!(code.len(), 24);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allocate_page(&self) -> Result<Span<'_, L>> {
        let page = sys::page_size();
        let alloc = self.allocate(page, page >> self.config.granule_shift)?;
        Ok(Span::new(self, alloc))
    }
}

impl<L: RawMutex> fmt::Debug for Heap<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
