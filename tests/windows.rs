//! Windows x64 with real Windows callers: the C runtime's `qsort`,
//! `CreateThread` running a thunk as the thread routine,
//! `EnumSystemLocalesW` (a callback without user data), every placement of
//! the Windows x64 convention (the context in rcx/rdx/r8/r9, or on the
//! stack through a frame adapter from the fourth argument on), floats,
//! `extern "system"`, `FnMut`/`FnOnce`, and a panic unwinding through a
//! frame adapter by its registered unwind information. Run under Wine in
//! CI (`.ci/windows`).
#![cfg(all(windows, target_arch = "x86_64"))]

use wxthunk_testkit as support;

use std::ffi::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use windows_sys::Win32::Foundation::{CloseHandle, WAIT_OBJECT_0};
use windows_sys::Win32::Globalization::{EnumSystemLocalesW, LCID_INSTALLED};
use windows_sys::Win32::System::Threading::{
    CreateThread, GetExitCodeThread, INFINITE, WaitForSingleObject,
};
use windows_sys::core::{BOOL, PCWSTR};
use wxthunk::{Block, Heap, Strategy, Thunk};

unsafe extern "C" {
    /// The C runtime's (msvcrt's, as MinGW links it).
    fn qsort(
        base: *mut c_void,
        n: usize,
        size: usize,
        cmp: unsafe extern "C" fn(*const c_void, *const c_void) -> c_int,
    );
}

/// Every heap a thunk can be made on here: the global one and one of each
/// strategy this process allows.
fn heaps() -> Vec<(&'static str, Heap)> {
    support::thunk_heaps()
}

#[test]
fn qsort_from_the_c_runtime_calls_a_capturing_comparator() {
    for (name, heap) in heaps() {
        let pivot = std::hint::black_box(50);
        let mut calls = 0u32;
        let mut v: Vec<i32> = (0..100).map(|i| (i * 37) % 101).collect();
        {
            let cmp = heap
                .thunk_mut::<unsafe extern "C" fn(*const c_void, *const c_void) -> c_int, _>(
                    |a: *const c_void, b: *const c_void| {
                        calls += 1;
                        // SAFETY: qsort passes pointers to elements of `v`.
                        let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
                        ((a - pivot).abs(), a).cmp(&((b - pivot).abs(), b)) as c_int
                    },
                )
                .unwrap();
            // SAFETY: the thunk outlives the call; the sizes describe `v`.
            unsafe { qsort(v.as_mut_ptr().cast(), v.len(), 4, cmp.as_fn()) };
        }
        let mut expected: Vec<i32> = (0..100).map(|i| (i * 37) % 101).collect();
        expected.sort_by_key(|&x| ((x - pivot).abs(), x));
        assert_eq!(v, expected, "{name}");
        assert!(calls > 100, "{name}: {calls} comparisons");
    }
}

#[test]
fn create_thread_runs_a_thunk_as_the_thread_routine() {
    type Routine = unsafe extern "system" fn(*mut c_void) -> u32;
    for (name, heap) in heaps() {
        let base = std::hint::black_box(1000u32);
        let routine = heap
            .thunk::<Routine, _>(move |arg: *mut c_void| base + arg as usize as u32)
            .unwrap();
        // SAFETY: the thunk outlives the thread (waited for below); the
        // routine's argument is a plain number.
        let thread = unsafe {
            CreateThread(
                std::ptr::null(),
                0,
                Some(routine.as_fn()),
                7 as *const c_void,
                0,
                std::ptr::null_mut(),
            )
        };
        assert!(!thread.is_null(), "{name}: CreateThread failed");
        // SAFETY: a thread handle of ours.
        assert_eq!(
            unsafe { WaitForSingleObject(thread, INFINITE) },
            WAIT_OBJECT_0
        );
        let mut code = 0;
        // SAFETY: as above; `code` is a valid place to write.
        assert_ne!(unsafe { GetExitCodeThread(thread, &mut code) }, 0);
        // SAFETY: closed once.
        unsafe { CloseHandle(thread) };
        assert_eq!(code, 1007, "{name}");
    }
}

#[test]
fn enum_system_locales_calls_a_closure_without_user_data() {
    type Visit = unsafe extern "system" fn(PCWSTR) -> BOOL;
    let mut names = Vec::new();
    {
        let visit = Thunk::<Visit>::new_mut(|name: PCWSTR| {
            // SAFETY: the system passes a NUL-terminated UTF-16 string.
            let len = (0..).take_while(|&i| unsafe { *name.add(i) } != 0).count();
            // SAFETY: `len` units, all readable.
            names.push(String::from_utf16_lossy(unsafe {
                std::slice::from_raw_parts(name, len)
            }));
            1
        })
        .unwrap();
        // SAFETY: the thunk lives across the enumeration.
        assert_ne!(
            unsafe { EnumSystemLocalesW(Some(visit.as_fn()), LCID_INSTALLED) },
            0
        );
    }
    assert!(names.len() > 10, "{names:?}");
    // US English is installed everywhere (0409).
    assert!(names.iter().any(|n| n.ends_with("0409")), "{names:?}");
}

#[test]
fn every_placement_of_windows_x64() {
    for (name, heap) in heaps() {
        let k = std::hint::black_box(1u64 << 40);
        // 0-3 arguments: the context in rcx, rdx, r8, r9; no frame.
        let t0 = heap
            .thunk::<unsafe extern "C" fn() -> u64, _>(move || k)
            .unwrap();
        let t1 = heap
            .thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |a| k + a)
            .unwrap();
        let t2 = heap
            .thunk::<unsafe extern "C" fn(f64, u64) -> f64, _>(move |a, b| a + b as f64 + k as f64)
            .unwrap();
        let t3 = heap
            .thunk::<unsafe extern "system" fn(u32, f32, u64) -> u64, _>(move |a, b, c| {
                k + u64::from(a) + b as u64 + c
            })
            .unwrap();
        for t in [t0.builds_frame(), t1.builds_frame(), t2.builds_frame()] {
            assert!(!t, "{name}");
        }
        assert!(!t3.builds_frame(), "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(unsafe { t0.as_fn()() }, k, "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(unsafe { t1.as_fn()(5) }, k + 5, "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(unsafe { t2.as_fn()(0.5, 2) }, 2.5 + k as f64, "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(unsafe { t3.as_fn()(1, 2.0, 3) }, k + 6, "{name}");

        // 4 arguments: the context is the fifth, on the stack (frame path).
        let t4 = heap
            .thunk::<unsafe extern "C" fn(u64, f64, u64, f32) -> f64, _>(move |a, b, c, d| {
                (k + a + c) as f64 + b + f64::from(d)
            })
            .unwrap();
        assert!(t4.builds_frame(), "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(
            unsafe { t4.as_fn()(1, 0.5, 2, 0.25) },
            (k + 3) as f64 + 0.75,
            "{name}"
        );

        // 5 arguments: one stack argument of the caller's, copied.
        let t5 = heap
            .thunk::<unsafe extern "C" fn(u64, u64, u64, u64, u64) -> u64, _>(
                move |a, b, c, d, e| k + a + 10 * b + 100 * c + 1000 * d + 10_000 * e,
            )
            .unwrap();
        assert!(t5.builds_frame(), "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(unsafe { t5.as_fn()(1, 2, 3, 4, 5) }, k + 54_321, "{name}");

        // 16 arguments, floats among them: twelve on the stack.
        type Sixteen = unsafe extern "C" fn(
            u64,
            f64,
            u64,
            f32,
            u64,
            f64,
            u64,
            f32,
            u64,
            f64,
            u64,
            f32,
            u64,
            f64,
            u64,
            u8,
        ) -> f64;
        let t16 = heap
            .thunk::<Sixteen, _>(move |a, b, c, d, e, f, g, h, i, j, l, m, n, o, p, q| {
                (k + a + c + e + g + i + l + n + p + u64::from(q)) as f64
                    + b
                    + f64::from(d)
                    + f
                    + f64::from(h)
                    + j
                    + f64::from(m)
                    + o
            })
            .unwrap();
        assert!(t16.builds_frame(), "{name}");
        // SAFETY: the thunk is alive; the arguments match its type.
        let got = unsafe {
            t16.as_fn()(
                1, 0.5, 2, 0.25, 3, 0.125, 4, 1.0, 5, 2.0, 6, 4.0, 7, 8.0, 8, 9,
            )
        };
        assert_eq!(got, (k + 45) as f64 + 15.875, "{name}");
    }
}

#[test]
fn fn_mut_and_fn_once_thunks() {
    for (name, heap) in heaps() {
        let mut total = std::hint::black_box(0u64);
        {
            let add = heap
                .thunk_mut::<unsafe extern "C" fn(u64, u64, u64, u64, u64), _>(|a, b, c, d, e| {
                    total += a + b + c + d + e
                })
                .unwrap();
            // SAFETY: the thunk is alive; the arguments match its type.
            unsafe { add.as_fn()(1, 2, 3, 4, 5) };
            // SAFETY: the thunk is alive; the arguments match its type.
            unsafe { add.as_fn()(10, 20, 30, 40, 50) };
        }
        assert_eq!(total, 165, "{name}");
        let owned = std::hint::black_box(String::from("once"));
        let once = heap
            .thunk_once::<unsafe extern "C" fn(u32) -> usize, _>(move |n| owned.len() + n as usize)
            .unwrap();
        // SAFETY: the thunk is alive; the arguments match its type.
        assert_eq!(unsafe { once.as_fn()(3) }, 7, "{name}");
    }
}

/// A return address that misleads an unwinder which does not know the
/// adapter's frame: the end of the prologue of [`plant_below`], a function
/// with a frame of over 8 KiB and no frame register. Wine takes a frame
/// without unwind information for a leaf and "returns" to the value on top
/// of it; landing in a prologue it pops only what that prologue pushed, so
/// a planted address inside one would walk up the planted slots to the real
/// return address (a scan by accident). Past the prologue it unwinds the
/// whole 8 KiB frame instead, far above the stack's real frames, and the
/// panic never reaches `catch_unwind`: so this test passes only through
/// the adapter's own unwind information.
fn looks_like_a_return_address() -> u64 {
    use windows_sys::Win32::System::Diagnostics::Debug::RtlLookupFunctionEntry;
    let pc = plant_below as *const () as usize as u64;
    let mut image = 0u64;
    // SAFETY: `pc` is code of this image; `image` is a valid place to
    // write; no history table.
    let entry = unsafe { RtlLookupFunctionEntry(pc, &mut image, std::ptr::null_mut()) };
    assert!(!entry.is_null(), "plant_below has unwind information");
    // SAFETY: a function table entry of this image, read-only.
    let entry = unsafe { &*entry };
    // SAFETY: the entry's unwind information is in this image, at least
    // the 4-byte header (version/flags, prologue size, code count, frame).
    let header: [u8; 4] =
        unsafe { *((image + u64::from(entry.Anonymous.UnwindData)) as *const [u8; 4]) };
    assert_eq!(header[3] & 0x0f, 0, "plant_below has no frame register");
    let after_prologue = image + u64::from(entry.BeginAddress) + u64::from(header[1]);
    assert!(after_prologue < image + u64::from(entry.EndAddress));
    after_prologue
}

/// Fills the stack below the caller's frame with `value`: the frames the
/// caller makes next start out holding it wherever they do not write (an
/// adapter's shadow space, for one).
#[inline(never)]
fn plant_below(value: u64) {
    let mut slots = [value; 1024];
    std::hint::black_box(&mut slots);
}

#[test]
fn a_panic_unwinds_through_the_frame_adapter_by_its_unwind_information() {
    type Wide = unsafe extern "C-unwind" fn(u64, u64, u64, u64, u64, u64, u64) -> u64;
    for (name, heap) in heaps() {
        let zero = std::hint::black_box(0u64);
        let t = heap
            .thunk::<Wide, _>(move |a, _, _, _, e, f, g| {
                if a == 0 {
                    panic!("a is zero");
                }
                a + e + f + g + zero
            })
            .unwrap();
        assert!(t.builds_frame(), "{name}");
        // The adapter's frame holds return-address-like values (the stack
        // arguments it copies, and what `plant_below` left where it does
        // not write): an unwinder that took the adapter for a leaf
        // function, or scanned the stack, would resume at one of them,
        // while the adapter's registered unwind information leads back to
        // this function.
        let planted = looks_like_a_return_address();
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(1, 0, 0, 0, 2, 3, 4) }, 10, "{name}");
        let caught = catch_unwind(AssertUnwindSafe(|| {
            plant_below(planted);
            // SAFETY: as above; `-unwind` lets the panic leave the thunk.
            unsafe { (t.as_fn())(0, planted, planted, planted, planted, planted, planted) }
        }));
        let payload = caught.expect_err("the panic reaches catch_unwind");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"a is zero"), "{name}");
        // The thunk still works.
        // SAFETY: as above.
        assert_eq!(unsafe { (t.as_fn())(1, 0, 0, 0, 1, 1, 1) }, 4, "{name}");
    }
}

#[test]
fn a_hundred_thousand_thunks_on_several_threads() {
    let threads: Vec<_> = (0..4u64)
        .map(|id| {
            std::thread::spawn(move || {
                let base = std::hint::black_box(id << 32);
                let thunks: Vec<_> = (0..25_000u64)
                    .map(|i| {
                        Thunk::<unsafe extern "C" fn(u64) -> u64>::new(move |x| base + i + x)
                            .unwrap()
                    })
                    .collect();
                for (i, t) in thunks.iter().enumerate() {
                    // SAFETY: the thunk is alive; the arguments match its type.
                    assert_eq!(unsafe { t.as_fn()(1) }, base + i as u64 + 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn no_page_is_ever_writable_and_executable() {
    let heap = Heap::global().unwrap();
    let k = std::hint::black_box(3u64);
    let t = heap
        .thunk::<unsafe extern "C" fn() -> u64, _>(move || k)
        .unwrap();
    // SAFETY: the thunk is alive; the arguments match its type.
    assert_eq!(unsafe { t.as_fn()() }, 3);
    let wx: Vec<_> = support::maps::wx_mappings()
        .into_iter()
        .filter(|m| m.contains(t.as_fn() as usize))
        .collect();
    assert!(wx.is_empty(), "{wx:?}");
    let m = support::maps::mapping_at(t.as_fn() as usize).expect("the thunk is mapped");
    assert_eq!(&m.perms[..3], "r-x", "{m:?}");
}

/// A process that may not make code (Arbitrary Code Guard, simulated by
/// the platform layer's test switch: Wine does not enforce the real
/// policy): the probe refuses every strategy that writes code, thunks of
/// every placement are static trampolines from the table compiled into
/// the image, and blocks and spans fail with an error that names the
/// policy.
#[test]
fn under_arbitrary_code_guard_thunks_still_work_and_code_is_refused() {
    let name = "under_arbitrary_code_guard_thunks_still_work_and_code_is_refused";
    let out = support::in_child_with_env(name, &[("WXTHUNK_SIMULATE_ACG", "1")], || {
        let policy = wxthunk::probe();
        assert!(!policy.allows(Strategy::Protect), "{policy}");
        assert!(policy.allows(Strategy::StaticTrampolines), "{policy}");
        let refusal = policy.check(Strategy::Protect).to_string();
        assert!(refusal.contains("Arbitrary Code Guard"), "{refusal}");

        let heap = Heap::global().unwrap();
        assert_eq!(heap.strategy(), Strategy::StaticTrampolines);
        let k = std::hint::black_box(100u64);
        let t1 = Thunk::<unsafe extern "C" fn(u64) -> u64>::new(move |a| k + a).unwrap();
        let t3 = Thunk::<unsafe extern "system" fn(u64, f64, u64) -> u64>::new(move |a, b, c| {
            k + a + b as u64 + c
        })
        .unwrap();
        let t4 =
            Thunk::<unsafe extern "C" fn(u64, u64, u64, u64) -> u64>::new(move |a, b, c, d| {
                k + a + b + c + d
            })
            .unwrap();
        let t5 = Thunk::<unsafe extern "C" fn(u64, u64, u64, u64, f64) -> f64>::new(
            move |a, b, c, d, e| (k + a + b + c + d) as f64 + e,
        )
        .unwrap();
        assert!(!t1.builds_frame() && !t3.builds_frame());
        assert!(t4.builds_frame() && t5.builds_frame());
        // SAFETY: the thunks are alive; the arguments match their types.
        unsafe {
            assert_eq!((t1.as_fn())(1), 101);
            assert_eq!((t3.as_fn())(1, 2.0, 3), 106);
            assert_eq!((t4.as_fn())(1, 2, 3, 4), 110);
            assert_eq!((t5.as_fn())(1, 2, 3, 4, 0.5), 110.5);
        }
        let mut count = std::hint::black_box(0u32);
        {
            let bump = Thunk::<unsafe extern "C" fn(u32)>::new_mut(|n| count += n).unwrap();
            // SAFETY: as above.
            unsafe { (bump.as_fn())(5) };
        }
        assert_eq!(count, 5);

        let block = Block::new(16)
            .map(|_| ())
            .map_err(|e| support::error_chain(&e));
        let e = block.expect_err("a block needs executable memory");
        assert!(e.contains("Arbitrary Code Guard"), "{e}");
        let span = Heap::new()
            .and_then(|h| h.alloc(16).map(|_| ()))
            .map_err(|e| support::error_chain(&e));
        let e = span.expect_err("a span needs executable memory");
        assert!(e.contains("Arbitrary Code Guard"), "{e}");
        println!("ACG-OK");
    });
    if let Some(out) = out {
        assert!(out.contains("ACG-OK"), "{out}");
    }
}

/// Past the table compiled into the image (2048 thunks for the whole
/// process), a heap on static trampolines fails with a clear error, keeps
/// every live thunk working, and has room again once one is dropped.
#[test]
fn a_full_static_table_is_a_clear_error_and_loses_nothing() {
    let name = "a_full_static_table_is_a_clear_error_and_loses_nothing";
    let out = support::in_child(name, || {
        let heap = Heap::builder()
            .strategy(Strategy::StaticTrampolines)
            .build()
            .unwrap();
        let base = std::hint::black_box(7u64);
        let mut live = Vec::new();
        let err = loop {
            let i = live.len() as u64;
            match heap.thunk::<unsafe extern "C" fn() -> u64, _>(move || base + i) {
                Ok(t) => live.push(t),
                Err(e) => break e,
            }
            assert!(live.len() <= 1 << 20, "no limit was reached");
        };
        assert!(
            matches!(err, wxthunk::Error::TrampolinesExhausted { capacity } if capacity == live.len()),
            "{err:?} after {} thunks",
            live.len()
        );
        assert!(err.to_string().contains("static trampolines"), "{err}");
        for (i, t) in live.iter().enumerate() {
            // SAFETY: alive.
            assert_eq!(unsafe { (t.as_fn())() }, base + i as u64);
        }
        live.pop();
        let again = heap
            .thunk::<unsafe extern "C" fn() -> u64, _>(move || base + 1000)
            .unwrap();
        // SAFETY: alive.
        assert_eq!(unsafe { (again.as_fn())() }, base + 1000);
        println!("capacity {} thunks", live.len() + 1);
        println!("FULL-OK");
    });
    if let Some(out) = out {
        assert!(out.contains("FULL-OK"), "{out}");
    }
}
