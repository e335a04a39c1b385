//! After freeing most allocations and compacting, the process's mappings
//! and resident memory really shrink. One test in this binary, so that its
//! measurements are its own.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;

use support::{code, maps};
use wxthunk::{ExecSpan, Heap};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * wxthunk::page_size()
}

fn heap_mappings() -> usize {
    maps::code_file_mappings().len()
}

fn fill(heap: &Heap, n: u32) -> Vec<ExecSpan<'_>> {
    (0..n)
        .map(|v| {
            let mut s = heap.alloc(64).unwrap();
            s.write_all(&code::ret_u32(v)).unwrap();
            s.write_all(&[0x90; 58]).unwrap();
            s.exec().unwrap()
        })
        .collect()
}

#[test]
fn compaction_shrinks_mappings_and_rss() {
    if support::emulated() {
        println!(
            "SKIPPED: under an emulator the resident size is the emulator's too (its translated \
             code grows with every span run)"
        );
        return;
    }
    let heap = Heap::new().unwrap();
    let dual = heap.strategy() == wxthunk::Strategy::DualMap;
    let base_rss = rss_bytes();

    // Clustered survivors: the first 5% of 100k spans.
    let mut spans = fill(&heap, 100_000);
    let full = (rss_bytes(), heap.stats(), heap_mappings());
    spans.truncate(5_000);
    spans.shrink_to_fit(); // measure the heap, not this Vec
    let freed = (rss_bytes(), heap.stats());
    let released = heap.compact();
    let after = (rss_bytes(), heap.stats(), heap_mappings());
    println!(
        "clustered: 100000 spans of 64 B: RSS +{} KiB over baseline, {} regions, {} KiB reserved, {} heap mappings",
        (full.0 - base_rss) / 1024,
        full.1.regions,
        full.1.bytes_reserved / 1024,
        full.2
    );
    println!(
        "  after freeing 95%: RSS +{} KiB, {} KiB committed",
        freed.0.saturating_sub(base_rss) / 1024,
        freed.1.bytes_committed / 1024
    );
    println!(
        "  after compact(): released {} KiB; RSS +{} KiB, {} regions, {} KiB reserved, {} heap mappings",
        released / 1024,
        after.0.saturating_sub(base_rss) / 1024,
        after.1.regions,
        after.1.bytes_reserved / 1024,
        after.2
    );
    assert!(after.1.regions < full.1.regions);
    assert!(after.1.bytes_reserved < full.1.bytes_reserved / 2);
    assert!(after.0 < full.0, "RSS did not shrink");
    // The heap's share of RSS fell to well under half.
    assert!(
        after.0 - base_rss.min(after.0) < (full.0 - base_rss) / 2,
        "RSS did not shrink enough"
    );
    if dual {
        assert!(after.2 < full.2, "heap mappings did not shrink");
    }
    for (v, s) in spans.iter().enumerate() {
        // SAFETY: each span starts with `mov eax, v; ret`.
        let f: extern "C" fn() -> u32 = unsafe { s.func(0).unwrap() };
        assert_eq!(f(), v as u32);
    }
    drop(spans);
    heap.compact();

    // Scattered survivors: every 20th span lives, so almost no page empties;
    // compaction can release only what is wholly free. Reported, not
    // asserted beyond correctness.
    let spans = fill(&heap, 100_000);
    let before = rss_bytes();
    let kept: Vec<_> = spans.into_iter().step_by(20).collect();
    let released = heap.compact();
    println!(
        "scattered: kept {} of 100000 (every 20th): compact() released {} KiB; RSS {} -> {} KiB",
        kept.len(),
        released / 1024,
        before / 1024,
        rss_bytes() / 1024
    );
    for s in &kept {
        // SAFETY: each span starts with `mov eax, v; ret`.
        let f: extern "C" fn() -> u32 = unsafe { s.func(0).unwrap() };
        let _ = f();
    }
}
