//! Thunks under load: creation and drop on two threads while others call
//! existing thunks; a million create/drop cycles leave RSS flat. One test
//! at a time in this binary (RSS is process-wide).
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wxthunk::{Heap, Thunk};

type F = unsafe extern "C" fn(u64) -> u64;

fn rss_kib() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * wxthunk::page_size()
        / 1024
}

#[test]
fn create_drop_and_call_concurrently_then_a_million_cycles_with_flat_rss() {
    // Part 1: two threads create and drop while two others call long-lived
    // thunks, on the global heap and on a private one.
    let private = Heap::new().unwrap();
    for heap in [Heap::global().unwrap(), &private] {
        let stable: Vec<Thunk<'_, F>> = (0..64u64)
            .map(|k| heap.thunk::<F, _>(move |v: u64| v * 1000 + k).unwrap())
            .collect();
        let stop = AtomicBool::new(false);
        let calls = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for (k, t) in stable.iter().enumerate() {
                            // SAFETY: `stable` outlives the scope.
                            assert_eq!(unsafe { (t.as_fn())(n) }, n * 1000 + k as u64);
                        }
                        n += 1;
                    }
                    calls.fetch_add(n * stable.len() as u64, Ordering::Relaxed);
                });
            }
            let makers: Vec<_> = (0..2u64)
                .map(|id| {
                    s.spawn(move || {
                        for i in 0..20_000u64 {
                            let tag = id << 32 | i;
                            let t = heap.thunk::<F, _>(move |v: u64| v ^ tag).unwrap();
                            // SAFETY: `t` is alive.
                            assert_eq!(unsafe { (t.as_fn())(0) }, tag);
                        }
                    })
                })
                .collect();
            for m in makers {
                m.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        println!(
            "{} calls to stable thunks while 40000 were created and dropped",
            calls.load(Ordering::Relaxed)
        );
        drop(stable);
    }
    assert!(support::maps::wx_mappings().is_empty());

    // Part 2: a million create/drop cycles; RSS stays flat.
    let heap = Heap::global().unwrap();
    let cycle = |i: u64| {
        let t = heap.thunk::<F, _>(move |v: u64| v + i).unwrap();
        // SAFETY: `t` is alive.
        assert_eq!(unsafe { (t.as_fn())(1) }, i + 1);
    };
    for i in 0..10_000 {
        cycle(i);
    }
    let before = rss_kib();
    let stats_before = heap.stats();
    for i in 0..1_000_000 {
        cycle(i);
    }
    let after = rss_kib();
    let stats_after = heap.stats();
    println!(
        "1e6 create/call/drop cycles: RSS {before} KiB -> {after} KiB; heap reserved {} -> {} bytes",
        stats_before.bytes_reserved, stats_after.bytes_reserved
    );
    assert!(after <= before + 1024, "RSS grew by {} KiB", after - before);
    assert_eq!(stats_after.bytes_reserved, stats_before.bytes_reserved);
}

/// The test above again, in a child process whose global heap uses static
/// trampolines.
#[test]
fn the_same_with_static_trampolines_as_the_default() {
    if support::rerun_all_with_default_strategy(wxthunk::Strategy::StaticTrampolines) {
        return;
    }
    if let Ok(s) = std::env::var(support::STRATEGY_VAR) {
        assert_eq!(Heap::global().unwrap().strategy().name(), s);
    }
}
