//! [`Thunk`]: a Rust closure as a bare `extern "C" fn` pointer.
//!
//! # How a call works
//!
//! The closure is called through an ordinary monomorphized Rust function,
//! `extern "ABI" fn entry(a1, .., an, ctx: *const C) -> R`: the context is
//! one *extra trailing argument*. The thunk, a few bytes of generated code,
//! only puts `ctx` where the calling convention passes argument n+1 and
//! jumps to `entry`. No register is assumed untouched by the compiler, no
//! thread-local hand-off is used (a thunk call is async-signal-safe), no
//! compiled code is copied.
//!
//! - When argument n+1 is a register (x86_64 System V: fewer than six
//!   integer-class arguments; Windows x64: fewer than four arguments), the
//!   thunk is `endbr64; mov <reg>, ctx; jmp entry`: the arguments, the
//!   stack and the return address are untouched, and `entry` returns
//!   straight to the caller.
//! - On System V, when the six integer registers are taken but fewer than
//!   eight floats are passed, `entry`'s trailing parameter is declared
//!   `f64`, so it is the next free `xmm` register: the thunk is `endbr64;
//!   mov r11, ctx; movq xmm<k>, r11; jmp entry`, and `entry` takes the
//!   pointer back from the `f64`'s bits. Same properties as the register
//!   path.
//! - Otherwise the context belongs on the stack after the caller's
//!   arguments, inside the caller's frame; the thunk jumps to a precompiled
//!   adapter (with unwind information) that builds a new frame with the
//!   stack arguments and the context, calls `entry` and returns.
//!
//! Where the closure lives: a zero-sized `Fn` closure needs no context (its
//! thunk is a compiled function, see "Closures that capture nothing" on
//! [`Thunk`]); a small `Fn` closure (up to 16 bytes, or up to a word if it
//! needs a drop) lives in the private data slot paired with its thunk's
//! code slot (`crate::data_slot`); on a dual-mapped heap one of up to 32
//! bytes (24 with a drop) takes a thunk of two granules and both their
//! slots; a larger `Fn` closure is boxed and the slot keeps the box; every
//! `FnMut`/`FnOnce` context, and any closure where there is no data slot,
//! is boxed with the rest of the thunk. A `Thunk` is two words, its
//! function pointer and one word saying what it keeps (`handle.rs`).
//!
//! On a heap whose strategy is
//! [`StaticTrampolines`](crate::Strategy::StaticTrampolines) no code is
//! written: the thunk is an entry of a trampoline table mapped from the
//! binary's file, in the table's page for its placement, and its record (at
//! a fixed distance) holds the context and its target: `entry` itself,
//! which a register page's entry reaches in one jump after loading the
//! context into the placement's register, or the same frame adapter. The
//! record is published before the thunk's pointer is returned, its target
//! word last with release ordering.

mod build;
pub(crate) mod call;
#[cfg(all(test, windows))]
mod call_targets_tests;
mod closure;
mod codegen;
mod context;
mod create;
mod debug;
mod dynamic;
mod handle;
mod page;
mod refs;
mod release;

use std::fmt;
use std::marker::PhantomData;

use lock_api::RawMutex;

use crate::abi::{FnPtr, ThunkSig};
use crate::arch::Placement;
#[cfg(feature = "default-heap")]
use crate::error::Result;
use crate::heap::DefaultLock;
use crate::heap::Heap;
use crate::trampoline;
pub use closure::{ClosureSig, ClosureSigMut, ClosureSigOnce, ThunkFn, ThunkFnMut, ThunkFnOnce};
pub use debug::DEBUG_QUARANTINE;
pub use dynamic::DynThunk;
use handle::Code;
pub use page::{SealedThunkPage, ThunkPage};
pub use refs::RefThunk;

/// A closure behind a bare function pointer of type `F`
/// (`unsafe extern "C" fn(i32) -> i32` and the like; see [`ThunkSig`]).
///
/// [`as_fn`](Thunk::as_fn) gives the pointer, to hand to C. It is valid
/// while the `Thunk` lives; dropping the `Thunk` frees the code (its bytes
/// become traps) and then drops the closure. The lifetime `'a` bounds both
/// what the closure borrows and the heap the code lives in, so neither can
/// go away first:
///
/// ```compile_fail
/// let t = {
///     let k = 5;
///     wxthunk::Thunk::<unsafe extern "C" fn(i32) -> i32>::new(|v: i32| v + k).unwrap()
/// }; // error: `k` does not live long enough
/// ```
///
/// # Examples
///
/// ```
/// # if cfg!(target_arch = "x86_64") {
/// let k = 10;
/// let t = wxthunk::Thunk::<unsafe extern "C" fn(i32) -> i32>::new(move |v: i32| v + k)?;
/// let p: unsafe extern "C" fn(i32) -> i32 = t.as_fn();
/// // SAFETY: `t` is alive.
/// assert_eq!(unsafe { p(32) }, 42);
/// # }
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// A capturing comparator for libc's `qsort`, which has no user-data
/// argument:
///
/// ```
/// # if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
/// use std::ffi::c_void;
/// unsafe extern "C" {
///     fn qsort(base: *mut c_void, n: usize, size: usize,
///              cmp: unsafe extern "C" fn(*const c_void, *const c_void) -> i32);
/// }
/// let descending = true;
/// let cmp = wxthunk::Thunk::<unsafe extern "C" fn(*const c_void, *const c_void) -> i32>::new(
///     move |a, b| {
///         // SAFETY: qsort passes pointers to elements of `v`.
///         let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
///         if descending { b.cmp(&a) as i32 } else { a.cmp(&b) as i32 }
///     },
/// )?;
/// let mut v = [3, 1, 2];
/// // SAFETY: `cmp` lives across the call; the arguments describe `v`.
/// unsafe { qsort(v.as_mut_ptr().cast(), v.len(), 4, cmp.as_fn()) };
/// assert_eq!(v, [3, 2, 1]);
/// # }
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// An object and a method (the member-function form):
///
/// ```
/// # if cfg!(target_arch = "x86_64") {
/// struct Counter { step: u64 }
/// impl Counter {
///     fn advance(&self, from: u64) -> u64 { from + self.step }
/// }
/// let counter = Counter { step: 3 };
/// let t = wxthunk::Thunk::<unsafe extern "C" fn(u64) -> u64>::new(|from| counter.advance(from))?;
/// // SAFETY: `t` is alive.
/// assert_eq!(unsafe { (t.as_fn())(4) }, 7);
/// # }
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// The closure's parameter types come from `F`, references included
/// (`|a, out| ..` for `unsafe extern "C" fn(&i32, &mut i64) -> i32`), so
/// they need no annotation (see [`ClosureSig`](crate::ClosureSig)).
///
/// # Kinds of closure
///
/// - [`new`](Thunk::new) / [`Heap::thunk`]: `Fn + Send + Sync`, because C may
///   call the pointer from any thread, at the same time.
/// - [`new_mut`](Thunk::new_mut) / [`Heap::thunk_mut`]: `FnMut + Send`. Each
///   call holds a flag; a second call while one runs (re-entrantly, or from
///   another thread) is caught, never turned into a second `&mut`. A drop of
///   the thunk during one of its calls frees the closure when that call
///   returns.
/// - [`new_once`](Thunk::new_once) / [`Heap::thunk_once`]: `FnOnce + Send`;
///   a second call is caught.
/// - On a heap of one thread ([`Heap::thread_local`], [`Heap::unlocked`],
///   whose lock is [`NoLock`](crate::NoLock)), none of `Send` and `Sync`:
///   such a heap's thunks cannot leave its thread, so an `Rc` or a
///   `RefCell` may be captured (see [`SendsClosure`](crate::SendsClosure)).
///
/// "Caught" means: through an `-unwind` ABI, a panic that reaches the
/// caller; through any other, an abort with a message. Likewise a panic in
/// the closure unwinds to the caller through `"C-unwind"` and friends, and
/// aborts with a message naming wxthunk through `"C"`.
///
/// # Closures that capture nothing
///
/// An `Fn` closure of size zero (one that captures nothing, or only
/// zero-sized values) needs no context, so [`new`](Thunk::new) and
/// [`Heap::thunk`] make its thunk without any memory: the pointer is an
/// ordinary function of exactly `F`'s signature, compiled for that closure
/// type, which calls the closure. Nothing is allocated, locked or written,
/// and nothing counts in [`Heap::stats`]. The closure still lives in the
/// `Thunk` and is dropped with it; calling the pointer after that is as
/// unsound as for any thunk (see [`as_fn`](Thunk::as_fn)), though it does
/// not trap.
///
/// ```
/// let heap = wxthunk::Heap::new()?;
/// let t = heap.thunk::<extern "C" fn(u32) -> u32, _>(|v: u32| v * 2)?;
/// // SAFETY: `t` is alive.
/// assert_eq!(unsafe { (t.as_fn())(21) }, 42);
/// assert!(t.code().is_empty());
/// assert_eq!(heap.stats().live_allocations, 0);
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// # Cost
///
/// A `Thunk` is two words (its function pointer and what it keeps). A
/// small `Fn` closure (up to 16 bytes, or a word that needs a drop) lives
/// in the private data slot of its thunk's code: making and dropping such a
/// thunk allocates nothing, and on the global heap takes no lock (see
/// [`Heap::global`]). On a dual-mapped heap the same holds up to 32 bytes
/// (24 with a drop, alignment up to 16): the thunk takes two code granules
/// (64 bytes) and their two data slots. A larger `Fn` closure is one
/// allocation, its box, kept in the slot (and called as directly);
/// `FnMut`/`FnOnce` contexts are boxed with the rest of the thunk.
/// `BENCHMARKS.md` has the figures.
///
/// # Signal handlers
///
/// Calling a thunk is async-signal-safe (it is a few instructions and a
/// jump; the closure is what runs, so it must be async-signal-safe itself).
/// Creating or dropping one is not: it may take the heap's lock and
/// allocate.
///
/// # Auto traits
///
/// `Send` and `Sync` when the heap is `Sync` (the constructors require the
/// closure bounds above); not for a [`NoLock`](crate::NoLock) heap.
pub struct Thunk<'a, F: ThunkSig, L: RawMutex = DefaultLock> {
    fn_ptr: F::Unsafe,
    /// The thunk's kind in its low bits, and the (exposed) address of what
    /// the kind keeps (`handle.rs`).
    word: usize,
    /// Borrows the heap (and so takes its auto traits) and whatever the
    /// closure borrows.
    _heap: PhantomData<&'a Heap<L>>,
}

#[cfg(feature = "default-heap")]
impl<'a, F: ThunkSig> Thunk<'a, F> {
    /// A thunk for an `Fn` closure, on the global default heap.
    ///
    /// The closure must be `Sync`, because C may call the pointer from many
    /// threads at once. **If the compiler says "`Cell<..>` cannot be shared
    /// between threads safely"** (or names `RefCell`), use
    /// [`new_mut`](Thunk::new_mut): an `FnMut` thunk needs only `Send` and
    /// runs one call at a time. **If it says "cannot be sent between threads
    /// safely"** (an `Rc`, a raw pointer), the closure must stay on its
    /// thread: make the thunk on a heap that does,
    /// [`Heap::thread_local`](crate::Heap::thread_local) or
    /// [`Heap::unlocked`](crate::Heap::unlocked), which take closures that
    /// are neither `Send` nor `Sync` (their thunks cannot leave the thread).
    ///
    /// # Errors
    ///
    /// As [`Heap::thunk`], and as [`Heap::global`] on its first use.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Thunk;
    /// let offset = std::hint::black_box(10); // captured: the thunk carries it
    /// let add = Thunk::<unsafe extern "C" fn(i32) -> i32>::new(move |x| x + offset)?;
    /// // SAFETY: the thunk is alive for the call.
    /// assert_eq!(unsafe { (add.as_fn())(32) }, 42);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    #[inline]
    pub fn new<C>(closure: C) -> Result<Self>
    where
        C: ThunkFn<F> + Send + Sync + 'a,
        F: ClosureSig<C>,
    {
        Heap::global()?.thunk(closure)
    }

    /// A thunk for an `FnMut` closure, on the global default heap.
    ///
    /// # Errors
    ///
    /// As [`new`](Thunk::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Thunk;
    /// let mut calls = 0;
    /// let counter = Thunk::<unsafe extern "C" fn() -> u32>::new_mut(move || {
    ///     calls += 1;
    ///     calls
    /// })?;
    /// // SAFETY: the thunk is alive; the calls do not overlap.
    /// unsafe {
    ///     assert_eq!((counter.as_fn())(), 1);
    ///     assert_eq!((counter.as_fn())(), 2);
    /// }
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn new_mut<C>(closure: C) -> Result<Self>
    where
        C: ThunkFnMut<F> + Send + 'a,
        F: ClosureSigMut<C>,
    {
        Heap::global()?.thunk_mut(closure)
    }

    /// A thunk for an `FnOnce` closure, on the global default heap.
    ///
    /// # Errors
    ///
    /// As [`new`](Thunk::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Thunk;
    /// let message = String::from("done");
    /// let once = Thunk::<unsafe extern "C" fn() -> usize>::new_once(move || {
    ///     let len = message.len();
    ///     drop(message); // moved out and dropped: a closure for one call
    ///     len
    /// })?;
    /// // SAFETY: the thunk is alive; called once (a second call would abort).
    /// assert_eq!(unsafe { (once.as_fn())() }, 4);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn new_once<C>(closure: C) -> Result<Self>
    where
        C: ThunkFnOnce<F> + Send + 'a,
        F: ClosureSigOnce<C>,
    {
        Heap::global()?.thunk_once(closure)
    }
}

impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    /// The bare function pointer. It is `unsafe` to call even when `F` is a
    /// safe fn type: it does not borrow the thunk, so only the caller can
    /// make sure of what the compiler cannot.
    ///
    /// # Safety
    ///
    /// Calling the pointer is sound when:
    /// - the thunk is alive when the call starts (a call through the pointer
    ///   of a dropped thunk runs trap instructions, or, once the slot is
    ///   reused, another thunk);
    /// - for a thunk made from an `Fn` closure ([`new`](Thunk::new),
    ///   [`Heap::thunk`]), the thunk also outlives the whole call,
    ///   *including calls during which the closure itself drops the thunk*
    ///   (through shared state, say): an `Fn` thunk keeps no per-call state,
    ///   so its closure is freed by the drop while it still runs. `FnMut` and
    ///   `FnOnce` thunks need only the first point: a drop during one of
    ///   their calls is deferred until that call returns (`FnMut`), or the
    ///   closure was already moved out of the thunk (`FnOnce`);
    /// - for a thunk on a [`NoLock`](crate::NoLock) heap, the call happens on
    ///   the heap's thread. Its closure may be neither `Send` nor `Sync` (an
    ///   `Rc`, a `RefCell`), and a call from another thread would use it
    ///   there, beside the thread that owns it: undefined behaviour, which
    ///   the pointer (a plain fn pointer, free to go anywhere) cannot
    ///   prevent. Hand it only to C code that calls back on the same thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ffi::{c_int, c_void};
    /// type Compare = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;
    /// unsafe extern "C" {
    ///     fn qsort(base: *mut c_void, n: usize, size: usize, cmp: Compare);
    /// }
    /// let descending = std::hint::black_box(true);
    /// let cmp = wxthunk::Thunk::<Compare>::new(move |a, b| {
    ///     // SAFETY: qsort passes pointers to elements of `v`.
    ///     let (a, b) = unsafe { (*a.cast::<u32>(), *b.cast::<u32>()) };
    ///     let order = a.cmp(&b) as c_int;
    ///     if descending { -order } else { order }
    /// })?;
    /// let mut v = [3u32, 1, 2];
    /// // SAFETY: the thunk outlives the call; the sizes describe `v`.
    /// unsafe { qsort(v.as_mut_ptr().cast(), v.len(), 4, cmp.as_fn()) };
    /// assert_eq!(v, [3, 2, 1]);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn as_fn(&self) -> F::Unsafe {
        self.fn_ptr
    }

    /// The function pointer as exactly `F`, for APIs typed with safe fn
    /// pointers: `libc::pthread_create` takes an
    /// `extern "C" fn(*mut c_void) -> *mut c_void`, which
    /// [`as_fn`](Thunk::as_fn)'s `unsafe` pointer is not. Where `F` is a
    /// safe fn type, safe code can call the result, so the promise that
    /// `as_fn` leaves to each call is made here, once, for all of them.
    ///
    /// # Safety
    ///
    /// Every call ever made through the returned pointer (or a copy of it)
    /// meets [`as_fn`](Thunk::as_fn)'s safety conditions: above all, the
    /// thunk is alive when the call starts (and, for an `Fn` thunk, until
    /// it returns). Keep the thunk until the code that holds the pointer is
    /// done with it (join the thread, unregister the callback).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ffi::c_void;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use wxthunk::Thunk;
    ///
    /// type Start = extern "C" fn(*mut c_void) -> *mut c_void;
    /// let hits = AtomicU32::new(0);
    /// let start = Thunk::<Start>::new(|_arg: *mut c_void| {
    ///     hits.fetch_add(1, Ordering::Relaxed);
    ///     std::ptr::null_mut()
    /// })?;
    /// # #[cfg(unix)] {
    /// let mut thread: libc::pthread_t = 0;
    /// // SAFETY: the thread is joined below, while `start` is alive, and
    /// // calls the pointer once.
    /// let f: Start = unsafe { start.as_exact_fn() };
    /// // SAFETY: `thread` is a valid place for the id; default attributes.
    /// let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), f, std::ptr::null_mut()) };
    /// assert_eq!(rc, 0);
    /// // SAFETY: joining the thread just made.
    /// assert_eq!(unsafe { libc::pthread_join(thread, std::ptr::null_mut()) }, 0);
    /// assert_eq!(hits.load(Ordering::Relaxed), 1);
    /// # }
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub unsafe fn as_exact_fn(&self) -> F {
        // SAFETY: `F` and `F::Unsafe` are the same signature and ABI (one
        // with `unsafe`); the address is the thunk's live, non-null entry;
        // the caller vouches for every call (see above).
        unsafe { F::from_addr(self.fn_ptr.addr()) }
    }

    /// The heap the thunk's code lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let k = std::hint::black_box(1);
    /// let t = heap.thunk::<unsafe extern "C" fn(u8) -> u8, _>(move |x| x + k)?;
    /// assert!(std::ptr::eq(t.heap(), &heap));
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn heap(&self) -> &'a Heap<L> {
        let addr = match self.kind() {
            handle::COMPILED => self.kept(),
            handle::GRANULE => self.region().owner.get(),
            handle::STATIC => trampoline::SlotRef::info_of(self.kept() as u64).owner.get(),
            _ => return self.slow().heap,
        };
        // SAFETY: the (exposed) address of the heap the thunk was made on,
        // which it borrows for `'a` (`crate::owner`: every live thunk's
        // region or table records its heap's current address).
        unsafe { &*std::ptr::with_exposed_provenance::<Heap<L>>(addr) }
    }

    /// The thunk's machine code, read back from executable memory: the
    /// generated thunk, or for [`Strategy::StaticTrampolines`](crate::Strategy::StaticTrampolines) the table
    /// entry (the same for every thunk). Empty for the thunk of a
    /// zero-sized `Fn` closure, which is a compiled function (see
    /// "Closures that capture nothing" on [`Thunk`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let k = std::hint::black_box(1u64);
    /// let t = wxthunk::Thunk::<unsafe extern "C" fn(u64) -> u64>::new(move |x| x + k)?;
    /// println!("{} bytes of thunk code: {:02x?}", t.code().len(), t.code());
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn code(&self) -> &[u8] {
        let at = self.fn_ptr.addr() as *const u8;
        match self.kind() {
            handle::COMPILED => &[],
            // SAFETY: the granule is `THUNK_CODE_MAX` bytes of its region's
            // read+exec (so readable) view, which stays mapped while the
            // granule, and so `self`, lives.
            handle::GRANULE => unsafe { granule_code(at) },
            // SAFETY: the entry is `ENTRY_SIZE` bytes of the table's
            // read+exec (so readable) mapping, which stays mapped while the
            // slot, and so `self`, lives.
            handle::STATIC => unsafe { std::slice::from_raw_parts(at, trampoline::ENTRY_SIZE) },
            _ => match &self.slow().code {
                Code::Generated(span) => span.as_slice(),
                // SAFETY: as for `GRANULE`.
                Code::Granule { .. } => unsafe { granule_code(at) },
                // SAFETY: as for `STATIC`.
                Code::Static(_) => unsafe {
                    std::slice::from_raw_parts(at, trampoline::ENTRY_SIZE)
                },
                Code::Compiled => &[],
            },
        }
    }

    /// Whether a call builds a new frame (the context did not fit an
    /// argument register) instead of jumping straight to the closure.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Thunk;
    /// let k = std::hint::black_box(1u64);
    /// let one = Thunk::<unsafe extern "C" fn(u64) -> u64>::new(move |x| x + k)?;
    /// assert!(!one.builds_frame()); // the context fits a register: one jump
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn builds_frame(&self) -> bool {
        match self.kind() {
            handle::COMPILED | handle::GRANULE => false,
            handle::STATIC => {
                let placement = const { crate::arch::placement(F::CONV, F::CLASSES) };
                matches!(placement, Some(Placement::Stack(_)))
            }
            _ => self.slow().builds_frame,
        }
    }
}

/// The register-path thunk code of the granule at `at`, read back.
///
/// # Safety
/// `at` is a live one-granule thunk's granule, readable for
/// `THUNK_CODE_MAX` bytes while the returned slice lives.
unsafe fn granule_code<'t>(at: *const u8) -> &'t [u8] {
    // SAFETY: the caller's contract.
    let granule = unsafe { &*at.cast::<[u8; crate::arch::THUNK_CODE_MAX]>() };
    &granule[..crate::arch::register_thunk_len(granule)]
}

impl<F: ThunkSig, L: RawMutex> Thunk<'static, F, L> {
    /// Keeps the thunk (its code and closure) for the rest of the process and
    /// returns its pointer, which is then valid forever: for callbacks that
    /// are never unregistered. Only for thunks that borrow nothing shorter
    /// than `'static`, on a heap that lives forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let base = std::hint::black_box(100);
    /// let thunk = wxthunk::Thunk::<unsafe extern "C" fn(i32) -> i32>::new(move |x| base + x)?;
    /// let forever = thunk.leak(); // kept for the rest of the process
    /// // SAFETY: a leaked thunk is never freed.
    /// assert_eq!(unsafe { forever(1) }, 101);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn leak(self) -> F::Unsafe {
        let f = self.fn_ptr;
        std::mem::forget(self);
        f
    }
}

impl<F: ThunkSig, L: RawMutex> fmt::Debug for Thunk<'_, F, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thunk")
            .field("fn_ptr", &self.fn_ptr.addr())
            .field("abi", &F::ABI)
            .field("builds_frame", &self.builds_frame())
            .finish()
    }
}
