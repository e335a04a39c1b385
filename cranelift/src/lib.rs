//! A memory provider for [cranelift-jit] that works where W^X is enforced.
//!
//! cranelift-jit's own providers write code, then `mprotect` it to
//! read+exec. Linux `PR_SET_MDWE`, systemd's `MemoryDenyWriteExecute=` and
//! SELinux's `deny_execmem` refuse exactly that, so a `JITModule` fails at
//! `finalize_definitions` there. [`WxMemoryProvider`] puts cranelift's code
//! in [`wxthunk::Block::in_place`] blocks instead. Each block is written
//! where it will run, as cranelift needs: it applies relocations at the
//! address it wrote the code at. Where `mprotect` to exec is allowed, the
//! block is sealed with `mprotect`. Where it is not, the block is sealed
//! by mapping a new file (a memfd, or a file without a name in a directory
//! where memfds are refused) read+exec over the same pages. No mapping is
//! ever writable and executable, and no `mprotect` adds exec.
//!
//! ```no_run
//! use cranelift_jit::{JITBuilder, JITModule};
//! use wxthunk_cranelift::WxMemoryProvider;
//!
//! let mut builder = JITBuilder::new(cranelift_module::default_libcall_names())?;
//! builder.memory_provider(Box::new(WxMemoryProvider::new()?));
//! let module = JITModule::new(builder);
//! # drop(module);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What each kind of memory becomes
//!
//! | cranelift asks for | allocated as | at `finalize` |
//! | --- | --- | --- |
//! | executable (functions) | an in-place [`Block`] | sealed read+exec at the same address; never writable again |
//! | read-only data | private anonymous read-write pages | `mprotect`ed read-only (removing write is allowed everywhere) |
//! | writable data | private anonymous read-write pages | left read-write |
//!
//! `finalize` may be called many times as a module grows. Only memory
//! allocated since the last call changes. Code allocated later goes into
//! new blocks, so already finalized code is never made writable again.
//! Each kind grows in chunks of at least [`CHUNK`] bytes.
//! `free_memory` releases all of it.
//!
//! cranelift documents a finalized function's pointer as valid until
//! `JITModule::free_memory` is called, and its own providers keep finalized
//! memory when a module is dropped without it (its examples keep a function
//! pointer and drop the module). This provider does the same: dropped
//! without `free_memory`, it keeps the code sealed so far, the read-only
//! data made read-only so far, and the writable data chunks that existed at
//! the last `finalize` (finalized code may use them), and releases the
//! rest (memory cranelift was still writing).
//!
//! [cranelift-jit]: https://docs.rs/cranelift-jit

use std::io;

use std::ptr::NonNull;

use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider};
use cranelift_module::{ModuleError, ModuleResult};
use wxthunk::{Block, CodeStrategy, ExecBlock};

/// The smallest chunk each kind of memory grows by (bigger allocations
/// get a chunk of their own size).
pub const CHUNK: usize = 64 * 1024;

/// A [`JITMemoryProvider`] whose code is never writable and executable at
/// once, and which needs no `mprotect` to exec where the process refuses
/// it (see the [crate docs](crate)).
#[derive(Debug)]
pub struct WxMemoryProvider {
    strategy: CodeStrategy,
    code: CodeArena,
    read_only: DataArena,
    writable: DataArena,
}

impl WxMemoryProvider {
    /// A provider whose code uses the strategy
    /// [`wxthunk::probe`] picks for blocks here: `mprotect` where it works,
    /// else a memfd, else a file without a name in a directory.
    ///
    /// # Errors
    ///
    /// [`wxthunk::Error::NoExecutableMemory`] where no strategy for
    /// written code works, with why for each.
    pub fn new() -> wxthunk::Result<WxMemoryProvider> {
        let strategy = wxthunk::probe()
            .block_strategy
            .and_then(wxthunk::Strategy::code)
            .ok_or_else(|| {
                // The block constructor says why, strategy by strategy.
                Block::new(0)
                    .err()
                    .unwrap_or(wxthunk::Error::NoExecutableMemory {
                        reason: "no strategy for written code works here".into(),
                    })
            })?;
        WxMemoryProvider::with_strategy(strategy)
    }

    /// A provider whose code uses `strategy`.
    ///
    /// # Errors
    ///
    /// [`wxthunk::Error::StrategyUnavailable`] if `strategy` does not work
    /// in this process.
    pub fn with_strategy(strategy: CodeStrategy) -> wxthunk::Result<WxMemoryProvider> {
        // Fails now, with why, rather than at the first allocation.
        if let Some(reason) = wxthunk::probe().check(strategy.into()).reason() {
            return Err(wxthunk::Error::StrategyUnavailable {
                strategy: strategy.into(),
                reason: reason.to_owned(),
            });
        }
        Ok(WxMemoryProvider {
            strategy,
            code: CodeArena::default(),
            read_only: DataArena::default(),
            writable: DataArena::default(),
        })
    }

    /// The strategy that makes the code executable.
    pub fn strategy(&self) -> CodeStrategy {
        self.strategy
    }
}

impl JITMemoryProvider for WxMemoryProvider {
    fn allocate(&mut self, size: usize, align: u64, kind: JITMemoryKind) -> io::Result<*mut u8> {
        let align = usize::try_from(align)
            .ok()
            .filter(|a| a.is_power_of_two() && *a <= wxthunk::page_size())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("alignment {align} is not a power of two up to a page"),
                )
            })?;
        match kind {
            JITMemoryKind::Executable => self.code.allocate(size, align, self.strategy),
            JITMemoryKind::ReadOnly => self.read_only.allocate(size, align),
            JITMemoryKind::Writable => self.writable.allocate(size, align),
        }
    }

    unsafe fn free_memory(&mut self) {
        self.code = CodeArena::default();
        self.read_only = DataArena::default();
        self.writable = DataArena::default();
    }

    fn finalize(&mut self, _branch_protection: BranchProtection) -> ModuleResult<()> {
        // x86_64 has no branch protection to apply (BTI is AArch64's, and
        // wxthunk has no AArch64 code generator yet).
        self.code
            .seal()
            .map_err(|e| ModuleError::Allocation { err: e.into() })?;
        self.writable.finalized = self.writable.open.len();
        self.read_only
            .make_read_only()
            .map_err(|err| ModuleError::Allocation { err })
    }
}

/// Code blocks: the ones still being written, and the sealed ones (kept
/// mapped until the memory is freed).
impl Drop for WxMemoryProvider {
    /// Without `free_memory`, finalized memory stays (cranelift's contract:
    /// its pointers are valid until `free_memory`); what was not finalized
    /// is released.
    fn drop(&mut self) {
        std::mem::forget(std::mem::take(&mut self.code.sealed));
        std::mem::forget(std::mem::take(&mut self.read_only.frozen));
        let finalized = self.writable.finalized.min(self.writable.open.len());
        std::mem::forget(self.writable.open.drain(..finalized).collect::<Vec<_>>());
    }
}

#[derive(Debug, Default)]
struct CodeArena {
    /// Writable blocks and how many bytes of each are taken; the last one
    /// is where the next allocation goes.
    open: Vec<(Block, usize)>,
    sealed: Vec<ExecBlock>,
}

impl CodeArena {
    fn allocate(
        &mut self,
        size: usize,
        align: usize,
        strategy: CodeStrategy,
    ) -> io::Result<*mut u8> {
        if let Some((block, used)) = self.open.last_mut()
            && let Some(at) = fit(*used, size, align, block.capacity())
        {
            *used = at + size;
            // SAFETY: `at + size <= capacity`: inside the block's writable
            // memory, which stays put while the block lives.
            return Ok(unsafe { block.as_mut_ptr().add(at) });
        }
        let mut block = Block::in_place_with_code_strategy(size.max(CHUNK), strategy)?;
        let ptr = block.as_mut_ptr();
        self.open.push((block, size));
        Ok(ptr)
    }

    /// Seals every open block. A block the system refuses to seal stays
    /// open (with those after it), so a later call can try again.
    fn seal(&mut self) -> wxthunk::Result<()> {
        while !self.open.is_empty() {
            let (mut block, used) = self.open.remove(0);
            block.set_len(used)?;
            match block.exec() {
                Ok(sealed) => self.sealed.push(sealed),
                Err(e) => {
                    let (error, block) = e.into_parts();
                    self.open.insert(0, (block, used));
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// Data chunks: the ones allocations may still go to, and for read-only
/// data the ones made read-only at a `finalize`.
#[derive(Debug, Default)]
struct DataArena {
    open: Vec<(DataChunk, usize)>,
    frozen: Vec<DataChunk>,
    /// How many of the `open` chunks (writable data) existed at the last
    /// `finalize`: finalized code may use them.
    finalized: usize,
}

impl DataArena {
    fn allocate(&mut self, size: usize, align: usize) -> io::Result<*mut u8> {
        if let Some((chunk, used)) = self.open.last_mut()
            && let Some(at) = fit(*used, size, align, chunk.len)
        {
            *used = at + size;
            // SAFETY: `at + size <= len`: inside the chunk, which stays put
            // while it lives.
            return Ok(unsafe { chunk.ptr.as_ptr().add(at) });
        }
        let chunk = DataChunk::new(size.max(CHUNK))?;
        let ptr = chunk.ptr.as_ptr();
        self.open.push((chunk, size));
        Ok(ptr)
    }

    /// Makes every open chunk read-only (read-only data, at `finalize`). A
    /// chunk the system refuses stays open and mapped, so a later call can
    /// try again.
    fn make_read_only(&mut self) -> io::Result<()> {
        while let Some((chunk, _)) = self.open.first() {
            // SAFETY: our own whole pages; cranelift wrote its data and
            // relocations into them before calling `finalize`, and writes
            // no more.
            if unsafe { libc::mprotect(chunk.ptr.as_ptr().cast(), chunk.len, libc::PROT_READ) } != 0
            {
                return Err(io::Error::last_os_error());
            }
            let (chunk, _) = self.open.remove(0);
            self.frozen.push(chunk);
        }
        Ok(())
    }
}

/// Private anonymous read-write pages for data, unmapped on drop.
#[derive(Debug)]
struct DataChunk {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the chunk owns its pages exclusively; the provider hands out raw
// pointers into them to cranelift, which synchronises its own use.
unsafe impl Send for DataChunk {}

impl DataChunk {
    fn new(size: usize) -> io::Result<DataChunk> {
        let len = size
            .checked_next_multiple_of(wxthunk::page_size())
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "allocation too large"))?;
        // SAFETY: a new private anonymous mapping; replaces nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned 0"))?;
        Ok(DataChunk { ptr, len })
    }
}

impl Drop for DataChunk {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of `len` bytes; nothing uses it after the
        // provider lets go of it (`free_memory`, or the provider's drop).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Where an allocation of `size` bytes aligned to `align` starts in a chunk
/// of `capacity` bytes whose first `used` are taken, if it fits.
fn fit(used: usize, size: usize, align: usize, capacity: usize) -> Option<usize> {
    let at = used.checked_next_multiple_of(align)?;
    (at.checked_add(size)? <= capacity).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn allocations_fit_aligned_or_not_at_all() {
        assert_eq!(fit(0, 10, 16, 64), Some(0));
        assert_eq!(fit(10, 10, 16, 64), Some(16));
        assert_eq!(fit(10, 48, 16, 64), Some(16));
        assert_eq!(fit(10, 49, 16, 64), None);
        assert_eq!(fit(usize::MAX, 1, 16, 64), None);
        assert_eq!(fit(0, usize::MAX, 1, 64), None);
    }
}
