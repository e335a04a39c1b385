//! `wxthunk bench`: a quick run of the headline measurements, without the
//! peers (their comparison is the criterion suite in `bench/`, see
//! BENCHMARKS.md). Each figure is the median of several timed batches.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use wxthunk::{Block, Heap, NoLock, Strategy, Thunk};
use wxthunk_testkit::code;

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

/// One line of the table: a measurement, or why it was skipped.
struct Row {
    group: &'static str,
    name: String,
    result: Result<(f64, Option<f64>), String>,
}

/// The rows so far; in table mode each is printed as it finishes.
struct Table {
    rows: Vec<Row>,
    print: bool,
}

impl Table {
    /// Measures one row with `measure` (nanoseconds per iteration, or why it
    /// cannot run here); the ratio is to `base`, the group's first row.
    fn row(
        &mut self,
        group: &'static str,
        name: impl Into<String>,
        base: Option<f64>,
        measure: impl FnOnce() -> Result<f64, String>,
    ) -> Option<f64> {
        let result = measure().map(|ns| (ns, base.map(|b| ns / b)));
        let row = Row {
            group,
            name: name.into(),
            result,
        };
        if self.print {
            match &row.result {
                Ok((ns, ratio)) => {
                    let note = note(&row, *ratio);
                    let ratio = ratio.map_or(String::new(), |v| format!("{v:.2}x"));
                    println!(
                        "  {:<12} {:<44} {:>8.2}ns {:>8}{note}",
                        row.group, row.name, ns, ratio
                    );
                }
                Err(why) => println!("  {:<12} {:<44} skipped: {why}", row.group, row.name),
            }
        }
        let ns = row.result.as_ref().ok().map(|(ns, _)| *ns);
        self.rows.push(row);
        ns
    }
}

/// What a row's figure means where it could mislead: a call "faster" than
/// the direct call it is measured against is noise, and protect's
/// creation is a page and two `mprotect` calls by design.
fn note(row: &Row, ratio: Option<f64>) -> &'static str {
    if row.group == "call" && ratio.is_some_and(|r| r < 1.0) {
        "  (noise: nothing beats the direct call)"
    } else if row.group == "create+drop" && row.name.contains("(protect)") {
        "  (a page and two mprotect calls each: protect is for blocks and spans)"
    } else {
        ""
    }
}

/// A wxthunk error and its causes, as a "skipped" reason.
fn why(e: wxthunk::Error) -> String {
    e.with_causes()
}

/// Resident and metadata bytes per live thunk on a heap with the strategy
/// thunks really use here, and the size of the handle.
fn memory_per_thunk(n: usize) -> Result<(Strategy, f64, f64, usize), String> {
    let strategy = wxthunk::probe()
        .thunk_strategy
        .ok_or("no strategy for thunks works here")?;
    let heap = Heap::builder().strategy(strategy).build().map_err(why)?;
    let thunks: Vec<Thunk<'_, F1>> = (0..n)
        .map(|i| heap.thunk::<F1, _>(move |x: u64| x + i as u64))
        .collect::<Result<_, _>>()
        .map_err(why)?;
    let s = heap.stats();
    let exec = s.bytes_committed as f64 / n as f64;
    let meta = s.metadata_bytes as f64 / n as f64;
    drop(thunks);
    Ok((strategy, exec, meta, size_of::<Thunk<'_, F1>>()))
}

pub fn run(quick: bool, as_json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let budget = if quick {
        Duration::from_millis(150)
    } else {
        Duration::from_millis(600)
    };
    if !as_json {
        println!(
            "wxthunk bench{}: medians of timed batches (peers: see BENCHMARKS.md)",
            if quick { " (quick)" } else { "" }
        );
        println!(
            "  ratio = this row's time / the group's first row (the direct call; the global heap)"
        );
        println!(
            "  {:<12} {:<44} {:>10} {:>8}",
            "group", "what", "median", "ratio"
        );
    }
    let mut t = Table {
        rows: Vec::new(),
        print: !as_json,
    };

    // Call overhead.
    let f: F1 = direct;
    let base = t.row("call", "direct extern \"C\" fn", None, || {
        Ok(median_ns(budget, || {
            // SAFETY: the pointer is a live function of this type.
            unsafe {
                black_box(black_box(f)(black_box(5)));
            }
        }))
    });
    let k = black_box(K);
    // One heap per thunk strategy; those that do not work here say why.
    let heaps: Vec<(Strategy, Result<Heap<NoLock>, String>)> = Strategy::ALL
        .iter()
        .map(|&s| (s, Heap::builder().strategy(s).build_unlocked().map_err(why)))
        .collect();
    for (s, heap) in &heaps {
        t.row("call", format!("thunk ({s})"), base, || {
            let heap = heap.as_ref().map_err(Clone::clone)?;
            let th = heap
                .thunk::<F1, _>(move |x: u64| x.wrapping_add(k))
                .map_err(why)?;
            let p = th.as_fn();
            Ok(median_ns(budget, || {
                // SAFETY: the pointer is a live function of this type.
                unsafe {
                    black_box(black_box(p)(black_box(5)));
                }
            }))
        });
    }
    type F8 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
    t.row(
        "call",
        "thunk, 8 ints (context in a float register)",
        base,
        || {
            let t8 = Thunk::<F8>::new(
                move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64| {
                    a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ k
                },
            )
            .map_err(why)?;
            let p8 = t8.as_fn();
            Ok(median_ns(budget, || {
                // SAFETY: the pointer is a live function of this type.
                unsafe {
                    black_box(black_box(p8)(black_box(1), 2, 3, 4, 5, 6, 7, 8));
                }
            }))
        },
    );

    // Create + drop.
    let global = t.row("create+drop", "thunk on the global heap", None, || {
        Thunk::<F1>::new(move |x: u64| x.wrapping_add(k)).map_err(why)?;
        Ok(median_ns(budget, || {
            drop(black_box(
                Thunk::<F1>::new(move |x: u64| x.wrapping_add(k)).expect("thunk"),
            ));
        }))
    });
    for (s, heap) in &heaps {
        t.row(
            "create+drop",
            format!("thunk on a Heap<NoLock> ({s})"),
            global,
            || {
                let heap = heap.as_ref().map_err(Clone::clone)?;
                heap.thunk::<F1, _>(move |x: u64| x.wrapping_add(k))
                    .map_err(why)?;
                Ok(median_ns(budget, || {
                    drop(black_box(
                        heap.thunk::<F1, _>(move |x: u64| x.wrapping_add(k))
                            .expect("thunk"),
                    ));
                }))
            },
        );
    }

    t.row(
        "create+drop",
        "thunk capturing nothing (global heap)",
        global,
        || {
            Thunk::<F1>::new(|x: u64| x.wrapping_add(K)).map_err(why)?;
            Ok(median_ns(budget, || {
                drop(black_box(
                    Thunk::<F1>::new(|x: u64| x.wrapping_add(K)).expect("thunk"),
                ));
            }))
        },
    );
    let (p, q, r) = black_box((1u64, 2u64, 3u64));
    t.row(
        "create+drop",
        "thunk capturing 24 bytes (global heap)",
        global,
        || {
            Ok(median_ns(budget, || {
                drop(black_box(
                    Thunk::<F1>::new(move |x: u64| x.wrapping_add(p ^ q ^ r)).expect("thunk"),
                ));
            }))
        },
    );

    t.row(
        "create+drop",
        "10,000 created, then all dropped (per thunk)",
        global,
        || {
            Ok(median_ns(budget, || {
                let v: Vec<_> = (0..10_000u64)
                    .map(|i| Thunk::<F1>::new(move |x: u64| x.wrapping_add(i)).expect("thunk"))
                    .collect();
                drop(black_box(v));
            }) / 10_000.0)
        },
    );
    t.row(
        "create+drop",
        "two threads at once on the global heap (per op)",
        global,
        || {
            let per_thread = || {
                let t0 = Instant::now();
                let n = 200_000u32;
                for _ in 0..n {
                    drop(black_box(
                        Thunk::<F1>::new(move |x: u64| x.wrapping_add(k)).expect("thunk"),
                    ));
                }
                t0.elapsed().as_nanos() as f64 / f64::from(n)
            };
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(per_thread);
                let b = s.spawn(per_thread);
                (a.join().expect("thread"), b.join().expect("thread"))
            });
            Ok((a + b) / 2.0)
        },
    );

    // Code heap.
    t.row("heap", "alloc+free 64 B span (locked heap)", None, || {
        let heap = Heap::new().map_err(why)?;
        drop(heap.alloc(64).map_err(why)?);
        Ok(median_ns(budget, || {
            drop(black_box(heap.alloc(64).expect("span")));
        }))
    });
    t.row("heap", "alloc+free 64 B span (Heap<NoLock>)", None, || {
        let local = Heap::builder().build_unlocked().map_err(why)?;
        drop(local.alloc(64).map_err(why)?);
        Ok(median_ns(budget, || {
            drop(black_box(local.alloc(64).expect("span")));
        }))
    });

    // Block lifecycle: new, write 64 bytes, exec, call, drop.
    let code = code::rets(64); // offset 0 is called
    let strategy = wxthunk::probe()
        .block_strategy
        .map_or("none works here".to_owned(), |s| s.to_string());
    t.row(
        "block",
        format!("new+write 64 B+exec+call+drop ({strategy})"),
        None,
        || {
            let mut b = Block::new(64).map_err(why)?;
            b.write_all(&code).map_err(|e| e.to_string())?;
            drop(b.exec().map_err(|e| why(e.into()))?);
            Ok(median_ns(budget, || {
                let mut b = Block::new(64).expect("block");
                b.write_all(&code).expect("write");
                let x = b.exec().expect("exec");
                if cfg!(target_arch = "x86_64") {
                    // SAFETY: offset 0 is a `ret` on x86_64.
                    let f: extern "C" fn() = unsafe { x.func(0).expect("func") };
                    f();
                }
            }))
        },
    );

    let n = if quick { 100_000 } else { 1_000_000 };
    let memory = memory_per_thunk(n);
    if as_json {
        let rows: Vec<_> = t
            .rows
            .iter()
            .map(|r| match &r.result {
                Ok((ns, ratio)) => {
                    json!({ "group": r.group, "name": r.name, "median_ns": ns, "ratio": ratio })
                }
                Err(why) => json!({ "group": r.group, "name": r.name, "skipped": why }),
            })
            .collect();
        let memory = match &memory {
            Ok((s, exec, meta, handle)) => json!({
                "live_thunks": n, "strategy": s.name(), "resident_bytes": exec,
                "heap_metadata_bytes": meta, "handle_bytes": handle,
            }),
            Err(why) => json!({ "skipped": why }),
        };
        let out = json!({ "rows": rows, "memory_per_thunk": memory });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match memory {
        Ok((s, exec, meta, handle)) => println!(
            "  memory per live thunk at {n} ({s}): {exec:.1} B resident (code, and the closure's data slot when it is inline), {meta:.2} B heap metadata, {handle} B Thunk handle"
        ),
        Err(why) => println!("  memory per live thunk: skipped: {why}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Row, note};

    fn row(group: &'static str, name: &str) -> Row {
        Row {
            group,
            name: name.to_owned(),
            result: Ok((1.0, None)),
        }
    }

    #[test]
    fn misleading_rows_are_labelled() {
        let call = row("call", "thunk (dual-map)");
        assert!(note(&call, Some(0.97)).contains("noise"));
        assert_eq!(note(&call, Some(1.2)), "");
        let protect = row("create+drop", "thunk on a Heap<NoLock> (protect)");
        assert!(note(&protect, Some(400.0)).contains("a page and two mprotect calls"));
        // Faster creation than the global heap is real, not noise.
        assert_eq!(
            note(&row("create+drop", "thunk capturing nothing"), Some(0.05)),
            ""
        );
    }
}
