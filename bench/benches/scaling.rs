//! Scaling: thunk create+drop from 1 and 2 threads at once, on the global
//! (locked) heap and on per-thread heaps (`Heap::thread_local`, no lock).
//! The time is per create+drop per thread: flat from 1 to 2 threads means
//! no contention.
//!
//! Run: `cargo bench -p wxthunk-bench --bench scaling`
// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wxthunk::{Heap, Thunk};

type F1 = unsafe extern "C" fn(u64) -> u64;

#[derive(Clone, Copy)]
enum Which {
    Global,
    PerThread,
}

/// Runs `iters` create+drop cycles on each of `threads` threads, started
/// together; returns the slowest thread's time.
fn run(threads: usize, iters: u64, which: Which) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let k = black_box(7u64);
                    // Create the thread's heap before timing.
                    let local = Heap::thread_local().unwrap();
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        match which {
                            Which::Global => {
                                drop(black_box(Thunk::<F1>::new(move |x: u64| x + k).unwrap()))
                            }
                            Which::PerThread => drop(black_box(
                                local.thunk::<F1, _>(move |x: u64| x + k).unwrap(),
                            )),
                        }
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn scaling(c: &mut Criterion) {
    let strategy = Heap::global().unwrap().strategy();
    let mut g = c.benchmark_group(format!("scaling/thunk create+drop ({strategy})"));
    for threads in [1usize, 2] {
        for (name, which) in [
            ("global heap", Which::Global),
            ("per-thread heaps", Which::PerThread),
        ] {
            g.bench_function(format!("{name}, {threads} thread(s)"), |b| {
                b.iter_custom(|iters| run(threads, iters, which))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = wxthunk_bench::config();
    targets = scaling
}
criterion_main!(benches);
