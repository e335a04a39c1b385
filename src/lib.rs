#![doc = include_str!("../README.md")]
#![doc = include_str!("../docs/guide.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod abi;
mod arch;
mod bitmap;
mod block;
mod creation_hooks;
mod data_slot;
mod error;
mod heap;
mod owner;
mod perf_map;
mod policy;
mod strategy;
mod sys;
mod thunk;
mod trampoline;

pub use abi::{ArgClass, FnPtr, StructClass, StructFields, ThunkArg, ThunkRet, ThunkSig};
pub use block::{Block, ExecBlock};
pub use error::{Error, Result, TransitionError};
pub use heap::{
    DefaultLock, ExecSpan, Heap, HeapBuilder, HeapStats, NoLock, SendsClosure, SharedLock,
    SharesClosure, Span, ThreadSafeLock,
};
pub use lock_api;
pub use perf_map::{PERF_MAP_VAR, enable_perf_map};
pub use policy::{
    Check, CodeFileDir, DEBUG_VAR, Mdwe, Mitigations, Policy, STRATEGY_VAR, Seccomp, Selinux,
    StrategySetting, probe,
};
pub use strategy::{CodeStrategy, ParseStrategyError, Strategy, ThunkStrategy};

/// This crate's version (as `probe --json` reports it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use thunk::{
    ClosureSig, ClosureSigMut, ClosureSigOnce, DEBUG_QUARANTINE, DynThunk, RefThunk,
    SealedThunkPage, Thunk, ThunkFn, ThunkFnMut, ThunkFnOnce, ThunkPage,
};

/// The size of a memory page on this system, in bytes (cached after the
/// first call).
///
/// # Examples
///
/// ```
/// let page = wxthunk::page_size();
/// assert!(page.is_power_of_two());
/// assert_eq!(wxthunk::Block::new(1)?.capacity(), page);
/// # Ok::<(), wxthunk::Error>(())
/// ```
pub fn page_size() -> usize {
    sys::page_size()
}

// `c_struct!` expands in its users' crates too, so it lives here for the
// same reason; what it calls, `ArgClass::of_struct`, is in
// `abi/aggregate.rs`.

/// Defines `#[repr(C)]` structs that thunks take and return by value, up
/// to 16 bytes each, with fields of [`ThunkArg`](crate::ThunkArg) scalar
/// types (integers, `bool`, floats, thin pointers, fn pointers). Write the
/// struct as usual, without a `repr`; the macro adds `#[repr(C)]` and
/// implements `ThunkArg` from the field types
/// ([`ArgClass::of_struct`](crate::ArgClass::of_struct)), so the class the
/// code generators see is the struct's own, checked at compile time.
///
/// # Examples
///
/// ```
/// wxthunk::c_struct! {
///     #[derive(Clone, Copy, Debug, PartialEq)]
///     pub struct Point {
///         pub x: f32,
///         pub y: f32,
///     }
///
///     #[derive(Clone, Copy)]
///     pub struct Span {
///         pub start: u64,
///         pub len: u32,
///     }
/// }
///
/// let scale = std::hint::black_box(2.0);
/// let grow = wxthunk::Thunk::<unsafe extern "C" fn(Point, Span) -> Point>::new(
///     move |p, s| Point { x: p.x * scale + s.len as f32, y: p.y * scale },
/// )?;
/// // SAFETY: the thunk is alive.
/// let p = unsafe { (grow.as_fn())(Point { x: 1.0, y: 2.0 }, Span { start: 0, len: 3 }) };
/// assert_eq!(p, Point { x: 5.0, y: 4.0 });
/// # Ok::<(), wxthunk::Error>(())
/// ```
///
/// A struct the scheme cannot place (over 16 bytes, here) is a build
/// error at its definition ("a struct by value has at most 16 bytes"):
///
/// ```compile_fail,E0080
/// wxthunk::c_struct! {
///     pub struct Big { pub a: u64, pub b: u64, pub c: u64 }
/// }
/// ```
///
/// So is a struct returned where the convention returns it through
/// memory, which would shift every argument: Windows x64 returns only 1,
/// 2, 4 and 8-byte structs in a register.
///
/// ```compile_fail,E0080
/// wxthunk::c_struct! {
///     pub struct Pair { pub a: u64, pub b: u64 }
/// }
/// let t = wxthunk::Thunk::<unsafe extern "win64" fn(u64) -> Pair>::new(|a| Pair { a, b: a });
/// ```
#[macro_export]
macro_rules! c_struct {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),+ $(,)?
        }
    )+) => {$(
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),+
        }

        // SAFETY: `$name` is `#[repr(C)]` with exactly these fields, in this
        // order, which is what `of_struct` lays out and classifies.
        unsafe impl $crate::ThunkArg for $name {
            const CLASS: $crate::ArgClass = $crate::ArgClass::of_struct::<($($ty,)+)>();
        }

        // Classified here, so a struct the scheme cannot place is an error
        // at its definition (also under `cargo check`).
        const _: $crate::ArgClass = <$name as $crate::ThunkArg>::CLASS;
    )+};
}

// `ref_thunk!` expands in its users' crates, so it names the public paths
// (`$crate::Heap`, `$crate::RefThunk`): it lives with them, here. Its
// `RefThunk` is in `thunk/refs.rs`.
/// A thunk for a signature with reference arguments anywhere, as an `Fn`
/// closure written inline: `ref_thunk!(unsafe extern "C" fn(name: Type,
/// ..) -> Ret => body)`, on the global heap, or `ref_thunk!(in heap, ..)`
/// on `heap` (a `&Heap`). Returns a `Result` of a
/// [`RefThunk`](crate::RefThunk), whose [`as_fn`](crate::RefThunk::as_fn)
/// is the pointer typed with the references.
///
/// References (`&T`, `&mut T`) in the first two of up to four arguments
/// need no macro: [`Thunk::new`](crate::Thunk::new) takes those
/// signatures as they are. This macro covers every other shape, with any
/// argument a reference, in any position, up to 16 arguments. The body is
/// the closure's (it captures by move, and must be `Send + Sync`, as
/// for `Thunk::new`); the references it sees are the ones the caller
/// passes, so they must be valid, as the signature says. They live for the
/// call only, as with a fn item taking references: the body cannot keep one
/// (in a `static` or in something it captured) or return it, which the
/// compiler checks (the body is a closure whose reference parameters are
/// higher-ranked).
///
/// # Examples
///
/// ```
/// struct Node {
///     value: i32,
/// }
/// type Visit = unsafe extern "C" fn(u32, u32, &Node, &mut i64) -> i32;
///
/// let scale = 10;
/// let visit = wxthunk::ref_thunk!(
///     unsafe extern "C" fn(depth: u32, index: u32, node: &Node, total: &mut i64) -> i32 => {
///         *total += i64::from(node.value * scale);
///         (depth + index) as i32
///     }
/// )?;
/// let f: Visit = visit.as_fn();
/// let mut total = 0;
/// // SAFETY: the thunk is alive.
/// assert_eq!(unsafe { f(2, 3, &Node { value: 4 }, &mut total) }, 5);
/// assert_eq!(total, 40);
/// # Ok::<(), wxthunk::Error>(())
/// ```
#[macro_export]
macro_rules! ref_thunk {
    (in $heap:expr, unsafe extern $abi:literal fn($($args:tt)*) $(-> $ret:ty)? => $body:expr) => {
        $crate::ref_thunk!(@args [::core::result::Result::<_, $crate::Error>::Ok($heap)]
            $abi [$($ret)?] [$body] [] [] []; $($args)*)
    };
    (unsafe extern $abi:literal fn($($args:tt)*) $(-> $ret:ty)? => $body:expr) => {
        $crate::ref_thunk!(@args [$crate::Heap::global()]
            $abi [$($ret)?] [$body] [] [] []; $($args)*)
    };
    // One argument at a time: the type the thunk takes, the type the
    // pointer is handed out with, and how the closure gets its value.
    (@args $heap:tt $abi:tt $ret:tt $body:tt [$($taken:tt)*] [$($given:tt)*] [$($bind:tt)*];
        $name:ident : &mut $t:ty $(, $($rest:tt)*)?) => {
        $crate::ref_thunk!(@args $heap $abi $ret $body
            [$($taken)* [*mut $t]] [$($given)* [&mut $t]]
            [$($bind)* [$name, *mut $t, &mut *$name, &mut $t]]; $($($rest)*)?)
    };
    (@args $heap:tt $abi:tt $ret:tt $body:tt [$($taken:tt)*] [$($given:tt)*] [$($bind:tt)*];
        $name:ident : & $t:ty $(, $($rest:tt)*)?) => {
        $crate::ref_thunk!(@args $heap $abi $ret $body
            [$($taken)* [*const $t]] [$($given)* [&$t]]
            [$($bind)* [$name, *const $t, &*$name, &$t]]; $($($rest)*)?)
    };
    (@args $heap:tt $abi:tt $ret:tt $body:tt [$($taken:tt)*] [$($given:tt)*] [$($bind:tt)*];
        $name:ident : $t:ty $(, $($rest:tt)*)?) => {
        $crate::ref_thunk!(@args $heap $abi $ret $body
            [$($taken)* [$t]] [$($given)* [$t]]
            [$($bind)* [$name, $t, $name, $t]]; $($($rest)*)?)
    };
    (@args [$($heap:tt)*] $abi:literal [$($ret:ty)?] [$body:expr]
        [$([$taken:ty])*] [$([$given:ty])*]
        [$([$name:ident, $pty:ty, $value:expr, $arg:ty])*];) => {
        ($($heap)*).and_then(|heap| {
            heap.thunk::<unsafe extern $abi fn($($taken),*) $(-> $ret)?, _>(
                move |$($name: $pty),*| {
                    // The body is a closure whose reference parameters are
                    // written with elided lifetimes, so it is higher-ranked
                    // (`for<'a> Fn(&'a T)`): the references it gets live
                    // for the call only, and it cannot keep them (in a
                    // `static`, in a capture) or return them.
                    let body = |$($name: $arg),*| $(-> $ret)? { $body };
                    // SAFETY: the caller passes the references the handed-out
                    // signature declares, as the thin pointers they are; the
                    // unbounded lifetimes made here end in `body`'s call.
                    #[allow(unused_unsafe)]
                    let ($($name,)*) = unsafe { ($($value,)*) };
                    body($($name),*)
                },
            )
            // SAFETY: the handed-out type is the thunk's with each `*const T`
            // / `*mut T` written as the `&T` / `&mut T` the closure reads it
            // as, and the same ABI and return type.
            .map(|thunk| unsafe {
                $crate::RefThunk::<unsafe extern $abi fn($($given),*) $(-> $ret)?, _>::new(thunk)
            })
        })
    };
}
