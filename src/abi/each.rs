//! [`for_each_signature!`]: every fn-pointer type the crate implements its
//! traits for, in one list.

/// Invokes `$impl_one!(abi, conv, unwind, fn_type; (A1 a1 [T1] [K1] [B1])
/// .. (An an [Tn] [Kn] [Bn]))` for every supported ABI string, 0 to 16
/// arguments, safe and `unsafe`, and, for `"C"` and `"C-unwind"`, the
/// shapes with reference arguments (`&T`, `&mut T` in either of the first
/// two positions of one to four arguments):
///
/// - `abi`: the ABI string literal (`"C-unwind"`);
/// - `conv`: its [`CallConv`](super::CallConv) on this target;
/// - `unwind`: whether a panic may unwind out of it (`-unwind` ABIs);
/// - `fn_type`: `extern abi fn(A1, .., An) -> R` or its `unsafe` form, with
///   the generic parameters `R` and `A1..An` for the impl to declare;
/// - per argument: its type parameter `A` (the impl declares it), a value
///   name for impls that write functions of the signature, the argument's
///   type `T` as written in `fn_type` (`A`, `&A` or `&mut A`), the type
///   whose `ThunkArg` class and layout it has `K` (`A`, or the thin pointer
///   a reference is), and the bound `A` needs (`ThunkArg` for a value,
///   none for a reference's target).
///
/// `"sysv64"` and `"win64"` exist only on x86_64 (the compiler refuses them
/// elsewhere), where they are named on every OS.
macro_rules! for_each_signature {
    ($impl_one:path) => {
        $crate::abi::for_each_signature!(@abi $impl_one; "C", $crate::abi::conv::C_CONV, false);
        $crate::abi::for_each_signature!(@abi $impl_one; "C-unwind", $crate::abi::conv::C_CONV, true);
        // Reference arguments for `"C"` and `"C-unwind"` only: every
        // higher-ranked shape is a type of its own, and coherence compares
        // each with every fn type of its arity, so the same shapes for all
        // eight ABIs made this crate build in 20 s instead of 4 s (the
        // other ABIs use `ref_thunk!`).
        $crate::abi::for_each_signature!(@refs_abi $impl_one; "C", $crate::abi::conv::C_CONV, false);
        $crate::abi::for_each_signature!(@refs_abi $impl_one; "C-unwind", $crate::abi::conv::C_CONV, true);
        $crate::abi::for_each_signature!(@abi $impl_one; "system", $crate::abi::conv::SYSTEM_CONV, false);
        $crate::abi::for_each_signature!(
            @abi $impl_one; "system-unwind", $crate::abi::conv::SYSTEM_CONV, true
        );
        #[cfg(target_arch = "x86_64")]
        $crate::abi::for_each_signature!(@abi $impl_one; "sysv64", $crate::abi::CallConv::SysV64, false);
        #[cfg(target_arch = "x86_64")]
        $crate::abi::for_each_signature!(
            @abi $impl_one; "sysv64-unwind", $crate::abi::CallConv::SysV64, true
        );
        #[cfg(target_arch = "x86_64")]
        $crate::abi::for_each_signature!(@abi $impl_one; "win64", $crate::abi::CallConv::Win64, false);
        #[cfg(target_arch = "x86_64")]
        $crate::abi::for_each_signature!(
            @abi $impl_one; "win64-unwind", $crate::abi::CallConv::Win64, true
        );
    };
    (@abi $impl_one:path; $abi:literal, $conv:expr, $unwind:literal) => {
        $crate::abi::for_each_signature!(
            @each $impl_one; $abi, $conv, $unwind; []
            (A1 a1) (A2 a2) (A3 a3) (A4 a4) (A5 a5) (A6 a6) (A7 a7) (A8 a8)
            (A9 a9) (A10 a10) (A11 a11) (A12 a12) (A13 a13) (A14 a14) (A15 a15) (A16 a16)
        );
    };
    (@refs_abi $impl_one:path; $abi:literal, $conv:expr, $unwind:literal) => {
        // Reference arguments (`&T`, `&mut T`, each its own elided
        // lifetime, so the fn type is higher-ranked) in the first two
        // positions of signatures of one to four arguments.
        $crate::abi::for_each_signature!(@refs $impl_one; $abi, $conv, $unwind; [r] [m]);
        $crate::abi::for_each_signature!(
            @refs $impl_one; $abi, $conv, $unwind;
            [v r] [v m] [r v] [r r] [r m] [m v] [m r] [m m]
            [v r v] [v m v] [r v v] [r r v] [r m v] [m v v] [m r v] [m m v]
            [v r v v] [v m v v] [r v v v] [r r v v] [r m v v] [m v v v] [m r v v] [m m v v]
        );
    };
    (@refs $impl_one:path; $abi:literal, $conv:expr, $unwind:literal; $([$($kind:ident)*])*) => {
        $(
            $crate::abi::for_each_signature!(
                @shape $impl_one; $abi, $conv, $unwind; [] [$($kind)*]
                (A1 a1) (A2 a2) (A3 a3) (A4 a4)
            );
        )*
    };
    // One argument of a shape at a time: `v` a value (a `ThunkArg`), `r`
    // a `&T`, `m` a `&mut T` (classed as the thin pointer it is).
    (@shape $impl_one:path; $abi:literal, $conv:expr, $unwind:literal; [$($done:tt)*]
        [v $($kind:ident)*] ($A:ident $a:ident) $($rest:tt)*) => {
        $crate::abi::for_each_signature!(
            @shape $impl_one; $abi, $conv, $unwind;
            [$($done)* ($A $a [$A] [$A] [$crate::abi::ThunkArg])] [$($kind)*] $($rest)*
        );
    };
    (@shape $impl_one:path; $abi:literal, $conv:expr, $unwind:literal; [$($done:tt)*]
        [r $($kind:ident)*] ($A:ident $a:ident) $($rest:tt)*) => {
        $crate::abi::for_each_signature!(
            @shape $impl_one; $abi, $conv, $unwind;
            [$($done)* ($A $a [&$A] [*const $A] [])] [$($kind)*] $($rest)*
        );
    };
    (@shape $impl_one:path; $abi:literal, $conv:expr, $unwind:literal; [$($done:tt)*]
        [m $($kind:ident)*] ($A:ident $a:ident) $($rest:tt)*) => {
        $crate::abi::for_each_signature!(
            @shape $impl_one; $abi, $conv, $unwind;
            [$($done)* ($A $a [&mut $A] [*mut $A] [])] [$($kind)*] $($rest)*
        );
    };
    (@shape $impl_one:path; $abi:literal, $conv:expr, $unwind:literal;
        [$(($A:ident $a:ident [$T:ty] [$K:ty] [$($bound:tt)*]))*] [] $($unused:tt)*) => {
        $impl_one!($abi, $conv, $unwind, extern $abi fn($($T),*) -> R;
            $(($A $a [$T] [$K] [$($bound)*]))*);
        $impl_one!($abi, $conv, $unwind, unsafe extern $abi fn($($T),*) -> R;
            $(($A $a [$T] [$K] [$($bound)*]))*);
    };
    (@each $impl_one:path; $abi:literal, $conv:expr, $unwind:literal;
        [$(($A:ident $a:ident))*] $next:tt $($rest:tt)*) => {
        $crate::abi::for_each_signature!(@one $impl_one; $abi, $conv, $unwind; $(($A $a))*);
        $crate::abi::for_each_signature!(
            @each $impl_one; $abi, $conv, $unwind; [$(($A $a))* $next] $($rest)*
        );
    };
    (@each $impl_one:path; $abi:literal, $conv:expr, $unwind:literal; [$(($A:ident $a:ident))*]) => {
        $crate::abi::for_each_signature!(@one $impl_one; $abi, $conv, $unwind; $(($A $a))*);
    };
    (@one $impl_one:path; $abi:literal, $conv:expr, $unwind:literal; $(($A:ident $a:ident))*) => {
        $impl_one!($abi, $conv, $unwind, extern $abi fn($($A),*) -> R;
            $(($A $a [$A] [$A] [$crate::abi::ThunkArg]))*);
        $impl_one!($abi, $conv, $unwind, unsafe extern $abi fn($($A),*) -> R;
            $(($A $a [$A] [$A] [$crate::abi::ThunkArg]))*);
    };
}

pub(crate) use for_each_signature;
