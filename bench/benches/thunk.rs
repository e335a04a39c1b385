//! Thunks: call overhead and create+drop, side by side with closure-ffi
//! 4.1.0 and libffi 5 closures.
//!
//! Run: `cargo bench -p wxthunk-bench --bench thunk`
// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;

use closure_ffi::BareFn;
use criterion::{Criterion, criterion_group, criterion_main};
use libffi::high::{Closure1, Closure6, Closure8};
use wxthunk::{Heap, Strategy, Thunk};

const K: u64 = 7;

extern "C" fn direct1(x: u64) -> u64 {
    x.wrapping_add(K)
}

extern "C" fn direct6(a: u64, b: f64, c: u64, d: f64, e: u64, f: f64) -> f64 {
    (a + c + e + K) as f64 + b + d + f
}

#[allow(clippy::too_many_arguments)]
extern "C" fn direct8(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u64 {
    a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ K
}

type F1 = unsafe extern "C" fn(u64) -> u64;
type F6 = unsafe extern "C" fn(u64, f64, u64, f64, u64, f64) -> f64;
type F8 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
/// Six integers and eight floats: both register files full, the frame path.
type F14 = unsafe extern "C" fn(
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
) -> u64;

#[allow(clippy::too_many_arguments)]
extern "C" fn direct14(
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    e: u64,
    f: u64,
    x: f64,
    _: f64,
    _: f64,
    _: f64,
    _: f64,
    _: f64,
    _: f64,
    y: f64,
) -> u64 {
    a ^ b ^ c ^ d ^ e ^ f ^ K ^ (x + y) as u64
}

fn heaps() -> Vec<(&'static str, Heap)> {
    let mut v = Vec::new();
    for (name, b) in [
        ("dual-map", Heap::builder().strategy(Strategy::DualMap)),
        ("protect", Heap::builder().strategy(Strategy::Protect)),
        (
            "static-trampolines",
            Heap::builder().strategy(Strategy::StaticTrampolines),
        ),
    ] {
        if let Ok(h) = b.build() {
            v.push((name, h));
        }
    }
    v
}

fn call_1(c: &mut Criterion) {
    let mut g = c.benchmark_group("thunk/call 1 arg");
    let k = black_box(K);
    let f: F1 = direct1;
    g.bench_function("direct extern \"C\" fn", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(5)) })
    });
    for (name, heap) in heaps() {
        let t = heap
            .thunk::<F1, _>(move |x: u64| x.wrapping_add(k))
            .unwrap();
        let f = t.as_fn();
        g.bench_function(format!("wxthunk {name}"), |b| {
            // SAFETY: the pointer is a live function of this type: the direct
            // function, or a thunk or closure kept alive for the whole group.
            b.iter(|| unsafe { black_box(f)(black_box(5)) })
        });
    }
    // The FnMut guard is on the call path: one compare-and-swap in, a load
    // and a store out.
    let mut total = 0u64;
    let t = Thunk::<F1>::new_mut(move |x: u64| {
        total = total.wrapping_add(x);
        total
    })
    .unwrap();
    let f = t.as_fn();
    g.bench_function("wxthunk FnMut, global heap", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(5)) })
    });
    let cf = BareFn::new_c(move |x: u64| x.wrapping_add(k));
    let f: F1 = cf.bare();
    g.bench_function("closure-ffi 4.1.0", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(5)) })
    });
    let closure = move |x: u64| x.wrapping_add(k);
    let lf = Closure1::new(&closure);
    // SAFETY: `FnPtr1` is a transparent wrapper of the C fn pointer.
    let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute_copy(lf.code_ptr()) };
    g.bench_function("libffi 5 closure", |b| {
        b.iter(|| black_box(f)(black_box(5)))
    });
    g.finish();
}

fn call_6(c: &mut Criterion) {
    let mut g = c.benchmark_group("thunk/call 6 args (int/float)");
    let k = black_box(K);
    let f: F6 = direct6;
    g.bench_function("direct extern \"C\" fn", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(1), 2.0, 3, 4.0, 5, 6.0) })
    });
    let body =
        move |a: u64, b: f64, c: u64, d: f64, e: u64, f: f64| (a + c + e + k) as f64 + b + d + f;
    for (name, heap) in heaps() {
        let t = heap.thunk::<F6, _>(body).unwrap();
        let f = t.as_fn();
        g.bench_function(format!("wxthunk {name}"), |b| {
            // SAFETY: the pointer is a live function of this type: the direct
            // function, or a thunk or closure kept alive for the whole group.
            b.iter(|| unsafe { black_box(f)(black_box(1), 2.0, 3, 4.0, 5, 6.0) })
        });
    }
    let cf = BareFn::new_c(body);
    let f: F6 = cf.bare();
    g.bench_function("closure-ffi 4.1.0", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(1), 2.0, 3, 4.0, 5, 6.0) })
    });
    let lf = Closure6::new(&body);
    // SAFETY: as in `call_1`.
    let f: extern "C" fn(u64, f64, u64, f64, u64, f64) -> f64 =
        unsafe { std::mem::transmute_copy(lf.code_ptr()) };
    g.bench_function("libffi 5 closure", |b| {
        b.iter(|| black_box(f)(black_box(1), 2.0, 3, 4.0, 5, 6.0))
    });
    g.finish();
}

fn call_8(c: &mut Criterion) {
    let mut g = c.benchmark_group("thunk/call 8 ints (context in xmm0)");
    let k = black_box(K);
    let f: F8 = direct8;
    g.bench_function("direct extern \"C\" fn", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(1), 2, 3, 4, 5, 6, 7, 8) })
    });
    let body = move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64| {
        a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ k
    };
    for (name, heap) in heaps() {
        let t = heap.thunk::<F8, _>(body).unwrap();
        assert!(!t.builds_frame());
        let f = t.as_fn();
        g.bench_function(format!("wxthunk {name}"), |b| {
            // SAFETY: the pointer is a live function of this type: the direct
            // function, or a thunk or closure kept alive for the whole group.
            b.iter(|| unsafe { black_box(f)(black_box(1), 2, 3, 4, 5, 6, 7, 8) })
        });
    }
    let cf = BareFn::new_c(body);
    let f: F8 = cf.bare();
    g.bench_function("closure-ffi 4.1.0", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk or closure kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(1), 2, 3, 4, 5, 6, 7, 8) })
    });
    let lf = Closure8::new(&body);
    // SAFETY: as in `call_1`.
    let f: extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64 =
        unsafe { std::mem::transmute_copy(lf.code_ptr()) };
    g.bench_function("libffi 5 closure", |b| {
        b.iter(|| black_box(f)(black_box(1), 2, 3, 4, 5, 6, 7, 8))
    });
    g.finish();
}

/// The frame path: closure-ffi and libffi closures stop at 12 arguments,
/// and a System V signature needs 14 (six integers, eight floats) before
/// the context has no register left, so only wxthunk is measured here.
fn call_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("thunk/call 6 ints + 8 floats (frame path)");
    let k = black_box(K);
    let f: F14 = direct14;
    g.bench_function("direct extern \"C\" fn", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk kept alive for the whole group.
        b.iter(|| unsafe {
            black_box(f)(
                black_box(1),
                2,
                3,
                4,
                5,
                6,
                0.5,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                1.5,
            )
        })
    });
    let body = move |a: u64,
                     b: u64,
                     c: u64,
                     d: u64,
                     e: u64,
                     f: u64,
                     x: f64,
                     _: f64,
                     _: f64,
                     _: f64,
                     _: f64,
                     _: f64,
                     _: f64,
                     y: f64| { a ^ b ^ c ^ d ^ e ^ f ^ k ^ (x + y) as u64 };
    for (name, heap) in heaps() {
        let t = heap.thunk::<F14, _>(body).unwrap();
        assert!(t.builds_frame());
        let f = t.as_fn();
        g.bench_function(format!("wxthunk {name}"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe {
                black_box(f)(
                    black_box(1),
                    2,
                    3,
                    4,
                    5,
                    6,
                    0.5,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    1.5,
                )
            })
        });
    }
    g.finish();
}

/// The Windows x64 frame path: a fifth argument is a stack slot, so the
/// context goes on the stack too (closure-ffi has `win64` on Windows only,
/// libffi's high-level closures take the default convention).
fn call_win64_frame(c: &mut Criterion) {
    type W5 = unsafe extern "win64" fn(u64, u64, u64, u64, u64) -> u64;
    extern "win64" fn direct_w5(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
        a ^ b ^ c ^ d ^ e ^ K
    }
    let mut g = c.benchmark_group("thunk/call win64, 5 args (frame path)");
    let k = black_box(K);
    let f: W5 = direct_w5;
    g.bench_function("direct extern \"win64\" fn", |b| {
        // SAFETY: the pointer is a live function of this type: the direct
        // function, or a thunk kept alive for the whole group.
        b.iter(|| unsafe { black_box(f)(black_box(1), 2, 3, 4, 5) })
    });
    let body = move |a: u64, b: u64, c: u64, d: u64, e: u64| a ^ b ^ c ^ d ^ e ^ k;
    for (name, heap) in heaps() {
        let t = heap.thunk::<W5, _>(body).unwrap();
        assert!(t.builds_frame());
        let f = t.as_fn();
        g.bench_function(format!("wxthunk {name}"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { black_box(f)(black_box(1), 2, 3, 4, 5) })
        });
    }
    g.finish();
}

fn create_drop(c: &mut Criterion) {
    for live in [0usize, 100_000] {
        let mut g = c.benchmark_group(format!("thunk/create+drop, {live} live"));
        let k = black_box(K);

        let global = Heap::global().unwrap();
        let keep: Vec<_> = (0..live)
            .map(|i| global.thunk::<F1, _>(move |x: u64| x + i as u64).unwrap())
            .collect();
        g.bench_function("wxthunk global heap", |b| {
            b.iter(|| {
                drop(black_box(
                    Thunk::<F1>::new(move |x: u64| x.wrapping_add(k)).unwrap(),
                ))
            })
        });
        drop(keep);

        for strategy in [
            Strategy::DualMap,
            Strategy::StaticTrampolines,
            Strategy::Protect,
        ] {
            let Ok(local) = Heap::builder().strategy(strategy).build_unlocked() else {
                continue;
            };
            let keep: Vec<_> = (0..live)
                .map(|i| local.thunk::<F1, _>(move |x: u64| x + i as u64).unwrap())
                .collect();
            g.bench_function(format!("wxthunk Heap<NoLock> {strategy}"), |b| {
                b.iter(|| {
                    drop(black_box(
                        local
                            .thunk::<F1, _>(move |x: u64| x.wrapping_add(k))
                            .unwrap(),
                    ))
                })
            });
            drop(keep);
        }

        let keep: Vec<_> = (0..live)
            .map(|i| BareFn::new_c(move |x: u64| x + i as u64))
            .collect();
        g.bench_function("closure-ffi 4.1.0", |b| {
            b.iter(|| drop(black_box(BareFn::new_c(move |x: u64| x.wrapping_add(k)))))
        });
        drop(keep);

        let closure = move |x: u64| x.wrapping_add(k);
        let keep: Vec<_> = (0..live).map(|_| Closure1::new(&closure)).collect();
        g.bench_function("libffi 5 closure", |b| {
            b.iter(|| drop(black_box(Closure1::new(&closure))))
        });
        drop(keep);
        g.finish();
    }
}

/// A heap of each thunk strategy that works here (shared between threads,
/// as the global heap is, without its per-thread caches).
fn strategy_heaps() -> Vec<(Strategy, Heap)> {
    [
        Strategy::DualMap,
        Strategy::StaticTrampolines,
        Strategy::Protect,
    ]
    .into_iter()
    .filter_map(|s| Heap::builder().strategy(s).build().ok().map(|h| (s, h)))
    .collect()
}

/// Create+drop of thunks whose closure captures nothing, or 24 bytes.
fn create_drop_by_capture(c: &mut Criterion) {
    let mut g = c.benchmark_group("thunk/create+drop, capturing nothing");
    g.bench_function("wxthunk global heap", |b| {
        b.iter(|| {
            drop(black_box(
                Thunk::<F1>::new(|x: u64| x.wrapping_add(K)).unwrap(),
            ))
        })
    });
    g.bench_function("closure-ffi 4.1.0", |b| {
        b.iter(|| drop(black_box(BareFn::new_c(|x: u64| x.wrapping_add(K)))))
    });
    g.finish();

    let mut g = c.benchmark_group("thunk/create+drop, capturing 24 bytes");
    let (p, q, r) = black_box((1u64, 2u64, 3u64));
    g.bench_function("wxthunk global heap", |b| {
        b.iter(|| {
            drop(black_box(
                Thunk::<F1>::new(move |x: u64| x.wrapping_add(p ^ q ^ r)).unwrap(),
            ))
        })
    });
    for (name, heap) in strategy_heaps() {
        g.bench_function(format!("wxthunk Heap {name}"), |b| {
            b.iter(|| {
                drop(black_box(
                    heap.thunk::<F1, _>(move |x: u64| x.wrapping_add(p ^ q ^ r))
                        .unwrap(),
                ))
            })
        });
    }
    g.bench_function("closure-ffi 4.1.0", |b| {
        b.iter(|| {
            drop(black_box(BareFn::new_c(move |x: u64| {
                x.wrapping_add(p ^ q ^ r)
            })))
        })
    });
    g.finish();

    // 10,000 thunks created, then all dropped: time per thunk.
    let mut g = c.benchmark_group("thunk/create 10,000 then drop them all (per 10,000)");
    g.bench_function("wxthunk global heap", |b| {
        b.iter(|| {
            let v: Vec<_> = (0..10_000u64)
                .map(|i| Thunk::<F1>::new(move |x: u64| x.wrapping_add(i)).unwrap())
                .collect();
            drop(black_box(v));
        })
    });
    for (name, heap) in strategy_heaps() {
        g.bench_function(format!("wxthunk Heap {name}"), |b| {
            b.iter(|| {
                let v: Vec<_> = (0..10_000u64)
                    .map(|i| {
                        heap.thunk::<F1, _>(move |x: u64| x.wrapping_add(i))
                            .unwrap()
                    })
                    .collect();
                drop(black_box(v));
            })
        });
    }
    g.bench_function("closure-ffi 4.1.0", |b| {
        b.iter(|| {
            let v: Vec<_> = (0..10_000u64)
                .map(|i| BareFn::new_c(move |x: u64| x.wrapping_add(i)))
                .collect();
            drop(black_box(v));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = wxthunk_bench::config();
    targets = call_1, call_6, call_8, call_frame, call_win64_frame, create_drop, create_drop_by_capture
}
criterion_main!(benches);
