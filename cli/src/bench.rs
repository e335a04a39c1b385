//! `wxthunk bench`: a quick run of the headline measurements, without the
//! peers (their comparison is the criterion suite in `bench/`, see
//! BENCHMARKS.md). Each figure is the median of several timed batches.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use wxthunk::{Block, Heap, NoLock, Strategy, Thunk};

type F1 = unsafe extern "C" fn(u64) -> u64;
const K: u64 = 7;

extern "C" fn direct(x: u64) -> u64 {
    x.wrapping_add(K)
}

/// Median nanoseconds per iteration of `f`, over `batches` batches sized to
/// take about `budget / batches` each.
fn median_ns(budget: Duration, mut f: impl FnMut()) -> f64 {
    const BATCHES: usize = 15;
    // Size the batch: double until one batch takes a slice of the budget.
    let slice = budget / BATCHES as u32;
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= slice / 4 || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    let iters = iters * 4;
    let mut samples: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[BATCHES / 2]
}

struct Row {
    group: &'static str,
    name: String,
    ns: f64,
    vs: Option<f64>,
}

fn memory_per_thunk(n: usize) -> Result<(f64, f64, usize), wxthunk::Error> {
    let heap = Heap::builder()
        .strategy(wxthunk::probe().heap_strategy.unwrap_or(Strategy::DualMap))
        .build()?;
    let thunks: Vec<Thunk<'_, F1>> = (0..n)
        .map(|i| heap.thunk::<F1, _>(move |x: u64| x + i as u64))
        .collect::<Result<_, _>>()?;
    let s = heap.stats();
    let exec = s.bytes_committed as f64 / n as f64;
    let meta = s.metadata_bytes as f64 / n as f64;
    drop(thunks);
    Ok((exec, meta, size_of::<Thunk<'_, F1>>()))
}

pub fn run(quick: bool, as_json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let budget = if quick {
        Duration::from_millis(150)
    } else {
        Duration::from_millis(600)
    };
    let mut rows = Vec::new();
    let mut add = |group: &'static str, name: String, ns: f64, base: Option<f64>| {
        rows.push(Row {
            group,
            name,
            ns,
            vs: base.map(|b| ns / b),
        });
        ns
    };

    // Call overhead.
    let f: F1 = direct;
    let base = add(
        "call",
        "direct extern \"C\" fn".into(),
        median_ns(budget, || {
            // SAFETY: the pointer is a live function of this type.
            unsafe {
                black_box(black_box(f)(black_box(5)));
            }
        }),
        None,
    );
    let k = black_box(K);
    // One heap per thunk strategy that works here.
    let heaps: Vec<Heap<NoLock>> = Strategy::ALL
        .iter()
        .filter_map(|&s| Heap::builder().strategy(s).build_unlocked().ok())
        .collect();
    for heap in &heaps {
        let t = heap.thunk::<F1, _>(move |x: u64| x.wrapping_add(k))?;
        let p = t.as_fn();
        add(
            "call",
            format!("thunk ({})", heap.strategy()),
            median_ns(budget, || {
                // SAFETY: the pointer is a live function of this type.
                unsafe {
                    black_box(black_box(p)(black_box(5)));
                }
            }),
            Some(base),
        );
    }
    type F8 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
    let t8 = Thunk::<F8>::new(
        move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64| {
            a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ k
        },
    )?;
    let p8 = t8.as_fn();
    add(
        "call",
        "thunk, 8 ints (builds a frame)".into(),
        median_ns(budget, || {
            // SAFETY: the pointer is a live function of this type.
            unsafe {
                black_box(black_box(p8)(black_box(1), 2, 3, 4, 5, 6, 7, 8));
            }
        }),
        Some(base),
    );

    // Create + drop.
    let global = add(
        "create+drop",
        "thunk on the global heap".into(),
        median_ns(budget, || {
            drop(black_box(
                Thunk::<F1>::new(move |x: u64| x.wrapping_add(k)).expect("thunk"),
            ));
        }),
        None,
    );
    for heap in &heaps {
        add(
            "create+drop",
            format!("thunk on a Heap<NoLock> ({})", heap.strategy()),
            median_ns(budget, || {
                drop(black_box(
                    heap.thunk::<F1, _>(move |x: u64| x.wrapping_add(k))
                        .expect("thunk"),
                ));
            }),
            Some(global),
        );
    }
    let local = Heap::builder().build_unlocked()?;

    // Code heap.
    let heap = Heap::new()?;
    add(
        "heap",
        "alloc+free 64 B span (locked heap)".into(),
        median_ns(budget, || {
            drop(black_box(heap.alloc(64).expect("span")));
        }),
        None,
    );
    add(
        "heap",
        "alloc+free 64 B span (Heap<NoLock>)".into(),
        median_ns(budget, || {
            drop(black_box(local.alloc(64).expect("span")));
        }),
        None,
    );

    // Block lifecycle: new, write 64 bytes, exec, call, drop.
    let code = [0xc3u8; 64]; // `ret`s; offset 0 is called
    add(
        "block",
        format!(
            "new+write 64 B+exec+call+drop ({})",
            Block::new(0)?.strategy()
        ),
        median_ns(budget, || {
            let mut b = Block::new(64).expect("block");
            b.write_all(&code).expect("write");
            let x = b.exec().expect("exec");
            if cfg!(target_arch = "x86_64") {
                // SAFETY: offset 0 is a `ret` on x86_64.
                let f: extern "C" fn() = unsafe { x.func(0).expect("func") };
                f();
            }
        }),
        None,
    );

    let n = if quick { 100_000 } else { 1_000_000 };
    let (exec, meta, handle) = memory_per_thunk(n)?;

    if as_json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| json!({ "group": r.group, "name": r.name, "median_ns": r.ns, "ratio": r.vs }))
            .collect();
        let out = json!({
            "rows": rows,
            "memory_per_thunk": { "live_thunks": n, "executable_bytes": exec, "heap_metadata_bytes": meta, "handle_bytes": handle },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "wxthunk bench{}: medians of timed batches (peers: see BENCHMARKS.md)",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "  {:<12} {:<44} {:>10} {:>8}",
        "group", "what", "median", "ratio"
    );
    for r in &rows {
        let ratio = r.vs.map_or(String::new(), |v| format!("{v:.2}x"));
        println!(
            "  {:<12} {:<44} {:>8.2}ns {:>8}",
            r.group, r.name, r.ns, ratio
        );
    }
    println!(
        "  memory per live thunk at {n}: {exec:.1} B executable, {meta:.2} B heap metadata, {handle} B Thunk handle (+ the boxed closure)"
    );
    Ok(())
}
