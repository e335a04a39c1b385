//! Thunks: real C callers, both calling paths, unwinding, the FnMut and
//! FnOnce guards, every heap strategy.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use wxthunk_testkit as support;

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use wxthunk::{Heap, Strategy, Thunk};

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

/// A heap of every kind this process allows (testkit's thunk heap
/// configurations, built).
fn heaps() -> Vec<(&'static str, Heap)> {
    support::thunk_heap_configs()
        .into_iter()
        .map(|(name, b)| (name, b.build().unwrap()))
        .collect()
}

/// The tests below that use the default heap (`Thunk::new`) run again,
/// with the rest of this file, with the default heap on static trampolines.
#[test]
fn the_whole_file_again_with_static_trampolines_as_the_default() {
    if support::rerun_all_with_default_strategy(Strategy::StaticTrampolines) {
        return;
    }
    if let Ok(s) = std::env::var(support::STRATEGY_VAR) {
        assert_eq!(Heap::global().unwrap().strategy().name(), s);
    }
}

#[test]
fn every_argument_reaches_the_closure_and_the_result_comes_back() {
    for (name, heap) in heaps() {
        let k = 1000u64;
        let t0 = heap
            .thunk::<unsafe extern "C" fn() -> u64, _>(move || k)
            .unwrap();
        let t3 = heap
            .thunk::<unsafe extern "C" fn(u8, i16, u64) -> u64, _>(move |a: u8, b: i16, c: u64| {
                k + a as u64 * 100 + (b as i64 * 10) as u64 + c
            })
            .unwrap();
        let tf = heap
            .thunk::<unsafe extern "C" fn(f64, i32, f32) -> f64, _>(
                move |a: f64, b: i32, c: f32| a * b as f64 + c as f64,
            )
            .unwrap();
        // SAFETY: the thunks are alive; the arguments match.
        unsafe {
            assert_eq!((t0.as_fn())(), 1000, "{name}");
            assert_eq!((t3.as_fn())(2, 3, 4), 1234, "{name}");
            assert_eq!((tf.as_fn())(1.5, 4, 0.25), 6.25, "{name}");
        }
        assert!(!t3.builds_frame());
        assert_eq!(
            &t3.code()[..4],
            &[0xf3, 0x0f, 0x1e, 0xfa],
            "starts with endbr64"
        );
    }
}

#[test]
fn qsort_and_bsearch_with_capturing_comparators() {
    for (name, heap) in heaps() {
        // Sort by distance from a captured pivot.
        let pivot = 50i32;
        let calls = AtomicUsize::new(0);
        let by_distance = heap
            .thunk::<Cmp, _>(|a: *const c_void, b: *const c_void| {
                calls.fetch_add(1, Ordering::Relaxed);
                // SAFETY: qsort passes pointers to i32 elements.
                let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
                ((a - pivot).abs(), a).cmp(&((b - pivot).abs(), b)) as c_int
            })
            .unwrap();
        let mut v: Vec<i32> = (0..100).map(|i| (i * 37) % 101).collect();
        // SAFETY: the comparator lives across the call and matches qsort's
        // element type.
        unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(by_distance.as_fn())) };
        let mut expected = v.clone();
        expected.sort_by_key(|&x| ((x - pivot).abs(), x));
        assert_eq!(v, expected, "{name}");
        assert!(calls.load(Ordering::Relaxed) > 100);

        // bsearch in a plainly sorted array, with a captured offset.
        let sorted: Vec<i32> = (0..1000).map(|i| i * 3).collect();
        let offset = 7;
        let cmp = heap
            .thunk::<Cmp, _>(move |key: *const c_void, elem: *const c_void| {
                // SAFETY: bsearch passes the key and an element, both i32.
                let (k, e) = unsafe { (*(key as *const i32) - offset, *(elem as *const i32)) };
                k.cmp(&e) as c_int
            })
            .unwrap();
        let search = |key: i32| {
            // SAFETY: the comparator lives across the call and matches the
            // element type; the key is an i32 like the elements.
            unsafe {
                libc::bsearch(
                    (&key as *const i32).cast(),
                    sorted.as_ptr().cast(),
                    sorted.len(),
                    4,
                    Some(cmp.as_fn()),
                )
            }
        };
        for want in [0, 300, 2997] {
            let found = search(want + offset);
            assert!(!found.is_null(), "{name}: {want} not found");
            // SAFETY: bsearch returned a pointer into `sorted`.
            assert_eq!(unsafe { *(found as *const i32) }, want);
        }
        let missing = search(1 + offset);
        assert!(missing.is_null());
    }
}

/// `struct FTW` from `<ftw.h>`.
#[repr(C)]
struct Ftw {
    base: c_int,
    level: c_int,
}
const FTW_F: c_int = 0;
const FTW_D: c_int = 1;
const FTW_PHYS: c_int = 1;

type NftwFn = unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int;
type Compar = unsafe extern "C" fn(*mut *const libc::dirent, *mut *const libc::dirent) -> c_int;

// glibc functions the `libc` crate does not bind.
unsafe extern "C" {
    fn nftw(dir: *const c_char, f: NftwFn, fds: c_int, flags: c_int) -> c_int;
    fn scandir(
        dir: *const c_char,
        list: *mut *mut *mut libc::dirent,
        filter: Option<ScandirFilter>,
        compar: Option<Compar>,
    ) -> c_int;
    fn alphasort(a: *mut *const libc::dirent, b: *mut *const libc::dirent) -> c_int;
}

#[test]
fn nftw_walk_collects_paths_into_a_vec() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    for f in ["x.txt", "a/y.txt", "a/b/z.txt"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let root = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    for (name, heap) in heaps() {
        let mut found: Vec<(String, c_int)> = Vec::new();
        {
            // nftw has no user-data argument: the FnMut thunk captures the Vec.
            let visit = heap
                .thunk_mut::<NftwFn, _>(
                    |path: *const c_char, _sb: *const libc::stat, kind: c_int, _ftw: *mut Ftw| {
                        // SAFETY: nftw passes a NUL-terminated path.
                        let path = unsafe { CStr::from_ptr(path) }
                            .to_string_lossy()
                            .into_owned();
                        found.push((path, kind));
                        0
                    },
                )
                .unwrap();
            // SAFETY: the thunk lives across the walk; the flags are valid.
            let rc = unsafe { nftw(root.as_ptr(), visit.as_fn(), 8, FTW_PHYS) };
            assert_eq!(rc, 0, "{name}");
        }
        let mut files: Vec<String> = found
            .iter()
            .filter(|(_, k)| *k == FTW_F)
            .map(|(p, _)| p.strip_prefix(dir.to_str().unwrap()).unwrap().to_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["/a/b/z.txt", "/a/y.txt", "/x.txt"], "{name}");
        assert_eq!(
            found.iter().filter(|(_, k)| *k == FTW_D).count(),
            3,
            "{name}"
        );
    }
    tmp.close().unwrap();
}

type ScandirFilter = unsafe extern "C" fn(*const libc::dirent) -> c_int;

#[test]
fn scandir_with_a_capturing_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for f in ["keep-1", "keep-2", "drop-1", "keep-3", "other"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let prefix = String::from("keep-");
    let seen = AtomicUsize::new(0);
    let filter = Thunk::<ScandirFilter>::new(|entry: *const libc::dirent| {
        seen.fetch_add(1, Ordering::Relaxed);
        // SAFETY: scandir passes a valid entry with a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        name.to_bytes().starts_with(prefix.as_bytes()) as c_int
    })
    .unwrap();
    let mut list: *mut *mut libc::dirent = std::ptr::null_mut();
    // SAFETY: the filter lives across the call; `alphasort` is libc's.
    let n = unsafe {
        scandir(
            path.as_ptr(),
            &mut list,
            Some(filter.as_fn()),
            Some(alphasort),
        )
    };
    assert_eq!(n, 3);
    let mut names = Vec::new();
    for i in 0..n as usize {
        // SAFETY: scandir returned `n` malloc'd entries; each is freed once.
        unsafe {
            let e = *list.add(i);
            names.push(
                CStr::from_ptr((*e).d_name.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
            );
            libc::free(e.cast());
        }
    }
    // SAFETY: the array itself was malloc'd by scandir.
    unsafe { libc::free(list.cast()) };
    assert_eq!(names, ["keep-1", "keep-2", "keep-3"]);
    assert!(seen.load(Ordering::Relaxed) >= 5);
    tmp.close().unwrap();
}

#[test]
fn a_sigaction_handler_thunk_counts_signals() {
    // In a child process: signal dispositions are process-wide.
    let Some(out) = support::in_child("a_sigaction_handler_thunk_counts_signals", || {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let weight = 3; // captured: each signal counts 3
        let handler = Thunk::<unsafe extern "C" fn(c_int)>::new(move |sig: c_int| {
            if sig == libc::SIGUSR1 {
                COUNT.fetch_add(weight, Ordering::SeqCst);
            }
        })
        .unwrap();
        // SAFETY: a zeroed sigaction is valid; the handler lives until the
        // disposition is restored below.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler.as_fn() as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
            for _ in 0..10 {
                libc::raise(libc::SIGUSR1);
            }
            libc::signal(libc::SIGUSR1, libc::SIG_DFL);
        }
        println!("SIGNALS={}", COUNT.load(Ordering::SeqCst));
    }) else {
        return;
    };
    assert!(out.contains("SIGNALS=30"), "{out}");
}

#[test]
fn the_frame_building_path_for_sysv_and_win64() {
    for (name, heap) in heaps() {
        let base = 1u64 << 40;
        // Eight integer arguments take every integer register: the context
        // goes to the first float register (System V), no frame.
        type Sum8 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
        let t = heap
            .thunk::<Sum8, _>(
                move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64| {
                    base + a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h
                },
            )
            .unwrap();
        assert!(!t.builds_frame(), "{name}");
        // SAFETY: the thunk is alive.
        let got = unsafe { (t.as_fn())(1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000) };
        assert_eq!(got, base + 87_654_321, "{name}");

        // Six integers and three floats, interleaved: the context goes to
        // xmm3, after the floats the caller put in xmm0-2.
        type Xmm3 = unsafe extern "C" fn(u8, f32, i16, u32, f64, *const u8, i64, f64, u64) -> f64;
        let t = heap
            .thunk::<Xmm3, _>(
                move |a: u8,
                      b: f32,
                      c: i16,
                      d: u32,
                      e: f64,
                      p: *const u8,
                      g: i64,
                      h: f64,
                      i: u64| {
                    (a as f64 + c as f64 + d as f64 + p as usize as f64 + g as f64 + i as f64)
                        * 1000.0
                        + b as f64
                        + e
                        + h
                        + (base - base) as f64
                },
            )
            .unwrap();
        assert!(!t.builds_frame(), "{name}");
        // SAFETY: the thunk is alive; the pointer is only an integer to it.
        let got = unsafe {
            (t.as_fn())(
                1,
                0.5,
                -2,
                3,
                0.25,
                std::ptr::without_provenance(4),
                -5,
                0.125,
                6,
            )
        };
        assert_eq!(got, 7000.0 + 0.875, "{name}");

        // Six integers and ten floats: two floats and the context spill.
        type Mixed = unsafe extern "C" fn(
            i32,
            f64,
            i32,
            f64,
            i32,
            f64,
            i32,
            f64,
            i32,
            f64,
            i32,
            f64,
            f64,
            f64,
            f64,
            f64,
        ) -> f64;
        let t = heap
            .thunk::<Mixed, _>(
                move |a: i32,
                      b: f64,
                      c: i32,
                      d: f64,
                      e: i32,
                      f: f64,
                      g: i32,
                      h: f64,
                      i: i32,
                      j: f64,
                      k: i32,
                      l: f64,
                      m: f64,
                      n: f64,
                      o: f64,
                      p: f64| {
                    let ints = [a, c, e, g, i, k]
                        .iter()
                        .enumerate()
                        .map(|(x, v)| (x as f64 + 1.0) * *v as f64)
                        .sum::<f64>();
                    let floats = [b, d, f, h, j, l, m, n, o, p]
                        .iter()
                        .enumerate()
                        .map(|(x, v)| (x as f64 + 1.0) * v)
                        .sum::<f64>();
                    ints * 1000.0 + floats + (base - base) as f64
                },
            )
            .unwrap();
        assert!(t.builds_frame());
        // SAFETY: the thunk is alive.
        let got = unsafe {
            (t.as_fn())(
                1, 0.5, 2, 0.25, 3, 0.125, 4, 1.0, 5, 2.0, 6, 3.0, 4.0, 5.0, 6.0, 7.0,
            )
        };
        let ints = 1.0 + 4.0 + 9.0 + 16.0 + 25.0 + 36.0;
        let floats = 0.5 + 0.5 + 0.375 + 4.0 + 10.0 + 18.0 + 28.0 + 40.0 + 54.0 + 70.0;
        assert_eq!(got, ints * 1000.0 + floats, "{name}");

        // Windows x64: the fifth position is on the stack.
        type Win5 = unsafe extern "win64" fn(u64, f64, u64, u64, u64, u64) -> u64;
        let t = heap
            .thunk::<Win5, _>(move |a: u64, b: f64, c: u64, d: u64, e: u64, f: u64| {
                base + a + b as u64 * 10 + c * 100 + d * 1000 + e * 10_000 + f * 100_000
            })
            .unwrap();
        assert!(t.builds_frame());
        // SAFETY: the thunk is alive.
        let got = unsafe { (t.as_fn())(1, 2.0, 3, 4, 5, 6) };
        assert_eq!(got, base + 654_321, "{name}");

        // And a win64 register-path thunk.
        let t = heap
            .thunk::<unsafe extern "win64" fn(u32, f32, u32) -> u32, _>(
                move |a: u32, b: f32, c: u32| a + b as u32 + c + (base - base) as u32,
            )
            .unwrap();
        assert!(!t.builds_frame());
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(1, 2.0, 3) }, 6);
    }
}

#[test]
fn panics_unwind_through_unwind_thunks_on_both_paths() {
    for (name, heap) in heaps() {
        // Captured, so that each thunk is generated code or a trampoline
        // (a capture-free closure's thunk is a compiled function).
        let zero = std::hint::black_box(0);
        let reg = heap
            .thunk::<unsafe extern "C-unwind" fn(i32) -> i32, _>(move |v: i32| {
                if v < 0 {
                    panic!("negative: {v}");
                }
                v * 2 + zero as i32
            })
            .unwrap();
        // Seven integers: the context in xmm0 (System V).
        type Wide = unsafe extern "C-unwind" fn(u64, u64, u64, u64, u64, u64, u64) -> u64;
        let xmm = heap
            .thunk::<Wide, _>(
                move |a: u64, _: u64, _: u64, _: u64, _: u64, _: u64, g: u64| {
                    if g == 0 {
                        panic!("g is zero");
                    }
                    a + g + zero
                },
            )
            .unwrap();
        assert!(!xmm.builds_frame());
        // Both register files full: the frame path.
        type Full = unsafe extern "C-unwind" fn(
            u64,
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
        let frame = heap
            .thunk::<Full, _>(
                move |a: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      g: u64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      h: f64| {
                    if g == 0 {
                        panic!("g is zero");
                    }
                    a + g + h as u64 + zero
                },
            )
            .unwrap();
        assert!(frame.builds_frame());
        type WinWide = unsafe extern "win64-unwind" fn(u64, u64, u64, u64, u64) -> u64;
        let win = heap
            .thunk::<WinWide, _>(move |a: u64, _: u64, _: u64, _: u64, e: u64| {
                if e == 0 {
                    panic!("e is zero")
                } else {
                    a + e + zero
                }
            })
            .unwrap();
        for _ in 0..3 {
            // SAFETY: the thunks are alive.
            unsafe {
                let err = catch_unwind(AssertUnwindSafe(|| (reg.as_fn())(-1))).unwrap_err();
                assert_eq!(
                    err.downcast_ref::<String>().map(String::as_str),
                    Some("negative: -1"),
                    "{name}"
                );
                assert_eq!((reg.as_fn())(21), 42);
                let err = catch_unwind(AssertUnwindSafe(|| (xmm.as_fn())(1, 2, 3, 4, 5, 6, 0)))
                    .unwrap_err();
                assert_eq!(err.downcast_ref::<&str>(), Some(&"g is zero"), "{name}");
                assert_eq!((xmm.as_fn())(1, 2, 3, 4, 5, 6, 7), 8);
                let f = frame.as_fn();
                let err = catch_unwind(AssertUnwindSafe(|| {
                    f(1, 2, 3, 4, 5, 6, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
                }))
                .unwrap_err();
                assert_eq!(err.downcast_ref::<&str>(), Some(&"g is zero"), "{name}");
                assert_eq!(
                    f(1, 2, 3, 4, 5, 6, 7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0),
                    10
                );
                let err =
                    catch_unwind(AssertUnwindSafe(|| (win.as_fn())(1, 2, 3, 4, 0))).unwrap_err();
                assert_eq!(err.downcast_ref::<&str>(), Some(&"e is zero"), "{name}");
                assert_eq!((win.as_fn())(1, 2, 3, 4, 5), 6);
            }
        }
        // The heap is intact and usable (a runtime capture: code on it).
        let nine = std::hint::black_box(9u32);
        let more = heap
            .thunk::<unsafe extern "C" fn() -> u32, _>(move || nine)
            .unwrap();
        assert!(!more.code().is_empty(), "{name}");
        // SAFETY: alive.
        assert_eq!(unsafe { (more.as_fn())() }, 9);
    }
}

#[test]
fn fn_mut_thunks_catch_reentrant_calls() {
    let me = AtomicUsize::new(0);
    let mut total = 0u32;
    let t = Thunk::<unsafe extern "C-unwind" fn(u32) -> u32>::new_mut(|v: u32| {
        total += v;
        if v == 0 {
            let again: unsafe extern "C-unwind" fn(u32) -> u32 =
                // SAFETY: `me` holds this thunk's own pointer.
                unsafe { std::mem::transmute(me.load(Ordering::SeqCst)) };
            // SAFETY: calling ourselves while running: must be caught.
            unsafe { again(1) };
        }
        total
    })
    .unwrap();
    me.store(t.as_fn() as usize, Ordering::SeqCst);
    // SAFETY: the thunk is alive.
    unsafe {
        assert_eq!((t.as_fn())(5), 5);
        let err = catch_unwind(AssertUnwindSafe(|| (t.as_fn())(0))).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("wxthunk: an FnMut thunk was called while a call to it was still running"),
            "{msg}"
        );
        // The guard was released: ordinary calls work again.
        assert_eq!((t.as_fn())(2), 7);
    }
}

#[test]
fn fn_once_thunks_catch_a_second_call() {
    let s = String::from("moved in");
    let t = Thunk::<unsafe extern "C-unwind" fn() -> usize>::new_once(move || {
        let owned: String = s; // consumes the capture
        owned.len()
    })
    .unwrap();
    // SAFETY: the thunk is alive.
    unsafe {
        assert_eq!((t.as_fn())(), 8);
        let err = catch_unwind(AssertUnwindSafe(|| (t.as_fn())())).unwrap_err();
        assert!(
            err.downcast_ref::<String>()
                .unwrap()
                .contains("FnOnce thunk was called a second time")
        );
    }
    // Dropping an FnOnce thunk that was never called drops its closure.
    let dropped = std::sync::Arc::new(());
    let held = dropped.clone();
    let t = Thunk::<unsafe extern "C" fn()>::new_once(move || drop(held)).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&dropped), 2);
    drop(t);
    assert_eq!(std::sync::Arc::strong_count(&dropped), 1);
}

#[test]
fn a_panic_through_a_c_thunk_aborts_with_a_message_naming_wxthunk() {
    let exe = std::env::current_exe().unwrap();
    let name = "a_panic_through_a_c_thunk_aborts_with_a_message_naming_wxthunk";
    if std::env::var("WXTHUNK_TEST_CHILD").as_deref() == Ok(name) {
        let t = Thunk::<unsafe extern "C" fn()>::new(|| panic!("boom")).unwrap();
        // SAFETY: the thunk is alive.
        unsafe { (t.as_fn())() };
        unreachable!("the panic must abort");
    }
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("WXTHUNK_TEST_CHILD", name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(stderr.contains("boom"), "{stderr}");
    assert!(
        stderr.contains("wxthunk: a closure called through a non-unwinding thunk"),
        "{stderr}"
    );
}

#[test]
fn closures_are_dropped_with_their_thunks_and_leaked_thunks_live_on() {
    let marker = std::sync::Arc::new(());
    let held = marker.clone();
    let t =
        Thunk::<unsafe extern "C" fn() -> usize>::new(move || std::sync::Arc::strong_count(&held))
            .unwrap();
    // SAFETY: alive.
    assert_eq!(unsafe { (t.as_fn())() }, 2);
    drop(t);
    assert_eq!(std::sync::Arc::strong_count(&marker), 1);

    // A runtime capture: leaked code on the heap (a capture-free closure
    // would be a compiled function, valid forever anyway).
    let one = std::hint::black_box(1u32);
    let leaked = Thunk::<unsafe extern "C" fn(u32) -> u32>::new(move |v: u32| v + one).unwrap();
    assert!(!leaked.code().is_empty());
    let forever: unsafe extern "C" fn(u32) -> u32 = leaked.leak();
    let other_thread = std::thread::spawn(move || {
        // SAFETY: leaked: valid for the rest of the process.
        unsafe { forever(41) }
    });
    assert_eq!(other_thread.join().unwrap(), 42);
}

#[test]
fn thunks_on_a_single_threaded_heap() {
    let heap = Heap::unlocked().unwrap();
    let log = Mutex::new(Vec::new());
    let t = heap
        .thunk::<unsafe extern "C" fn(i64), _>(|v: i64| log.lock().unwrap().push(v))
        .unwrap();
    for v in [3, 1, 4] {
        // SAFETY: alive, and called on the heap's thread.
        unsafe { (t.as_fn())(v) };
    }
    drop(t);
    assert_eq!(*log.lock().unwrap(), [3, 1, 4]);
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Thunk<'static, unsafe extern "C" fn(i32) -> i32>>();
    send_sync::<Thunk<'static, extern "C-unwind" fn(*const u8)>>();
    let _ = send::<Heap<wxthunk::NoLock>>;
}

#[test]
fn thunk_pages_many_thunks_one_seal_freed_as_a_unit() {
    for (name, heap) in heaps() {
        let mut page = heap
            .thunk_page::<unsafe extern "C" fn(u32) -> u32>()
            .unwrap();
        let capacity = page.capacity();
        assert_eq!(capacity, wxthunk::page_size() / 32, "{name}");
        for k in 0..capacity as u32 {
            assert_eq!(page.push(move |v: u32| v * 1000 + k).unwrap(), k as usize);
        }
        // member_thunk's page_full.
        match page.push(|v: u32| v) {
            Err(wxthunk::Error::PageFull { capacity: c }) => assert_eq!(c, capacity),
            other => panic!("{name}: {:?}", other.map(|_| ())),
        }
        let before = heap.stats();
        let page = page.exec().unwrap();
        assert_eq!(page.len(), capacity);
        assert!(matches!(
            page.func(capacity),
            Err(wxthunk::Error::OutOfBounds { offset, len }) if offset == capacity && len == capacity
        ));
        for k in 0..capacity {
            // SAFETY: the page is alive.
            let got = unsafe { (page.func(k).unwrap())(7) };
            assert_eq!(got, 7000 + k as u32, "{name}");
        }
        assert_eq!(
            before.live_allocations, 1,
            "{name}: the whole page is one allocation"
        );
        drop(page);
        assert_eq!(heap.stats().live_allocations, 0);

        // Seven integers on a page (the context in xmm0 on System V), with
        // FnMut and FnOnce entries: each kind's float-register entry.
        type Wide = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64) -> u64;
        let mut page = heap.thunk_page::<Wide>().unwrap();
        let mut calls = 0u64;
        page.push(|a: u64, _: u64, _: u64, _: u64, _: u64, _: u64, g: u64| a + g)
            .unwrap();
        page.push_mut(
            move |_: u64, _: u64, _: u64, _: u64, _: u64, _: u64, g: u64| {
                calls += 1;
                g * 100 + calls
            },
        )
        .unwrap();
        let s = String::from("once");
        page.push_once(
            move |_: u64, _: u64, _: u64, _: u64, _: u64, _: u64, _: u64| s.len() as u64,
        )
        .unwrap();
        let page = page.exec().unwrap();
        // SAFETY: the page is alive.
        unsafe {
            assert_eq!((page.func(0).unwrap())(1, 2, 3, 4, 5, 6, 7), 8, "{name}");
            assert_eq!((page.func(1).unwrap())(0, 0, 0, 0, 0, 0, 3), 301);
            assert_eq!((page.func(1).unwrap())(0, 0, 0, 0, 0, 0, 3), 302);
            assert_eq!((page.func(2).unwrap())(0, 0, 0, 0, 0, 0, 0), 4);
        }
    }
}

/// Counts drops of the value it is attached to.
struct DropCounter(&'static AtomicUsize);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn fn_mut_and_fn_once_thunks_dropped_during_their_own_call_free_nothing_under_it() {
    type One = unsafe extern "C-unwind" fn(u64) -> u64;
    // Eight integers and eight floats: both register files full, so the
    // frame path (fewer floats would put the context in an xmm register).
    type Frame = unsafe extern "C-unwind" fn(
        u64,
        u64,
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
    for (name, heap) in heaps() {
        // Register path: the closure takes its own thunk out of shared
        // state and drops it, then still uses its captures.
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        DROPS.store(0, Ordering::SeqCst);
        let slot: std::sync::Arc<Mutex<Option<Thunk<'_, One>>>> = Default::default();
        let shared = slot.clone();
        let counter = DropCounter(&DROPS);
        let mut calls = vec![0u64; 64];
        let t = heap
            .thunk_mut::<One, _>(move |v: u64| {
                let own = shared.lock().unwrap().take();
                drop(own); // the thunk, its code and (deferred) this closure
                // Still inside the call: the captures must be intact.
                let held: &DropCounter = &counter; // captures all of `counter`
                assert_eq!(held.0.load(Ordering::SeqCst), 0, "dropped under the call");
                calls.push(v); // writes into captured heap memory
                calls.len() as u64
            })
            .unwrap();
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        // SAFETY: the thunk is alive when the call starts; it drops itself
        // during the call, which must be deferred to the call's end.
        assert_eq!(unsafe { f(7) }, 65, "{name}");
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "{name}: freed at the end");
        assert!(slot.lock().unwrap().is_none());
        assert_eq!(heap.stats().live_allocations, 0, "{name}");

        // Frame path, and a panic after the drop (unwinding frees it too).
        static FRAME_DROPS: AtomicUsize = AtomicUsize::new(0);
        FRAME_DROPS.store(0, Ordering::SeqCst);
        let slot: std::sync::Arc<Mutex<Option<Thunk<'_, Frame>>>> = Default::default();
        let shared = slot.clone();
        let counter = DropCounter(&FRAME_DROPS);
        let t = heap
            .thunk_mut::<Frame, _>(
                move |a: u64,
                      b: u64,
                      c: u64,
                      d: u64,
                      e: u64,
                      g: u64,
                      h: u64,
                      i: u64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64| {
                    drop(shared.lock().unwrap().take());
                    let held: &DropCounter = &counter;
                    assert_eq!(held.0.load(Ordering::SeqCst), 0);
                    if a == 0 {
                        panic!("after the drop");
                    }
                    a + b + c + d + e + g + h + i
                },
            )
            .unwrap();
        assert!(t.builds_frame());
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        let [z0, z1, z2, z3, z4, z5, z6, z7] = [0.0; 8];
        // SAFETY: as above.
        let got = unsafe { f(1, 2, 3, 4, 5, 6, 7, 8, z0, z1, z2, z3, z4, z5, z6, z7) };
        assert_eq!(got, 36, "{name}");
        assert_eq!(FRAME_DROPS.load(Ordering::SeqCst), 1, "{name}");

        FRAME_DROPS.store(0, Ordering::SeqCst);
        let shared = slot.clone();
        let counter = DropCounter(&FRAME_DROPS);
        let t = heap
            .thunk_mut::<Frame, _>(
                move |a: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64| {
                    drop(shared.lock().unwrap().take());
                    let held: &DropCounter = &counter;
                    assert_eq!(held.0.load(Ordering::SeqCst), 0);
                    if a == 0 {
                        panic!("after the drop");
                    }
                    a
                },
            )
            .unwrap();
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        // SAFETY: as above; the panic unwinds through the -unwind thunk.
        let err =
            catch_unwind(|| unsafe { f(0, 0, 0, 0, 0, 0, 0, 0, z0, z1, z2, z3, z4, z5, z6, z7) })
                .unwrap_err();
        assert_eq!(err.downcast_ref::<&str>(), Some(&"after the drop"));
        assert_eq!(
            FRAME_DROPS.load(Ordering::SeqCst),
            1,
            "{name}: freed while unwinding"
        );
        assert_eq!(heap.stats().live_allocations, 0, "{name}");

        // FnOnce: the closure is moved out of the thunk before it runs, so
        // dropping the thunk during the call frees nothing the call uses.
        static ONCE_DROPS: AtomicUsize = AtomicUsize::new(0);
        ONCE_DROPS.store(0, Ordering::SeqCst);
        let slot: std::sync::Arc<Mutex<Option<Thunk<'_, One>>>> = Default::default();
        let shared = slot.clone();
        let counter = DropCounter(&ONCE_DROPS);
        let mut owned = vec![1u64; 8];
        let t = heap
            .thunk_once::<One, _>(move |v: u64| {
                drop(shared.lock().unwrap().take());
                let held: &DropCounter = &counter;
                assert_eq!(held.0.load(Ordering::SeqCst), 0);
                owned.push(v);
                owned.iter().sum::<u64>()
            })
            .unwrap();
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        // SAFETY: alive when the call starts.
        assert_eq!(unsafe { f(2) }, 10, "{name}");
        assert_eq!(ONCE_DROPS.load(Ordering::SeqCst), 1, "{name}");
        assert_eq!(heap.stats().live_allocations, 0, "{name}");
    }
}

/// `as_exact_fn` gives exactly `F`: a safe `extern "C" fn` that
/// `pthread_create` takes as it is, on every heap.
#[test]
fn as_exact_fn_passes_a_safe_fn_pointer_to_pthread_create() {
    type Start = extern "C" fn(*mut c_void) -> *mut c_void;
    for (name, heap) in heaps() {
        let started = AtomicUsize::new(0);
        let start = heap
            .thunk::<Start, _>(|arg: *mut c_void| {
                started.fetch_add(arg as usize, Ordering::Relaxed);
                arg
            })
            .unwrap();
        // SAFETY: every thread that calls it is joined below, while `start`
        // is alive.
        let f: Start = unsafe { start.as_exact_fn() };
        let threads: Vec<libc::pthread_t> = (1..=4usize)
            .map(|k| {
                let mut t: libc::pthread_t = 0;
                // SAFETY: `t` is a valid place for the id; default attributes.
                let rc = unsafe { libc::pthread_create(&mut t, std::ptr::null(), f, k as *mut _) };
                assert_eq!(rc, 0, "{name}");
                t
            })
            .collect();
        for t in threads {
            let mut ret = std::ptr::null_mut();
            // SAFETY: joining a thread made above.
            assert_eq!(unsafe { libc::pthread_join(t, &mut ret) }, 0);
            assert!(!ret.is_null());
        }
        assert_eq!(started.load(Ordering::Relaxed), 10, "{name}");
    }
}

/// An `FnMut` thunk dropped by another thread while its call is leaving
/// (which `as_fn`'s contract allows: the caller kept it alive until the call
/// started) frees its closure exactly once. The call's exit and the drop
/// race for the state word; a drop landing between a load and a store of it
/// used to be lost, leaking the closure (hundreds per 100,000).
#[test]
fn fn_mut_thunks_dropped_by_another_thread_mid_call_free_their_closure_once() {
    use std::sync::atomic::AtomicU8;
    type One = unsafe extern "C" fn(u64) -> u64;
    const ROUNDS: usize = 50_000;
    const IDLE: u8 = 0;
    const CALL: u8 = 1;
    const INSIDE: u8 = 2;
    const DONE: u8 = 3;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static PHASE: AtomicU8 = AtomicU8::new(IDLE);
    static FN: AtomicUsize = AtomicUsize::new(0);
    /// Waits until the phase is `phase` or later (spinning, then yielding
    /// to the other thread when the machine is busy).
    fn wait_for(phase: u8) {
        wait_until(|p| p >= phase);
    }
    fn wait_until(done: impl Fn(u8) -> bool) {
        let mut spins = 0u32;
        while !done(PHASE.load(Ordering::Acquire)) {
            spins += 1;
            if spins % 128 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let caller = std::thread::spawn(|| {
        let mut sum = 0u64;
        for _ in 0..ROUNDS {
            wait_until(|p| p == CALL);
            // SAFETY: `One`'s address, published by the owner, which keeps
            // the thunk alive until this call has started (`INSIDE`).
            let f: One = unsafe { std::mem::transmute(FN.load(Ordering::Acquire)) };
            // SAFETY: the thunk is alive when the call starts.
            sum += unsafe { f(1) };
            PHASE.store(DONE, Ordering::Release);
        }
        sum
    });
    let heap = Heap::global().unwrap();
    for round in 0..ROUNDS {
        let counter = DropCounter(&DROPS);
        let mut calls = std::hint::black_box(round as u64);
        let t = heap
            .thunk_mut::<One, _>(move |v: u64| {
                let _held: &DropCounter = &counter;
                calls += v;
                PHASE.store(INSIDE, Ordering::Release);
                // A delay that sweeps where the drop lands in the call's
                // exit, round by round.
                for _ in 0..calls % 256 {
                    std::hint::spin_loop();
                }
                calls
            })
            .unwrap();
        FN.store(t.as_fn() as usize, Ordering::Release);
        PHASE.store(CALL, Ordering::Release);
        wait_for(INSIDE); // (or already `DONE`: then no race this round)
        drop(t); // while the call is returning, on the other thread
        wait_for(DONE);
        PHASE.store(IDLE, Ordering::Release);
    }
    let sum = caller.join().unwrap();
    assert_eq!(sum, (1..=ROUNDS as u64).sum::<u64>());
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        ROUNDS,
        "closures leaked by drops racing the call's exit"
    );
}

/// The old names of a thunk page's seal and lookup still work, deprecated:
/// `seal` is `exec`, and `as_fn` is `func` with `Option`.
#[test]
#[allow(deprecated)]
fn a_thunk_pages_old_names_still_work() {
    let heap = Heap::new().unwrap();
    let mut page = heap
        .thunk_page::<unsafe extern "C" fn(u32) -> u32>()
        .unwrap();
    let k = std::hint::black_box(3u32);
    page.push(move |x: u32| x * k).unwrap();
    let page = page.seal().unwrap();
    // SAFETY: the page is alive.
    assert_eq!(unsafe { (page.as_fn(0).unwrap())(14) }, 42);
    assert!(page.as_fn(1).is_none());
    assert_eq!(
        page.func(0).unwrap() as usize,
        page.as_fn(0).unwrap() as usize
    );
}
