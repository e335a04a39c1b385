//! [`DynThunk`]: a thunk whose signature is known only at run time, for a
//! target that is already a function of the platform's C convention: it
//! takes the thunk's arguments followed by one more pointer, the context.
//! No closure and no entry function of wxthunk's: the thunk places the
//! context as that trailing pointer argument (a register, or a new frame)
//! and jumps to the target. This is what the C API (`wx_thunk_new`) and
//! language runtimes with their own signatures need.
//!
//! The thunk is one of the kinds `handle.rs` knows, so it is freed as any
//! other: `GRANULE` (a register placement on a dual-mapped heap: one
//! granule, nothing allocated) or `SLOW` (generated code, or a trampoline
//! table entry, with its frame record), never `STATIC` or `COMPILED`.

use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;

use lock_api::RawMutex;

use super::Thunk;
use super::codegen::{code_for, frame_record};
use super::context::Context;
use super::handle::{self, Code, Slow};
use crate::abi::conv::C_CONV;
use crate::abi::{ArgClass, FnPtr};
use crate::arch::{self, Placement};
use crate::error::{Error, Result};
use crate::heap::{DefaultLock, Heap};
use crate::strategy::ThunkStrategy;
use crate::trampoline;

/// The type the handle is kept as: the pointer's real signature is the
/// one given at run time.
type Untyped = unsafe extern "C" fn();

/// A thunk whose signature is given at run time: a bare function pointer
/// ([`as_ptr`](DynThunk::as_ptr)) that calls `target` with the caller's
/// arguments followed by `ctx`, a pointer fixed when the thunk is made.
/// Made by [`Heap::dyn_thunk`] (or [`DynThunk::new`] on the global heap).
///
/// The thunk passes every argument, the return value and the stack
/// through untouched, so it serves any signature whose arguments are
/// integers (up to 64 bits), pointers, `bool`, `float` or `double` (at
/// most 16) and whose result is one of those or `void`. A result returned
/// through memory (a large struct) would shift the arguments and is not
/// supported.
///
/// Dropping the thunk frees its code at once, as for [`Thunk`]: a call
/// through the pointer after the drop is a bug (it hits a trap or other
/// code). It owns nothing of `ctx`. On a debug heap
/// ([`HeapBuilder::debug`](crate::HeapBuilder::debug)) it is an ordinary
/// thunk: the late-call reports are for closures' thunks only.
///
/// # Examples
///
/// ```
/// use std::ffi::c_void;
/// use wxthunk::{ArgClass, DynThunk};
///
/// // The C-convention target: the thunk's arguments, then the context.
/// extern "C" fn add_offset(x: i64, ctx: *mut c_void) -> i64 {
///     // SAFETY: the context is the `i64` below, alive while the thunk is.
///     x + unsafe { *ctx.cast::<i64>() }
/// }
///
/// let mut offset = 40_i64;
/// let target = add_offset as extern "C" fn(i64, *mut c_void) -> i64;
/// let thunk = DynThunk::new(
///     &[ArgClass::Integer],
///     target as *const c_void,
///     (&raw mut offset).cast(),
/// )?;
/// // SAFETY: the pointer takes the one integer argument given above and
/// // returns the target's result.
/// let f: extern "C" fn(i64) -> i64 = unsafe { std::mem::transmute(thunk.as_ptr()) };
/// assert_eq!(f(2), 42);
/// # Ok::<(), wxthunk::Error>(())
/// ```
pub struct DynThunk<'a, L: RawMutex = DefaultLock> {
    thunk: Thunk<'a, Untyped, L>,
}

#[cfg(feature = "default-heap")]
impl DynThunk<'static> {
    /// A thunk on the global default heap: see [`Heap::dyn_thunk`].
    ///
    /// # Errors
    ///
    /// As [`Heap::dyn_thunk`], and as [`Heap::global`] on its first use.
    ///
    /// # Examples
    ///
    /// See [`DynThunk`].
    pub fn new(args: &[ArgClass], target: *const c_void, ctx: *mut c_void) -> Result<Self> {
        Heap::global()?.dyn_thunk(args, target, ctx)
    }
}

impl<'a, L: RawMutex> DynThunk<'a, L> {
    /// The thunk's function pointer, to be cast to the signature it was
    /// made for (`extern "C"`, the arguments of `args`, the target's
    /// result).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::ffi::c_void;
    /// extern "C" fn ctx_of(ctx: *mut c_void) -> *mut c_void {
    ///     ctx
    /// }
    /// let target = ctx_of as extern "C" fn(*mut c_void) -> *mut c_void;
    /// let t = wxthunk::DynThunk::new(&[], target as *const c_void, 7 as *mut c_void)?;
    /// // SAFETY: no arguments, the target's result.
    /// let f: extern "C" fn() -> *mut c_void = unsafe { std::mem::transmute(t.as_ptr()) };
    /// assert_eq!(f() as usize, 7);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *const c_void {
        self.thunk.as_fn() as *const c_void
    }

    /// The heap the thunk's code lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::ffi::c_void;
    /// extern "C" fn ctx_of(ctx: *mut c_void) -> *mut c_void {
    ///     ctx
    /// }
    /// let heap = wxthunk::Heap::new()?;
    /// let target = ctx_of as extern "C" fn(*mut c_void) -> *mut c_void;
    /// let t = heap.dyn_thunk(&[], target as *const c_void, std::ptr::null_mut())?;
    /// assert!(std::ptr::eq(t.heap(), &heap));
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn heap(&self) -> &'a Heap<L> {
        self.thunk.heap()
    }
}

impl<L: RawMutex> fmt::Debug for DynThunk<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynThunk")
            .field("ptr", &self.as_ptr())
            .finish_non_exhaustive()
    }
}

impl<L: RawMutex> Heap<L> {
    /// A thunk whose signature is given at run time: its pointer calls
    /// `target` with the caller's arguments (of classes `args`, in order)
    /// followed by `ctx`. `target` is a function of the platform's C
    /// convention (`extern "C"`) declared with those arguments and then a
    /// pointer, and returns what the thunk's callers expect (a scalar or
    /// nothing; see [`DynThunk`]). `ctx` is passed unchanged (null
    /// included); the thunk does not own what it points to.
    ///
    /// Making the thunk calls nothing; calling its pointer is as unsafe as
    /// calling `target`: the signature the caller uses must be the one
    /// given here, and `target` must be callable with `ctx` for as long as
    /// calls come.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSignature`] for a null `target`, more than 16
    /// arguments, or a struct argument (scalars only);
    /// [`Error::Unsupported`] on an architecture without a thunk code
    /// generator; otherwise as [`Heap::alloc`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ffi::c_void;
    /// use wxthunk::ArgClass::{Float, Integer};
    ///
    /// // Eight integers and a double fill System V's integer registers, so
    /// // the context goes on the stack, after the ninth argument.
    /// extern "C" fn sum(
    ///     a: i32, b: i32, c: i32, d: i32, e: i32, f: i32, g: i32, h: i32, x: f64,
    ///     ctx: *mut c_void,
    /// ) -> f64 {
    ///     let ints = a + b + c + d + e + f + g + h;
    ///     ints as f64 + x + ctx as usize as f64
    /// }
    /// type Sum = extern "C" fn(i32, i32, i32, i32, i32, i32, i32, i32, f64) -> f64;
    ///
    /// let heap = wxthunk::Heap::new()?;
    /// let target = sum as extern "C" fn(i32, i32, i32, i32, i32, i32, i32, i32, f64, *mut c_void) -> f64;
    /// let t = heap.dyn_thunk(&[Integer; 8].iter().copied().chain([Float]).collect::<Vec<_>>(),
    ///     target as *const c_void, 1000 as *mut c_void)?;
    /// // SAFETY: the signature given above, the target's result.
    /// let f: Sum = unsafe { std::mem::transmute(t.as_ptr()) };
    /// assert_eq!(f(1, 2, 3, 4, 5, 6, 7, 8, 0.5), 1036.5);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn dyn_thunk(
        &self,
        args: &[ArgClass],
        target: *const c_void,
        ctx: *mut c_void,
    ) -> Result<DynThunk<'_, L>> {
        if target.is_null() {
            return Err(Error::InvalidSignature {
                reason: "the target is a null pointer",
            });
        }
        if args.len() > crate::abi::MAX_ARITY {
            return Err(Error::InvalidSignature {
                reason: "more than 16 arguments",
            });
        }
        if args.iter().any(|a| matches!(a, ArgClass::Struct(_))) {
            return Err(Error::InvalidSignature {
                reason: "a struct argument (run-time signatures take scalars only)",
            });
        }
        let Some(placement) = arch::pointer_placement(C_CONV, args) else {
            return Err(Error::Unsupported {
                what: "thunks for the C calling convention on this architecture",
            });
        };
        let thunk = self.dyn_thunk_at(placement, target.cast(), ctx as usize)?;
        if crate::perf_map::may_be_on() {
            super::create::note_thunk(thunk.code(), "wxthunk::DynThunk");
        }
        Ok(DynThunk { thunk })
    }

    /// [`dyn_thunk`](Heap::dyn_thunk)'s thunk, its context at `placement`.
    fn dyn_thunk_at(
        &self,
        placement: Placement,
        target: *const (),
        ctx: usize,
    ) -> Result<Thunk<'_, Untyped, L>> {
        // The tag of a thunk that keeps nothing in its data slot (`()`).
        let tag = const {
            match handle::inline_tag::<()>() {
                Some(tag) => tag,
                None => panic!("nothing fits a data slot"),
            }
        };
        if self.table_code().is_some() && !self.is_debug() {
            // A `STATIC` thunk: a slot of a table (a ready one when there is
            // one) with this record, and nothing allocated. The closures
            // capture the record alone, made here once.
            let kind = trampoline::kind_of(placement);
            let record = trampoline::record(C_CONV, placement, ctx, target as usize);
            let slot = match self.trampoline_slot_fast(kind, move |_| record) {
                Some(slot) => slot,
                None => self.trampoline_slot(kind, move |_| record)?,
            };
            let at = slot.entry + trampoline::entry_offset(placement);
            // SAFETY: a slot of this heap whose record passes `ctx` to
            // `target` as the trailing pointer after the arguments, from its
            // entry in the page of `placement` (`at`); it keeps nothing.
            return Ok(unsafe { Thunk::with_slot_at(slot, at, (), tag) });
        }
        let strategy = self.thunk_strategy();
        let dual_maps = matches!(strategy, ThunkStrategy::Generated(code) if code.dual_maps());
        if let (Placement::Register(reg), true) = (placement, dual_maps && !self.is_debug()) {
            // The closure captures the register alone, not the `Placement`:
            // copies of its odd layout (a byte tag, then a byte or a word)
            // stall store forwarding on this path (`codegen::placement_const`).
            let target = target as usize;
            let make = move |at, _| arch::register_thunk(reg, ctx, target, at);
            // This thread's ready granules first, as `Thunk`'s fast path.
            if let Some(granule) = self.thunk_granule_fast::<1>(make) {
                // SAFETY: a granule of this heap just written with a thunk
                // passing `ctx` to `target`; it keeps nothing (`()`).
                return Ok(unsafe { Thunk::with_granule(granule, (), tag) });
            }
            if let Some(granule) = self.thunk_granule::<1>(make)? {
                // SAFETY: as above.
                return Ok(unsafe { Thunk::with_granule(granule, (), tag) });
            }
        }
        // Nothing to free besides the code and the record: the context is
        // the caller's.
        let kept = Context::trivial(NonNull::dangling());
        let builds_frame = matches!(placement, Placement::Stack(_));
        let (at, code, record) = if self.table_code().is_some() {
            let (slot, _) = self.trampoline(
                trampoline::kind_of(placement),
                |_| trampoline::record(C_CONV, placement, ctx, target as usize),
                false,
            )?;
            let at = slot.entry() + trampoline::entry_offset(placement);
            (at as *const (), Code::Static(slot), None)
        } else {
            let record = frame_record(placement, ctx, target);
            let code = self.exec_code_at(arch::THUNK_CODE_MAX, |at| {
                code_for(C_CONV, placement, ctx, target, record.as_deref(), at)
            })?;
            (code.as_ptr().cast(), Code::Generated(code), record)
        };
        let slow = Slow::boxed(self, code, kept, record, builds_frame);
        // SAFETY: the code (generated, or a trampoline entry whose record
        // holds the adapter for `placement`) passes `ctx` to `target` as
        // the trailing pointer; it is not null. The thunk owns the code and
        // the record, in `slow`.
        Ok(unsafe { Thunk::from_slow(<Untyped as FnPtr>::from_addr(at), slow) })
    }
}
