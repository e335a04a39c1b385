//! Code heap: 64-byte span alloc+free against jit-allocator2, in steady
//! state and with 200k live allocations; the page workflow.
//!
//! Run: `cargo bench -p wxthunk-bench --bench heap`
// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Write;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wxthunk::{Heap, NoLock, Strategy};
use wxthunk_bench::{jit_allocator, jit_write_release};
use wxthunk_testkit::code;

const SPAN: usize = 64;
const LIVE: usize = 200_000;

fn unlocked(strategy: Strategy) -> Heap<NoLock> {
    Heap::builder().strategy(strategy).build_unlocked().unwrap()
}

fn span_alloc_free(c: &mut Criterion) {
    for live in [0, LIVE] {
        let mut g = c.benchmark_group(format!("heap/alloc+free 64B, {live} live"));

        let heap = unlocked(Strategy::DualMap);
        let keep: Vec<_> = (0..live).map(|_| heap.alloc(SPAN).unwrap()).collect();
        g.bench_function("wxthunk Heap<NoLock> dual-map", |b| {
            b.iter(|| drop(black_box(heap.alloc(SPAN).unwrap())))
        });
        drop(keep);

        let heap = Heap::builder().strategy(Strategy::DualMap).build().unwrap();
        let keep: Vec<_> = (0..live).map(|_| heap.alloc(SPAN).unwrap()).collect();
        g.bench_function("wxthunk Heap (locked) dual-map", |b| {
            b.iter(|| drop(black_box(heap.alloc(SPAN).unwrap())))
        });
        drop(keep);

        for (name, dual) in [
            ("jit-allocator2 (rwx pages)", false),
            ("jit-allocator2 dual-map", true),
        ] {
            let mut jit = jit_allocator(dual);
            let keep: Vec<_> = (0..live).map(|_| jit.alloc(SPAN).unwrap().0).collect();
            g.bench_function(name, |b| {
                b.iter(|| {
                    let (rx, _rw) = jit.alloc(SPAN).unwrap();
                    // SAFETY: `rx` was just allocated by this allocator.
                    unsafe { jit.release(black_box(rx)).unwrap() };
                })
            });
            for rx in keep {
                // SAFETY: each pointer came from this allocator's `alloc`.
                unsafe { jit.release(rx).unwrap() };
            }
        }
        g.finish();
    }
}

fn span_write_exec_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap/alloc+write 64B+exec+free");
    let code = code::rets(SPAN);
    let heap = unlocked(Strategy::DualMap);
    g.bench_function("wxthunk Heap<NoLock> dual-map", |b| {
        b.iter(|| {
            let mut s = heap.alloc(SPAN).unwrap();
            s.write_all(&code).unwrap();
            drop(black_box(s.exec().unwrap()));
        })
    });
    let heap = unlocked(Strategy::Protect);
    g.bench_function("wxthunk Heap<NoLock> protect", |b| {
        b.iter(|| {
            let mut s = heap.alloc(SPAN).unwrap();
            s.write_all(&code).unwrap();
            drop(black_box(s.exec().unwrap()));
        })
    });
    let mut jit = jit_allocator(true);
    g.bench_function("jit-allocator2 dual-map", |b| {
        b.iter(|| jit_write_release(&mut jit, &code))
    });
    g.finish();
}

fn page_workflow(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap/allocate_page+write+seal+free");
    let page = wxthunk::page_size();
    let code = code::rets(page);
    for (name, strategy) in [
        ("wxthunk dual-map", Strategy::DualMap),
        ("wxthunk protect", Strategy::Protect),
    ] {
        let heap = unlocked(strategy);
        g.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut p = heap.allocate_page().unwrap();
                    p.write_all(&code).unwrap();
                    drop(black_box(p.exec().unwrap()));
                },
                BatchSize::SmallInput,
            )
        });
    }
    let mut jit = jit_allocator(true);
    g.bench_function("jit-allocator2 dual-map", |b| {
        b.iter(|| jit_write_release(&mut jit, &code))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = wxthunk_bench::config();
    targets = span_alloc_free, span_write_exec_free, page_workflow
}
criterion_main!(benches);
