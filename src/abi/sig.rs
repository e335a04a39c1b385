//! Which types a thunk can pass, classified at compile time, and the
//! signatures (fn-pointer types) a thunk can have.

use std::ptr::NonNull;

use super::conv::{ArgClass, CallConv};
use super::fn_ptr::FnPtr;

/// A type a thunk can pass as an argument (and return): one that fits one
/// integer or one floating-point register.
///
/// Implemented for the integers up to 64 bits, `bool`, `f32`, `f64`, thin
/// raw pointers, references, [`NonNull`], `Option`s of references, `NonNull`
/// and fn pointers, and fn pointers ([`FnPtr`] types). Other types (`i128`,
/// structs, arrays, and *fat* pointers: to slices, `str` or `dyn Trait`,
/// which are two machine words) do not implement it, so a thunk signature
/// using them does not compile rather than being passed wrongly:
///
/// ```compile_fail
/// let t = wxthunk::Thunk::<unsafe extern "C" fn(i128) -> i32>::new(|x: i128| x as i32);
/// ```
///
/// ```compile_fail,E0277
/// let t = wxthunk::Thunk::<unsafe extern "C" fn(*const [u8]) -> usize>::new(|s: *const [u8]| s.len());
/// ```
///
/// Every thunk constructor also checks at compile time that each argument's
/// size fits its class (1, 2, 4 or 8 bytes for [`ArgClass::Integer`], 4 or
/// 8 for [`ArgClass::Float`]), so a wrong implementation fails to build
/// (E0080, "a thunk argument or return type does not fit the register its
/// ThunkArg class claims"):
///
/// ```compile_fail,E0080
/// #[repr(transparent)]
/// #[derive(Clone, Copy)]
/// struct Wide([u64; 2]);
/// // Wrong: 16 bytes are two registers.
/// unsafe impl wxthunk::ThunkArg for Wide {
///     const CLASS: wxthunk::ArgClass = wxthunk::ArgClass::Integer;
/// }
/// let t = wxthunk::Thunk::<unsafe extern "C" fn(Wide) -> u64>::new(|w: Wide| w.0[0]);
/// ```
///
/// The same check guards every way of making a thunk, a
/// [`ThunkPage`](crate::ThunkPage) entry included:
///
/// ```compile_fail,E0080
/// # #[repr(transparent)]
/// # #[derive(Clone, Copy)]
/// # struct Wide([u64; 2]);
/// # unsafe impl wxthunk::ThunkArg for Wide {
/// #     const CLASS: wxthunk::ArgClass = wxthunk::ArgClass::Integer;
/// # }
/// let heap = wxthunk::Heap::new().unwrap();
/// let mut page = heap.thunk_page::<unsafe extern "C" fn(Wide) -> u64>().unwrap();
/// page.push(|w: Wide| w.0[0]).unwrap();
/// ```
///
/// # Safety
///
/// `CLASS` must be how the platform's C calling conventions pass the type:
/// implement it for your own types only when they are
/// `#[repr(transparent)]` over a type that implements it, with the same
/// `CLASS`:
///
/// ```
/// #[repr(transparent)]
/// #[derive(Clone, Copy)]
/// struct Handle(u64);
///
/// // SAFETY: `Handle` is `repr(transparent)` over `u64`.
/// unsafe impl wxthunk::ThunkArg for Handle {
///     const CLASS: wxthunk::ArgClass = <u64 as wxthunk::ThunkArg>::CLASS;
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "wxthunk: `{Self}` cannot be a thunk argument or return type",
    label = "not a `ThunkArg`: it does not fit one integer or float register",
    note = "thunk arguments are integers up to 64 bits, `bool`, `f32`, `f64`, thin pointers and \
            references, `NonNull`, fn pointers, and their `Option`s",
    note = "`i128`/`u128`: pass two 64-bit halves, or a pointer",
    note = "a `#[repr(C)]` struct of up to 16 bytes by value: define it with \
            `wxthunk::c_struct!`, or `unsafe impl ThunkArg` with `ArgClass::of_struct`; a larger \
            one: pass a pointer to it",
    note = "a newtype: make it `#[repr(transparent)]` over one of the types above, with an \
            `unsafe impl ThunkArg` of the same class",
    note = "a slice, `str` or `dyn Trait` behind a pointer is two words: pass a thin pointer and a \
            length"
)]
pub unsafe trait ThunkArg {
    /// How the value is passed.
    const CLASS: ArgClass;
}

/// A type a thunk can return: `()` and every [`ThunkArg`].
///
/// # Safety
///
/// The type must be returned in registers (or not at all). A value
/// returned through memory would take a hidden first argument and shift
/// every other one; scalars of sizes other than 0, 1, 2, 4 and 8 bytes, and
/// structs the convention returns through memory (on Windows x64, any but
/// 1, 2, 4 and 8 bytes), are refused at compile time whatever the
/// implementation says.
#[diagnostic::on_unimplemented(
    message = "wxthunk: `{Self}` cannot be a thunk's return type",
    label = "not a `ThunkRet`: it does not come back in registers",
    note = "a thunk returns `()` or a `ThunkArg` (integers up to 64 bits, `bool`, `f32`, `f64`, \
            thin pointers, fn pointers, `#[repr(C)]` structs of up to 16 bytes made with \
            `wxthunk::c_struct!`)",
    note = "a larger struct by value is returned through hidden memory: write it through a \
            pointer argument instead"
)]
pub unsafe trait ThunkRet {
    /// The class of the returned value (`None` for `()`).
    #[doc(hidden)]
    const RET_CLASS: Option<ArgClass>;
}

// SAFETY: `()` returns nothing.
unsafe impl ThunkRet for () {
    const RET_CLASS: Option<ArgClass> = None;
}
// SAFETY: a `ThunkArg` is returned in the registers its class names (the
// layout check refuses the structs a convention returns through memory).
unsafe impl<T: ThunkArg> ThunkRet for T {
    const RET_CLASS: Option<ArgClass> = Some(T::CLASS);
}

macro_rules! thunk_args {
    ($class:ident: $($t:ty),* $(,)?) => {
        $(
            // SAFETY: a scalar of this kind is passed in one register of
            // this class (or one stack slot) by every supported convention.
            unsafe impl ThunkArg for $t {
                const CLASS: ArgClass = ArgClass::$class;
            }
        )*
    };
}

thunk_args!(Integer: i8, u8, i16, u16, i32, u32, i64, u64, isize, usize, bool);
thunk_args!(Float: f32, f64);

// Pointers: only to `Sized` targets. A pointer to a slice, a `str` or a
// `dyn Trait` is two machine words (address and length or vtable), passed
// in two registers, so it is not a `ThunkArg` (implicit `T: Sized` below);
// `layout_fits` checks every implementation's size as a second line.

// SAFETY: a thin pointer is one integer-class machine word.
unsafe impl<T> ThunkArg for *const T {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: as above.
unsafe impl<T> ThunkArg for *mut T {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: as above (a reference is a non-null thin pointer).
unsafe impl<T> ThunkArg for &T {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: as above.
unsafe impl<T> ThunkArg for &mut T {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: as above.
unsafe impl<T> ThunkArg for NonNull<T> {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: `Option` of a non-null thin pointer is a nullable thin pointer
// (the guaranteed null-pointer optimisation).
unsafe impl<T> ThunkArg for Option<&T> {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: as above.
unsafe impl<T> ThunkArg for Option<&mut T> {
    const CLASS: ArgClass = ArgClass::Integer;
}
// SAFETY: as above.
unsafe impl<T> ThunkArg for Option<NonNull<T>> {
    const CLASS: ArgClass = ArgClass::Integer;
}

/// Whether a value of `size` bytes and alignment `align` is what the code
/// generators assume of its `class`: one integer register (1, 2, 4 or 8
/// bytes), one floating-point register (4 or 8 bytes), or the layout a
/// struct's class was computed for.
pub(crate) const fn fits_class(class: ArgClass, size: usize, align: usize) -> bool {
    match class {
        ArgClass::Integer => matches!(size, 1 | 2 | 4 | 8) && align <= size,
        ArgClass::Float => matches!(size, 4 | 8) && align <= size,
        ArgClass::Struct(s) => size == s.size() && align == s.align(),
    }
}

/// Whether a return value of class `class` (`None`: `()`), `size` bytes
/// and alignment `align` comes back in registers under `conv`.
pub(crate) const fn returns_in_registers(
    conv: CallConv,
    class: Option<ArgClass>,
    size: usize,
    align: usize,
) -> bool {
    match class {
        None => size == 0,
        Some(ArgClass::Struct(s)) => {
            fits_class(ArgClass::Struct(s), size, align)
                && !matches!(conv, CallConv::Win64 if !s.win64_in_register())
        }
        Some(class) => fits_class(class, size, align),
    }
}

/// Whether every argument of a signature fits the class it claims and the
/// return value comes back in registers under `conv` (or is `()`): what
/// the thunk generators rely on. Evaluated at compile time for each thunk
/// type (see [`ThunkSig::LAYOUT_OK`]), so a wrong [`ThunkArg`]
/// implementation (here or a user's) fails to build instead of
/// miscompiling.
pub(crate) const fn layout_fits(
    conv: CallConv,
    classes: &[ArgClass],
    layouts: &[(usize, usize)],
    ret_class: Option<ArgClass>,
    ret: (usize, usize),
) -> bool {
    if classes.len() != layouts.len() {
        return false;
    }
    let mut i = 0;
    while i < classes.len() {
        if !fits_class(classes[i], layouts[i].0, layouts[i].1) {
            return false;
        }
        i += 1;
    }
    returns_in_registers(conv, ret_class, ret.0, ret.1)
}

/// A fn-pointer type a [`Thunk`](crate::Thunk) can have: any [`FnPtr`]
/// whose arguments are [`ThunkArg`]s and whose return type is a
/// [`ThunkRet`].
///
/// # Reference arguments
///
/// A fn type with a reference argument (`fn(&T)`, each reference with its
/// own elided lifetime) is higher-ranked, a type of its own for each
/// shape. These shapes are thunk signatures as written: references (`&T`
/// or `&mut T`, to a sized `T`) in either or both of the **first two
/// positions** of signatures of **one to four arguments**, for `extern
/// "C"` and `extern "C-unwind"`, safe or `unsafe`. Closures for them take
/// their parameter types from the signature (see
/// [`ClosureSig`](crate::ClosureSig)):
///
/// ```
/// type Cmp = unsafe extern "C" fn(&i32, &i32) -> i32;
/// let cmp = wxthunk::Thunk::<Cmp>::new(|a, b| a.cmp(b) as i32)?;
/// // SAFETY: the thunk is alive.
/// assert_eq!(unsafe { (cmp.as_fn())(&1, &2) }, -1);
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// Any other shape (a reference third, in a longer signature, or with
/// another ABI) goes through [`ref_thunk!`](crate::ref_thunk), which covers
/// them all. (Each shape is a type of its own that the compiler checks
/// against every other fn type of its arity: the same shapes for all eight
/// ABIs made this crate take five times as long to build.) Rustc
/// reports such a shape as "implementation of `ThunkSig` is not general
/// enough".
///
/// # Safety
///
/// Implemented by this crate only; `CONV` and `CLASSES` must describe how
/// the type passes its arguments.
#[diagnostic::on_unimplemented(
    message = "wxthunk: `{Self}` is not a thunk signature",
    label = "not a `ThunkSig`",
    note = "a thunk's type is an `extern` fn pointer type of up to 16 arguments, each a \
            `ThunkArg`, returning `()` or a `ThunkArg`: e.g. `unsafe extern \"C\" fn(u64) -> u64`",
    note = "a Rust-ABI `fn(..)` has no stable calling convention: write `extern \"C\"` (or \
            \"system\", \"sysv64\", \"win64\", or their `-unwind` forms)",
    note = "more than 16 arguments: pass a pointer to a struct holding them",
    note = "references (`&T`, `&mut T`) work as written in the first two of up to four \
            arguments of `extern \"C\"` (and `\"C-unwind\"`) signatures; for any other shape \
            use `wxthunk::ref_thunk!`",
    note = "a slice, `str` or `dyn Trait` behind a reference or pointer is two words: pass a thin \
            pointer and a length"
)]
pub unsafe trait ThunkSig: FnPtr {
    /// The `unsafe` form of the type, which
    /// [`Thunk::as_fn`](crate::Thunk::as_fn) returns: calling a thunk is only sound while it
    /// lives, which the compiler cannot check for a bare pointer.
    type Unsafe: FnPtr;
    #[doc(hidden)]
    const CONV: CallConv;
    #[doc(hidden)]
    const CLASSES: &'static [ArgClass];
    /// `(size, align)` of each argument type, in order.
    #[doc(hidden)]
    const LAYOUTS: &'static [(usize, usize)];
    /// `(size, align)` of the return type.
    #[doc(hidden)]
    const RET_LAYOUT: (usize, usize);
    /// The class of the return type (`None` for `()`).
    #[doc(hidden)]
    const RET_CLASS: Option<ArgClass>;
    /// Fails to evaluate (a build error naming this constant) when an
    /// argument's size disagrees with its [`ArgClass`] or the return value
    /// does not fit a register; every thunk constructor evaluates it.
    #[doc(hidden)]
    const LAYOUT_OK: () = assert!(
        layout_fits(
            Self::CONV,
            Self::CLASSES,
            Self::LAYOUTS,
            Self::RET_CLASS,
            Self::RET_LAYOUT
        ),
        "wxthunk: a thunk argument or return type does not fit the register its ThunkArg \
         class claims (is a ThunkArg implementation wrong?), or a struct is returned through \
         memory (Windows x64 returns only 1, 2, 4 and 8-byte structs in a register)"
    );
}

/// Implements [`ThunkSig`], and [`ThunkArg`] for the pointer and its
/// `Option`, for one fn-pointer type (a callback of
/// [`for_each_signature!`](super::for_each_signature)).
macro_rules! impl_thunk_sig {
    ($abi:literal, $conv:expr, $unwind:literal, $ty:ty;
        $(($A:ident $a:ident [$T:ty] [$K:ty] [$($bound:tt)*]))*) => {
        // `fn(&A) -> R` and `fn(A) -> R` are distinct types, but coherence
        // reports their impls with the `coherence_leak_check` lint
        // (rust-lang/rust#56105), which the compiler keeps accepting for this
        // very pattern (its test `coherence-wasm-bindgen.rs`).
        // SAFETY: a fn pointer is one integer-class machine word.
        #[allow(coherence_leak_check)]
        unsafe impl<R, $($A),*> $crate::abi::sig::ThunkArg for $ty {
            const CLASS: $crate::abi::ArgClass = $crate::abi::ArgClass::Integer;
        }
        // SAFETY: `Option` of a fn pointer is a nullable fn pointer.
        #[allow(coherence_leak_check)]
        unsafe impl<R, $($A),*> $crate::abi::sig::ThunkArg for Option<$ty> {
            const CLASS: $crate::abi::ArgClass = $crate::abi::ArgClass::Integer;
        }

        // SAFETY: the classes are those of the argument types, in order (a
        // reference's is its thin pointer's), and `$conv` is the convention
        // of `$abi` on this target.
        #[allow(coherence_leak_check)]
        unsafe impl<R: $crate::abi::sig::ThunkRet, $($A: $($bound)*),*>
            $crate::abi::sig::ThunkSig for $ty
        {
            type Unsafe = unsafe extern $abi fn($($T),*) -> R;
            const CONV: $crate::abi::CallConv = $conv;
            const CLASSES: &'static [$crate::abi::ArgClass] =
                &[$(<$K as $crate::abi::sig::ThunkArg>::CLASS),*];
            const LAYOUTS: &'static [(usize, usize)] = &[$((
                ::core::mem::size_of::<$K>(),
                ::core::mem::align_of::<$K>(),
            )),*];
            const RET_LAYOUT: (usize, usize) =
                (::core::mem::size_of::<R>(), ::core::mem::align_of::<R>());
            const RET_CLASS: Option<$crate::abi::ArgClass> =
                <R as $crate::abi::sig::ThunkRet>::RET_CLASS;
        }
    };
}

super::for_each_signature!(impl_thunk_sig);
