//! Model-based property test of the static-trampoline slot pool: random
//! sequences of thunk creation and drop (in bursts that fill and empty whole
//! tables), compaction, checked after every step against a plain model:
//! every live thunk has its own entry and still calls its own closure, the
//! heap counts exactly the live ones, and the tables mapped are what the live
//! slots need plus at most the one empty table kept against churn and the
//! tables of the ready slots (at most `READY`) the shard keeps for reuse;
//! after a compaction, only what the live slots need.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::collections::BTreeSet;

use proptest::prelude::*;
use wxthunk::{Heap, Strategy as WxStrategy, Thunk};

type F = unsafe extern "C" fn(u64) -> u64;

/// Entries per table (4 KiB of 32-byte entries).
const PER_TABLE: usize = 128;

/// Ready slots (freed, records retired, taken in their tables) a shard
/// keeps for reuse at most; `compact` gives them back.
const READY: usize = 64;

#[derive(Clone, Debug)]
enum Op {
    /// Create this many thunks.
    Create(usize),
    /// Drop this many thunks, picked from the live ones by this seed.
    Drop(usize, usize),
    Compact,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..300).prop_map(Op::Create),
        4 => (1usize..300, any::<usize>()).prop_map(|(n, s)| Op::Drop(n, s)),
        1 => Just(Op::Compact),
    ]
}

fn run(ops: &[Op]) {
    let heap = Heap::builder()
        .strategy(WxStrategy::StaticTrampolines)
        .build_unlocked()
        .unwrap();
    let mut live: Vec<(u64, Thunk<'_, F, wxthunk::NoLock>)> = Vec::new();
    let mut next = 0u64;
    for op in ops {
        match *op {
            Op::Create(n) => {
                for _ in 0..n {
                    let v = next;
                    next += 1;
                    live.push((v, heap.thunk::<F, _>(move |x: u64| x ^ v).unwrap()));
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
        let entries: BTreeSet<usize> = live.iter().map(|(_, t)| t.as_fn() as usize).collect();
        assert_eq!(entries.len(), live.len(), "two thunks share an entry");
        for (v, t) in &live {
            // SAFETY: `t` is alive.
            assert_eq!(unsafe { (t.as_fn())(0) }, *v);
        }
        let stats = heap.stats();
        assert_eq!(stats.live_allocations, live.len());
        // Tables: enough for the live slots, and at most one empty spare
        // (none right after a compaction).
        let needed = live.len().div_ceil(PER_TABLE);
        assert!(stats.trampoline_tables >= needed, "{stats:?}");
        let (spare, ready) = if matches!(op, Op::Compact) {
            (0, 0)
        } else {
            (1, READY)
        };
        // Fragmentation can keep partly used tables; bound them by the live
        // count (each mapped table but the spare holds a live or a ready
        // slot).
        assert!(
            stats.trampoline_tables <= live.len() + spare + ready,
            "{stats:?}"
        );
        if live.is_empty() {
            assert!(stats.trampoline_tables <= spare + ready, "{stats:?}");
        }
    }
    drop(live);
    heap.compact();
    assert_eq!(heap.stats().trampoline_tables, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn trampoline_slots_match_their_model(ops in proptest::collection::vec(op(), 1..40)) {
        if !wxthunk::probe().allows(WxStrategy::StaticTrampolines) {
            println!("SKIPPED: static trampolines do not work here");
            return Ok(());
        }
        run(&ops);
    }
}
