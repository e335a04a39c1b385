//! Thunks: every argument, both calling paths, unwinding, thunk pages,
//! every heap strategy. (Real C callers: `c_callers.rs`; the guards and
//! drops: `thunk_lifetimes.rs`.)
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

#[cfg(not(windows))]
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use wxthunk::{Heap, Thunk};

use support::thunk_heaps as heaps;

support::rerun_file_with_static_trampolines!();

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
            support::code::LANDING_PAD,
            "starts with a landing pad"
        );
    }
}

// Where `extern "C"` is System V or AAPCS64 (Windows x64 places contexts
// otherwise: tests/windows.rs).
#[cfg(not(windows))]
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

        // Six integers and ten floats: two floats and the context spill
        // (System V); AArch64 has eight float registers too, but two integer
        // registers are left, so the context goes to x6.
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
        assert_eq!(t.builds_frame(), cfg!(target_arch = "x86_64"), "{name}");
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
        #[cfg(target_arch = "x86_64")]
        win64_thunks(name, &heap, base);
    }
}

/// Windows x64 thunks on a System V host: the frame path and a register one.
#[cfg(all(target_arch = "x86_64", not(windows)))]
fn win64_thunks(name: &str, heap: &Heap, base: u64) {
    {
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
                move |a: u32, b: f32, c: u32| a + b as u32 + c + (base >> 63) as u32,
            )
            .unwrap();
        assert!(!t.builds_frame());
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(1, 2.0, 3) }, 6);
    }
}

// Where `extern "C"` is System V or AAPCS64 (Windows x64 places contexts
// otherwise: tests/windows.rs).
#[cfg(not(windows))]
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
        // Both register files full: the frame path (eight integers and
        // eight floats fill AArch64's registers and System V's).
        type Full = unsafe extern "C-unwind" fn(
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
        let frame = heap
            .thunk::<Full, _>(
                move |a: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      g: u64,
                      _: u64,
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
        #[cfg(target_arch = "x86_64")]
        type WinWide = unsafe extern "win64-unwind" fn(u64, u64, u64, u64, u64) -> u64;
        #[cfg(target_arch = "x86_64")]
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
                    f(
                        1, 2, 3, 4, 5, 6, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                    )
                }))
                .unwrap_err();
                assert_eq!(err.downcast_ref::<&str>(), Some(&"g is zero"), "{name}");
                assert_eq!(
                    f(
                        1, 2, 3, 4, 5, 6, 7, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0
                    ),
                    10
                );
                #[cfg(target_arch = "x86_64")]
                {
                    let err = catch_unwind(AssertUnwindSafe(|| (win.as_fn())(1, 2, 3, 4, 0)))
                        .unwrap_err();
                    assert_eq!(err.downcast_ref::<&str>(), Some(&"e is zero"), "{name}");
                    assert_eq!((win.as_fn())(1, 2, 3, 4, 5), 6);
                }
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
fn a_panic_through_a_c_thunk_aborts_with_a_message_naming_wxthunk() {
    let name = "a_panic_through_a_c_thunk_aborts_with_a_message_naming_wxthunk";
    if std::env::var("WXTHUNK_TEST_CHILD").as_deref() == Ok(name) {
        let t = Thunk::<unsafe extern "C" fn()>::new(|| panic!("boom")).unwrap();
        // SAFETY: the thunk is alive.
        unsafe { (t.as_fn())() };
        unreachable!("the panic must abort");
    }
    let out = support::self_command()
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("WXTHUNK_TEST_CHILD", name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    }
    // Windows: std's abort is a fail-fast exception, never a clean exit.
    #[cfg(windows)]
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("boom"), "{stderr}");
    assert!(
        stderr.contains("wxthunk: a closure called through a non-unwinding thunk"),
        "{stderr}"
    );
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
