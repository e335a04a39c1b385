//! [`ExecBlock`]: a sealed block, read+exec; typed function pointers into
//! it, and the way back to a writable [`Block`] for re-JIT.

use std::fmt;

use super::Block;
use super::memory::BlockMemory;
use crate::abi::FnPtr;
use crate::error::Result;
use crate::error::TransitionError;
use crate::strategy::{CodeStrategy, Strategy};

/// A sealed block: read+exec, never writable. Made by [`Block::exec`];
/// unmapped when dropped.
///
/// # Auto traits
///
/// `ExecBlock` is `Send` and `Sync`: its memory cannot change while it
/// exists, so any thread may read it or run code in it.
pub struct ExecBlock {
    pub(super) mem: BlockMemory,
    pub(super) len: usize,
}

impl ExecBlock {
    /// How many bytes were written before sealing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0x90, 0xc3])?;
    /// assert_eq!(block.exec()?.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written before sealing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity in bytes (whole pages).
    pub fn capacity(&self) -> usize {
        self.mem.capacity()
    }

    /// The code, read back from the executable mapping.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the executable mapping is readable for `capacity >= len`
        // bytes and never written while `self` exists.
        unsafe { std::slice::from_raw_parts(self.mem.read_ptr().as_ptr(), self.len) }
    }

    /// The address of offset 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xc3])?;
    /// let code = block.exec()?;
    /// assert_eq!(code.as_ptr(), code.as_slice().as_ptr());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_ptr(&self) -> *const u8 {
        self.mem.exec_ptr().as_ptr()
    }

    /// The strategy that made this block executable.
    pub fn strategy(&self) -> Strategy {
        self.mem.strategy().into()
    }

    /// The strategy as a [`CodeStrategy`].
    pub fn code_strategy(&self) -> CodeStrategy {
        self.mem.strategy()
    }

    /// A function pointer of type `F` to the code at `offset`.
    ///
    /// `F` is any [`FnPtr`] (`extern "C" fn(..) -> R` and friends); other
    /// types do not compile.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) if `offset` is not inside the bytes written.
    ///
    /// # Safety
    ///
    /// - The code at `offset` must be a function that follows `F`'s ABI and
    ///   signature (arguments, return value, callee-saved registers, stack
    ///   alignment, unwinding).
    /// - The pointer must not be called after `self` is dropped or turned
    ///   back into a [`Block`]: it does not borrow `self`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xb8, 0x07, 0x00, 0x00, 0x00, 0xc3])?; // mov eax, 7; ret
    /// let code = block.exec()?;
    /// if cfg!(all(target_arch = "x86_64", not(windows))) {
    ///     // SAFETY: offset 0 holds a C function taking nothing and returning an i32.
    ///     let seven: extern "C" fn() -> i32 = unsafe { code.func(0)? };
    ///     assert_eq!(seven(), 7);
    /// }
    /// // Past the code: an error, not a pointer.
    /// // SAFETY: never called.
    /// assert!(unsafe { code.func::<extern "C" fn()>(6) }.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn func<F: FnPtr>(&self, offset: usize) -> Result<F> {
        // SAFETY: our code is mapped for `len` bytes from `as_ptr`; the
        // caller upholds this function's contract for the pointer.
        unsafe { crate::abi::fn_ptr::func_at(self.as_ptr(), self.len, offset) }
    }

    /// Makes the block writable again (for re-JIT), keeping its contents and
    /// its [`exec_ptr`](Block::exec_ptr).
    ///
    /// # Errors
    ///
    /// If the operating system refuses, the error hands the `ExecBlock` back
    /// unchanged.
    ///
    /// # Platform-specific behaviour
    ///
    /// With [`Strategy::Protect`] the code stops being executable at once;
    /// with [`Strategy::DualMap`] the old code stays mapped read+exec until
    /// the next [`Block::exec`] replaces it. Either way, calling a pointer
    /// obtained before is outside [`func`](ExecBlock::func)'s contract.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3])?; // mov eax, 1; ret
    /// let code = block.exec()?;
    /// let at = code.as_ptr();
    /// // Re-JIT: writable again at the same address, then sealed again.
    /// let mut block = code.into_writable()?;
    /// block.clear();
    /// block.write_all(&[0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3])?; // mov eax, 2; ret
    /// let code = block.exec()?;
    /// assert_eq!(code.as_ptr(), at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_writable(mut self) -> Result<Block, TransitionError<ExecBlock>> {
        match self.mem.unseal(self.len) {
            Ok(()) => Ok(Block {
                mem: self.mem,
                len: self.len,
            }),
            Err(e) => Err(TransitionError::new(e, self)),
        }
    }
}

impl fmt::Debug for ExecBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecBlock")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("strategy", &self.strategy())
            .field("ptr", &self.as_ptr())
            .finish()
    }
}
