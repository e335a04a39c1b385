//! The global heap's per-thread caches of ready thunk granules: what a
//! thread holds goes back when it ends and when `compact` runs (while the
//! thread is alive and idle, or busy), `stats` does not count it as live,
//! thunks made on one thread and dropped on another are fine, and where the
//! process-wide barrier (`membarrier`) is refused the heap works without
//! caches and `compact` never waits.
//!
//! Each test runs in a child process of its own, so the global heap holds
//! only that test's thunks.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, mpsc};

use wxthunk::{Heap, Strategy, Thunk};
use wxthunk_testkit as support;
#[cfg(target_os = "linux")]
use wxthunk_testkit::seccomp::{self, Filter};

type Add = unsafe extern "C" fn(u64) -> u64;

/// The global heap, or `None` (printed) where it has no thread caches: not
/// dual-mapped (a forced strategy), or strict.
fn global_with_caches() -> Option<&'static Heap> {
    let heap = Heap::global().unwrap();
    if heap.strategy() != Strategy::DualMap || heap.is_strict() {
        println!(
            "SKIPPED: the global heap is {} here, and only a dual-mapped one has thread caches",
            heap.strategy()
        );
        return None;
    }
    Some(heap)
}

/// Makes `n` thunks, calls each, and drops them all. Every third one's
/// closure is 24 bytes: a thunk of two granules, from their own magazine.
fn churn(n: u64) {
    let (z, w) = std::hint::black_box((0u64, 0u64));
    let thunks: Vec<_> = (0..n)
        .map(|k| match k % 3 {
            2 => Thunk::<Add>::new(move |v: u64| v + k + z + w).unwrap(),
            _ => Thunk::<Add>::new(move |v: u64| v + k).unwrap(),
        })
        .collect();
    for (k, t) in (0..).zip(&thunks) {
        // SAFETY: alive.
        assert_eq!(unsafe { (t.as_fn())(1) }, k + 1);
    }
}

#[test]
fn a_thread_gives_its_cache_back_when_it_ends() {
    let name = "a_thread_gives_its_cache_back_when_it_ends";
    let Some(out) = support::in_child(name, || {
        let Some(heap) = global_with_caches() else {
            return;
        };
        // Many short threads, one after another: each fills its cache.
        for _ in 0..200 {
            std::thread::spawn(|| churn(100)).join().unwrap();
        }
        let after = heap.stats();
        assert_eq!(after.live_allocations, 0, "{after:?}");
        assert_eq!(after.bytes_in_use, 0, "{after:?}");
        // The ended threads' granules are free in the heap: one region per
        // shard served all 200 threads, and compact releases them.
        let shards = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8);
        assert!(after.regions <= shards, "{after:?}");
        heap.compact();
        let compacted = heap.stats();
        assert_eq!(compacted.regions, 0, "{compacted:?}");
        println!("ENDED 200 threads of 100 thunks each: {after:?}");
    }) else {
        return;
    };
    assert!(out.contains("ENDED") || out.contains("SKIPPED"), "{out}");
}

#[test]
fn compact_takes_the_cache_of_a_live_idle_thread() {
    let name = "compact_takes_the_cache_of_a_live_idle_thread";
    let Some(out) = support::in_child(name, || {
        let Some(heap) = global_with_caches() else {
            return;
        };
        let filled = Barrier::new(2);
        let compacted = Barrier::new(2);
        // Checked after the other thread ended (a failed check inside the
        // scope would leave it waiting at the barrier).
        let (before, after) = std::thread::scope(|s| {
            let idle = s.spawn(|| {
                churn(100);
                filled.wait();
                // Idle, its cache full, until the main thread compacted.
                compacted.wait();
                // The cache refills and works after being emptied.
                churn(100);
            });
            filled.wait();
            let before = heap.stats();
            heap.compact();
            let after = heap.stats();
            compacted.wait();
            idle.join().unwrap();
            (before, after)
        });
        // Cached granules are not live.
        assert_eq!(before.live_allocations, 0, "{before:?}");
        assert_eq!(before.regions, 1, "{before:?}");
        // Nothing of the idle thread's cache kept the region.
        assert_eq!(after.regions, 0, "{after:?}");
        assert_eq!(heap.stats().live_allocations, 0);
        println!("COMPACTED while a thread held a full cache");
    }) else {
        return;
    };
    assert!(
        out.contains("COMPACTED") || out.contains("SKIPPED"),
        "{out}"
    );
}

#[test]
fn threads_churn_and_trade_thunks_while_compact_and_stats_run() {
    const ROUNDS: u64 = 3000;
    let name = "threads_churn_and_trade_thunks_while_compact_and_stats_run";
    let Some(out) = support::in_child(name, || {
        let Some(heap) = global_with_caches() else {
            return;
        };
        let stop = AtomicBool::new(false);
        let compactions = AtomicU64::new(0);
        let (to_dropper, dropped) = mpsc::channel::<(u64, Thunk<'static, Add>)>();
        std::thread::scope(|s| {
            // Made here, called and dropped on another thread.
            let dropper = s.spawn(move || {
                let mut n = 0;
                for (k, t) in dropped {
                    // SAFETY: alive.
                    assert_eq!(unsafe { (t.as_fn())(2) }, 2 * k + 1);
                    n += 1;
                }
                n
            });
            let makers: Vec<_> = (0..3u64)
                .map(|id| {
                    let to_dropper = to_dropper.clone();
                    s.spawn(move || {
                        let mut kept = Vec::new();
                        for r in 0..ROUNDS {
                            let k = id * ROUNDS + r;
                            let t = Thunk::<Add>::new(move |v: u64| v * k + 1).unwrap();
                            // SAFETY: alive.
                            assert_eq!(unsafe { (t.as_fn())(3) }, 3 * k + 1);
                            match r % 3 {
                                0 => to_dropper.send((k, t)).unwrap(),
                                1 => kept.push((k, t)),
                                _ => drop(t),
                            }
                            if kept.len() > 100 {
                                for (k, t) in kept.drain(..) {
                                    // SAFETY: alive.
                                    assert_eq!(unsafe { (t.as_fn())(5) }, 5 * k + 1);
                                }
                            }
                        }
                    })
                })
                .collect();
            drop(to_dropper);
            let compactor = s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    heap.compact();
                    let _ = heap.stats();
                    compactions.fetch_add(1, Ordering::Relaxed);
                }
            });
            for m in makers {
                m.join().unwrap();
            }
            let traded = dropper.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            compactor.join().unwrap();
            assert_eq!(traded, 3 * ROUNDS.div_ceil(3));
        });
        let end = heap.stats();
        assert_eq!(end.live_allocations, 0, "{end:?}");
        heap.compact();
        assert_eq!(heap.stats().regions, 0);
        println!(
            "CHURNED 3 x {ROUNDS} thunks across threads during {} compactions",
            compactions.load(Ordering::Relaxed)
        );
    }) else {
        return;
    };
    assert!(out.contains("CHURNED") || out.contains("SKIPPED"), "{out}");
}

#[cfg(target_os = "linux")] // membarrier and seccomp are Linux's
#[test]
fn without_membarrier_the_global_heap_works_uncached() {
    let name = "without_membarrier_the_global_heap_works_uncached";
    let Some(out) = support::in_child(name, || {
        // (qemu-user runs no seccomp filter of its guest's architecture.)
        if let Err(e) = seccomp::install(&seccomp::program(Filter::NoMembarrier)) {
            println!("SKIPPED: the seccomp filter could not be installed here ({e})");
            return;
        }
        let heap = Heap::global().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| churn(100));
        });
        churn(100);
        // Nothing is cached anywhere: the freed granules are the shards'.
        heap.compact();
        let after = heap.stats();
        assert_eq!(after.live_allocations, 0, "{after:?}");
        assert_eq!(after.regions, 0, "{after:?}");
        println!("UNCACHED: {}", heap.strategy());
    }) else {
        return;
    };
    if let Some(at) = out.find("SKIPPED:") {
        println!("{}", out[at..].lines().next().unwrap_or_default());
        return;
    }
    assert!(out.contains("UNCACHED"), "{out}");
}

#[cfg(target_os = "linux")] // membarrier and seccomp are Linux's
#[test]
fn membarrier_refused_later_leaves_compact_unblocked() {
    let name = "membarrier_refused_later_leaves_compact_unblocked";
    let Some(out) = support::in_child(name, || {
        let Some(heap) = global_with_caches() else {
            return;
        };
        let filled = Barrier::new(2);
        let done = Barrier::new(2);
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                churn(100);
                filled.wait();
                done.wait();
                // The cache still works, and gives its granules back when
                // the thread ends.
                churn(100);
            });
            filled.wait();
            // A filter installed after the heap made its caches, on this
            // thread (and the threads it makes from now on): its barrier
            // calls fail.
            seccomp::install(&seccomp::program(Filter::NoMembarrier)).unwrap();
            // Returns without taking the other thread's cache.
            heap.compact();
            // Thunks are still made and cached under the filter.
            s.spawn(|| churn(100)).join().unwrap();
            done.wait();
            // Joined (thread-local destructors included) before the checks.
            other.join().unwrap();
        });
        assert_eq!(heap.stats().live_allocations, 0);
        heap.compact();
        assert_eq!(
            heap.stats().regions,
            0,
            "the ended threads gave their caches back"
        );
        println!("UNBLOCKED: compact returned without the barrier");
    }) else {
        return;
    };
    assert!(
        out.contains("UNBLOCKED") || out.contains("SKIPPED"),
        "{out}"
    );
}
