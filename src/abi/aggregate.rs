//! Small `#[repr(C)]` structs passed by value: their layout, computed at
//! compile time from their field types as C lays them out, and what each
//! calling convention makes of it.
//!
//! - System V x86_64: a struct of up to 16 bytes is one or two
//!   *eightbytes*, each passed in an `xmm` register when every field in it
//!   is a float and in an integer register otherwise; when the registers it
//!   needs are not all free, the whole struct goes on the stack (in
//!   eightbytes) and later arguments still take the free registers. It is
//!   returned the same way (`rax`/`rdx`, `xmm0`/`xmm1`).
//! - Windows x64: a struct of 1, 2, 4 or 8 bytes is passed as an integer of
//!   that size; any other is passed as a pointer to a copy. Either way it
//!   takes one argument position. Only 1, 2, 4 and 8-byte structs are
//!   returned in `rax`; others come back through hidden memory, which
//!   would shift every argument, so they are refused as return types.
//! - AAPCS64: a homogeneous float aggregate of up to four members in as
//!   many `v` registers, any other struct in one or two `x` registers; one
//!   that misses its registers goes on the stack and later arguments of
//!   that file follow it there. Returned the same way.
//!
//! The thunk never touches a struct: it only puts its context after the
//! arguments, so all it needs is how many registers of each file the
//! arguments take and how many stack slots; the closure's entry function,
//! compiled by rustc for the same `extern` signature, reads the struct.

use std::mem::{align_of, size_of};

use super::conv::ArgClass;
use super::sig::ThunkArg;

/// How a small `#[repr(C)]` struct is passed by value: its size and
/// alignment, and the class of each of its eightbytes. Made by
/// [`ArgClass::of_struct`] (at compile time) from the struct's field
/// types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructClass {
    size: u8,
    align: u8,
    /// System V: whether each eightbyte holds floats only (an `xmm`
    /// register) rather than any integer (an integer register).
    float_words: [bool; 2],
    /// AAPCS64: the members of a homogeneous float aggregate (all `f32` or
    /// all `f64`, at most four), or 0.
    hfa_members: u8,
}

impl StructClass {
    /// The struct's size in bytes (1 to 16).
    pub const fn size(self) -> usize {
        self.size as usize
    }

    /// The struct's alignment in bytes (at most 8).
    pub const fn align(self) -> usize {
        self.align as usize
    }

    /// System V: the integer and `xmm` registers the struct takes when it
    /// is passed in registers.
    // Used by the x86_64 code generator only (ELF and COFF, see `arch`).
    #[cfg_attr(
        not(all(
            target_arch = "x86_64",
            any(
                windows,
                all(unix, not(target_vendor = "apple"), not(target_os = "cygwin"))
            )
        )),
        allow(dead_code)
    )]
    pub(crate) const fn sysv_registers(self) -> (usize, usize) {
        let words = self.stack_slots();
        let mut floats = 0;
        let mut i = 0;
        while i < words {
            if self.float_words[i] {
                floats += 1;
            }
            i += 1;
        }
        (words - floats, floats)
    }

    /// The 8-byte stack slots the struct takes when it is passed on the
    /// stack by value (System V).
    // Used by the x86_64 code generator only (ELF and COFF, see `arch`).
    #[cfg_attr(
        not(all(
            target_arch = "x86_64",
            any(
                windows,
                all(unix, not(target_vendor = "apple"), not(target_os = "cygwin"))
            )
        )),
        allow(dead_code)
    )]
    pub(crate) const fn stack_slots(self) -> usize {
        self.size().div_ceil(8)
    }

    /// Windows x64: whether the struct is returned in `rax` (1, 2, 4 or 8
    /// bytes) rather than through hidden memory.
    pub(crate) const fn win64_in_register(self) -> bool {
        matches!(self.size, 1 | 2 | 4 | 8)
    }

    /// AAPCS64: how many `v` registers a homogeneous float aggregate takes
    /// (0 for any other struct).
    #[allow(dead_code)]
    pub(crate) const fn hfa_members(self) -> usize {
        self.hfa_members as usize
    }
}

/// The field types of a struct, in declaration order, as a tuple: what
/// [`ArgClass::of_struct`] lays out. Implemented for tuples of 1 to 16
/// [`ThunkArg`] scalars (integers, `bool`, floats, thin pointers and
/// references, fn pointers, and their `Option`s).
pub trait StructFields {
    /// Each field's class, size and alignment, in order.
    #[doc(hidden)]
    const FIELDS: &'static [(ArgClass, usize, usize)];
}

macro_rules! struct_fields {
    ($($T:ident)+) => {
        impl<$($T: ThunkArg),+> StructFields for ($($T,)+) {
            const FIELDS: &'static [(ArgClass, usize, usize)] =
                &[$(($T::CLASS, size_of::<$T>(), align_of::<$T>())),+];
        }
    };
}

struct_fields!(A);
struct_fields!(A B);
struct_fields!(A B C);
struct_fields!(A B C D);
struct_fields!(A B C D E);
struct_fields!(A B C D E F);
struct_fields!(A B C D E F G);
struct_fields!(A B C D E F G H);
struct_fields!(A B C D E F G H I);
struct_fields!(A B C D E F G H I J);
struct_fields!(A B C D E F G H I J K);
struct_fields!(A B C D E F G H I J K L);
struct_fields!(A B C D E F G H I J K L M);
struct_fields!(A B C D E F G H I J K L M N);
struct_fields!(A B C D E F G H I J K L M N O);
struct_fields!(A B C D E F G H I J K L M N O P);

impl ArgClass {
    /// The class of a `#[repr(C)]` struct whose fields have the types of
    /// the tuple `T`, in order: laid out as C lays it out (each field at
    /// the next multiple of its alignment, the size rounded up to the
    /// largest alignment) and classified for every convention. Evaluated
    /// at compile time; a struct it cannot place is a build error naming
    /// why: no fields, a field that is itself a struct, or more than 16
    /// bytes (pass a pointer to it instead).
    ///
    /// [`c_struct!`](crate::c_struct) calls it with a struct's own field
    /// types. For a struct defined elsewhere (bindgen's, say), implement
    /// [`ThunkArg`] with it yourself, listing the fields:
    ///
    /// ```
    /// #[repr(C)]
    /// #[derive(Clone, Copy)]
    /// struct Timespec {
    ///     sec: i64,
    ///     nsec: i64,
    /// }
    ///
    /// // SAFETY: `Timespec` is `#[repr(C)]` with exactly these field types,
    /// // in this order. (Its size and alignment are checked against them.)
    /// unsafe impl wxthunk::ThunkArg for Timespec {
    ///     const CLASS: wxthunk::ArgClass = wxthunk::ArgClass::of_struct::<(i64, i64)>();
    /// }
    /// ```
    ///
    /// A field list that does not match the struct's size and alignment is
    /// a build error where a thunk uses it:
    ///
    /// ```compile_fail,E0080
    /// #[repr(C)]
    /// struct Listed { a: u32, b: u64 }
    /// // Wrong: the fields are (u32, u64), 16 bytes with padding, not 8.
    /// unsafe impl wxthunk::ThunkArg for Listed {
    ///     const CLASS: wxthunk::ArgClass = wxthunk::ArgClass::of_struct::<(u32, u32)>();
    /// }
    /// let t = wxthunk::Thunk::<unsafe extern "C" fn(Listed) -> u64>::new(|l| l.b);
    /// ```
    ///
    /// Used:
    ///
    /// ```
    /// # #[repr(C)]
    /// # #[derive(Clone, Copy)]
    /// # struct Timespec { sec: i64, nsec: i64 }
    /// # unsafe impl wxthunk::ThunkArg for Timespec {
    /// #     const CLASS: wxthunk::ArgClass = wxthunk::ArgClass::of_struct::<(i64, i64)>();
    /// # }
    /// let base = std::hint::black_box(10);
    /// let nanos = wxthunk::Thunk::<unsafe extern "C" fn(Timespec) -> i64>::new(
    ///     move |t| (t.sec + base) * 1_000_000_000 + t.nsec,
    /// )?;
    /// // SAFETY: the thunk is alive.
    /// let n = unsafe { (nanos.as_fn())(Timespec { sec: 1, nsec: 2 }) };
    /// assert_eq!(n, 11_000_000_002);
    /// // (Returning a `Timespec` works where the convention returns 16 bytes
    /// // in registers, System V and AAPCS64; Windows x64 returns it through
    /// // memory, which a thunk's type is refused for at compile time.)
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub const fn of_struct<T: StructFields>() -> ArgClass {
        let fields = T::FIELDS;
        assert!(
            !fields.is_empty(),
            "wxthunk: a struct by value needs a field"
        );
        let (mut end, mut align) = (0usize, 1usize);
        let mut float_words = [true, true];
        let mut float_size = 0usize;
        let mut all_one_float = true;
        let mut i = 0;
        while i < fields.len() {
            let (class, size, field_align) = fields[i];
            let offset = end.next_multiple_of(field_align);
            match class {
                ArgClass::Integer => {
                    all_one_float = false;
                    if offset < 16 {
                        float_words[offset / 8] = false;
                    }
                }
                ArgClass::Float => {
                    if float_size == 0 {
                        float_size = size;
                    } else if float_size != size {
                        all_one_float = false;
                    }
                }
                ArgClass::Struct(_) => panic!(
                    "wxthunk: a struct field of a struct by value: list the inner struct's \
                     fields in its place"
                ),
            }
            end = offset + size;
            if field_align > align {
                align = field_align;
            }
            i += 1;
        }
        let size = end.next_multiple_of(align);
        assert!(
            size <= 16,
            "wxthunk: a struct by value has at most 16 bytes (C passes larger ones through \
             memory): pass a pointer to it instead"
        );
        assert!(
            align <= 8,
            "wxthunk: a struct by value is aligned to at most 8 bytes"
        );
        let hfa_members = if all_one_float && fields.len() <= 4 {
            fields.len() as u8
        } else {
            0
        };
        ArgClass::Struct(StructClass {
            size: size as u8,
            align: align as u8,
            float_words,
            hfa_members,
        })
    }
}
