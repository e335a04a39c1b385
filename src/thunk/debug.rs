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
//! freed, so no newer thunk can take the address (`Slow::quarantine` in
//! `handle.rs`; `Thunk::build_debug` in `build.rs` makes them). At most
//! [`DEBUG_QUARANTINE`] thunks are held in the whole process; past that,
//! dropped thunks are freed as in the default mode, and wxthunk says so
//! once.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::ThunkSig;
use crate::arch;
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
    pub(super) fn new<F: ThunkSig, C>(rec: trampoline::Record) -> Box<DebugThunk> {
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

    /// The address of the report (word 2 of the record).
    pub(super) fn report_addr(&self) -> usize {
        std::ptr::from_ref(&self.report).expose_provenance()
    }

    /// The address of the record, which generated debug code reads.
    pub(super) fn record_addr(&self) -> usize {
        self.record.as_ptr().expose_provenance()
    }

    /// Records the thunk's function pointer, for the report.
    pub(super) fn set_at(&self, at: usize) {
        self.report.at.store(at, Ordering::Relaxed);
    }

    /// Points the record's target at the report (one release store): what
    /// generated debug code reaches from now on.
    pub(super) fn divert(&self) {
        self.record[3].store(arch::trampoline_dropped(), Ordering::Release);
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
pub(super) fn admit() -> bool {
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
