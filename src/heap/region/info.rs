//! [`RegionInfo`]: what a thunk needs of its region to be freed without
//! the shard's lock, at an address that stays put while the region lives
//! (boxed), so that a thunk's handle can hold a pointer to it instead of
//! the whole allocation.
//!
//! Where the region's executable view and data slots are, and which
//! granule a thunk is, never change. The writable view and the stamp it
//! belongs to change together when the region moves to a file of its own
//! after a fork (`unshare.rs`, under the shard's lock); they are published
//! under a sequence lock, so a reader sees a matching pair or gives up.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use crate::heap::fork::Stamp;
use crate::owner::Owner;

/// The lock-free side of a dual-mapped region of thunk granules. Aligned
/// to 64 bytes (a cache line of its own), which also leaves a thunk's
/// handle six low bits beside its address.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct RegionInfo {
    /// The heap that owns the region (`crate::owner`).
    pub(crate) owner: Owner,
    /// The executable view's base.
    exec: usize,
    /// The data slots' base.
    data: usize,
    /// The region's index in its shard, and the shard.
    index: u32,
    shard: u8,
    /// Odd while `view` and the stamp are being replaced.
    seq: AtomicU64,
    /// The writable view's base (0 for none: strict, or not this process's).
    view: AtomicUsize,
    process: AtomicU64,
    epoch: AtomicU64,
}

/// A granule of a region, as its handles and the thread caches need it.
pub(crate) struct GranuleAt {
    pub(crate) index: u32,
    pub(crate) shard: u8,
    pub(crate) start: u32,
    pub(crate) data: NonNull<u8>,
}

impl RegionInfo {
    pub(super) fn new(
        exec: usize,
        data: usize,
        index: u32,
        shard: u8,
        view: Option<NonNull<u8>>,
        stamp: Stamp,
    ) -> Self {
        let (process, epoch) = stamp.parts();
        RegionInfo {
            owner: Owner::default(),
            exec,
            data,
            index,
            shard,
            seq: AtomicU64::new(0),
            view: AtomicUsize::new(view.map_or(0, |v| v.as_ptr() as usize)),
            process: AtomicU64::new(process),
            epoch: AtomicU64::new(epoch),
        }
    }

    /// The shard the region belongs to.
    #[inline]
    pub(crate) fn shard(&self) -> u8 {
        self.shard
    }

    /// Where the granule at `addr` (an address of this region's executable
    /// view, at a granule boundary) is.
    #[inline]
    pub(crate) fn granule(&self, addr: usize) -> GranuleAt {
        let start = (addr - self.exec) >> super::DUAL_GRANULE_SHIFT;
        let data = self.data + start * crate::data_slot::DATA_SLOT;
        GranuleAt {
            index: self.index,
            shard: self.shard,
            start: start as u32,
            // SAFETY: inside the data slots' mapping, which is not null.
            data: unsafe { NonNull::new_unchecked(data as *mut u8) },
        }
    }

    /// The writable view of the granule at `addr`, if the region's view
    /// belongs to `now` (this process, since its last libc fork) and was
    /// not being replaced meanwhile; else `None` (the caller takes the
    /// locked path, which moves the region first).
    #[inline]
    pub(crate) fn view_if_current(&self, addr: usize, now: Stamp) -> Option<NonNull<u8>> {
        let seq = self.seq.load(Ordering::Acquire);
        let view = self.view.load(Ordering::Relaxed);
        let stamp = Stamp::from_parts(
            self.process.load(Ordering::Relaxed),
            self.epoch.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        let unchanged = seq & 1 == 0 && self.seq.load(Ordering::Relaxed) == seq;
        if !unchanged || stamp != now || view == 0 {
            return None;
        }
        NonNull::new((view + (addr - self.exec)) as *mut u8)
    }

    /// Publishes a new writable view and its stamp (under the shard's
    /// lock, the only writer).
    pub(super) fn publish(&self, view: Option<NonNull<u8>>, stamp: Stamp) {
        let (process, epoch) = stamp.parts();
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.view
            .store(view.map_or(0, |v| v.as_ptr() as usize), Ordering::Relaxed);
        self.process.store(process, Ordering::Relaxed);
        self.epoch.store(epoch, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }
}
