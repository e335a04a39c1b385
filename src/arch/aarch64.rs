//! AArch64. Built for `aarch64-unknown-linux-gnu` in CI by
//! `.ci/aarch64-build` (Debian's rustc), which runs the tests under
//! `qemu-aarch64`; never run on hardware.
//!
//! Generated thunks use the encoders and the AAPCS64 placement of
//! `aarch64_thunk.rs` and the frame adapter of `aarch64_adapters.s`,
//! assembled here, and the static-trampoline table of
//! `aarch64_trampolines.s`: one table in 64 KiB units, which maps from the
//! binary's file on 4, 16 and 64 KiB kernels alike.

use core::arch::asm;

/// The architecture's name as reported by the probe.
pub(crate) const NAME: &str = "aarch64";

/// `brk #0`, little-endian.
pub(crate) const TRAP: &[u8] = &[0x00, 0x00, 0x20, 0xd4];

/// `mov w0, #1; ret` and `mov w0, #2; ret`, little-endian: C functions
/// returning 1 and 2 (see the x86_64 ones).
pub(crate) const RETURN_ONE: &[u8] = &[0x20, 0x00, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6];
/// See [`RETURN_ONE`].
pub(crate) const RETURN_TWO: &[u8] = &[0x40, 0x00, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6];

/// Cleans the data cache and invalidates the instruction cache for
/// `ptr..ptr+len` to the point of unification, the sequence the Arm ARM
/// gives for self-modifying code ([`flush_icache_views`] with one view).
pub(crate) fn flush_icache(ptr: *const u8, len: usize) {
    flush_icache_views(ptr, ptr, len);
}

/// The same for code written at `written..written+len` (a writable view)
/// and run at `executed..executed+len` (another view of the same memory):
/// clean the data cache by the written address, `dsb ish`, invalidate the
/// instruction cache by the executed address (an instruction cache may be
/// indexed by virtual address), `dsb ish; isb`, with the line sizes from
/// `CTR_EL0`. Linux lets user space run these instructions and read
/// `CTR_EL0`. qemu models no caches: this is reviewed, not proven.
pub(crate) fn flush_icache_views(written: *const u8, executed: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects; Linux enables EL0 access.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let (start, end) = (written as usize, written as usize + len);
    let mut addr = start & !(dline - 1);
    while addr < end {
        // SAFETY: cache maintenance by address on memory this process maps
        // changes no architectural state visible to Rust.
        unsafe { asm!("dc cvau, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += dline;
    }
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    let (start, end) = (executed as usize, executed as usize + len);
    let mut addr = start & !(iline - 1);
    while addr < end {
        // SAFETY: as for `dc cvau` above.
        unsafe { asm!("ic ivau, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += iline;
    }
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

use super::aarch64_thunk::{self as enc, THUNK_SIZE};
use super::{Placement, THUNK_CODE_MAX, ThunkCode};
use crate::abi::{ArgClass, CallConv};

// The frame adapter, with unwind information (`aarch64_adapters.s`), and
// the static-trampoline table (`aarch64_trampolines.s`).
core::arch::global_asm!(include_str!("aarch64_adapters.s"));
core::arch::global_asm!(include_str!("aarch64_trampolines.s"));

unsafe extern "C" {
    fn wxthunk_0_1_aapcs64_frame_adapter();
    fn wxthunk_0_1_aapcs64_frame_adapter_1();
    fn wxthunk_0_1_aapcs64_frame_adapter_2();
    fn wxthunk_0_1_aapcs64_frame_adapter_3();
    fn wxthunk_0_1_aapcs64_frame_adapter_4();
    fn wxthunk_0_1_aapcs64_frame_adapter_5();
    fn wxthunk_0_1_aapcs64_frame_adapter_6();
    fn wxthunk_0_1_aapcs64_frame_adapter_7();
    fn wxthunk_0_1_aapcs64_frame_adapter_8();
    fn wxthunk_0_1_aapcs64_freed();
    fn wxthunk_0_1_aapcs64_dropped();
    /// Each adapter's size in bytes, in the order of [`FRAME_ADAPTERS`]
    /// (`aarch64_adapters.s`).
    static wxthunk_0_1_aapcs64_frame_adapter_sizes: [u32; FRAME_ADAPTER_COUNT];
    static wxthunk_0_1_trampoline_table: [u8; TABLE_KINDS * TABLE_SIZE];
}

/// How many frame adapters there are (0 to 8 stack arguments).
const FRAME_ADAPTER_COUNT: usize = crate::abi::MAX_ARITY - 8 + 1;

/// The frame adapters by the count of stack arguments before the context:
/// 0 for every Rust entry (its context takes the first stack slot), up to
/// 8 for a [`DynThunk`](crate::DynThunk)'s C target (the arguments that
/// missed the eight `x` registers, with at most sixteen in all).
static FRAME_ADAPTERS: [unsafe extern "C" fn(); FRAME_ADAPTER_COUNT] = [
    wxthunk_0_1_aapcs64_frame_adapter,
    wxthunk_0_1_aapcs64_frame_adapter_1,
    wxthunk_0_1_aapcs64_frame_adapter_2,
    wxthunk_0_1_aapcs64_frame_adapter_3,
    wxthunk_0_1_aapcs64_frame_adapter_4,
    wxthunk_0_1_aapcs64_frame_adapter_5,
    wxthunk_0_1_aapcs64_frame_adapter_6,
    wxthunk_0_1_aapcs64_frame_adapter_7,
    wxthunk_0_1_aapcs64_frame_adapter_8,
];

/// The frame adapter for a context after `stack_args` stack arguments.
///
/// # Panics
///
/// For a count no signature of up to 16 arguments has (the placements
/// below never return one).
fn frame_adapter(stack_args: usize) -> usize {
    match FRAME_ADAPTERS.get(stack_args) {
        Some(&f) => f as usize,
        None => unreachable!("no signature has {stack_args} stack arguments"),
    }
}

/// The unit of the trampoline table: one kind's entries, and the distance
/// from an entry to its record. 64 KiB, the largest page size of AArch64
/// Linux, so that a unit is whole pages on every kernel (4, 16 or 64 KiB
/// pages): one table serves them all, where a table per page size would
/// add 340 KiB of text for smaller reservations only.
pub(crate) const TABLE_SIZE: usize = 65536;
/// The size of one entry, and of one record.
pub(crate) const ENTRY_SIZE: usize = 32;
/// Units in the table: one per kind of placement (eight integer argument
/// registers, eight SIMD/FP ones, the frame path). The assembly's
/// displacements (`17 - kind`) assume this count.
pub(crate) const TABLE_KINDS: usize = 17;

/// None of the table is compiled into the image with its records: it is
/// mapped again from the binary's file.
pub(crate) const BUILTIN_UNITS: usize = 0;

/// No records in the image (see [`BUILTIN_UNITS`]).
pub(crate) fn trampoline_records() -> Option<usize> {
    None
}

/// The table as assembled into this binary's text, every kind's unit.
pub(crate) fn trampoline_table() -> Option<&'static [u8]> {
    // SAFETY: the symbol is the table's code assembled above, in a
    // readable, never-written text section of `TABLE_KINDS * TABLE_SIZE`
    // bytes (its `.size`).
    Some(unsafe { &*core::ptr::addr_of!(wxthunk_0_1_trampoline_table) })
}

/// The unit of the table whose entries put the context where `placement`
/// says: `x<n>` is unit n, `d<n>` unit 8 + n, the frame path unit 16.
#[inline]
pub(crate) const fn trampoline_kind(placement: Placement) -> usize {
    match placement {
        Placement::Register(n) if n < 8 => n as usize,
        Placement::Float(n) if n < 8 => 8 + n as usize,
        Placement::Stack(_) => 16,
        Placement::Register(_) => panic!("no such argument register"),
        Placement::Float(_) => panic!("no such float argument register"),
    }
}

// Every thunk fills its granule exactly.
const _: () = assert!(THUNK_SIZE == THUNK_CODE_MAX);

/// Where the context goes after `classes`: AAPCS64's placement, for the
/// conventions of this target (every one is AAPCS64 here).
///
/// A Rust entry's context is on the stack only when all sixteen argument
/// registers are taken, as the first stack slot; a signature whose context
/// would follow stack arguments (only structs that missed their registers
/// make one, within sixteen arguments) is a compile-time error for now.
pub(crate) const fn placement(conv: CallConv, classes: &[ArgClass]) -> Option<Placement> {
    match conv {
        CallConv::Aapcs64 => match enc::placement(classes) {
            Placement::Stack(n) if n > 0 => panic!(
                "wxthunk: on AArch64 this signature's context would follow arguments passed on \
                 the stack, which no frame adapter serves yet"
            ),
            p => Some(p),
        },
        _ => None,
    }
}

/// Where a context declared as a trailing pointer goes after `classes` (a
/// [`DynThunk`](crate::DynThunk)'s C target): an `x` register, or the slot
/// after the stack arguments (an adapter per count up to 8, so `None` for
/// more, which only struct arguments could make).
pub(crate) const fn pointer_placement(conv: CallConv, classes: &[ArgClass]) -> Option<Placement> {
    match conv {
        CallConv::Aapcs64 => match enc::pointer_placement(classes) {
            Placement::Stack(n) if n >= FRAME_ADAPTER_COUNT => None,
            p => Some(p),
        },
        _ => None,
    }
}

/// The register-path thunk (position-independent: `at` does not matter).
#[inline]
pub(crate) fn register_thunk(reg: u8, ctx: usize, entry: usize, _at: usize) -> ThunkCode {
    ThunkCode::from_bytes(enc::register_thunk(reg, ctx, entry), THUNK_SIZE)
}

/// The float-register-path thunk: the context's bits in `d<reg>`.
pub(crate) fn float_thunk(reg: u8, ctx: usize, entry: usize, _at: usize) -> ThunkCode {
    ThunkCode::from_bytes(enc::float_thunk(reg, ctx, entry), THUNK_SIZE)
}

/// Every generated thunk is a whole granule (its literals included).
pub(crate) fn register_thunk_len(_code: &[u8; THUNK_CODE_MAX]) -> usize {
    THUNK_SIZE
}

/// The frame-path thunk: the record in x16 for the frame adapter that
/// copies `stack_args` stack arguments before the context.
pub(crate) fn frame_thunk(
    _conv: CallConv,
    stack_args: usize,
    record: usize,
    _at: usize,
) -> ThunkCode {
    ThunkCode::from_bytes(
        enc::frame_thunk(record, frame_adapter(stack_args)),
        THUNK_SIZE,
    )
}

/// The thunk that reads its context and target from a record (debug mode).
pub(crate) fn record_thunk(placement: Placement, record: usize) -> ThunkCode {
    ThunkCode::from_bytes(enc::record_thunk(placement, record), THUNK_SIZE)
}

/// Every frame adapter as `(address, size in bytes, name)`, for perf's map.
pub(crate) fn frame_adapters() -> Vec<(usize, usize, String)> {
    // SAFETY: an immutable array the assembly defines in `.rodata`, one
    // size per adapter.
    let sizes = unsafe { wxthunk_0_1_aapcs64_frame_adapter_sizes };
    FRAME_ADAPTERS
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(n, (&f, size))| {
            let name = format!("wxthunk frame adapter (AAPCS64, {n} stack arguments)");
            (f as usize, size as usize, name)
        })
        .collect()
}

/// Where a record's target points for a thunk of `placement` (static
/// trampolines, and debug mode's record thunks): the entry itself, or the
/// frame adapter, which reads the record through x16.
pub(crate) fn trampoline_target(_conv: CallConv, placement: Placement, entry: usize) -> usize {
    match placement {
        Placement::Stack(n) => frame_adapter(n),
        Placement::Register(_) | Placement::Float(_) => entry,
    }
}

/// The target of a free record: `brk #0`.
pub(crate) fn trampoline_freed() -> usize {
    wxthunk_0_1_aapcs64_freed as *const () as usize
}

/// The target of a dropped thunk's record in debug mode: calls the report
/// that word 2 of the record (x16) points to.
pub(crate) fn trampoline_dropped() -> usize {
    wxthunk_0_1_aapcs64_dropped as *const () as usize
}
