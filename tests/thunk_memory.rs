//! Memory per live thunk on every thunk strategy: a few dozen bytes and a
//! share of a page, never a page of its own, and the process's mappings
//! grow by a share of a table's, not by one per thunk. A protect heap's
//! thunks are entries of trampoline tables whose code is a private copy
//! sealed once per table, so a thousand of them need a handful of
//! `mprotect` calls, not a thousand pages and system calls.
//!
//! One test in its own binary, so that the resident-memory figures are its
//! own.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::hint::black_box;

use wxthunk::{Heap, Strategy, Thunk};

type F1 = unsafe extern "C" fn(u64) -> u64;

/// Live thunks per strategy.
const N: usize = 100_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * wxthunk::page_size()
}

/// What one strategy may cost per live thunk capturing one word: resident
/// bytes besides the thunk's own 16-byte handle, and mappings per 1000.
struct Limits {
    resident: usize,
    mappings_per_1000: usize,
}

fn limits(strategy: Strategy) -> Limits {
    match strategy {
        // A granule's code and its data slot, in regions that grow.
        Strategy::DualMap | Strategy::DualMapFile => Limits {
            resident: 64,
            mappings_per_1000: 1,
        },
        // A table holds 512 thunks on x86_64 (2048 on AArch64): a unit of
        // code (the binary's file, or a sealed copy), one of records and
        // one of data slots, in three mappings (the code, the reservation
        // of kinds not in use, the records and data slots).
        _ => Limits {
            resident: 128,
            mappings_per_1000: 6,
        },
    }
}

fn make(heap: &Heap, values: std::ops::Range<usize>) -> Vec<Thunk<'_, F1>> {
    values
        .map(|i| {
            // A runtime value: a capture-free closure would be compiled code.
            let k = black_box(i as u64);
            heap.thunk::<F1, _>(move |x| x + k).unwrap()
        })
        .collect()
}

#[test]
fn a_live_thunk_costs_bytes_not_a_page_on_every_strategy() {
    for strategy in [
        Strategy::DualMap,
        Strategy::Protect,
        Strategy::StaticTrampolines,
    ] {
        if !wxthunk::probe().allows(strategy) {
            println!("SKIPPED {strategy}: not allowed here");
            continue;
        }
        let heap = Heap::builder().strategy(strategy).build().unwrap();
        // Warm: the handles' vector and the heap's first region or table.
        let mut thunks = Vec::with_capacity(N);
        thunks.extend(make(&heap, 0..1));
        let (rss, maps) = (rss_bytes(), support::maps::read().len());
        thunks.extend(make(&heap, 1..N));
        let resident = rss_bytes().saturating_sub(rss) / N;
        let handles = std::mem::size_of::<Thunk<'_, F1>>();
        let own = resident.saturating_sub(handles);
        let grown = support::maps::read().len().saturating_sub(maps);
        let stats = heap.stats();
        println!(
            "{strategy}: {N} live thunks: {own} B resident each besides the {handles}-byte \
             handle, {} B committed each, {grown} more mappings, {} tables",
            stats.bytes_committed / N,
            stats.trampoline_tables
        );
        for (i, t) in thunks.iter().enumerate().step_by(97) {
            // SAFETY: the thunk is alive.
            assert_eq!(unsafe { (t.as_fn())(1) }, i as u64 + 1, "{strategy}");
        }
        let limit = limits(strategy);
        if support::emulated() {
            println!(
                "SKIPPED {strategy}'s resident size: under an emulator it is the emulator's too"
            );
        } else {
            assert!(own <= limit.resident, "{strategy}: {own} B per thunk");
        }
        assert!(
            grown * 1000 <= limit.mappings_per_1000 * N,
            "{strategy}: {grown} mappings for {N} thunks"
        );
        if strategy == Strategy::Protect {
            check_sealed_tables(&heap, &thunks);
        }
        drop(thunks);
        heap.compact();
        assert_eq!(heap.stats().bytes_committed, 0, "{strategy}");
    }
}

/// A protect heap's thunks: entries of tables whose code is private memory
/// sealed read+exec (not the binary's file, not a memfd), at most a page of
/// code per kind per table.
fn check_sealed_tables(heap: &Heap, thunks: &[Thunk<'_, F1>]) {
    let maps = support::maps::read();
    let exe = std::env::current_exe().unwrap();
    for t in thunks.iter().step_by(1009) {
        let at = t.as_fn() as usize;
        let m = maps.iter().find(|m| m.contains(at)).expect("mapped");
        assert_eq!(m.perms, "r-xp", "{m:?}");
        assert!(m.name.is_empty(), "private memory, not {:?}", m.name);
        assert_ne!(std::path::Path::new(&m.name), exe);
    }
    let stats = heap.stats();
    assert!(stats.trampoline_tables > 0, "{stats:?}");
    assert!(
        stats.trampoline_tables <= thunks.len() / 512 + 2,
        "{stats:?}"
    );
}
