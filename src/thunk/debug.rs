//! Debug mode ([`HeapBuilder::debug`](crate::HeapBuilder::debug),
//! `WXTHUNK_DEBUG=1`): a call through a dropped thunk is reported, not
//! just trapped.
//!
//! A debug thunk is a `SLOW` thunk whose code reads its context and target
//! from a record, `[ctx, entry, report, target]`, the layout of a static
//! trampoline's record: generated code is `mov r11, record; <ctx from
//! [r11]>; jmp [r11 + 24]` (`arch::record_thunk`), and a static
//! trampoline's entry already works this way. The record's third word
//! (which no call reads) points to the thunk's [`Report`]: its address,
//! signature and closure type.
//!
//! Dropping the thunk drops its closure as usual but **quarantines** its
//! code: one release store points the record's target at the arch's
//! dropped-thunk target, which calls the report's function (printing one
//! line and aborting), and the code, its slot and the record are never
//! freed, so no newer thunk can take the address. At most
//! [`DEBUG_QUARANTINE`] thunks are held in the whole process; past that,
//! dropped thunks are freed as in the default mode, and wxthunk says so
//! once.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use lock_api::RawMutex;

use super::Thunk;
use super::codegen::placement_of;
use super::context::Context;
use super::handle::{Code, Slow};
use crate::abi::{FnPtr, ThunkSig};
use crate::arch::{self, Placement};
use crate::error::Result;
use crate::heap::Heap;
use crate::strategy::ThunkStrategy;
use crate::trampoline;

/// The most dropped thunks debug mode keeps in quarantine, in the whole
/// process (see [`HeapBuilder::debug`](crate::HeapBuilder::debug)).
pub const DEBUG_QUARANTINE: usize = 1 << 16;

/// Thunks quarantined so far (and, past the limit, refused).
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);

/// What a stale call through a dropped debug thunk reports. The first word
/// is what the dropped-thunk target calls, with the report.
#[repr(C)]
pub(super) struct Report {
    call: extern "C" fn(&Report) -> !,
    /// The thunk's function pointer (set once it is known).
    at: AtomicUsize,
    signature: &'static str,
    closure: &'static str,
}

/// A debug thunk's record and report, boxed (they never move) and kept
/// for the rest of the process once the thunk is quarantined.
#[repr(C)]
pub(super) struct DebugThunk {
    /// `[ctx, entry, report, target]`, as a static trampoline's record:
    /// generated debug code reads the context and target from here.
    record: [AtomicUsize; 4],
    report: Report,
}

impl DebugThunk {
    /// The record and report of a thunk of `F` and closure type `C` whose
    /// record is otherwise `rec`.
    fn new<F: ThunkSig, C>(rec: trampoline::Record) -> Box<DebugThunk> {
        let debug = Box::new(DebugThunk {
            record: Default::default(),
            report: Report {
                call: report,
                at: AtomicUsize::new(0),
                signature: std::any::type_name::<F>(),
                closure: std::any::type_name::<C>(),
            },
        });
        let words = [rec.words[0], rec.words[1], debug.report_addr(), rec.target];
        for (word, value) in debug.record.iter().zip(words) {
            word.store(value, Ordering::Relaxed);
        }
        debug
    }

    fn report_addr(&self) -> usize {
        std::ptr::from_ref(&self.report).expose_provenance()
    }

    fn record_addr(&self) -> usize {
        self.record.as_ptr().expose_provenance()
    }
}

/// Prints the one line of a call through a dropped thunk and aborts. The
/// dropped-thunk target calls it on an aligned stack, from the stale call.
extern "C" fn report(report: &Report) -> ! {
    let line = format!(
        "wxthunk: call through a dropped thunk at {:#x} (signature {}, closure {}); aborting\n",
        report.at.load(Ordering::Relaxed),
        report.signature,
        report.closure,
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    std::process::abort()
}

/// Whether one more thunk fits the quarantine; says once when it is full.
fn admit() -> bool {
    let n = QUARANTINED.fetch_add(1, Ordering::Relaxed);
    if n == DEBUG_QUARANTINE {
        let _ = std::io::stderr().write_all(
            format!(
                "wxthunk: debug quarantine full ({DEBUG_QUARANTINE} dropped thunks kept); dropped \
                 thunks are reused from now on, and calls through them trap without a report\n"
            )
            .as_bytes(),
        );
    }
    n < DEBUG_QUARANTINE
}

/// Quarantines the code of a debug thunk being dropped: points its record
/// at the report and takes the code out of `slow` without freeing it (the
/// caller then frees the rest, the closure included). Past the limit it
/// does nothing, and the code is freed with the rest.
pub(super) fn quarantine<L: RawMutex>(slow: &mut Slow<'_, L>) {
    if slow.debug.is_none() || !admit() {
        return;
    }
    let Some(debug) = slow.debug.take() else {
        return;
    };
    let dropped = arch::trampoline_dropped();
    match &slow.code {
        // SAFETY: the thunk's own slot, in a table that lives as long as
        // its heap (the slot is never freed now); word 2 of its record
        // points to the report (`build_debug`), which is leaked below.
        Code::Static(slot) => unsafe { trampoline::divert_at(slot.entry(), dropped) },
        // The code reads this record; both are kept from now on.
        Code::Generated(_) => debug.record[3].store(dropped, Ordering::Release),
        // Debug thunks have no other kind of code; free it as usual.
        _ => {
            slow.debug = Some(debug);
            return;
        }
    }
    // The code (its span or slot) is never freed: no newer thunk can take
    // its address.
    std::mem::forget(std::mem::replace(&mut slow.code, Code::Compiled));
    Box::leak(debug);
}

impl<'a, F: ThunkSig, L: RawMutex> Thunk<'a, F, L> {
    /// A debug-mode thunk of closure type `C`: a `SLOW` thunk passing
    /// `ctx` to `entry` through the record of its [`DebugThunk`] (generated
    /// code reading it, or a static trampoline whose record points to its
    /// report).
    pub(super) fn build_debug<C>(
        heap: &'a Heap<L>,
        ctx: Context,
        entry: *const (),
    ) -> Result<Self> {
        let placement = placement_of::<F>()?;
        let ctx_addr = ctx.ptr.as_ptr() as usize;
        let builds_frame = matches!(placement, Placement::Stack(_));
        let rec = trampoline::record(F::CONV, placement, ctx_addr, entry as usize);
        let debug = DebugThunk::new::<F, C>(rec);
        let (at, code) = if heap.thunk_strategy() == ThunkStrategy::StaticTrampolines {
            let mut table_rec = rec;
            // No call reads the third word (the frame adapters read the
            // context and entry only): it points to the report.
            table_rec.words[2] = debug.report_addr();
            let (slot, _) =
                heap.trampoline(trampoline::kind_of(placement), |_| table_rec, false)?;
            let at = slot.entry() + trampoline::entry_offset(placement);
            (at, Code::Static(slot))
        } else {
            let record = debug.record_addr();
            let code = heap.exec_code_at(arch::THUNK_CODE_MAX, |_| {
                arch::record_thunk(placement, record)
            })?;
            (code.as_ptr() as usize, Code::Generated(code))
        };
        debug.report.at.store(at, Ordering::Relaxed);
        // SAFETY: the code (the record thunk, or the slot's entry in the
        // page for `F`'s placement) puts the record's context where `F`'s
        // placement says and reaches the record's target: `entry` (or the
        // frame adapter for it), which takes `F`'s arguments plus the
        // context; it is not null.
        let fn_ptr = unsafe { <F::Unsafe as FnPtr>::from_addr(at as *const ()) };
        let slow = Slow::boxed_debug(heap, code, ctx, builds_frame, debug);
        // SAFETY: the thunk owns the code, the context and the record, in
        // `slow`.
        Ok(unsafe { Self::from_slow(fn_ptr, slow) })
    }
}
