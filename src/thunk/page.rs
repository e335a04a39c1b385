//! member_thunk's page workflow for thunks: several thunks of one signature
//! on one page, made executable once, freed as a unit.

use std::fmt;
use std::io::Write;
use std::marker::PhantomData;

use lock_api::RawMutex;

use super::call::{MutCtx, OnceCtx};
use super::closure::{ClosureSig, ClosureSigMut, ClosureSigOnce, ThunkFn, ThunkFnMut, ThunkFnOnce};
use super::codegen::{FrameRecord, frame_record, generated_code, placement_of};
use super::context::Context;
use crate::abi::{FnPtr, ThunkSig};
use crate::arch::{self, THUNK_CODE_MAX};
use crate::error::{Error, Result};
use crate::heap::Heap;
use crate::heap::{DefaultLock, ExecSpan, SendsClosure, SharesClosure, Span};

/// A page of thunks being filled: [`push`](ThunkPage::push) closures (each
/// gets the next 32-byte slot), then [`seal`](ThunkPage::seal) the page once.
/// member_thunk's `page_full` is [`Error::PageFull`]; its `page_executable`
/// is the type change to [`SealedThunkPage`].
///
/// Its thunks are one direct jump each, up to 128 of them (4 KiB pages)
/// behind one seal. (A protect heap's individually created thunks share
/// sealed trampoline tables on Linux, a load and an indirect jump each; on
/// Windows each takes a page of its own.)
///
/// ```
/// # if cfg!(target_arch = "x86_64") {
/// let heap = wxthunk::Heap::new()?;
/// let mut page = heap.thunk_page::<unsafe extern "C" fn(u32) -> u32>()?;
/// for k in 0..3 {
///     page.push(move |v: u32| v * 10 + k)?;
/// }
/// let page = page.exec()?;
/// // SAFETY: the page is alive.
/// assert_eq!(unsafe { (page.func(2)?)(4) }, 42);
/// # }
/// # Ok::<(), wxthunk::Error>(())
/// ```
pub struct ThunkPage<'a, F: ThunkSig, L: RawMutex = DefaultLock> {
    page: Span<'a, L>,
    entries: Vec<Entry>,
    _sig: PhantomData<(&'a (), F)>,
}

/// A sealed page of thunks; dropping it frees the page, then the closures.
pub struct SealedThunkPage<'a, F: ThunkSig, L: RawMutex = DefaultLock> {
    // Drop order: the code first, so no new call can start.
    code: ExecSpan<'a, L>,
    entries: Vec<Entry>,
    _sig: PhantomData<(&'a (), F)>,
}

struct Entry {
    _ctx: Context,
    _record: Option<Box<FrameRecord>>,
}

impl<L: RawMutex> Heap<L> {
    /// A page for thunks of type `F` (see [`ThunkPage`]).
    ///
    /// # Errors
    ///
    /// As [`Heap::allocate_page`].
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let page = heap.thunk_page::<unsafe extern "C" fn(i32) -> i32>()?;
    /// assert!(page.is_empty());
    /// assert!(page.capacity() >= 1);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn thunk_page<F: ThunkSig>(&self) -> Result<ThunkPage<'_, F, L>> {
        Ok(ThunkPage {
            page: self.allocate_page()?,
            entries: Vec::new(),
            _sig: PhantomData,
        })
    }
}

impl<'a, F: ThunkSig, L: RawMutex> ThunkPage<'a, F, L> {
    /// How many thunks the page holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let page = heap.thunk_page::<unsafe extern "C" fn()>()?;
    /// // A page of 4 KiB holds 128 thunks of 32 bytes.
    /// assert_eq!(page.capacity(), wxthunk::page_size() / 32);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.page.capacity() / THUNK_CODE_MAX
    }

    /// How many thunks were pushed.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn(u32) -> u32>()?;
    /// let k = std::hint::black_box(1);
    /// page.push(move |v| v + k)?;
    /// assert_eq!(page.len(), 1);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a thunk for an `Fn` closure; returns its index.
    ///
    /// # Errors
    ///
    /// [`Error::PageFull`] when all slots are taken (the closure is
    /// dropped); [`Error::Unsupported`] on an architecture without a thunk
    /// code generator.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn(u32) -> u32>()?;
    /// let mut index = Vec::new();
    /// for k in 0..page.capacity() as u32 {
    ///     index.push(page.push(move |v| v + k)?);
    /// }
    /// // The page is full: the next closure is refused (and dropped).
    /// assert!(page.push(|v| v).is_err());
    /// let page = page.exec()?;
    /// // SAFETY: the page is alive.
    /// assert_eq!(unsafe { (page.func(index[5])?)(10) }, 15);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn push<C>(&mut self, closure: C) -> Result<usize>
    where
        C: ThunkFn<F> + 'a,
        F: ClosureSig<C>,
        L: SharesClosure<C>,
    {
        self.push_context(Context::boxed(closure), C::entry())
    }

    /// Adds a thunk for an `FnMut` closure (see [`Thunk`](crate::Thunk)).
    ///
    /// # Errors
    ///
    /// As [`push`](ThunkPage::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn() -> u32>()?;
    /// let mut n = 0;
    /// let i = page.push_mut(move || {
    ///     n += 1;
    ///     n
    /// })?;
    /// let page = page.exec()?;
    /// // SAFETY: the page is alive; the calls do not overlap.
    /// unsafe {
    ///     assert_eq!((page.func(i)?)(), 1);
    ///     assert_eq!((page.func(i)?)(), 2);
    /// }
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn push_mut<C>(&mut self, closure: C) -> Result<usize>
    where
        C: ThunkFnMut<F> + 'a,
        F: ClosureSigMut<C>,
        L: SendsClosure<C>,
    {
        self.push_context(Context::boxed_mut(MutCtx::new(closure)), C::entry())
    }

    /// Adds a thunk for an `FnOnce` closure (see [`Thunk`](crate::Thunk)).
    ///
    /// # Errors
    ///
    /// As [`push`](ThunkPage::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn() -> usize>()?;
    /// let name = String::from("once");
    /// let i = page.push_once(move || name.len())?;
    /// let page = page.exec()?;
    /// // SAFETY: the page is alive; called once.
    /// assert_eq!(unsafe { (page.func(i)?)() }, 4);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn push_once<C>(&mut self, closure: C) -> Result<usize>
    where
        C: ThunkFnOnce<F> + 'a,
        F: ClosureSigOnce<C>,
        L: SendsClosure<C>,
    {
        self.push_context(Context::boxed(OnceCtx::new(closure)), C::entry())
    }

    fn push_context(&mut self, ctx: Context, entry: *const ()) -> Result<usize> {
        let index = self.entries.len();
        if index == self.capacity() {
            return Err(Error::PageFull {
                capacity: self.capacity(),
            });
        }
        let placement = placement_of::<F>()?;
        let at = self.page.exec_ptr() as usize + index * THUNK_CODE_MAX;
        let ctx_addr = ctx.ptr.as_ptr() as usize;
        let record = frame_record(placement, ctx_addr, entry);
        let code = generated_code::<F>(placement, ctx_addr, entry, record.as_deref(), at);
        let mut slot = [0u8; THUNK_CODE_MAX];
        arch::fill_traps_at(&mut slot, at);
        slot[..code.len()].copy_from_slice(code.as_slice());
        self.page.write_all(&slot).map_err(|_| Error::PageFull {
            capacity: self.capacity(),
        })?;
        self.entries.push(Entry {
            _ctx: ctx,
            _record: record,
        });
        Ok(index)
    }

    /// Makes the page executable, once: the same verb as
    /// [`Block::exec`](crate::Block::exec) and [`Span::exec`].
    ///
    /// # Errors
    ///
    /// As [`Span::exec`]; the page and its closures are then freed.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn(u32) -> u32>()?;
    /// let k = std::hint::black_box(2);
    /// page.push(move |x: u32| x * k)?;
    /// let page = page.exec()?;
    /// // SAFETY: the page is alive.
    /// assert_eq!(unsafe { (page.func(0)?)(21) }, 42);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn exec(self) -> Result<SealedThunkPage<'a, F, L>> {
        let code = self
            .page
            .try_exec_as(|| format!("wxthunk thunk page {}", std::any::type_name::<F>()))
            .map_err(crate::error::Error::from)?;
        Ok(SealedThunkPage {
            code,
            entries: self.entries,
            _sig: PhantomData,
        })
    }

    /// The old name of [`exec`](Self::exec).
    ///
    /// # Errors
    ///
    /// As [`exec`](Self::exec).
    #[deprecated(note = "renamed `exec`, the verb blocks and spans use")]
    pub fn seal(self) -> Result<SealedThunkPage<'a, F, L>> {
        self.exec()
    }
}

impl<F: ThunkSig, L: RawMutex> SealedThunkPage<'_, F, L> {
    /// How many thunks the page holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn()>()?;
    /// page.push(|| {})?;
    /// page.push(|| {})?;
    /// assert_eq!(page.exec()?.len(), 2);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the page holds no thunk.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pointer of thunk `index`, valid while the page lives (see
    /// [`Thunk::as_fn`](crate::Thunk::as_fn)): the same lookup as
    /// [`ExecBlock::func`](crate::ExecBlock::func), typed by the page.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) past the last
    /// thunk (`offset` is the index, `len` the number of thunks).
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let mut page = heap.thunk_page::<unsafe extern "C" fn(i64) -> i64>()?;
    /// let k = std::hint::black_box(-1);
    /// page.push(move |x| x * k)?;
    /// let page = page.exec()?;
    /// // SAFETY: the page is alive.
    /// assert_eq!(unsafe { (page.func(0)?)(5) }, -5);
    /// assert!(page.func(1).is_err()); // past the last thunk
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn func(&self, index: usize) -> Result<F::Unsafe> {
        self.lookup(index).ok_or(crate::error::Error::OutOfBounds {
            offset: index,
            len: self.entries.len(),
        })
    }

    /// The old form of [`func`](Self::func): `None` past the last thunk.
    #[deprecated(note = "use `func`, which returns a `Result` as `ExecBlock::func` does")]
    pub fn as_fn(&self, index: usize) -> Option<F::Unsafe> {
        self.lookup(index)
    }

    fn lookup(&self, index: usize) -> Option<F::Unsafe> {
        (index < self.entries.len()).then(|| {
            // SAFETY: slot `index` holds a thunk of type `F` (written by
            // `push_context`), inside the sealed page.
            unsafe {
                <F::Unsafe as FnPtr>::from_addr(
                    self.code.as_ptr().add(index * THUNK_CODE_MAX).cast(),
                )
            }
        })
    }
}

impl<F: ThunkSig, L: RawMutex> fmt::Debug for ThunkPage<'_, F, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThunkPage")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<F: ThunkSig, L: RawMutex> fmt::Debug for SealedThunkPage<'_, F, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedThunkPage")
            .field("len", &self.len())
            .field("ptr", &self.code.as_ptr())
            .finish()
    }
}
