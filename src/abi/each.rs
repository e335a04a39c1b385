//! [`for_each_signature!`]: every fn-pointer type the crate implements its
//! traits for, in one list.

/// Invokes `$impl_one!(abi, conv, unwind, fn_type; (A1 a1) .. (An an))` for
/// every supported ABI string, 0 to 16 arguments, safe and `unsafe`:
///
/// - `abi`: the ABI string literal (`"C-unwind"`);
/// - `conv`: its [`CallConv`](super::CallConv) on this target;
/// - `unwind`: whether a panic may unwind out of it (`-unwind` ABIs);
/// - `fn_type`: `extern abi fn(A1, .., An) -> R` or its `unsafe` form, with
///   the generic parameters `R` and `A1..An` for the impl to declare;
/// - the argument type parameters with a matching value name each, for
///   impls that write functions of the signature.
///
/// `"sysv64"` and `"win64"` exist only on x86_64 (the compiler refuses them
/// elsewhere), where they are named on every OS.
macro_rules! for_each_signature {
    ($impl_one:path) => {
        $crate::abi::for_each_signature!(@abi $impl_one; "C", $crate::abi::conv::C_CONV, false);
        $crate::abi::for_each_signature!(@abi $impl_one; "C-unwind", $crate::abi::conv::C_CONV, true);
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
        $impl_one!($abi, $conv, $unwind, extern $abi fn($($A),*) -> R; $(($A $a))*);
        $impl_one!($abi, $conv, $unwind, unsafe extern $abi fn($($A),*) -> R; $(($A $a))*);
    };
}

pub(crate) use for_each_signature;
