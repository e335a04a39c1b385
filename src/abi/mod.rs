//! The ABI layer: what the calling conventions say, independent of any code
//! generator. The lowest layer of the crate besides `error`: it depends on
//! nothing above it, and `arch` (the code generators) builds on it.
//!
//! - [`conv`]: the calling conventions ([`CallConv`]), the convention of
//!   `extern "C"` and `extern "system"` on this target, and the class of
//!   register an argument travels in ([`ArgClass`]).
//! - [`aggregate`]: small `#[repr(C)]` structs by value ([`StructClass`],
//!   laid out and classified at compile time from their field types).
//! - [`fn_ptr`]: [`FnPtr`], the bare function-pointer types code in
//!   executable memory can be called through.
//! - [`sig`]: [`ThunkArg`], [`ThunkRet`] and [`ThunkSig`]: which of those
//!   types a thunk can have, with the compile-time layout check the code
//!   generators rely on.
//! - [`for_each_signature!`]: the one list of ABIs (`"C"`, `"system"`, and on
//!   x86_64 `"sysv64"` and `"win64"`, each also `-unwind`) times 0 to 16
//!   arguments times safe and `unsafe`, handed to a macro that writes the
//!   impls for one fn-pointer type. `fn_ptr`, `sig` and the thunk layer's
//!   closure traits each give it their own.

pub(crate) mod aggregate;
pub(crate) mod conv;
mod each;
pub(crate) mod fn_ptr;
pub(crate) mod sig;

pub use aggregate::{StructClass, StructFields};
pub use conv::{ArgClass, CallConv};
pub(crate) use each::for_each_signature;
pub use fn_ptr::FnPtr;
pub use sig::{ThunkArg, ThunkRet, ThunkSig};

/// The most arguments a thunk's signature has: the longest list
/// [`for_each_signature!`] writes impls for. Code generators size their
/// tables by it (the x86_64 frame adapters, one per stack-argument count).
pub(crate) const MAX_ARITY: usize = 16;

// The longest signature is a `ThunkSig` (and so within `MAX_ARITY`).
const _: () = {
    const fn sig<F: ThunkSig>() {}
    type Longest = extern "C" fn(u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8);
    sig::<Longest>();
    assert!(<Longest as ThunkSig>::CLASSES.len() == MAX_ARITY);
};
