//! The code heap: spans and pages under every strategy, bad input, limits,
//! compaction, statistics, threads.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::{self, Write};

use support::{code, maps};
use wxthunk::{Error, ExecSpan, Heap, HeapBuilder, NoLock, Strategy};

fn configs() -> Vec<(&'static str, HeapBuilder)> {
    support::heap_configs()
}

fn sealed<L: lock_api::RawMutex>(heap: &Heap<L>, value: u32) -> ExecSpan<'_, L> {
    let mut s = heap.alloc(6).unwrap();
    s.write_all(&code::ret_u32(value)).unwrap();
    s.exec().unwrap()
}

fn call(x: &ExecSpan<'_, impl lock_api::RawMutex>) -> u32 {
    // SAFETY: every span in these tests starts with `mov eax, imm; ret`.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    f()
}

#[test]
fn spans_run_their_own_code_under_every_strategy() {
    for (name, builder) in configs() {
        let heap = builder.build().unwrap();
        assert_eq!(heap.strategy().name(), name.split(' ').next().unwrap());
        let spans: Vec<_> = (0..500).map(|v| sealed(&heap, v)).collect();
        for (v, s) in spans.iter().enumerate() {
            assert_eq!(call(s), v as u32, "{name}");
            assert_eq!(s.as_slice(), &code::ret_u32(v as u32)[..]);
        }
        let stats = heap.stats();
        assert_eq!(stats.live_allocations, 500, "{name}");
        assert_eq!(stats.bytes_in_use, 500 * heap.granule(), "{name}");
        drop(spans);
        assert_eq!(heap.stats().live_allocations, 0);
        assert_eq!(heap.stats().bytes_in_use, 0);
    }
}

#[test]
fn dual_mapped_spans_share_pages_and_freed_space_is_reused_at_once() {
    if !wxthunk::probe().allows(Strategy::DualMap) {
        println!(
            "SKIPPED: dual mapping is refused here ({})",
            wxthunk::probe().dual_mapping
        );
        return;
    }
    let heap = Heap::builder().strategy(Strategy::DualMap).build().unwrap();
    assert_eq!(heap.granule(), 32);
    let a = sealed(&heap, 1);
    let b = sealed(&heap, 2);
    let page = wxthunk::page_size();
    assert_eq!(
        a.as_ptr() as usize / page,
        b.as_ptr() as usize / page,
        "two small spans share a page"
    );
    let a_addr = a.as_ptr();
    drop(a);
    let c = sealed(&heap, 3);
    assert_eq!(c.as_ptr(), a_addr, "the freed slot is reused at once");
    assert_eq!((call(&b), call(&c)), (2, 3));
}

#[test]
fn freed_code_becomes_traps() {
    for (name, builder) in configs() {
        let heap = builder.build().unwrap();
        let keep = sealed(&heap, 1);
        let gone = sealed(&heap, 2);
        let addr = gone.as_ptr();
        drop(gone);
        // SAFETY: the page stays mapped (the region holds `keep`); we only
        // read it.
        let bytes = unsafe { std::slice::from_raw_parts(addr, 32) };
        assert!(code::is_traps(bytes, addr as usize), "{name}: {bytes:02x?}");
        assert_eq!(call(&keep), 1);
    }
}

#[test]
fn protect_frees_pages_and_never_shares_a_running_page() {
    if !wxthunk::probe().allows(Strategy::Protect) {
        println!("SKIPPED: protect is not allowed in this process: not checked");
        return;
    }
    let heap = Heap::builder().strategy(Strategy::Protect).build().unwrap();
    let page = wxthunk::page_size();
    assert_eq!(heap.granule(), page);
    let a = sealed(&heap, 1);
    let b = sealed(&heap, 2);
    assert_ne!(a.as_ptr() as usize / page, b.as_ptr() as usize / page);
    let addr = a.as_ptr() as usize;
    let before = maps::mapping_at(b.as_ptr() as usize).expect("b is mapped");
    drop(a);
    // The freed page holds traps and is read+exec again, like `b`'s, so the
    // two are one mapping again: freeing splits nothing.
    let m = maps::mapping_at(addr).expect("region still reserved");
    assert_eq!(&m.perms[..3], "r-x", "{m:?}");
    assert!(m.contains(b.as_ptr() as usize), "{m:?} vs {before:?}");
    assert_eq!(call(&b), 2);
}

#[test]
fn allocate_page_workflow_many_entries_one_seal_one_free() {
    for (name, builder) in configs() {
        let heap = builder.build().unwrap();
        let page_size = wxthunk::page_size();
        let mut page = heap.allocate_page().unwrap();
        assert_eq!(page.capacity(), page_size, "{name}");
        assert_eq!(
            page.exec_ptr() as usize % page_size,
            0,
            "{name}: page-aligned"
        );
        let mut offsets = Vec::new();
        for v in 0..100 {
            offsets.push(page.len());
            page.write_all(&code::ret_u32(v)).unwrap();
        }
        // A full page refuses more (member_thunk's `page_full`).
        let filler = vec![0x90; page.remaining()];
        page.write_all(&filler).unwrap();
        assert_eq!(
            page.write_all(&[0xc3]).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
        let page = page.exec().unwrap();
        for (v, &off) in offsets.iter().enumerate() {
            // SAFETY: each offset holds `mov eax, v; ret`.
            let f: extern "C" fn() -> u32 = unsafe { page.func(off).unwrap() };
            assert_eq!(f(), v as u32, "{name}");
        }
        assert_eq!(heap.stats().live_allocations, 1);
        drop(page);
        assert_eq!(heap.stats().live_allocations, 0);
    }
}

#[test]
fn bad_sizes_are_clear_errors_and_leave_the_heap_intact() {
    for (name, builder) in configs() {
        let heap = builder.build().unwrap();
        let keep = sealed(&heap, 7);
        assert!(matches!(heap.alloc(0), Err(Error::ZeroSize)), "{name}");
        // Past the largest span: refused before anything is mapped, with
        // the real limit in the error.
        let page = wxthunk::page_size();
        let largest = ((u32::MAX as usize) * heap.granule()) & !(page - 1);
        for len in [usize::MAX, 1 << 60, largest + 1] {
            match heap.alloc(len) {
                Err(
                    e @ Error::TooLarge {
                        requested, limit, ..
                    },
                ) => {
                    assert_eq!((requested, limit), (len, largest), "{name}");
                    assert!(e.to_string().contains(&limit.to_string()), "{e}");
                    println!("{name}: {len}-byte span: {e}");
                }
                other => panic!("{name}: {len}-byte span: {other:?}"),
            }
        }
        assert_eq!(call(&keep), 7);
        assert_eq!(heap.stats().live_allocations, 1);
        let more = sealed(&heap, 8);
        assert_eq!(call(&more), 8);
    }
}

#[test]
fn region_sizes_past_the_allocation_index_are_refused_at_build_time() {
    // Allocations record their first granule as a u32: a region of more than
    // u32::MAX granules would let a start wrap onto another allocation.
    for (name, builder) in configs() {
        let granule = builder.clone().build().unwrap().granule();
        let page = wxthunk::page_size();
        let limit = ((u32::MAX as usize) * granule) & !(page - 1);
        // At the limit: accepted (nothing is mapped before the first alloc).
        let heap = builder
            .clone()
            .region_size(limit)
            .max_region_size(limit)
            .build()
            .unwrap();
        assert_eq!(heap.stats().regions, 0, "{name}");
        for (first, max) in [(limit + page, limit + page), (64 * 1024, limit + page)] {
            match builder
                .clone()
                .region_size(first)
                .max_region_size(max)
                .build()
            {
                Err(Error::TooLarge {
                    requested,
                    limit: l,
                    what,
                }) => {
                    assert_eq!((requested, l), (limit + page, limit), "{name}");
                    assert_eq!(what, "a heap region");
                }
                other => panic!("{name}: {first}/{max}: {other:?}"),
            }
        }
    }
}

#[test]
fn the_reservation_limit_is_a_clear_error_and_freeing_makes_room() {
    for (name, builder) in configs() {
        let heap = builder
            .region_size(64 * 1024)
            .max_region_size(64 * 1024)
            .max_reserved(128 * 1024)
            .build()
            .unwrap();
        let mut live = Vec::new();
        let err = loop {
            match heap.alloc(1000) {
                Ok(mut s) => {
                    s.write_all(&code::ret_u32(live.len() as u32)).unwrap();
                    live.push(s.exec().unwrap());
                }
                Err(e) => break e,
            }
            assert!(live.len() < 1_000_000);
        };
        match &err {
            Error::HeapExhausted {
                requested,
                reserved,
                limit,
            } => {
                // What is reserved is what the stats say (dual-mapped
                // regions count their data slots too), and one more region
                // would not fit.
                assert_eq!(*limit, 128 * 1024, "{name}");
                assert_eq!(*reserved, heap.stats().bytes_reserved, "{name}");
                assert!(
                    *reserved <= *limit && reserved + requested > *limit,
                    "{name}: {err}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        println!(
            "{name}: {} spans of 1000 bytes fit in 128 KiB; then: {err}",
            live.len()
        );
        for (v, s) in live.iter().enumerate() {
            assert_eq!(call(s), v as u32);
        }
        live.truncate(live.len() / 2);
        let again = sealed(&heap, 99);
        assert_eq!(call(&again), 99);
    }
}

#[test]
fn a_span_dropped_unsealed_frees_its_space() {
    // A span written and dropped unsealed frees its space.
    let heap = Heap::new().unwrap();
    let mut s = heap.alloc(64).unwrap();
    s.write_all(b"\xcc\xcc").unwrap();
    assert_eq!(s.as_slice(), b"\xcc\xcc");
    assert_eq!(heap.stats().live_allocations, 1);
    drop(s);
    assert_eq!(heap.stats().live_allocations, 0);
}

#[test]
fn writes_past_a_span_write_what_fits() {
    let heap = Heap::new().unwrap();
    let mut s = heap.alloc(40).unwrap();
    assert_eq!(s.capacity(), 40usize.next_multiple_of(heap.granule()));
    let data = vec![0x90; s.capacity() + 5];
    assert_eq!(
        s.write_all(&data).unwrap_err().kind(),
        io::ErrorKind::WriteZero
    );
    assert_eq!(s.len(), s.capacity());
}

#[test]
fn offsets_outside_a_span_are_errors() {
    let heap = Heap::new().unwrap();
    let x = sealed(&heap, 1);
    let len = code::ret_u32(1).len();
    // SAFETY: fails before making a pointer.
    let r = unsafe { x.func::<extern "C" fn()>(len) };
    assert!(matches!(r, Err(Error::OutOfBounds { offset, len: l }) if offset == len && l == len));
}

#[test]
fn compact_releases_empty_regions_and_reports_bytes() {
    for (name, builder) in configs() {
        let heap = builder.region_size(64 * 1024).build().unwrap();
        let spans: Vec<_> = (0..3000).map(|v| sealed(&heap, v)).collect();
        let before = heap.stats();
        assert!(before.regions > 1, "{name}: {before:?}");
        let keep: Vec<_> = spans.into_iter().take(10).collect();
        let released = heap.compact();
        let after = heap.stats();
        println!("{name}: before {before:?}\n  after {after:?}\n  released {released} bytes");
        assert!(after.regions < before.regions, "{name}");
        assert!(after.bytes_reserved < before.bytes_reserved, "{name}");
        assert!(
            released >= before.bytes_reserved - after.bytes_reserved,
            "{name}"
        );
        for (v, s) in keep.iter().enumerate() {
            assert_eq!(call(s), v as u32);
        }
        drop(keep);
        heap.compact();
        assert_eq!(heap.stats().regions, 0);
        assert_eq!(heap.stats().bytes_reserved, 0);
        // And it grows again from scratch.
        assert_eq!(call(&sealed(&heap, 5)), 5);
    }
}

#[test]
fn threads_allocate_free_and_run_while_another_compacts() {
    for (name, builder) in configs() {
        let heap = builder.region_size(64 * 1024).build().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let compactor = scope.spawn(|| {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    heap.compact();
                    n += 1;
                    std::thread::yield_now();
                }
                n
            });
            let workers: Vec<_> = (0..3u32)
                .map(|t| {
                    let heap = &heap;
                    scope.spawn(move || {
                        let mut live: Vec<(u32, ExecSpan<'_>)> = Vec::new();
                        for i in 0..3000u32 {
                            let v = t << 20 | i;
                            live.push((v, sealed(heap, v)));
                            if i % 3 == 0 {
                                // Free one from the middle.
                                let (w, x) = live.swap_remove(live.len() / 2);
                                assert_eq!(call(&x), w);
                            }
                            if i % 500 == 0 {
                                live.iter().for_each(|(w, x)| assert_eq!(call(x), *w));
                            }
                        }
                        live.iter().for_each(|(w, x)| assert_eq!(call(x), *w));
                        // Hand some to another thread to free there.
                        live
                    })
                })
                .collect();
            let handed: Vec<_> = workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            let count = handed.len();
            scope
                .spawn(move || {
                    for (v, x) in handed {
                        assert_eq!(call(&x), v);
                    }
                })
                .join()
                .unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            println!(
                "{name}: {count} spans freed on another thread; {} compactions ran",
                compactor.join().unwrap()
            );
        });
        assert_eq!(heap.stats().live_allocations, 0, "{name}: nothing lost");
        assert!(maps::wx_mappings().is_empty());
    }
}

#[test]
fn default_heaps() {
    let global = Heap::global().unwrap();
    assert!(std::ptr::eq(global, Heap::global().unwrap()));
    // The global heap's spans use the probe's heap strategy and its thunks
    // the thunk strategy (which differ where memfd is refused but
    // `mprotect` works: lockdown (e) in tests/lockdown.rs).
    assert_eq!(global.span_strategy(), wxthunk::probe().heap_strategy);
    assert_eq!(Some(global.strategy()), wxthunk::probe().thunk_strategy);
    let x = sealed(global, 11);
    // The global heap's allocations may move between threads.
    let from_other = std::thread::spawn(move || call(&x)).join().unwrap();
    assert_eq!(from_other, 11);

    let local: &'static Heap<NoLock> = Heap::thread_local().unwrap();
    assert!(std::ptr::eq(local, Heap::thread_local().unwrap()));
    let y = sealed(local, 12);
    assert_eq!(call(&y), 12);
    // Another thread gets another heap.
    let other =
        std::thread::spawn(|| Heap::thread_local().unwrap() as *const Heap<NoLock> as usize)
            .join()
            .unwrap();
    assert_ne!(other, local as *const Heap<NoLock> as usize);
}

#[test]
fn a_thread_local_heap_is_compacted_when_its_thread_ends() {
    let (stats_before_exit, leaked_addr) = std::thread::spawn(|| {
        let heap = Heap::thread_local().unwrap();
        let spans: Vec<_> = (0..200).map(|v| sealed(heap, v)).collect();
        let kept = sealed(heap, 1234);
        let addr = kept.as_ptr() as usize;
        std::mem::forget(kept); // a callback that must live forever
        drop(spans);
        (heap.stats(), addr)
    })
    .join()
    .unwrap();
    assert_eq!(stats_before_exit.live_allocations, 1);
    // The leaked code still runs after its thread is gone.
    // SAFETY: the span was leaked, so its code stays; it is `mov eax, 1234; ret`.
    let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(leaked_addr) };
    assert_eq!(f(), 1234);
}

/// What each type promises about threads, checked by the compiler.
#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Heap>();
    send_sync::<wxthunk::Span<'static>>();
    send_sync::<ExecSpan<'static>>();
    send::<Heap<NoLock>>();
    send_sync::<wxthunk::HeapStats>();
}
