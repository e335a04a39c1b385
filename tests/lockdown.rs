//! Thunks end to end inside the lockdowns that break other thunk libraries,
//! each in a child process that locks itself down before touching wxthunk:
//! (a) `PR_SET_MDWE`; (b) a seccomp filter refusing `memfd_create` with
//! `EPERM`, plus `PR_SET_MDWE`; (c) systemd's `MemoryDenyWriteExecute=`
//! seccomp rule (no `mmap` with write and exec, no `mprotect` adding exec);
//! (e) a seccomp filter refusing `memfd_create` alone, where written code
//! uses `mprotect` and thunks static trampolines.
//! In each the probe must name the strategy thunks use and why, and no
//! writable+executable mapping may ever appear.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::ffi::{c_int, c_void};
use std::io::Write;

use support::Lockdown;
use wxthunk::{Block, Check, CodeStrategy, Heap, Seccomp, Strategy, Thunk, ThunkStrategy};

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;
/// Eight integers: the context in a float register (System V).
type Sum8 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
/// Eight integers and eight floats: the frame path.
type Sum8x8 = unsafe extern "C" fn(
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
) -> f64;

/// Thunks on the default heap and on a forced static-trampoline heap: libc
/// `qsort` with a capturing comparator, the frame path, many thunks, an
/// `FnMut`; then a check of `/proc/self/maps`.
fn exercise_thunks() {
    let pivot = 40;
    let by_distance = Thunk::<Cmp>::new(move |a: *const c_void, b: *const c_void| {
        // SAFETY: qsort passes pointers to i32 elements.
        let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
        ((a - pivot).abs(), a).cmp(&((b - pivot).abs(), b)) as c_int
    })
    .unwrap();
    let mut v: Vec<i32> = (0..100).map(|i| (i * 37) % 101).collect();
    // SAFETY: the comparator lives across the call; elements are i32.
    unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(by_distance.as_fn())) };
    assert!(
        v.windows(2)
            .all(|w| (w[0] - pivot).abs() <= (w[1] - pivot).abs())
    );

    let statics = Heap::builder()
        .strategy(Strategy::StaticTrampolines)
        .build()
        .unwrap();
    for heap in [Heap::global().unwrap(), &statics] {
        // Capturing, so that the thunk is generated code (or a trampoline),
        // not the compiled function of a capture-free closure.
        let zero = pivot as u64 - 40;
        let xmm = heap
            .thunk::<Sum8, _>(
                move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64| {
                    a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h + zero
                },
            )
            .unwrap();
        assert!(!xmm.builds_frame());
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (xmm.as_fn())(1, 1, 1, 1, 1, 1, 1, 1) }, 36);
        let frame = heap
            .thunk::<Sum8x8, _>(
                move |a: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      h: u64,
                      x: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      y: f64| { (a + h + zero) as f64 + x + y },
            )
            .unwrap();
        assert!(frame.builds_frame());
        let f = frame.as_fn();
        // SAFETY: the thunk is alive.
        let got = unsafe {
            f(
                1, 0, 0, 0, 0, 0, 0, 2, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25,
            )
        };
        assert_eq!(got, 3.75);
        let many: Vec<_> = (0..1000u64)
            .map(|k| {
                heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x: u64| x * 1000 + k)
                    .unwrap()
            })
            .collect();
        for (k, t) in many.iter().enumerate() {
            // SAFETY: the thunks are alive.
            assert_eq!(unsafe { (t.as_fn())(7) }, 7000 + k as u64);
        }
        let mut total = 0u64;
        {
            let add = heap
                .thunk_mut::<unsafe extern "C" fn(u64), _>(|x: u64| total += x)
                .unwrap();
            for x in 1..=10 {
                // SAFETY: the thunk is alive; one call at a time.
                unsafe { (add.as_fn())(x) };
            }
        }
        assert_eq!(total, 55);
        println!("{}: {:?}", heap.strategy(), heap.stats());
    }
    let wx = support::maps::wx_mappings();
    assert!(wx.is_empty(), "writable+executable mappings: {wx:?}");
}

#[test]
fn a_mdwe() {
    support::run_locked("a_mdwe", Lockdown::Mdwe, || {
        let policy = wxthunk::probe();
        println!("{policy}");
        assert!(matches!(policy.mprotect_exec, Check::Refused { .. }));
        assert!(policy.static_trampolines.is_allowed(), "{policy}");
        assert_eq!(policy.thunk_strategy, Some(Strategy::DualMap), "{policy}");
        assert!(
            policy
                .notes
                .iter()
                .any(|n| n.contains("thunks use dual-map"))
        );
        exercise_thunks();
    });
}

#[test]
fn b_no_memfd_and_mdwe() {
    support::run_locked("b_no_memfd_and_mdwe", Lockdown::NoMemfdMdwe, || {
        // SAFETY: the name is NUL-terminated; the call is refused anyway.
        let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), libc::MFD_CLOEXEC) };
        assert_eq!(fd, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );

        let policy = wxthunk::probe();
        println!("{policy}");
        assert!(matches!(policy.seccomp, Seccomp::Filter { .. }));
        assert!(matches!(policy.mprotect_exec, Check::Refused { .. }));
        assert!(matches!(policy.dual_mapping, Check::Refused { .. }));
        assert!(policy.static_trampolines.is_allowed(), "{policy}");
        // Written code goes to files without a name in a directory
        // (tests/code_files.rs has the rest of this case).
        assert!(policy.file_dual_mapping.is_allowed(), "{policy}");
        assert_eq!(policy.block_strategy, Some(Strategy::DualMapFile));
        assert_eq!(policy.heap_strategy, Some(Strategy::DualMapFile));
        assert_eq!(
            policy.thunk_strategy,
            Some(Strategy::StaticTrampolines),
            "{policy}"
        );
        assert!(
            policy
                .notes
                .iter()
                .any(|n| n.contains("thunks use static trampolines") && n.contains("memfd")),
            "{policy}"
        );

        let mut b = Block::new(16).unwrap();
        assert_eq!(b.code_strategy(), CodeStrategy::DualMapFile);
        b.write_all(&support::code::ret_u32(4)).unwrap();
        let x = b.exec().unwrap();
        // SAFETY: offset 0 holds `mov eax, 4; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 4);
        let heap = Heap::global().unwrap();
        assert_eq!(heap.strategy(), Strategy::StaticTrampolines);
        assert_eq!(heap.span_strategy(), Some(Strategy::DualMapFile));
        let mut span = heap.alloc(16).unwrap();
        span.write_all(&support::code::ret_u32(8)).unwrap();
        let x = span.exec().unwrap();
        // SAFETY: the span holds `mov eax, 8; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 8);
        exercise_thunks();
    });
}

#[test]
fn c_systemd_memory_deny_write_execute() {
    support::run_locked(
        "c_systemd_memory_deny_write_execute",
        Lockdown::SystemdWx,
        || {
            let policy = wxthunk::probe();
            println!("{policy}");
            assert!(
                matches!(&policy.mprotect_exec, Check::Refused { reason } if reason.contains("not permitted")),
                "{policy}"
            );
            assert!(matches!(policy.seccomp, Seccomp::Filter { .. }));
            // Under a filter the RWX check is not tried (its fork-like clone
            // could kill the process).
            assert!(
                matches!(&policy.rwx_mapping, Check::Unknown { reason } if reason.starts_with("not tried")),
                "{}",
                policy.rwx_mapping
            );
            assert!(policy.static_trampolines.is_allowed(), "{policy}");
            assert!(policy.thunk_strategy.is_some(), "{policy}");
            // Written code still works where the file-backed mapping does.
            if policy.dual_mapping.is_allowed() {
                let mut b = Block::new(16).unwrap();
                b.write_all(&support::code::ret_u32(5)).unwrap();
                let x = b.exec().unwrap();
                // SAFETY: offset 0 holds `mov eax, 5; ret`.
                let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
                assert_eq!(f(), 5);
            }
            exercise_thunks();
            println!("thunks: {}", policy.thunk_strategy.unwrap());
        },
    );
}

#[test]
fn d_a_sandbox_that_kills_on_fork_like_clone() {
    support::run_locked(
        "d_a_sandbox_that_kills_on_fork_like_clone",
        Lockdown::KillForks,
        || {
            // Probing must not clone a child here: that would kill us (SIGSYS).
            let policy = wxthunk::probe();
            println!("{policy}");
            assert!(
                matches!(&policy.rwx_mapping, Check::Unknown { reason } if reason.contains("not tried")),
                "{}",
                policy.rwx_mapping
            );
            assert!(policy.to_string().contains("not tried"), "{policy}");
            // Threads still work under the filter, and so do thunks.
            // A runtime capture: code on the heap, made under the filter.
            let three = std::hint::black_box(3u32);
            let t =
                wxthunk::Thunk::<unsafe extern "C" fn(u32) -> u32>::new(move |v: u32| v * three)
                    .unwrap();
            assert!(!t.code().is_empty(), "a capture-free closure tests no heap");
            let f = t.as_fn();
            // SAFETY: `t` is alive until the thread is joined.
            let got = std::thread::scope(|s| s.spawn(|| unsafe { f(14) }).join().unwrap());
            assert_eq!(got, 42);
        },
    );
}

/// Where memfd is refused but `mprotect` works, the two halves of a heap's
/// strategy differ: thunks are static trampolines (preferred over
/// generated code that needs a page and an `mprotect` per thunk), spans
/// and pages use protect. Each is reported, and each works.
#[test]
fn e_no_memfd_alone() {
    support::run_locked("e_no_memfd_alone", Lockdown::NoMemfd, || {
        let policy = wxthunk::probe();
        println!("{policy}");
        assert!(policy.mprotect_exec.is_allowed(), "{policy}");
        assert!(matches!(policy.dual_mapping, Check::Refused { .. }));
        assert!(policy.static_trampolines.is_allowed(), "{policy}");
        assert_eq!(policy.block_strategy, Some(Strategy::Protect));
        assert_eq!(policy.heap_strategy, Some(Strategy::Protect));
        assert_eq!(policy.thunk_strategy, Some(Strategy::StaticTrampolines));

        let heap = Heap::global().unwrap();
        assert_eq!(heap.thunk_strategy(), ThunkStrategy::StaticTrampolines);
        assert_eq!(heap.code_strategy(), Some(CodeStrategy::Protect));
        // The heap's two strategies are what the probe reports for each.
        assert_eq!(Some(heap.strategy()), policy.thunk_strategy);
        assert_eq!(heap.span_strategy(), policy.heap_strategy);
        let mut span = heap.alloc(6).unwrap();
        span.write_all(&support::code::ret_u32(9)).unwrap();
        let x = span.exec().unwrap();
        // SAFETY: the span holds `mov eax, 9; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 9);
        exercise_thunks();
    });
}
