//! A `Sync` heap's shards: threads allocate from their own shard (so two
//! threads creating and dropping at once do not share a lock), an
//! allocation is freed into its own shard from any thread, `compact`
//! reaches every shard, and the shards share one address-space limit.
//!
//! Alone in its test binary: shards are handed to threads round-robin in
//! the order they first allocate, and only this test's threads do.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::io::Write;

use wxthunk::{Error, ExecSpan, Heap, Strategy};
use wxthunk_testkit::code;

/// Dual-mapped heaps of 64 KiB regions.
fn builder() -> wxthunk::HeapBuilder {
    Heap::builder()
        .strategy(Strategy::DualMap)
        .region_size(64 * 1024)
        .max_region_size(64 * 1024)
}

fn span(heap: &Heap, v: u32) -> ExecSpan<'_> {
    let mut s = heap.alloc(6).unwrap();
    s.write_all(&code::ret_u32(v)).unwrap();
    s.exec().unwrap()
}

#[test]
fn threads_use_their_own_shards_and_share_the_limit() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 || !wxthunk::probe().allows(Strategy::DualMap) {
        println!("SKIPPED: {cores} core(s) or no dual mapping: a Sync heap has one shard here");
        return;
    }
    let heap = builder().build().unwrap();
    // Two threads, one after the other: consecutive shards.
    let spans: Vec<ExecSpan<'_>> = std::thread::scope(|s| {
        let a = s
            .spawn(|| (0..100).map(|v| span(&heap, v)).collect::<Vec<_>>())
            .join()
            .unwrap();
        let b = s
            .spawn(|| (100..200).map(|v| span(&heap, v)).collect::<Vec<_>>())
            .join()
            .unwrap();
        a.into_iter().chain(b).collect()
    });
    let stats = heap.stats();
    assert_eq!(
        stats.regions, 2,
        "one region in each thread's shard: {stats:?}"
    );
    assert_eq!(stats.live_allocations, 200);
    for (v, x) in spans.iter().enumerate() {
        // SAFETY: each span holds `mov eax, v; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), v as u32);
    }
    // Freed here, on a third thread, into the shards they came from.
    drop(spans);
    assert_eq!(heap.stats().live_allocations, 0);
    assert!(heap.compact() > 0);
    let stats = heap.stats();
    assert_eq!((stats.regions, stats.bytes_reserved), (0, 0), "{stats:?}");

    // One limit for all shards: room for one region (and its data slots),
    // taken by the first thread; the second thread's shard finds none.
    let one_region = {
        let probe = builder().build_unlocked().unwrap();
        let _s = probe.alloc(6).unwrap();
        probe.stats().bytes_reserved
    };
    let tight = builder().max_reserved(one_region).build().unwrap();
    std::thread::scope(|s| {
        let first = s.spawn(|| span(&tight, 1)).join().unwrap();
        let second = s.spawn(|| tight.alloc(6).map(drop)).join().unwrap();
        match second {
            Err(Error::HeapExhausted { limit, .. }) => assert_eq!(limit, one_region),
            other => panic!("the second shard went past the shared limit: {other:?}"),
        }
        // SAFETY: `first` holds `mov eax, 1; ret`.
        let f: extern "C" fn() -> u32 = unsafe { first.func(0).unwrap() };
        assert_eq!(f(), 1);
    });
}
