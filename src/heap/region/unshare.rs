//! Moving a dual-mapped region to a file of its own before this process
//! writes to it, when the file may be shared with another process (one made
//! by copying this one): step 2 of the fork model in `heap/fork.rs`.

use super::{Backing, Region, map_writable_view};
use crate::error::{Error, Result};
use crate::heap::fork::Stamp;
use crate::policy;
use crate::strategy::CodeStrategy;
use crate::sys;

impl Region {
    /// Before writing to a dual-mapped region (through its view or its
    /// file): if the region's file may be shared with another process (it was
    /// made in another process, or before this one last forked), move the
    /// region to a new file first, so that neither process can change the
    /// other's code. `stamp` is [`Stamp::now`], taken under the heap's lock.
    #[inline]
    pub(crate) fn unshare_after_fork(&mut self, stamp: Stamp) -> Result<()> {
        if self.stamp == stamp {
            return Ok(());
        }
        self.unshare(stamp)
    }

    #[cold]
    fn unshare(&mut self, stamp: Stamp) -> Result<()> {
        let inherited = !self.stamp.is_this_process();
        let Backing::DualMap { file, rx, rw } = &mut self.backing else {
            self.stamp = stamp;
            return Ok(());
        };
        // A new file of the same kind: a file in the same directory, or a
        // memfd (or, where `memfd_create` is refused since the region was
        // made, a file in the probe's directory: `policy::code_file`).
        let new = match file.dir() {
            Some(_) => file
                .create_like(self.size)
                .map_err(|e| Error::os("creating a code file (unshare after fork)", e))?,
            None => policy::code_file(
                CodeStrategy::DualMap,
                self.size,
                [
                    "memfd_create (unshare after fork)",
                    "creating a code file (unshare after fork)",
                ],
            )?,
        };
        let page = sys::page_size();
        for p in 0..self.size / page {
            if self.committed.all_set(p, 1) {
                // SAFETY: the executable view is readable for the whole
                // region.
                let bytes = unsafe { std::slice::from_raw_parts(rx.as_ptr().add(p * page), page) };
                new.write_at(p * page, bytes)
                    .map_err(|e| Error::os("pwrite (unshare after fork)", e))?;
            }
        }
        // A new writable view of the new file. In a child the old one is not
        // mapped (MADV_DONTFORK), and its addresses may hold someone else's
        // mapping by now, so it is never touched there; in this process it is
        // ours and is unmapped once nothing can use it.
        let new_rw = match rw {
            Some(_) => Some(map_writable_view(&new, self.size)?),
            None => None,
        };
        // Replace the executable pages in place: atomic for threads running
        // code there, and the new file holds the same bytes. Uncommitted
        // pages stay the inaccessible reservation.
        let mut remapped = Ok(());
        let mut p = 0;
        while p < self.size / page && remapped.is_ok() {
            if !self.committed.all_set(p, 1) {
                p += 1;
                continue;
            }
            let mut q = p + 1;
            while q < self.size / page && self.committed.all_set(q, 1) {
                q += 1;
            }
            // SAFETY: `rx` is our view of the region, inherited by a child
            // like any mapping; the code at every address is unchanged.
            remapped =
                unsafe { new.map_over(rx.at(p * page), p * page, (q - p) * page, self.exec) };
            p = q;
        }
        // (On error the new view, just mapped and unused, is unmapped as it
        // drops.)
        remapped.map_err(|e| Error::os("mmap(MAP_FIXED) (unshare after fork)", e))?;
        // Our own old view is unmapped as it is replaced: writes happen under
        // the heap's lock, which we hold, and go to the new view from now
        // on. An inherited one is not ours to unmap (see `Drop`).
        let old = std::mem::replace(rw, new_rw);
        if inherited {
            std::mem::forget(old);
        }
        *file = new;
        self.stamp = stamp;
        if let Some(info) = &self.info {
            info.publish(rw.as_ref().map(crate::sys::Mapping::ptr), stamp);
        }
        Ok(())
    }
}
