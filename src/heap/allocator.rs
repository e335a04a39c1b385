//! The state behind a heap's lock and the allocator that works on it:
//! size classes of freed thunk-sized allocations, first fit over the
//! regions' bit vectors, growth, freeing and compaction.

use lock_api::RawMutex;

use super::Heap;
use super::fork::Stamp;
use super::ready::{Magazines, Ready};
use super::reentry;
use super::region::{DUAL_GRANULE_SHIFT, GranuleAt, Region};
use super::span::ExecSpan;
use crate::error::{Error, Result};
use crate::policy::{HEAP_PREFERENCE, capabilities};
use crate::strategy::CodeStrategy;
use crate::sys;
use crate::trampoline::TablePool;

/// Freed dual-mapped allocations of 1 to `CACHE_CLASSES` granules are kept
/// (already filled with traps, still marked in use in their region) in a
/// small stack per size, up to `CACHE_DEPTH` each, and handed out again
/// before any bit vector is searched: the steady-state alloc/free pair
/// touches neither the bit vectors nor the region list.
pub(super) const CACHE_CLASSES: usize = 8;
const CACHE_DEPTH: usize = 64;

/// The depth of the first size class (one granule: a thunk), deeper than
/// the others so that a burst of thousands of thunks created and then
/// dropped stays on the fast path: at most 32 KiB of granules (and 16 KiB
/// of data slots) per shard wait there, which `compact` gives back.
pub(super) const THUNK_CACHE_DEPTH: usize = 1024;

/// How deep size class `class` (0-based) may grow.
const fn cache_depth(class: usize) -> usize {
    if class == 0 {
        THUNK_CACHE_DEPTH
    } else {
        CACHE_DEPTH
    }
}

pub(super) struct State {
    pub(super) regions: Vec<Option<Region>>,
    /// Freed allocations ready for reuse, by size in granules (see
    /// `CACHE_CLASSES`).
    pub(super) cache: [Vec<Allocation>; CACHE_CLASSES],
    /// The region to try first (where something was last freed or found).
    pub(super) hint: usize,
    pub(super) next_region_size: usize,
    pub(super) live: usize,
    pub(super) bytes_in_use: usize,
    /// Static trampoline tables (thunks of a static-trampoline heap).
    pub(super) tables: TablePool,
    /// Ready thunk granules and trampoline slots of a heap without thread
    /// caches (`fast.rs`, `trampoline_slot.rs`): taken and freed under this
    /// lock, without looking anything up.
    pub(super) ready: Magazines,
}

/// What an allocation asks for, under the shard's lock.
#[derive(Clone, Copy)]
pub(super) struct Want {
    /// Length in the heap's granules (and as `u32`, which it fits).
    pub(super) granules: usize,
    pub(super) granules32: u32,
    /// Alignment in granules.
    pub(super) align: usize,
    /// [`Stamp::now`], taken under the lock.
    pub(super) stamp: Stamp,
    /// The shard whose state this is.
    pub(super) shard: usize,
}

/// Where an allocation is: its region, its first granule and its size in
/// granules, and the address it runs at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allocation {
    pub(super) region: u32,
    pub(super) start: u32,
    /// Length in granules of the region's size (`1 << shift` bytes).
    pub(super) granules: u32,
    /// The region's granule shift: the heap's, or the page size's for a
    /// region of its own (an allocation larger than the largest region).
    shift: u8,
    /// The heap shard the region belongs to (see `shard.rs`).
    pub(super) shard: u8,
    /// The executable address (kept as an integer so that allocations take
    /// their auto traits from the heap they borrow).
    pub(super) addr: usize,
}

impl Allocation {
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// The allocation as words, for a deferred free (`reentry.rs`).
    fn to_words(self) -> [usize; reentry::ARGS] {
        [
            self.region as usize,
            self.start as usize,
            self.granules as usize,
            usize::from(self.shift),
            usize::from(self.shard),
            self.addr,
        ]
    }

    /// The allocation [`to_words`](Self::to_words) made.
    fn from_words(words: [usize; reentry::ARGS]) -> Self {
        let [region, start, granules, shift, shard, addr] = words;
        Allocation {
            region: region as u32,
            start: start as u32,
            granules: granules as u32,
            shift: shift as u8,
            shard: shard as u8,
            addr,
        }
    }

    /// A ready allocation of `n` granules as an allocation, for the
    /// general free.
    pub(super) fn of_ready(ready: &Ready, n: usize) -> Self {
        // SAFETY: a ready granule's region outlives it (`ready.rs`).
        let info = unsafe { ready.info.as_ref() };
        Allocation::thunk(info.granule(ready.addr), ready.addr, n)
    }

    /// The `n`-granule allocation of a thunk whose first granule is `at`,
    /// running at `addr`.
    pub(super) fn thunk(at: GranuleAt, addr: usize, n: usize) -> Self {
        Allocation {
            region: at.index,
            start: at.start,
            granules: n as u32,
            shift: DUAL_GRANULE_SHIFT as u8,
            shard: at.shard,
            addr,
        }
    }

    /// The allocation `i` lengths of this one after it (of a run of equal
    /// thunk allocations taken together, see `fast.rs`).
    pub(super) fn nth_after(&self, i: usize) -> Self {
        let granules = i * self.granules as usize;
        Allocation {
            start: self.start + granules as u32,
            addr: self.addr + (granules << self.shift),
            ..*self
        }
    }

    /// Bytes the allocation spans.
    pub(super) fn bytes(&self) -> usize {
        (self.granules as usize) << self.shift
    }
}

impl State {
    /// An empty heap's state, to grow from regions of `first_region` bytes.
    pub(super) fn new(first_region: usize, shard: u8) -> State {
        State {
            regions: Vec::new(),
            cache: std::array::from_fn(|_| Vec::with_capacity(CACHE_DEPTH)),
            hint: 0,
            next_region_size: first_region,
            live: 0,
            bytes_in_use: 0,
            tables: TablePool::new(shard),
            ready: Magazines::new(),
        }
    }
}

impl<L: RawMutex> Heap<L> {
    /// Allocates `len` bytes aligned to `align` granules.
    pub(crate) fn allocate(&self, len: usize, align: usize) -> Result<Allocation> {
        self.allocate_with(len, align, |_| None::<&[u8]>)
    }

    /// Allocates, and if `code` (given the address the code will run at)
    /// returns code, writes it and makes it executable, all under one lock.
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
        let (shard, locked) = self.my_shard();
        let mut state = locked.enter().ok_or_else(reentry::reentered)?;
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        let want = Want {
            granules,
            granules32,
            align,
            stamp,
            shard,
        };
        let alloc = self.take_locked(&mut state, want)?;
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        if let Some(code) = code(alloc.addr) {
            let code = code.as_ref();
            if let Err(e) = region.write(alloc.start as usize, alloc.granules as usize, code) {
                self.free_locked(&mut state, &alloc, stamp);
                return Err(e);
            }
        }
        Ok(alloc)
    }

    #[inline]
    pub(super) fn take_locked(&self, state: &mut State, want: Want) -> Result<Allocation> {
        let Want {
            granules,
            align,
            stamp,
            ..
        } = want;
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
        self.allocate_slow(state, want)
    }

    #[cold]
    fn allocate_slow(&self, state: &mut State, want: Want) -> Result<Allocation> {
        let Want {
            granules,
            granules32,
            align,
            stamp,
            shard,
        } = want;
        let shift = self.config.granule_shift;
        let (index, start, shift, granules) = match self.find(state, granules, align) {
            Some((index, start)) => (index, start, shift, granules32),
            None => self.grow(state, granules, shard)?,
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
            shard: shard as u8,
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
    fn grow(
        &self,
        state: &mut State,
        granules: usize,
        shard: usize,
    ) -> Result<(usize, usize, u32, u32)> {
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
        let strategy = self.config.mode.spans().expect("checked by allocate_with");
        let reserving = Region::reserved_for(size, strategy, shift);
        self.space.reserve(reserving)?;
        let index = state
            .regions
            .iter()
            .position(Option::is_none)
            .unwrap_or(state.regions.len());
        let place = (index as u32, shard as u8);
        let region = match Region::new(
            size,
            strategy,
            self.config.strict,
            shift,
            Stamp::now(),
            place,
            sys::Prot::exec(self.config.branch_protection),
        ) {
            Ok(region) => region,
            Err(e) => {
                self.space.release(reserving);
                return Err(e);
            }
        };
        debug_assert_eq!(region.reserved_bytes(), reserving);
        let start = region
            .find(granules, 1)
            .expect("a new region fits the allocation");
        if index == state.regions.len() {
            state.regions.push(Some(region));
        } else {
            state.regions[index] = Some(region);
        }
        if !own {
            state.next_region_size = (state.next_region_size * 2).min(self.config.max_region);
        }
        // At most `max_region_bytes` granules, checked by `allocate_with`.
        Ok((index, start, shift, granules as u32))
    }

    /// Writes `code` into an allocation and makes it executable.
    pub(crate) fn commit(&self, alloc: &Allocation, code: &[u8]) -> Result<()> {
        let mut state = self
            .shard(alloc.shard)
            .enter()
            .ok_or_else(reentry::reentered)?;
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        region.unshare_after_fork(Stamp::now())?;
        region.write(alloc.start as usize, alloc.granules as usize, code)
    }

    /// Frees an allocation.
    pub(crate) fn free(&self, alloc: &Allocation) {
        let Some(mut state) = self.shard(alloc.shard).enter() else {
            // Re-entered: done when this thread leaves the heap.
            unsafe fn later<L: RawMutex>(heap: *const (), words: [usize; reentry::ARGS]) {
                // SAFETY: `defer`'s contract: the heap outlives its
                // allocations, and this one was not freed yet.
                let heap = unsafe { &*heap.cast::<Heap<L>>() };
                heap.free(&Allocation::from_words(words));
            }
            let _ = reentry::defer(reentry::Deferred {
                run: later::<L>,
                heap: std::ptr::from_ref(self).cast(),
                args: alloc.to_words(),
            });
            return;
        };
        // Taken under the lock: a fork cannot slip in between (see fork.rs).
        let stamp = Stamp::now();
        self.free_locked(&mut state, alloc, stamp);
    }

    #[inline]
    pub(super) fn free_locked(&self, state: &mut State, alloc: &Allocation, stamp: Stamp) {
        if self.free_granule_fast(state, alloc, stamp) {
            return;
        }
        let granules = alloc.granules as usize;
        let region = state.regions[alloc.region as usize]
            .as_mut()
            .expect("allocation's region is live");
        if region.unshare_after_fork(stamp).is_err() {
            // The region is still shared with a forked process and could not
            // be moved to a file of its own: keep the bytes as they are (the
            // other process may run them) and leak the granules, which are
            // no longer in use by anything (the stats say so); their pages
            // become inaccessible once nothing else is in use there.
            state.live -= 1;
            state.bytes_in_use -= alloc.bytes();
            self.strand(state, alloc, stamp);
            return;
        }
        if self.is_own_region(region) {
            // Its only allocation: give the whole region back now.
            self.space.release(region.reserved_bytes());
            state.regions[alloc.region as usize] = None;
            state.live -= 1;
            state.bytes_in_use -= alloc.bytes();
            return;
        }
        let cache = (self
            .config
            .mode
            .spans()
            .is_some_and(CodeStrategy::dual_maps)
            && granules <= CACHE_CLASSES)
            .then(|| &mut state.cache[granules - 1])
            .filter(|c| c.len() < cache_depth(granules - 1));
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
