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

pub use abi::{ArgClass, FnPtr, ThunkArg, ThunkRet, ThunkSig};
pub use block::{Block, ExecBlock};
pub use error::{Error, Result, TransitionError};
pub use heap::{
    DefaultLock, ExecSpan, Heap, HeapBuilder, HeapStats, NoLock, SendsClosure, SharedLock,
    SharesClosure, Span, ThreadSafeLock,
};
pub use lock_api;
pub use perf_map::{PERF_MAP_VAR, enable_perf_map};
pub use policy::{
    Check, CodeFileDir, DEBUG_VAR, Mdwe, Policy, STRATEGY_VAR, Seccomp, Selinux, StrategySetting,
    probe,
};
pub use strategy::{CodeStrategy, ParseStrategyError, Strategy, ThunkStrategy};

/// This crate's version (as `probe --json` reports it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use thunk::{
    ClosureSig, ClosureSigMut, ClosureSigOnce, DEBUG_QUARANTINE, RefThunk, SealedThunkPage, Thunk,
    ThunkFn, ThunkFnMut, ThunkFnOnce, ThunkPage,
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
