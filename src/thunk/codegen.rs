//! Generated thunk code, the one path every kind of thunk takes: where a
//! thunk of a given signature puts its context (behind the compile-time
//! layout check), the record a frame-building thunk reads, and the bytes of
//! a generated thunk. [`Thunk`](super::Thunk) and
//! [`ThunkPage`](super::ThunkPage) entries both use it; static trampolines
//! take the placement and hand it to `crate::trampoline`.

use crate::abi::{CallConv, ThunkSig};
use crate::arch::{self, Placement};
use crate::error::{Error, Result};

/// What the frame-path adapter reads: `[ctx, entry, stack_args]`.
#[repr(C)]
pub(super) struct FrameRecord([usize; 3]);

/// Where a thunk of type `F` puts its context: the one placement rule for
/// every kind of thunk ([`Thunk`], [`ThunkPage`] entries, static
/// trampolines), behind the compile-time check that each argument fits the
/// register its class claims.
///
/// # Errors
///
/// [`Error::Unsupported`] where there is no code generator for `F`'s
/// convention.
#[inline(always)]
pub(super) fn placement_of<F: ThunkSig>() -> Result<Placement> {
    #[allow(clippy::let_unit_value)]
    let () = const { F::LAYOUT_OK };
    let Some(placement) = (const { arch::placement(F::CONV, F::CLASSES) }) else {
        return Err(Error::Unsupported {
            what: "thunks for this calling convention on this architecture",
        });
    };
    Ok(placement)
}

/// [`placement_of`]'s placement as a constant, for closures that make code
/// after `placement_of` succeeded (so it is never `None` there): a closure
/// that captured the `Placement` value instead would copy it around, and
/// copies of its odd layout (a byte tag, then a byte or a word) cost a
/// store-forwarding stall on the creation path.
#[inline(always)]
pub(super) fn placement_const<F: ThunkSig>() -> Placement {
    match const { arch::placement(F::CONV, F::CLASSES) } {
        Some(placement) => placement,
        None => unreachable!("placement_of checked that there is a placement"),
    }
}

/// The record a frame-building generated thunk reads (`None` for a
/// register placement, which needs none).
#[inline]
pub(super) fn frame_record(
    placement: Placement,
    ctx: usize,
    entry: *const (),
) -> Option<Box<FrameRecord>> {
    match placement {
        Placement::Register(_) | Placement::Float(_) => None,
        Placement::Stack(stack_args) => {
            Some(Box::new(FrameRecord([ctx, entry as usize, stack_args])))
        }
    }
}

/// The machine code of a generated thunk of type `F` that will run at
/// `at`: it places `ctx` (or, on the frame path, points the adapter at
/// `record`) and reaches `entry`.
#[inline]
pub(super) fn generated_code<F: ThunkSig>(
    placement: Placement,
    ctx: usize,
    entry: *const (),
    record: Option<&FrameRecord>,
    at: usize,
) -> arch::ThunkCode {
    code_for(F::CONV, placement, ctx, entry, record, at)
}

/// [`generated_code`] for a convention known at run time.
#[inline]
pub(super) fn code_for(
    conv: CallConv,
    placement: Placement,
    ctx: usize,
    entry: *const (),
    record: Option<&FrameRecord>,
    at: usize,
) -> arch::ThunkCode {
    match placement {
        Placement::Register(reg) => arch::register_thunk(reg, ctx, entry as usize, at),
        Placement::Float(xmm) => arch::float_thunk(xmm, ctx, entry as usize, at),
        Placement::Stack(stack_args) => {
            let record = record.expect("the frame path has a record");
            arch::frame_thunk(conv, stack_args, std::ptr::from_ref(record) as usize, at)
        }
    }
}
