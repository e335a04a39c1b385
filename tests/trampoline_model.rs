//! Model-based property test of the static-trampoline slot pool: random
//! sequences of thunk creation and drop (in bursts that fill and empty whole
//! tables), compaction, checked after every step against a plain model:
//! every live thunk has its own entry and still calls its own closure with
//! its own arguments (the thunks have four signatures, whose contexts go to
//! four different pages of a table: `rsi`, `rdx`, `xmm0` and the frame path,
//! so freed slots are reused across kinds), the
//! heap counts exactly the live ones, and the tables mapped are what the live
//! slots need and at most what the most slots taken at once since the last
//! compaction needed (empty tables are kept for reuse, as regions are);
//! after a compaction, only tables with live slots. Where the table has a
//! fixed size (Windows), creation past it is an error exactly when every
//! slot is live.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::collections::BTreeSet;

use proptest::prelude::*;
use wxthunk::{Heap, Strategy as WxStrategy, Thunk};

type F1 = unsafe extern "C" fn(u64) -> u64;
type F2 = unsafe extern "C" fn(u64, u64) -> u64;
type F6 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64;
/// Six integers and eight floats: the context goes on the stack.
#[rustfmt::skip]
type FFrame =
    unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64) -> u64;

type NoLock = wxthunk::NoLock;

/// A live thunk of one of the four signatures, made to return its value
/// plus the sum of its arguments.
enum Live<'h> {
    One(Thunk<'h, F1, NoLock>),
    Two(Thunk<'h, F2, NoLock>),
    Six(Thunk<'h, F6, NoLock>),
    Frame(Thunk<'h, FFrame, NoLock>),
}

impl<'h> Live<'h> {
    fn new(heap: &'h Heap<NoLock>, kind: usize, v: u64) -> wxthunk::Result<Live<'h>> {
        Ok(match kind % 4 {
            0 => Live::One(heap.thunk::<F1, _>(move |a| v + a)?),
            1 => Live::Two(heap.thunk::<F2, _>(move |a, b| v + a + b)?),
            2 => Live::Six(heap.thunk::<F6, _>(move |a, b, c, d, e, f| v + a + b + c + d + e + f)?),
            _ => Live::Frame(heap.thunk::<FFrame, _>(
                move |a, b, c, d, e, f, g, h, i, j, k, l, m, n| {
                    v + a + b + c + d + e + f + (g + h + i + j + k + l + m + n) as u64
                },
            )?),
        })
    }

    fn addr(&self) -> usize {
        match self {
            Live::One(t) => t.as_fn() as usize,
            Live::Two(t) => t.as_fn() as usize,
            Live::Six(t) => t.as_fn() as usize,
            Live::Frame(t) => t.as_fn() as usize,
        }
    }

    /// The thunk's value, from a call (its arguments sum to 36).
    fn call(&self) -> u64 {
        // SAFETY: each thunk is alive, called with its own signature.
        unsafe {
            match self {
                Live::One(t) => (t.as_fn())(36),
                Live::Two(t) => (t.as_fn())(30, 6),
                Live::Six(t) => (t.as_fn())(1, 2, 3, 4, 5, 21),
                Live::Frame(t) => {
                    (t.as_fn())(1, 2, 3, 4, 5, 6, 1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 1.0, 1.0)
                }
            }
        }
        .wrapping_sub(36)
    }
}

/// Entries per table: a unit of 32-byte entries, 16 KiB on x86_64 (4 KiB
/// in the table compiled into a Windows image) and 64 KiB on AArch64
/// (whose table serves 4, 16 and 64 KiB pages).
const PER_TABLE: usize = if cfg!(target_arch = "aarch64") {
    2048
} else if cfg!(windows) {
    128
} else {
    512
};
/// The largest burst: enough to fill two tables and start a third.
const BURST: usize = 2 * PER_TABLE + PER_TABLE / 3;

/// Ready slots (freed, records retired, taken in their tables) a shard
/// keeps for reuse at most; `compact` gives them back.
const READY: usize = 64;

#[derive(Clone, Debug)]
enum Op {
    /// Create this many thunks, of kinds from this one on in turn.
    Create(usize, usize),
    /// Drop this many thunks, picked from the live ones by this seed.
    Drop(usize, usize),
    Compact,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..BURST, 0usize..4).prop_map(|(n, k)| Op::Create(n, k)),
        4 => (1usize..BURST, any::<usize>()).prop_map(|(n, s)| Op::Drop(n, s)),
        1 => Just(Op::Compact),
    ]
}

fn run(ops: &[Op]) {
    let heap = Heap::builder()
        .strategy(WxStrategy::StaticTrampolines)
        .build_unlocked()
        .unwrap();
    let mut live: Vec<(u64, Live<'_>)> = Vec::new();
    let mut next = 0u64;
    // The most thunks live at once since the last compaction, and the
    // tables it kept.
    let (mut peak, mut kept) = (0usize, 0usize);
    for op in ops {
        match *op {
            Op::Create(n, kind) => {
                for i in 0..n {
                    let v = next;
                    next += 1;
                    match Live::new(&heap, kind + i, v) {
                        Ok(t) => live.push((v, t)),
                        // A table of fixed size (Windows: the one compiled
                        // into the image) is full only when every slot is
                        // live; the heap is unchanged and the op ends.
                        Err(wxthunk::Error::TrampolinesExhausted { capacity }) => {
                            assert_eq!(live.len(), capacity, "exhausted early");
                            println!("the table is full at {capacity} thunks");
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            Op::Drop(n, seed) => {
                for k in 0..n.min(live.len()) {
                    let i = (seed.wrapping_mul(31).wrapping_add(k * 7919)) % live.len();
                    drop(live.swap_remove(i));
                }
            }
            Op::Compact => {
                heap.compact();
            }
        }
        // Every live thunk has its own entry and calls its own closure.
        let entries: BTreeSet<usize> = live.iter().map(|(_, t)| t.addr()).collect();
        assert_eq!(entries.len(), live.len(), "two thunks share an entry");
        for (v, t) in &live {
            assert_eq!(t.call(), *v);
        }
        let stats = heap.stats();
        assert_eq!(stats.live_allocations, live.len());
        // Tables: enough for the live slots. A table is mapped only when
        // every other one is full, and kept when it empties, so there are
        // never more than the most slots ever taken at once (live, and the
        // ready slots the shard keeps) needed, plus the one being filled;
        // a compaction keeps only tables with a live slot, and resets the
        // count.
        let needed = live.len().div_ceil(PER_TABLE);
        assert!(stats.trampoline_tables >= needed, "{stats:?}");
        if matches!(op, Op::Compact) {
            // Fragmentation can keep partly used tables; each holds a live
            // slot.
            assert!(stats.trampoline_tables <= live.len(), "{stats:?}");
            kept = stats.trampoline_tables;
            peak = live.len();
        }
        peak = peak.max(live.len());
        let bound = kept.max((peak + READY) / PER_TABLE + 1);
        assert!(stats.trampoline_tables <= bound, "{stats:?}, peak {peak}");
    }
    drop(live);
    heap.compact();
    assert_eq!(heap.stats().trampoline_tables, 0);
}

proptest! {
    // Fewer cases on AArch64: its tables are 16 times larger, and so are
    // the bursts (and the tests run under an emulator).
    #![proptest_config(ProptestConfig {
        cases: if cfg!(target_arch = "aarch64") { 8 } else { 32 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn trampoline_slots_match_their_model(ops in proptest::collection::vec(op(), 1..40)) {
        if !wxthunk::probe().allows(WxStrategy::StaticTrampolines) {
            println!("SKIPPED: static trampolines do not work here");
            return Ok(());
        }
        run(&ops);
    }
}

/// A burst of thunks made, dropped and made again takes the same tables the
/// second time: an emptied table is kept (mapping, and on a protect heap
/// sealing, a table per 512 thunks each time was what made bursts slow),
/// and only a compaction unmaps it. On static-trampoline heaps and (Linux)
/// protect heaps, whose thunks are table entries.
#[test]
fn a_burst_made_again_maps_no_new_table() {
    let mut strategies = vec![WxStrategy::StaticTrampolines];
    if cfg!(target_os = "linux") {
        strategies.push(WxStrategy::Protect);
    }
    for strategy in strategies {
        if !wxthunk::probe().allows(strategy) {
            println!("SKIPPED {strategy}: not allowed here");
            continue;
        }
        let heap = Heap::builder().strategy(strategy).build_unlocked().unwrap();
        let burst = |round: u64| -> Vec<Thunk<'_, unsafe extern "C" fn(u64) -> u64, _>> {
            (0..10 * PER_TABLE as u64)
                .map(|i| {
                    let v = std::hint::black_box(round * 1_000_000 + i);
                    heap.thunk(move |x: u64| x + v).unwrap()
                })
                .collect()
        };
        let first = burst(1);
        let stats = heap.stats();
        assert!(stats.trampoline_tables >= 10, "{strategy}: {stats:?}");
        drop(first);
        assert_eq!(
            heap.stats().trampoline_tables,
            stats.trampoline_tables,
            "{strategy}: emptied tables are kept"
        );
        let second = burst(2);
        assert_eq!(heap.stats().trampoline_tables, stats.trampoline_tables);
        assert_eq!(heap.stats().bytes_reserved, stats.bytes_reserved);
        for (i, t) in second.iter().enumerate() {
            // SAFETY: the thunk is alive.
            assert_eq!(unsafe { (t.as_fn())(1) }, 2_000_001 + i as u64);
        }
        drop(second);
        heap.compact();
        let after = heap.stats();
        assert_eq!(after.trampoline_tables, 0, "{strategy}: {after:?}");
        assert_eq!(after.bytes_committed, 0, "{strategy}: {after:?}");
    }
}
