//! [`Block`] and [`ExecBlock`]: one mapping of code, writable or executable,
//! never both; W^X as a change of type.

mod exec;
mod memory;

use std::fmt;
use std::io;

pub use exec::ExecBlock;
use memory::BlockMemory;
pub(crate) use memory::round_to_pages;

use crate::error::TransitionError;
use crate::error::{Error, Result};
use crate::policy::{BLOCK_PREFERENCE, capabilities};
use crate::strategy::{CodeStrategy, Strategy};

/// A writable block of memory for machine code: page-rounded, filled through
/// [`io::Write`], then sealed with [`exec`](Block::exec) into an
/// [`ExecBlock`] that can run but never be written.
///
/// Writing after sealing is a compile-time error, because `exec` consumes the
/// block:
///
/// ```compile_fail
/// use std::io::Write;
/// let mut b = wxthunk::Block::new(16)?;
/// b.write_all(&[0xc3])?;
/// let x = b.exec()?;
/// b.write_all(&[0xc3])?; // error: `b` was moved by `exec`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// let mut b = wxthunk::Block::new(0)?;   // one page
/// assert_eq!(b.capacity(), wxthunk::page_size());
/// // x86_64: `lea rax, [rdi+rsi]; ret` (System V), `lea rax, [rcx+rdx]; ret`
/// // (Windows x64).
/// let add: &[u8] = if cfg!(windows) { b"\x48\x8d\x04\x11\xc3" } else { b"\x48\x8d\x04\x37\xc3" };
/// b.write_all(add)?;
/// assert_eq!(b.len(), 5);
/// let x = b.exec()?;
/// if cfg!(target_arch = "x86_64") {
///     // SAFETY: offset 0 holds a C function taking two integers.
///     let add: extern "C" fn(u64, u64) -> u64 = unsafe { x.func(0)? };
///     assert_eq!(add(2, 40), 42);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Auto traits
///
/// `Block` is `Send` and `Sync`: it owns its mapping exclusively, writing
/// needs `&mut`, and `&Block` only reads the bytes written.
///
/// # Platform-specific behaviour
///
/// With [`Strategy::Protect`] the bytes are written in place and `exec`
/// calls `mprotect`. With [`Strategy::DualMap`] (chosen where the kernel
/// refuses that, e.g. under Linux `PR_SET_MDWE`) the bytes are written into a
/// private buffer; `exec` copies them into a new memfd, maps it read+exec at
/// [`exec_ptr`](Block::exec_ptr) and drops the buffer, so no writable alias
/// of the code survives sealing, not even in a forked child.
pub struct Block {
    mem: BlockMemory,
    len: usize,
}

impl Block {
    /// A writable block of at least `len` bytes, rounded up to whole pages
    /// (`0` gives one page), with the strategy [`probe`](crate::probe)
    /// picked for blocks.
    ///
    /// # Errors
    ///
    /// [`Error::SizeOverflow`](crate::Error::SizeOverflow) if `len` cannot be rounded up to whole pages;
    /// [`Error::Os`](crate::Error::Os) if the memory cannot be mapped (e.g. `ENOMEM` for a
    /// size larger than the address space allows);
    /// [`Error::NoExecutableMemory`](crate::Error::NoExecutableMemory) if no strategy works in this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(100)?;
    /// assert_eq!(block.capacity(), wxthunk::page_size()); // rounded up to a page
    /// block.write_all(&[0xc3])?; // ret
    /// let code = block.exec()?;
    /// assert_eq!(code.as_slice(), &[0xc3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(len: usize) -> Result<Block> {
        let capacity = round_to_pages(len)?;
        let strategy = capabilities().choose(BLOCK_PREFERENCE)?;
        Ok(Block {
            mem: BlockMemory::new(capacity, strategy)?,
            len: 0,
        })
    }

    /// Like [`new`](Block::new), with a strategy of your choice.
    /// [`Strategy::StaticTrampolines`] holds thunks, not written code, so it
    /// is refused here; [`with_code_strategy`](Block::with_code_strategy)
    /// takes only strategies for written code.
    ///
    /// # Errors
    ///
    /// As [`new`](Block::new), and [`Error::StrategyUnavailable`](crate::Error::StrategyUnavailable) if
    /// `strategy` does not work in this process or is not a strategy for
    /// written code.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{Block, Strategy};
    /// let strategy = Strategy::Protect;
    /// if wxthunk::probe().allows(strategy) {
    ///     let block = Block::with_strategy(64, strategy)?;
    ///     assert_eq!(block.strategy(), strategy);
    /// }
    /// // Static trampolines hold thunks, not written code:
    /// assert!(Block::with_strategy(64, Strategy::StaticTrampolines).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_strategy(len: usize, strategy: Strategy) -> Result<Block> {
        let Some(code) = strategy.code() else {
            return Err(Error::StrategyUnavailable {
                strategy,
                reason: "static trampolines hold thunks, not written code; a Block needs \
                         protect, dual-map or dual-map-file"
                    .into(),
            });
        };
        Block::with_code_strategy(len, code)
    }

    /// Like [`new`](Block::new), with a strategy for written code of your
    /// choice.
    ///
    /// # Errors
    ///
    /// As [`new`](Block::new), and [`Error::StrategyUnavailable`](crate::Error::StrategyUnavailable) if
    /// `strategy` does not work in this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{Block, CodeStrategy};
    /// if wxthunk::probe().allows(wxthunk::Strategy::DualMap) {
    ///     let block = Block::with_code_strategy(64, CodeStrategy::DualMap)?;
    ///     assert_eq!(block.code_strategy(), CodeStrategy::DualMap);
    /// }
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn with_code_strategy(len: usize, strategy: CodeStrategy) -> Result<Block> {
        let capacity = round_to_pages(len)?;
        capabilities().require(strategy)?;
        Ok(Block {
            mem: BlockMemory::new(capacity, strategy)?,
            len: 0,
        })
    }

    /// Like [`new`](Block::new), for code generators that write code where
    /// it will run and patch it there (cranelift-jit applies its relocations
    /// at the address it wrote the code at): the bytes are written at
    /// [`exec_ptr`](Block::exec_ptr) itself ([`as_mut_ptr`](Block::as_mut_ptr)
    /// is the same address).
    ///
    /// With [`Strategy::Protect`] that is how every block works. With the
    /// dual-mapping strategies the bytes are written into private memory at
    /// that address; [`exec`](Block::exec) copies them into a new file and
    /// maps it read+exec over them in one step, so there is never a
    /// writable and executable mapping, nor an `mprotect` that adds exec,
    /// and no writable alias of the sealed code exists, not even in a
    /// forked child.
    ///
    /// # Errors
    ///
    /// As [`new`](Block::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut b = wxthunk::Block::in_place(16)?;
    /// let at = b.as_mut_ptr() as usize;
    /// assert_eq!(at, b.exec_ptr() as usize);
    /// b.write_all(&[0xc3])?;
    /// let x = b.exec()?;
    /// assert_eq!(x.as_ptr() as usize, at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_place(len: usize) -> Result<Block> {
        let strategy = capabilities().choose(BLOCK_PREFERENCE)?;
        Block::in_place_with_code_strategy(len, strategy)
    }

    /// [`in_place`](Block::in_place) with a strategy for written code of
    /// your choice.
    ///
    /// # Errors
    ///
    /// As [`with_code_strategy`](Block::with_code_strategy).
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{Block, CodeStrategy};
    /// if wxthunk::probe().allows(CodeStrategy::Protect.into()) {
    ///     let mut block = Block::in_place_with_code_strategy(16, CodeStrategy::Protect)?;
    ///     assert_eq!(block.as_mut_ptr() as *const u8, block.exec_ptr());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_place_with_code_strategy(len: usize, strategy: CodeStrategy) -> Result<Block> {
        let capacity = round_to_pages(len)?;
        capabilities().require(strategy)?;
        Ok(Block {
            mem: BlockMemory::in_place(capacity, strategy)?,
            len: 0,
        })
    }

    /// The block's writable memory, all [`capacity`](Block::capacity)
    /// bytes of it (zero where nothing was written), for code generators
    /// that write through pointers; [`set_len`](Block::set_len) then says
    /// how much of it is code. Valid until the block is sealed, dropped or
    /// moved out of; for an [`in_place`](Block::in_place) block it is
    /// [`exec_ptr`](Block::exec_ptr).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut b = wxthunk::Block::new(0)?;
    /// let p = b.as_mut_ptr();
    /// // SAFETY: `p` is valid for `capacity` bytes of writes while `b` lives.
    /// unsafe { p.write(0xc3) };
    /// b.set_len(1)?;
    /// assert_eq!(b.as_slice(), &[0xc3]);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.mem.write_ptr().as_ptr()
    }

    /// Sets how many bytes are code (sealing fills the rest of the last
    /// page with traps): a truncation for re-JIT, or a length for bytes
    /// written through [`as_mut_ptr`](Block::as_mut_ptr). Every byte of the
    /// capacity is initialized (the memory starts zeroed), so any length up
    /// to it is sound.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) past the capacity; nothing changes.
    ///
    /// # Examples
    ///
    /// Re-JIT at the same address, keeping a prefix:
    ///
    /// ```
    /// use std::io::Write;
    /// let mut b = wxthunk::Block::new(0)?;
    /// b.write_all(&[0x90, 0x90, 0xc3])?; // nop; nop; ret
    /// let mut b = b.exec()?.into_writable()?;
    /// b.set_len(1)?; // keep the first nop
    /// b.write_all(&[0xc3])?;
    /// assert_eq!(b.as_slice(), &[0x90, 0xc3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity() {
            return Err(Error::OutOfBounds {
                offset: len,
                len: self.capacity(),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Empties the block for new code (its capacity and
    /// [`exec_ptr`](Block::exec_ptr) stay): [`set_len(0)`](Block::set_len).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut b = wxthunk::Block::new(0)?;
    /// b.write_all(&[0xc3])?;
    /// let mut b = b.exec()?.into_writable()?;
    /// b.clear();
    /// assert!(b.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// How many bytes were written.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0x90, 0xc3])?; // nop; ret
    /// assert_eq!(block.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// assert!(block.is_empty());
    /// block.write_all(&[0xc3])?;
    /// assert!(!block.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes the block holds: its length rounded up to whole pages.
    ///
    /// # Examples
    ///
    /// ```
    /// let block = wxthunk::Block::new(1)?;
    /// assert_eq!(block.capacity(), wxthunk::page_size());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.mem.capacity()
    }

    /// How many more bytes can be written.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xc3])?;
    /// assert_eq!(block.remaining(), block.capacity() - 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remaining(&self) -> usize {
        self.capacity() - self.len
    }

    /// The bytes written so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0x90, 0xc3])?;
    /// assert_eq!(block.as_slice(), &[0x90, 0xc3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the writable mapping were written
        // (and the mapping is zero-filled anyway); `&self` keeps writes out.
        unsafe { std::slice::from_raw_parts(self.mem.write_ptr().as_ptr(), self.len) }
    }

    /// The bytes written so far, for patching (say, back-filling a jump
    /// once its target is known).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xeb, 0x00, 0xc3])?; // jmp +0 (to be patched); ret
    /// block.as_mut_slice()[1] = 0x00; // the jump's displacement, now known
    /// assert_eq!(block.as_slice(), &[0xeb, 0x00, 0xc3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.mem.write_ptr().as_ptr(), self.len) }
    }

    /// The address the code will run at once sealed (offset 0 of the
    /// [`ExecBlock`]), so a JIT can emit absolute and PC-relative addresses
    /// before sealing. It is stable across [`exec`](Block::exec) and
    /// [`ExecBlock::into_writable`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// let at = block.exec_ptr();
    /// block.write_all(&[0xc3])?;
    /// assert_eq!(block.exec()?.as_ptr(), at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exec_ptr(&self) -> *const u8 {
        self.mem.exec_ptr().as_ptr()
    }

    /// The strategy that will make this block executable.
    ///
    /// # Examples
    ///
    /// ```
    /// let block = wxthunk::Block::new(0)?;
    /// // The strategy the probe picked for blocks.
    /// assert_eq!(Some(block.strategy()), wxthunk::probe().block_strategy);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strategy(&self) -> Strategy {
        self.mem.strategy().into()
    }

    /// The strategy as a [`CodeStrategy`].
    ///
    /// # Examples
    ///
    /// ```
    /// let block = wxthunk::Block::new(0)?;
    /// assert_eq!(block.strategy(), block.code_strategy().into());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn code_strategy(&self) -> CodeStrategy {
        self.mem.strategy()
    }

    /// Asks for the block's code to be mapped guarded when sealed (off by
    /// default): on AArch64 with BTI (see
    /// [`Policy::branch_protection`](crate::Policy::branch_protection)),
    /// with `PROT_BTI`, so that an indirect branch into the block must land
    /// on a `bti c` (or `paciasp`) instruction, or the process gets
    /// `SIGILL`. Turn it on for code whose every entry reached through a
    /// pointer has one (a compiler's `-mbranch-protection=bti`, cranelift's
    /// `use_bti`); it makes a jump into the middle of the code fault.
    /// Blocks are unguarded by default because code written by hand or by
    /// a code generator without that option lacks the landing pads. Kept
    /// across [`ExecBlock::into_writable`](crate::ExecBlock::into_writable);
    /// elsewhere, and on other architectures, it changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut block = wxthunk::Block::new(64)?;
    /// assert!(!block.branch_protection());
    /// block.set_branch_protection(true);
    /// assert!(block.branch_protection());
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn set_branch_protection(&mut self, on: bool) {
        self.mem.guarded = on;
    }

    /// Whether the block's code is mapped guarded when sealed
    /// ([`set_branch_protection`](Self::set_branch_protection)).
    pub fn branch_protection(&self) -> bool {
        self.mem.guarded
    }

    /// Seals the block: the bytes written become executable at
    /// [`exec_ptr`](Block::exec_ptr) and can never be written through this
    /// value again. The rest of the last page written is filled with trap
    /// instructions.
    ///
    /// # Errors
    ///
    /// If the operating system refuses (e.g. a policy set after the probe
    /// forbids `mprotect` to exec), the error hands the block back unchanged
    /// ([`TransitionError::into_inner`]); `?` turns it into [`Error`](crate::Error).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0x48, 0x8d, 0x04, 0x37, 0xc3])?; // lea rax, [rdi + rsi]; ret
    /// let code = block.exec()?; // read+exec from now on; `block` is gone
    /// if cfg!(all(target_arch = "x86_64", not(windows))) {
    ///     // SAFETY: offset 0 holds a C function (u64, u64) -> u64.
    ///     let add: extern "C" fn(u64, u64) -> u64 = unsafe { code.func(0)? };
    ///     assert_eq!(add(2, 40), 42);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exec(mut self) -> Result<ExecBlock, TransitionError<Block>> {
        match self.mem.seal(self.len) {
            Ok(()) => {
                let len = self.len;
                crate::perf_map::record(|| {
                    (self.exec_ptr() as usize, len, "wxthunk block".to_owned())
                });
                Ok(ExecBlock { mem: self.mem, len })
            }
            Err(e) => Err(TransitionError::new(e, self)),
        }
    }
}

impl io::Write for Block {
    /// Appends as much of `buf` as fits; `Ok(0)` once the block is full, so
    /// `write_all` past capacity fails with [`io::ErrorKind::WriteZero`]
    /// after writing what fits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.remaining());
        // SAFETY: `len + n <= capacity`; the destination is our writable
        // mapping and cannot overlap `buf` (a caller-owned slice).
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.as_ptr(),
                self.mem.write_ptr().as_ptr().add(self.len),
                n,
            )
        };
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("strategy", &self.strategy())
            .field("exec_ptr", &self.exec_ptr())
            .finish()
    }
}
