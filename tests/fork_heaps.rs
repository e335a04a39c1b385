//! Heaps across every fork path (the model is in `src/heap/fork.rs`):
//! libc `fork()` while other threads are busy on every kind of heap, many
//! times; raw `clone()` and `SYS_fork`, where no handler runs; `fork()`
//! while another thread is inside the first-use probe. Each test runs in a
//! child process of its own, so that the only threads are the test's, and
//! every forked child is waited for with a timeout, so a deadlock fails the
//! test instead of hanging it.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::code;
use support::fork::{ForkPath, spawn, wait};
use wxthunk::{ExecSpan, Heap, Strategy, Thunk};

type Add = unsafe extern "C" fn(u64) -> u64;

fn sealed<L: lock_api::RawMutex>(heap: &Heap<L>, value: u32) -> ExecSpan<'_, L> {
    let mut s = heap.alloc(6).unwrap();
    s.write_all(&code::ret_u32(value)).unwrap();
    s.exec().unwrap()
}

fn call_span<L: lock_api::RawMutex>(span: &ExecSpan<'_, L>) -> u32 {
    // SAFETY: every span here holds `mov eax, v; ret`.
    let f: extern "C" fn() -> u32 = unsafe { span.func(0).unwrap() };
    f()
}

/// One thunk and, where the heap holds written code, one span: made, called
/// and dropped. Returns false if a result was wrong. (A macro: it is used
/// on shared heaps and on the thread-local one, and a function generic over
/// both could not name its closures' bound, `SharesClosure<{closure}>`.)
macro_rules! use_heap {
    ($heap:expr, $k:expr) => {{
        let (heap, k): (&Heap<_>, u64) = ($heap, $k);
        let t = heap.thunk::<Add, _>(move |v| v + k).unwrap();
        // A 24-byte closure: a two-granule thunk where there are data slots.
        let (z, w) = std::hint::black_box((0u64, 0u64));
        let pair = heap.thunk::<Add, _>(move |v| v + k + z + w).unwrap();
        // SAFETY: `t` and `pair` are alive.
        let ok = unsafe { (t.as_fn())(1) == k + 1 && (pair.as_fn())(2) == k + 2 };
        drop(t);
        drop(pair);
        let span_ok = heap.span_strategy().is_none() || {
            let s = sealed(heap, k as u32);
            call_span(&s) == k as u32
        };
        ok && span_ok
    }};
}

/// Every kind of heap this process can make, all `Sync`.
fn shared_heaps() -> Vec<(&'static str, Heap)> {
    let mut v = vec![("Heap::new", Heap::new().unwrap())];
    v.extend(
        support::thunk_heap_configs()
            .into_iter()
            .map(|(name, b)| (name, b.build().unwrap())),
    );
    v
}

#[test]
fn libc_fork_while_threads_are_busy_on_every_heap_many_times() {
    // Fewer under an emulator, where a fork copies the emulator too.
    let forks: usize = if support::emulated() { 20 } else { 100 };
    let name = "libc_fork_while_threads_are_busy_on_every_heap_many_times";
    let Some(out) = support::in_child(name, || {
        let heaps = shared_heaps();
        let global = Heap::global().unwrap();
        let local = Heap::thread_local().unwrap();
        // Thunks made before the forks, called by parent and children.
        let kept: Vec<_> = heaps
            .iter()
            .map(|(_, h)| h)
            .chain([global])
            .enumerate()
            .flat_map(|(i, h)| {
                let (z, w) = std::hint::black_box((0u64, 0u64));
                [
                    h.thunk::<Add, _>(move |v: u64| v * 10 + i as u64).unwrap(),
                    // Two granules where there are data slots.
                    h.thunk::<Add, _>(move |v: u64| v * 10 + i as u64 + z + w)
                        .unwrap(),
                ]
            })
            .collect();
        // A runtime capture: code on the local heap (a capture-free closure
        // would be a compiled function, which no fork can break).
        let thousand = std::hint::black_box(1000u64);
        let kept_local = local.thunk::<Add, _>(move |v: u64| v + thousand).unwrap();
        assert!(!kept_local.code().is_empty());
        let stop = AtomicBool::new(false);
        let rounds = AtomicUsize::new(0);
        let mut failures = Vec::new();
        std::thread::scope(|scope| {
            for t in 0..3u64 {
                let (heaps, stop, rounds) = (&heaps, &stop, &rounds);
                scope.spawn(move || {
                    let mut k = t;
                    while !stop.load(Ordering::Relaxed) {
                        for (_, h) in heaps.iter() {
                            assert!(use_heap!(h, k));
                        }
                        assert!(use_heap!(global, k));
                        let t = Thunk::<Add>::new(move |v: u64| v ^ k).unwrap();
                        // SAFETY: alive.
                        assert_eq!(unsafe { (t.as_fn())(0) }, k);
                        k += 1;
                        rounds.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while rounds.load(Ordering::Relaxed) < 10 {
                std::thread::yield_now();
            }
            for n in 0..forks {
                let (heaps, kept, kept_local) = (&heaps, &kept, &kept_local);
                let pid = spawn(ForkPath::Libc, move || {
                    // Inherited thunks still run.
                    for (i, t) in kept.iter().enumerate() {
                        // SAFETY: the child's copy of a live thunk.
                        if unsafe { (t.as_fn())(n as u64) } != n as u64 * 10 + i as u64 / 2 {
                            return 2;
                        }
                    }
                    // SAFETY: as above.
                    if unsafe { (kept_local.as_fn())(1) } != 1001 {
                        return 3;
                    }
                    // Every heap works, the per-thread one included.
                    for (_, h) in heaps {
                        if !use_heap!(h, 7) {
                            return 4;
                        }
                    }
                    if !use_heap!(global, 8) || !use_heap!(local, 9) {
                        return 5;
                    }
                    // Threads of the child contend for the inherited locks.
                    // Not under qemu-user 7.2: a thread made in the child
                    // of a multi-threaded process trips its assertions
                    // (`cpu == current_cpu`; a plain C program with busy
                    // threads, fork, pthread_create in the child does too).
                    if support::emulated() {
                        return 0;
                    }
                    let ok = std::thread::scope(|s| {
                        let workers: Vec<_> = (0..2)
                            .map(|_| {
                                s.spawn(|| {
                                    (0..200).all(|k| {
                                        heaps.iter().all(|(_, h)| use_heap!(h, k))
                                            && use_heap!(global, k)
                                    })
                                })
                            })
                            .collect();
                        workers.into_iter().all(|w| w.join().unwrap())
                    });
                    if ok { 0 } else { 6 }
                });
                match wait(pid) {
                    Ok(0) => {}
                    other => failures.push(format!("fork {n}: {other:?}")),
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert!(failures.is_empty(), "children failed: {failures:#?}");
        // The parent is unaffected.
        for (i, t) in kept.iter().enumerate() {
            // SAFETY: alive.
            assert_eq!(unsafe { (t.as_fn())(4) }, 40 + i as u64 / 2);
        }
        for (_, h) in &heaps {
            assert!(use_heap!(h, 11));
        }
        println!(
            "FORKED {forks} children of {} busy threads ({} rounds); all used every heap",
            3,
            rounds.load(Ordering::Relaxed)
        );
    }) else {
        return;
    };
    assert!(out.contains(&format!("FORKED {forks} children")), "{out}");
}

/// A dual-mapped heap's child, made without any fork handler, frees its copy
/// of a live thunk of the parent's (trap-filling the slot), reuses the slot,
/// writes spans and compacts; the parent's thunk must keep working. The
/// child also checks that it inherited no writable view of the code.
fn raw_fork_child_cannot_touch_parent_code(path: ForkPath) {
    let p = wxthunk::probe();
    if !p.allows(Strategy::DualMap) {
        println!("SKIPPED: dual mapping does not work here; nothing is shared with a child");
        return;
    }
    // The dual-mapped configurations (plain and strict): the ones that
    // share memory with a child.
    let heaps: Vec<(&str, Heap)> = support::heap_configs()
        .into_iter()
        .filter(|(name, _)| name.starts_with("dual-map"))
        .map(|(name, builder)| (name, builder.build().unwrap()))
        .collect();
    // Plain and strict memfds, and files in a directory where that works.
    let expected = 2 + usize::from(p.allows(Strategy::DualMapFile));
    assert_eq!(heaps.len(), expected);
    for (name, heap) in &heaps {
        let live: Vec<_> = (0..8u64)
            .map(|k| heap.thunk::<Add, _>(move |v: u64| v + k).unwrap())
            .collect();
        let span = sealed(heap, 77);
        let child_copy = std::mem::ManuallyDrop::new(
            // SAFETY: after the fork only the child owns this bitwise copy;
            // the parent never drops it.
            unsafe { std::ptr::read(&live) },
        );
        let pid = spawn(path, move || {
            // No inherited writable view of wxthunk's code exists here.
            if support::maps::code_file_mappings()
                .iter()
                .any(|m| m.perms.contains('w'))
            {
                return 2;
            }
            // Drop the copies of the parent's thunks: their slots become
            // traps and are reused, in the child's own file.
            drop(std::mem::ManuallyDrop::into_inner(child_copy));
            let fresh: Vec<_> = (100..164u64)
                .map(|k| heap.thunk::<Add, _>(move |v: u64| v + k).unwrap())
                .collect();
            for (k, t) in (100..).zip(&fresh) {
                // SAFETY: alive.
                if unsafe { (t.as_fn())(0) } != k {
                    return 3;
                }
            }
            let spans: Vec<_> = (0..16).map(|v| sealed(heap, v)).collect();
            drop(spans);
            drop(fresh);
            heap.compact();
            0
        });
        assert_eq!(wait(pid), Ok(0), "{name} {path:?}: child failed");
        for (k, t) in (0..).zip(&live) {
            // SAFETY: alive in the parent.
            let got = unsafe { (t.as_fn())(1) };
            assert_eq!(got, k + 1, "{name} {path:?}: parent thunk");
        }
        assert_eq!(call_span(&span), 77, "{name} {path:?}: parent span");
        // And the parent goes on writing.
        assert!(use_heap!(heap, 5));
    }
    println!("RAW-FORK-OK {path:?}");
}

#[test]
fn children_made_without_fork_handlers_cannot_change_the_parents_code() {
    let name = "children_made_without_fork_handlers_cannot_change_the_parents_code";
    if let Some(out) = support::in_child(name, || {
        raw_fork_child_cannot_touch_parent_code(ForkPath::SysFork);
        raw_fork_child_cannot_touch_parent_code(ForkPath::RawClone);
    }) {
        let both = out.contains("RAW-FORK-OK SysFork") && out.contains("RAW-FORK-OK RawClone");
        assert!(both || out.contains("SKIPPED"), "{out}");
    }
}

#[test]
fn fork_while_another_thread_runs_the_first_probe() {
    // Each trial needs a process that has not probed yet. Under an
    // emulator a probe is slow enough for the cap on forks per trial to be
    // reached every time, each child probing in turn: fewer of both there.
    let (trials, forks_per_trial) = if support::emulated() {
        (4, 16)
    } else {
        (20, 256)
    };
    let name = "fork_while_another_thread_runs_the_first_probe";
    let mut forked = 0;
    for _ in 0..trials {
        let Some(out) = support::in_child(name, || {
            let prober = std::thread::spawn(|| {
                let _ = wxthunk::probe();
                Heap::new().map(drop)
            });
            let mut pids = Vec::new();
            while !prober.is_finished() && pids.len() < forks_per_trial {
                pids.push(spawn(ForkPath::Libc, || {
                    let _ = wxthunk::probe();
                    let heap = Heap::new().unwrap();
                    if use_heap!(&heap, 3) { 0 } else { 2 }
                }));
            }
            prober.join().unwrap().unwrap();
            let results: Vec<_> = pids.into_iter().map(wait).collect();
            assert!(results.iter().all(|r| *r == Ok(0)), "{results:?}");
            println!("FORKED-DURING-PROBE {}", results.len());
        }) else {
            return;
        };
        forked += out
            .lines()
            .find_map(|l| l.split("FORKED-DURING-PROBE ").nth(1))
            .and_then(|n| n.split_whitespace().next()?.parse::<usize>().ok())
            .expect("the child reports its forks");
    }
    println!("{forked} children forked during a first probe, all made a heap");
    assert!(forked > 0, "no fork landed during a probe");
}

/// Closures in data slots across `fork()` (every fork path): a child that
/// drops an inherited thunk and reuses its granule and data slot for new
/// closures changes nothing the parent sees, and the parent's later reuse
/// changes nothing the child's inherited thunks see.
#[test]
fn inline_closures_stay_each_processs_own_across_fork() {
    for (name, heap) in shared_heaps() {
        for path in [ForkPath::Libc, ForkPath::SysFork, ForkPath::RawClone] {
            let one = std::hint::black_box(1u64);
            let kept = heap.thunk::<Add, _>(move |v: u64| v + one).unwrap();
            let t = heap.thunk::<Add, _>(move |v: u64| v * 10 + one).unwrap();
            let other = heap.thunk::<Add, _>(move |v: u64| v * 100 + one).unwrap();
            // The child owns this bitwise copy of `t` after the fork; the
            // parent never drops it (ManuallyDrop).
            // SAFETY: read once, for the child only.
            let child_t = std::mem::ManuallyDrop::new(unsafe { std::ptr::read(&t) });
            let (heap_ref, other_ref, kept_ref) = (&heap, &other, &kept);
            let pid = spawn(path, move || {
                let (heap, other, kept) = (heap_ref, other_ref, kept_ref);
                // SAFETY: alive in this process.
                if unsafe { (other.as_fn())(2) } != 201 {
                    return 2;
                }
                drop(std::mem::ManuallyDrop::into_inner(child_t));
                let fresh: Vec<_> = (0..50u64)
                    .map(|k| heap.thunk::<Add, _>(move |v: u64| v + 1000 + k).unwrap())
                    .collect();
                for (k, f) in fresh.iter().enumerate() {
                    // SAFETY: alive.
                    if unsafe { (f.as_fn())(1) } != 1001 + k as u64 {
                        return 3;
                    }
                }
                // SAFETY: alive (the child's copy of the parent's thunk).
                if unsafe { (kept.as_fn())(1) } != 2 {
                    return 4;
                }
                std::mem::forget(fresh);
                0
            });
            assert_eq!(wait(pid), Ok(0), "{name} {path:?}");
            // SAFETY: alive in the parent.
            let got = unsafe { (t.as_fn())(4) };
            assert_eq!(got, 41, "{name} {path:?}: the parent's closure");
            // SAFETY: alive.
            assert_eq!(unsafe { (other.as_fn())(3) }, 301, "{name} {path:?}");
            drop(t);
            let reused: Vec<_> = (0..50u64)
                .map(|k| heap.thunk::<Add, _>(move |v: u64| v + 5000 + k).unwrap())
                .collect();
            // SAFETY: alive.
            assert_eq!(unsafe { (reused[0].as_fn())(1) }, 5001, "{name} {path:?}");
        }
    }
}

/// A thunk the parent drops, and whose granule and data slot it reuses
/// (through its thread cache on the global heap), while a libc-fork child
/// still runs its copy: the child's copy is untouched.
#[test]
fn the_parent_reuses_a_dropped_thunk_while_the_child_runs_its_copy() {
    let owned = shared_heaps();
    let heaps = owned
        .iter()
        .map(|(name, h)| (*name, h))
        .chain([("global", Heap::global().unwrap())]);
    for (name, heap) in heaps {
        let three = std::hint::black_box(3u64);
        let t = heap.thunk::<Add, _>(move |v: u64| v + three).unwrap();
        let addr = t.as_fn() as usize;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read_fd, write_fd] = fds;
        // The child owns this bitwise copy of `t`; the parent never drops it.
        // SAFETY: read once, for the child only.
        let child_t = std::mem::ManuallyDrop::new(unsafe { std::ptr::read(&t) });
        let pid = spawn(ForkPath::Libc, move || {
            let mut byte = [0u8];
            // SAFETY: reading one byte into a one-byte buffer.
            if unsafe { libc::read(read_fd, byte.as_mut_ptr().cast(), 1) } != 1 {
                return 2;
            }
            // SAFETY: the child's copy of a thunk it never dropped.
            if unsafe { (child_t.as_fn())(1) } != 4 {
                return 3; // the parent's free or reuse reached the child
            }
            0
        });
        drop(t);
        let reused: Vec<_> = (0..200u64)
            .map(|k| heap.thunk::<Add, _>(move |v: u64| v * 1000 + k).unwrap())
            .collect();
        assert!(
            reused.iter().any(|r| r.as_fn() as usize == addr),
            "{name}: the parent reuses the dropped thunk's slot"
        );
        // SAFETY: writing one byte from a one-byte buffer.
        let sent = unsafe { libc::write(write_fd, [1u8].as_ptr().cast(), 1) };
        assert_eq!(sent, 1);
        assert_eq!(
            wait(pid),
            Ok(0),
            "{name}: the child's copy changed (3) or the pipe failed (2)"
        );
        for (k, r) in (0..).zip(&reused) {
            // SAFETY: alive.
            assert_eq!(unsafe { (r.as_fn())(2) }, 2000 + k, "{name}");
        }
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
    }
}

/// Thunks made on a memfd heap, then a seccomp filter refusing
/// `memfd_create` installed, then a `fork()`: in both processes new thunks
/// land in the shared regions (which each process must first move to a
/// file of its own, a memfd no longer), old ones are dropped, and the stats
/// stay true. 9bc2f4c failed every such creation in both processes, though
/// the probe's directory for file-backed code works; now the move falls
/// back to a file there.
#[test]
fn memfds_refused_after_start_up_then_fork_keep_both_processes_working() {
    let name = "memfds_refused_after_start_up_then_fork_keep_both_processes_working";
    let Some(out) = support::in_child(name, || {
        let policy = wxthunk::probe();
        if !policy.allows(Strategy::DualMap) || !policy.allows(Strategy::DualMapFile) {
            println!("REFUSED-SKIPPED needs memfds and a directory for code files: {policy}");
            return;
        }
        let heap = Heap::builder().strategy(Strategy::DualMap).build().unwrap();
        let make = |k: u64| heap.thunk::<Add, _>(move |v: u64| v + k).unwrap();
        let mut old: Vec<_> = (0..64).map(|i| make(std::hint::black_box(i))).collect();
        // Freed granules waiting in the heap's caches, in the shared regions.
        drop(old.split_off(32));
        let n_old = std::hint::black_box(old.len() as u64);
        let global_old = Thunk::<Add>::new(move |v: u64| v + n_old).unwrap();
        let per_thunk = heap.stats().bytes_in_use / old.len();
        support::seccomp::install(&support::seccomp::program(
            support::seccomp::Filter::NoMemfd,
        ))
        .unwrap();

        // Both processes: make 100 more on each heap, drop the old ones,
        // check every result and the stats.
        let work = || -> Result<(), String> {
            let fresh: Vec<_> = (0..100u64)
                .map(|i| {
                    let k = std::hint::black_box(1000 + i);
                    heap.thunk::<Add, _>(move |v: u64| v + k)
                        .map_err(|e| support::error_chain(&e))
                })
                .collect::<Result<_, _>>()?;
            let k = std::hint::black_box(7u64);
            let global = Thunk::<Add>::new(move |v: u64| v * k).map_err(|e| e.to_string())?;
            for (i, t) in fresh.iter().enumerate() {
                // SAFETY: alive.
                let got = unsafe { (t.as_fn())(1) };
                if got != 1001 + i as u64 {
                    return Err(format!("thunk {i}: {got}"));
                }
            }
            // SAFETY: alive.
            if unsafe { (global.as_fn())(6) + (global_old.as_fn())(0) } != 42 + 32 {
                return Err("the global heap's thunks".into());
            }
            let stats = heap.stats();
            let want = 32 + fresh.len();
            if stats.live_allocations != want || stats.bytes_in_use != want * per_thunk {
                return Err(format!("stats {stats:?}, want {want} live"));
            }
            Ok(())
        };
        let pid = spawn(ForkPath::Libc, || match work() {
            Ok(()) => 0,
            Err(e) => {
                println!("CHILD-FAILED {e}");
                1
            }
        });
        let parent = work();
        let child = wait(pid);
        drop(old);
        assert_eq!(heap.stats().live_allocations, 0);
        assert_eq!(heap.stats().bytes_in_use, 0);
        assert_eq!(parent, Ok(()), "the parent");
        assert_eq!(child, Ok(0), "the child");
        println!("REFUSED-FORK-OK");
    }) else {
        return;
    };
    support::expect_child(&out, "REFUSED-FORK-OK", "REFUSED-SKIPPED");
}

/// Where no file at all can be made after a fork (memfds refused and the
/// probe's directory gone), a region shared with the forked process cannot
/// be moved, so a thunk freed there cannot become traps: its page is made
/// inaccessible once nothing else is in use on it, so a stale call faults
/// instead of running freed code (9bc2f4c left it executable), and the
/// stats count it as freed.
#[test]
fn a_free_that_cannot_write_traps_still_makes_the_code_unreachable() {
    let name = "a_free_that_cannot_write_traps_still_makes_the_code_unreachable";
    let body = || {
        let policy = wxthunk::probe();
        if !policy.allows(Strategy::DualMap) || !policy.allows(Strategy::DualMapFile) {
            println!("UNREACHABLE-SKIPPED needs memfds and a directory for code files: {policy}");
            return;
        }
        let heap = Heap::builder().strategy(Strategy::DualMap).build().unwrap();
        let k = std::hint::black_box(5u64);
        let t = heap.thunk::<Add, _>(move |v: u64| v + k).unwrap();
        let f = t.as_fn();
        // SAFETY: alive.
        assert_eq!(unsafe { f(1) }, 6);
        // No file can be made from now on: no memfd, and the directory is
        // gone (its descriptor stays open, but nothing can be made in it).
        std::fs::remove_dir(std::env::var_os("WXTHUNK_TMPDIR").unwrap()).unwrap();
        support::seccomp::install(&support::seccomp::program(
            support::seccomp::Filter::NoMemfd,
        ))
        .unwrap();
        // The region is now shared with a forked process.
        assert_eq!(wait(spawn(ForkPath::Libc, || 0)), Ok(0));
        drop(t);
        let stats = heap.stats();
        assert_eq!(
            (stats.live_allocations, stats.bytes_in_use),
            (0, 0),
            "{stats:?}"
        );
        // SAFETY: deliberately stale, in a forked child: it must fault.
        let stale = wait(spawn(ForkPath::Libc, || unsafe { f(1) } as i32));
        assert_eq!(
            stale,
            Err("killed by signal 11".to_owned()),
            "the stale call ran"
        );
        println!("UNREACHABLE-OK");
    };
    if support::is_child(name) {
        support::in_child(name, body);
        return;
    }
    let dir = tempfile::tempdir().unwrap().keep();
    let Some(out) = support::in_child_with_env(name, &[("WXTHUNK_TMPDIR", dir.as_os_str())], body)
    else {
        return;
    };
    let _ = std::fs::remove_dir(&dir);
    support::expect_child(&out, "UNREACHABLE-OK", "UNREACHABLE-SKIPPED");
}
