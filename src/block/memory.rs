//! The mappings behind a block, for each strategy, and the W^X transitions
//! between them.

use std::ptr::NonNull;

use crate::arch;
use crate::error::{Error, Result};
use crate::policy;
use crate::strategy::CodeStrategy;
use crate::sys::{self, Mapping, Prot};

/// Rounds `len` up to whole pages; 0 becomes one page.
pub(crate) fn round_to_pages(len: usize) -> Result<usize> {
    let page = sys::page_size();
    len.max(1)
        .checked_next_multiple_of(page)
        .filter(|&cap| cap <= isize::MAX as usize)
        .ok_or(Error::SizeOverflow { requested: len })
}

/// The mappings of one block.
///
/// Invariant: `writable` is true exactly while the block is a
/// [`Block`](crate::Block); then the bytes are at
/// [`write_ptr`](Self::write_ptr) and nothing at [`exec_ptr`](Self::exec_ptr) may run. It
/// is false while the block is an [`ExecBlock`](crate::ExecBlock); then the
/// bytes are read+exec at `exec_ptr` and no writable mapping of them exists
/// in this process.
#[derive(Debug)]
pub(crate) struct BlockMemory {
    capacity: usize,
    kind: Kind,
    /// Whether a seal maps the code guarded (`Prot::ReadExecGuarded`).
    pub(super) guarded: bool,
}

#[derive(Debug)]
enum Kind {
    /// One private anonymous mapping: read-write, then read+exec.
    Protect { base: Mapping, writable: bool },
    /// `rx` is the address the code runs at: a `PROT_NONE` reservation until
    /// the first seal, then a read+exec mapping of a memfd written at that
    /// seal. `rw` is a private anonymous buffer that exists only while the
    /// block is writable.
    ///
    /// Each seal writes a *new* memfd and maps it over `rx` in one step: no
    /// file that is mapped executable is ever written again, so a process
    /// forked from this one (which shares the old file) keeps its code, and
    /// a child's writes (to its own private copy of `rw`) cannot reach ours.
    ///
    /// `strategy` says whether the files are memfds or unlinked files in a
    /// directory ([`CodeStrategy::DualMapFile`]).
    DualMap {
        rx: Mapping,
        rw: Option<Mapping>,
        strategy: CodeStrategy,
    },
    /// Dual mapping where no file can be mapped over a range
    /// ([`sys::MAPS_OVER_ANY_RANGE`] is false: Windows, which has no
    /// `fork()` either): one file for the block's life (boxed: a block
    /// stays small).
    OneFile(Box<OneFile>),
    /// A dual-mapping strategy with the bytes written where they will run
    /// (for code generators that apply relocations in place, such as
    /// cranelift-jit): `base` is private anonymous read-write memory while
    /// the block is writable; each seal writes a *new* file and maps it
    /// read+exec over `base` in one step, so no writable alias of sealed
    /// code exists (a forked child has its own copy-on-write pages while
    /// writable, and the file is never written once mapped). Making it
    /// writable again copies the code back into private memory at the same
    /// address.
    InPlace {
        base: Mapping,
        writable: bool,
        strategy: CodeStrategy,
    },
}

// SAFETY: through `&BlockMemory` the mappings are only read (or run); all
// writes and transitions take `&mut self`.
unsafe impl Sync for BlockMemory {}

/// A dual-mapped block's one file and its views: `rx` is the executable
/// view, inaccessible while the block is writable; `rw` a writable view
/// that exists only then.
#[derive(Debug)]
struct OneFile {
    file: sys::CodeFile,
    rx: Mapping,
    rw: Option<Mapping>,
    strategy: CodeStrategy,
}

/// After a failed seal of an in-place block: private read-write memory at
/// `base` again, holding what `file` holds (the bytes written). The kernel
/// may have removed the old pages before it refused the new mapping, so
/// they are put back in either case; a process that cannot even do that
/// would hand back a block whose memory is gone, so it stops.
#[cold]
fn restore_in_place(base: &Mapping, file: &sys::CodeFile, capacity: usize) {
    let restored = file.map(capacity, Prot::ReadWrite).and_then(|copy| {
        // SAFETY: `base` is our mapping, and nothing runs it (the seal
        // failed) or holds a reference into it (`&mut` through the block).
        unsafe { base.replace_with_anon(0, capacity, Prot::ReadWrite) }?;
        // SAFETY: `copy` is a readable view of `capacity` bytes of the file,
        // `base` a distinct writable mapping of as many.
        unsafe { std::ptr::copy_nonoverlapping(copy.as_ptr(), base.as_ptr(), capacity) };
        Ok(())
    });
    if let Err(e) = restored {
        eprintln!("wxthunk: a failed seal left an in-place block without its memory: {e}");
        std::process::abort();
    }
}

impl BlockMemory {
    /// Maps `capacity` bytes (a whole number of pages), writable where
    /// they will run, whatever the strategy.
    pub(crate) fn in_place(capacity: usize, strategy: CodeStrategy) -> Result<Self> {
        if !strategy.dual_maps() {
            return Self::new(capacity, strategy);
        }
        in_place_dual_map_possible(strategy)?;
        debug_assert_eq!(capacity % sys::page_size(), 0);
        let base = Mapping::anon(capacity, Prot::ReadWrite)
            .map_err(|e| Error::os("mmap", sized(capacity, e)))?;
        Ok(BlockMemory {
            capacity,
            kind: Kind::InPlace {
                base,
                writable: true,
                strategy,
            },
            guarded: false,
        })
    }

    /// Maps `capacity` bytes (a whole number of pages), writable. A
    /// mapping that fails says the size it was asked for.
    pub(crate) fn new(capacity: usize, strategy: CodeStrategy) -> Result<Self> {
        debug_assert_eq!(capacity % sys::page_size(), 0);
        let kind = match strategy {
            CodeStrategy::Protect => {
                let base = Mapping::anon(capacity, Prot::ReadWrite)
                    .map_err(|e| Error::os("mmap", sized(capacity, e)))?;
                Kind::Protect {
                    base,
                    writable: true,
                }
            }
            CodeStrategy::DualMap | CodeStrategy::DualMapFile if !sys::MAPS_OVER_ANY_RANGE => {
                let file = policy::code_file(
                    strategy,
                    capacity,
                    ["memfd_create", "creating a code file"],
                )?;
                let rx = file
                    .reserve_exec_view(capacity, 0)
                    .map_err(|e| Error::os("mapping the code's view", sized(capacity, e)))?;
                let rw = file
                    .map(capacity, Prot::ReadWrite)
                    .map_err(|e| Error::os("mapping the writable view", sized(capacity, e)))?;
                Kind::OneFile(Box::new(OneFile {
                    file,
                    rx,
                    rw: Some(rw),
                    strategy,
                }))
            }
            CodeStrategy::DualMap | CodeStrategy::DualMapFile => {
                let rx = Mapping::anon(capacity, Prot::None)
                    .map_err(|e| Error::os("mmap (address reservation)", sized(capacity, e)))?;
                let rw = Mapping::anon(capacity, Prot::ReadWrite)
                    .map_err(|e| Error::os("mmap", sized(capacity, e)))?;
                Kind::DualMap {
                    rx,
                    rw: Some(rw),
                    strategy,
                }
            }
        };
        Ok(BlockMemory {
            capacity,
            kind,
            guarded: false,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn strategy(&self) -> CodeStrategy {
        match self.kind {
            Kind::Protect { .. } => CodeStrategy::Protect,
            Kind::DualMap { strategy, .. } | Kind::InPlace { strategy, .. } => strategy,
            Kind::OneFile(ref one) => one.strategy,
        }
    }

    /// Where the code runs once sealed.
    pub(crate) fn exec_ptr(&self) -> NonNull<u8> {
        match &self.kind {
            Kind::Protect { base, .. } => base.ptr(),
            Kind::DualMap { rx, .. } => rx.ptr(),
            Kind::OneFile(one) => one.rx.ptr(),
            Kind::InPlace { base, .. } => base.ptr(),
        }
    }

    /// Where the bytes can be written while writable.
    ///
    /// # Panics
    /// If the block is sealed (an internal invariant violation).
    pub(crate) fn write_ptr(&self) -> NonNull<u8> {
        match &self.kind {
            Kind::Protect {
                base,
                writable: true,
            } => base.ptr(),
            Kind::DualMap { rw: Some(rw), .. } => rw.ptr(),
            Kind::OneFile(one) => match &one.rw {
                Some(rw) => rw.ptr(),
                None => unreachable!("write_ptr on a sealed block"),
            },
            Kind::InPlace {
                base,
                writable: true,
                ..
            } => base.ptr(),
            _ => unreachable!("write_ptr on a sealed block"),
        }
    }

    /// Where the bytes can be read in the current state.
    pub(crate) fn read_ptr(&self) -> NonNull<u8> {
        match &self.kind {
            Kind::Protect { base, .. } => base.ptr(),
            Kind::DualMap { rw: Some(rw), .. } => rw.ptr(),
            Kind::DualMap { rx, rw: None, .. } => rx.ptr(),
            Kind::OneFile(one) => one.rw.as_ref().unwrap_or(&one.rx).ptr(),
            Kind::InPlace { base, .. } => base.ptr(),
        }
    }

    /// The bytes that must reach the executable mapping: whole pages up to
    /// and including the one holding the last written byte.
    fn used_pages(&self, len: usize) -> usize {
        let page = sys::page_size();
        len.max(1).div_ceil(page) * page
    }

    /// Makes the first `len` bytes executable and the block unwritable; a
    /// guarded block's start becomes a valid call target where Control Flow
    /// Guard's are registered one by one (`sys::set_call_target`). On
    /// error nothing has changed.
    pub(crate) fn seal(&mut self, len: usize) -> Result<()> {
        self.seal_code(len)?;
        if self.guarded {
            let start = self.exec_ptr().as_ptr() as usize;
            if let Err(e) = sys::set_call_target(start, true) {
                // Writable again, as before; if even that fails the block
                // stays sealed and says why it could not be registered.
                let _ = self.unseal(len);
                return Err(Error::os("SetProcessValidCallTargets (block)", e));
            }
        }
        Ok(())
    }

    fn seal_code(&mut self, len: usize) -> Result<()> {
        let used = self.used_pages(len);
        let write = self.write_ptr();
        // Traps after the code, to the end of its last page (later pages are
        // untouched and need no memory).
        // SAFETY: `write..write+used` is the writable mapping we own, and
        // `len <= used <= capacity`.
        let tail = unsafe { std::slice::from_raw_parts_mut(write.as_ptr().add(len), used - len) };
        arch::fill_traps(tail);
        let capacity = self.capacity;
        let exec = Prot::exec(self.guarded);
        match &mut self.kind {
            Kind::Protect { base, writable } => {
                sys::flush_icache(base.as_ptr(), used);
                // SAFETY: we own the mapping; nothing runs it yet, and the
                // `Block` giving up `&mut` access is what makes it
                // unwritable.
                unsafe { base.protect(0, capacity, exec) }
                    .map_err(|e| Error::os("mprotect(PROT_READ|PROT_EXEC)", e))?;
                *writable = false;
            }
            Kind::OneFile(one) => {
                let OneFile { file, rx, rw, .. } = &mut **one;
                if let Some(rw) = rw {
                    sys::flush_icache_views(rw.as_ptr(), rx.as_ptr(), used);
                }
                // SAFETY: `rx` is the file's own executable view, closed
                // while the block was writable, so nothing runs it; it opens
                // on the bytes just written.
                unsafe { file.map_over(rx.ptr(), 0, capacity, exec) }
                    .map_err(|e| Error::os("opening the code's view (read+exec)", e))?;
                // The writable view goes: the sealed block has none.
                *rw = None;
            }
            Kind::DualMap { rx, rw, strategy } => {
                let file = policy::code_file(
                    *strategy,
                    capacity,
                    ["memfd_create", "creating a code file"],
                )?;
                // SAFETY: `write..write+used` is our readable buffer.
                let bytes = unsafe { std::slice::from_raw_parts(write.as_ptr(), used) };
                file.write_at(0, bytes)
                    .map_err(|e| Error::os("pwrite (code file)", e))?;
                // SAFETY: `rx` is our reservation or our previous code
                // mapping of the same size; the new file holds the code that
                // may run there.
                unsafe { file.map_over(rx.ptr(), 0, capacity, exec) }
                    .map_err(|e| Error::os("mmap(PROT_READ|PROT_EXEC) of the code file", e))?;
                sys::flush_icache(rx.as_ptr(), used);
                // The buffer goes (unmapped): the sealed block no longer
                // reads or writes it.
                *rw = None;
            }
            Kind::InPlace {
                base,
                writable,
                strategy,
            } => {
                let file = policy::code_file(
                    *strategy,
                    capacity,
                    ["memfd_create", "creating a code file"],
                )?;
                // SAFETY: `base` is our writable mapping of `capacity >=
                // used` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(base.as_ptr(), used) };
                file.write_at(0, bytes)
                    .map_err(|e| Error::os("pwrite (code file)", e))?;
                // SAFETY: `base` is our mapping; the `Block` giving up `&mut`
                // access is what ends the writes, and the file holds the
                // same bytes, so nothing relies on the pages replaced.
                if let Err(e) = unsafe { file.map_over(base.ptr(), 0, capacity, exec) } {
                    restore_in_place(base, &file, capacity);
                    return Err(Error::os("mmap(PROT_READ|PROT_EXEC) of the code file", e));
                }
                sys::flush_icache(base.as_ptr(), used);
                *writable = false;
            }
        }
        Ok(())
    }

    /// Makes the block writable again, with its first `len` bytes intact.
    /// On error nothing has changed.
    pub(crate) fn unseal(&mut self, len: usize) -> Result<()> {
        let used = self.used_pages(len);
        let capacity = self.capacity;
        match &mut self.kind {
            Kind::Protect { base, writable } => {
                // SAFETY: we own the mapping; the caller gave up the
                // `ExecBlock`, the only safe way to run it.
                unsafe { base.protect(0, capacity, Prot::ReadWrite) }
                    .map_err(|e| Error::os("mprotect(PROT_READ|PROT_WRITE)", e))?;
                *writable = true;
            }
            Kind::InPlace { base, writable, .. } => {
                // The code, out of the read+exec mapping that is about to be
                // replaced, then back into private memory at the same place.
                // SAFETY: the mapping is readable for `used <= capacity`
                // bytes and not written while sealed.
                let code = unsafe { std::slice::from_raw_parts(base.as_ptr(), used) }.to_vec();
                // SAFETY: our mapping; the caller gave up the `ExecBlock`,
                // the only safe way to run it, and `code` holds its bytes.
                unsafe { base.replace_with_anon(0, capacity, Prot::ReadWrite) }
                    .map_err(|e| Error::os("mmap (in place)", e))?;
                // SAFETY: `base` is now writable for `capacity >= used`
                // bytes; `code` is a distinct heap buffer.
                unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), base.as_ptr(), used) };
                *writable = true;
            }
            Kind::OneFile(one) => {
                let OneFile { file, rx, rw, .. } = &mut **one;
                let view = file
                    .map(capacity, Prot::ReadWrite)
                    .map_err(|e| Error::os("mapping the writable view", sized(capacity, e)))?;
                // SAFETY: our view; the caller gave up the `ExecBlock`, the
                // only safe way to run it; closing only removes access.
                unsafe { rx.protect(0, capacity, Prot::None) }
                    .map_err(|e| Error::os("closing the code's view", e))?;
                *rw = Some(view);
            }
            Kind::DualMap { rx, rw, .. } => {
                let buf = Mapping::anon(capacity, Prot::ReadWrite)
                    .map_err(|e| Error::os("mmap", sized(capacity, e)))?;
                // SAFETY: `rx` is readable for `used <= capacity` bytes,
                // `buf` writable for `capacity`; they are distinct mappings.
                unsafe { std::ptr::copy_nonoverlapping(rx.as_ptr(), buf.as_ptr(), used) };
                *rw = Some(buf);
            }
        }
        Ok(())
    }
}

/// `Ok` where an in-place block can be dual-mapped: its seal maps a file
/// over the memory it was written in, which needs
/// [`sys::MAPS_OVER_ANY_RANGE`] (not Windows).
fn in_place_dual_map_possible(strategy: CodeStrategy) -> Result<()> {
    if sys::MAPS_OVER_ANY_RANGE {
        return Ok(());
    }
    Err(Error::StrategyUnavailable {
        strategy: strategy.into(),
        reason: "an in-place dual-mapped block maps its file over the memory it was \
                 written in, which this platform cannot do (Windows has no placeholders); \
                 in-place blocks use Protect here"
            .to_owned(),
    })
}

/// `e`, saying the size of the mapping that failed (a user who asked for
/// `1 << 60` bytes sees that, not only "Cannot allocate memory").
fn sized(capacity: usize, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{capacity} bytes: {e}"))
}
