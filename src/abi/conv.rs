//! Calling conventions and argument classes: the facts about how a call
//! passes its arguments that the code generators (`arch`) and the signature
//! traits (`sig`) share.

use super::aggregate::StructClass;

/// Where the calling convention passes a value: in integer registers (and
/// integer stack slots), in vector registers, or, for a small `#[repr(C)]`
/// struct, as its convention says for its layout. A
/// [`ThunkArg`](crate::ThunkArg) implementation names its type's class;
/// thunk constructors check at compile time that the type's size fits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgClass {
    /// Integers up to 64 bits, `bool`, pointers.
    Integer,
    /// `f32`, `f64`.
    Float,
    /// A `#[repr(C)]` struct of up to 16 bytes, by value: made by
    /// [`ArgClass::of_struct`] from its field types (see
    /// [`c_struct!`](crate::c_struct)).
    Struct(StructClass),
}

/// A calling convention, as the code generators know it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallConv {
    /// x86_64 System V (`extern "C"` on Unix, `extern "sysv64"`).
    SysV64,
    /// x86_64 Windows (`extern "win64"`, `extern "C"` on Windows).
    Win64,
    /// AArch64 procedure call standard.
    Aapcs64,
    /// A convention wxthunk has no code generator for.
    Unknown,
}

/// The convention of `extern "C"` on this target.
pub(crate) const C_CONV: CallConv = if cfg!(all(target_arch = "x86_64", windows)) {
    CallConv::Win64
} else if cfg!(target_arch = "x86_64") {
    CallConv::SysV64
} else if cfg!(target_arch = "aarch64") {
    CallConv::Aapcs64
} else {
    CallConv::Unknown
};

/// The convention of `extern "system"` on this target (the same as `"C"`
/// on every 64-bit target; it differs only on 32-bit Windows).
pub(crate) const SYSTEM_CONV: CallConv = C_CONV;
