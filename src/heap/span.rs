//! [`Span`] and [`ExecSpan`]: one piece of code in a heap, writable then
//! executable.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;

use lock_api::RawMutex;

use super::{Allocation, DefaultLock, Heap};
use crate::abi::FnPtr;
use crate::error::TransitionError;
use crate::error::{Error, Result};

/// A piece of a [`Heap`] being written: bytes go into a private buffer
/// ([`io::Write`] appends, up to [`capacity`](Span::capacity)), and
/// [`exec`](Span::exec) copies them to [`exec_ptr`](Span::exec_ptr) and
/// makes them executable. Dropping an unsealed span frees it.
///
/// Writing into a private buffer rather than into the region keeps every
/// write to shared code memory under the heap's lock, so a `fork()` or a
/// neighbour's seal can never see half-written code.
///
/// # Auto traits
///
/// `Span` borrows its heap, so it is `Send` and `Sync` exactly when the heap
/// is `Sync` (not for a [`NoLock`](super::NoLock) heap).
pub struct Span<'h, L: RawMutex = DefaultLock> {
    heap: &'h Heap<L>,
    alloc: Allocation,
    capacity: usize,
    buf: Vec<u8>,
}

impl<'h, L: RawMutex> Span<'h, L> {
    pub(super) fn new(heap: &'h Heap<L>, alloc: Allocation) -> Self {
        Span {
            heap,
            alloc,
            capacity: heap.capacity_of(&alloc),
            buf: Vec::new(),
        }
    }

    /// Bytes written so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(8)?;
    /// span.write_all(&[0x90, 0xc3])?;
    /// assert_eq!(span.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many bytes the span can hold.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let span = heap.alloc(5)?;
    /// assert!(span.capacity() >= 5); // rounded up to the heap's granule
    /// assert_eq!(span.capacity() % heap.granule(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many more bytes can be written.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(32)?;
    /// span.write_all(&[0xc3])?;
    /// assert_eq!(span.remaining(), span.capacity() - 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remaining(&self) -> usize {
        self.capacity - self.buf.len()
    }

    /// The bytes written so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(8)?;
    /// span.write_all(&[0x90, 0xc3])?;
    /// assert_eq!(span.as_slice(), &[0x90, 0xc3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written so far, for patching.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The address offset 0 will run at once sealed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(8)?;
    /// let at = span.exec_ptr(); // known before sealing, for relative addresses
    /// span.write_all(&[0xc3])?;
    /// assert_eq!(span.exec()?.as_ptr(), at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exec_ptr(&self) -> *const u8 {
        self.alloc.addr() as *const u8
    }

    /// The heap this span belongs to.
    pub fn heap(&self) -> &'h Heap<L> {
        self.heap
    }

    /// Copies the bytes written to [`exec_ptr`](Span::exec_ptr) and makes
    /// them executable. The rest of the span holds trap instructions.
    ///
    /// # Errors
    ///
    /// If the system refuses (for example a strict heap's `pwrite` fails);
    /// the span is then freed. Use [`try_exec`](Span::try_exec) to get it
    /// back instead (its error borrows the heap, so it cannot be boxed as a
    /// `'static` error; this one can).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(6)?;
    /// span.write_all(&[0xb8, 0x05, 0x00, 0x00, 0x00, 0xc3])?; // mov eax, 5; ret
    /// let code = span.exec()?;
    /// if cfg!(all(target_arch = "x86_64", not(windows))) {
    ///     // SAFETY: the span holds a C function taking nothing, returning an i32.
    ///     let five: extern "C" fn() -> i32 = unsafe { code.func(0)? };
    ///     assert_eq!(five(), 5);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exec(self) -> Result<ExecSpan<'h, L>> {
        self.try_exec().map_err(Error::from)
    }

    /// Like [`exec`](Span::exec), but a failure hands the span back
    /// unchanged, with everything written.
    ///
    /// # Errors
    ///
    /// As [`exec`](Span::exec).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(1)?;
    /// span.write_all(&[0xc3])?;
    /// let code = match span.try_exec() {
    ///     Ok(code) => code,
    ///     // The span comes back unchanged with the error: retry, or keep it.
    ///     Err(failed) => return Err(failed.into_parts().0.into()),
    /// };
    /// assert_eq!(code.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_exec(self) -> Result<ExecSpan<'h, L>, TransitionError<Span<'h, L>>> {
        self.try_exec_as(|| "wxthunk span".to_owned())
    }

    /// Like [`exec`](Span::exec), naming the code `name` in perf's map of
    /// JIT code when that is on ([`enable_perf_map`](crate::enable_perf_map),
    /// `WXTHUNK_PERF_MAP=1`); the default name is `wxthunk span`.
    ///
    /// # Errors
    ///
    /// As [`exec`](Span::exec).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::global()?;
    /// let mut span = heap.alloc(1)?;
    /// span.write_all(&[0xc3])?;
    /// let code = span.exec_named("jit: my_function")?;
    /// # drop(code);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exec_named(self, name: &str) -> Result<ExecSpan<'h, L>> {
        self.try_exec_as(|| name.to_owned()).map_err(Error::from)
    }

    pub(crate) fn try_exec_as(
        self,
        name: impl FnOnce() -> String,
    ) -> Result<ExecSpan<'h, L>, TransitionError<Span<'h, L>>> {
        match self.heap.commit(&self.alloc, &self.buf) {
            Ok(()) => {
                // The allocation moves to the `ExecSpan`; only the buffer is
                // dropped here.
                let mut this = ManuallyDrop::new(self);
                let len = this.buf.len();
                drop(std::mem::take(&mut this.buf));
                let span = ExecSpan {
                    heap: this.heap,
                    alloc: this.alloc,
                    len,
                };
                crate::perf_map::record(|| (span.as_ptr() as usize, span.len(), name()));
                Ok(span)
            }
            Err(e) => Err(TransitionError::new(e, self)),
        }
    }
}

/// Spans up to this size reserve their whole buffer at the first write.
const SMALL_SPAN: usize = 4096;

impl<L: RawMutex> io::Write for Span<'_, L> {
    /// Appends as much of `buf` as fits; `Ok(0)` when the span is full, so
    /// `write_all` past capacity fails with `WriteZero` after writing what
    /// fits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.remaining());
        if self.buf.capacity() == 0 && n > 0 && self.capacity <= SMALL_SPAN {
            // A small span (a thunk, a snippet) is usually written whole.
            self.buf.reserve_exact(self.capacity);
        }
        // The buffer grows with what is written, never with the capacity
        // asked for; an allocation failure is an error, not an abort.
        self.buf
            .try_reserve(n)
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.buf.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<L: RawMutex> Drop for Span<'_, L> {
    fn drop(&mut self) {
        self.heap.free(&self.alloc);
    }
}

impl<L: RawMutex> fmt::Debug for Span<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Span")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("exec_ptr", &self.exec_ptr())
            .finish()
    }
}

/// A sealed piece of code in a [`Heap`]: executable, never writable; freed
/// (its bytes replaced by traps) when dropped.
///
/// Freeing is dropping, so a double free does not compile:
///
/// ```compile_fail
/// use std::io::Write;
/// let heap = wxthunk::Heap::new()?;
/// let mut s = heap.alloc(1)?;
/// s.write_all(&[0xc3])?;
/// let x = s.exec()?;
/// drop(x);
/// drop(x); // error: use of moved value
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// # Auto traits
///
/// `Send` and `Sync` exactly when the heap is `Sync`: its code never changes
/// while it lives, so any thread may run it, and dropping it frees into the
/// heap it borrows.
pub struct ExecSpan<'h, L: RawMutex = DefaultLock> {
    heap: &'h Heap<L>,
    alloc: Allocation,
    len: usize,
}

impl<'h, L: RawMutex> ExecSpan<'h, L> {
    pub(crate) fn from_parts(heap: &'h Heap<L>, alloc: Allocation, len: usize) -> Self {
        ExecSpan { heap, alloc, len }
    }

    /// Bytes written before sealing.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written before sealing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of offset 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(1)?;
    /// span.write_all(&[0xc3])?;
    /// let code = span.exec()?;
    /// assert_eq!(code.as_ptr(), code.as_slice().as_ptr());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_ptr(&self) -> *const u8 {
        self.alloc.addr() as *const u8
    }

    /// The code, read back from the executable mapping.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the executable mapping is readable, holds `len` bytes of
        // ours, and does not change while `self` lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The heap this code belongs to.
    pub fn heap(&self) -> &'h Heap<L> {
        self.heap
    }

    /// A function pointer of type `F` to the code at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `offset` is not inside the bytes written.
    ///
    /// # Safety
    ///
    /// - The code at `offset` must follow `F`'s ABI and signature.
    /// - The pointer must not be called after `self` is dropped (it does not
    ///   borrow `self`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let heap = wxthunk::Heap::new()?;
    /// let mut span = heap.alloc(8)?;
    /// span.write_all(&[0x48, 0x8d, 0x04, 0x37, 0xc3])?; // lea rax, [rdi + rsi]; ret
    /// let code = span.exec()?;
    /// if cfg!(all(target_arch = "x86_64", not(windows))) {
    ///     // SAFETY: offset 0 holds a C function (u64, u64) -> u64.
    ///     let add: extern "C" fn(u64, u64) -> u64 = unsafe { code.func(0)? };
    ///     assert_eq!(add(40, 2), 42);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn func<F: FnPtr>(&self, offset: usize) -> Result<F> {
        // SAFETY: our code is mapped for `len` bytes from `as_ptr`; the
        // caller upholds this function's contract for the pointer.
        unsafe { crate::abi::fn_ptr::func_at(self.as_ptr(), self.len, offset) }
    }
}

impl<L: RawMutex> Drop for ExecSpan<'_, L> {
    fn drop(&mut self) {
        self.heap.free(&self.alloc);
    }
}

impl<L: RawMutex> fmt::Debug for ExecSpan<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSpan")
            .field("len", &self.len)
            .field("ptr", &self.as_ptr())
            .finish()
    }
}
