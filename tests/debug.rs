//! Debug mode (`HeapBuilder::debug`, `WXTHUNK_DEBUG=1`): a call through a
//! dropped thunk prints one line naming wxthunk, the address, the
//! signature and the closure's type, then aborts; dropped thunks are
//! quarantined (never reused) up to `DEBUG_QUARANTINE`. Each stale call
//! runs in a child process (it aborts), for generated thunks and static
//! trampolines, on the register, float-register and frame paths.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::process::ExitStatus;

use wxthunk_testkit as support;

use wxthunk::{DEBUG_QUARANTINE, Heap, HeapBuilder, Strategy};

type F1 = unsafe extern "C" fn(u64) -> u64;
/// Six integers and a float: the context goes in `xmm1` (System V; on
/// Windows x64, on the stack).
type FFloat = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, f64) -> u64;
/// Six integers and eight floats: the context goes on the stack (the
/// frame path).
#[rustfmt::skip]
type FFrame = unsafe extern "C" fn(
    u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64,
) -> u64;

/// How a child ended: whether it aborted (`SIGABRT`; on Windows std's
/// fail-fast, `STATUS_STACK_BUFFER_OVERRUN`), trapped (`SIGTRAP` or
/// `SIGILL`; on Windows a breakpoint or illegal-instruction exception), or
/// neither (it exited).
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Aborted,
    Trapped,
    Exited,
    Other(ExitStatus),
}

#[cfg(unix)]
fn ending(status: ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        None => Ending::Exited,
        Some(libc::SIGABRT) => Ending::Aborted,
        Some(libc::SIGTRAP | libc::SIGILL) => Ending::Trapped,
        Some(_) => Ending::Other(status),
    }
}

#[cfg(windows)]
fn ending(status: ExitStatus) -> Ending {
    match status.code().map(|c| c as u32) {
        Some(0xC000_0409) => Ending::Aborted,
        Some(0x8000_0003 | 0xC000_001D) => Ending::Trapped,
        Some(c) if c < 0x100 => Ending::Exited,
        _ => Ending::Other(status),
    }
}

/// Runs this test binary's test `name` as a child with `env`, and returns
/// how it ended, its stdout and its stderr.
fn run_child(name: &str, env: &[(&str, &str)]) -> (Ending, String, String) {
    let out = support::self_command()
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("WXTHUNK_TEST_CHILD", name)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!(
        "--- child {name}: {:?}\n{stdout}--- stderr ---\n{stderr}---",
        out.status
    );
    (ending(out.status), stdout, stderr)
}

/// The address the child printed (`ADDR 0x...`) before its stale call.
fn printed_addr(stdout: &str) -> String {
    stdout
        .split("ADDR ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the child printed its thunk's address")
        .to_owned()
}

/// Checks that the child `name` aborted with debug mode's line for its
/// thunk, of signature `signature` and closure type `closure`.
fn assert_reported(name: &str, env: &[(&str, &str)], signature: &str, closure: &str) {
    let (ended, stdout, stderr) = run_child(name, env);
    if stdout.contains("SKIPPED") {
        return;
    }
    assert_eq!(ended, Ending::Aborted, "the stale call did not abort");
    let addr = printed_addr(&stdout);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("wxthunk: call through a dropped thunk"))
        .expect("no report on stderr");
    assert_eq!(
        line,
        format!(
            "wxthunk: call through a dropped thunk at {addr} (signature {signature}, closure \
             {closure}); aborting"
        )
    );
}

/// A heap in debug mode under `strategy`, or `None` (printing SKIPPED)
/// where it does not work here.
fn debug_heap(strategy: Option<Strategy>) -> Option<Heap> {
    let mut builder = HeapBuilder::default().debug(true);
    if let Some(s) = strategy {
        if !wxthunk::probe().allows(s) {
            println!("SKIPPED: {s} does not work in this process");
            return None;
        }
        builder = builder.strategy(s);
    }
    let heap = builder.build().unwrap();
    assert!(heap.is_debug());
    Some(heap)
}

/// In a child: makes a thunk of `F` on `heap`, checks a call, drops it and
/// calls its stale pointer (which must not return).
macro_rules! stale_call {
    ($heap:expr, $make:ident, $f:ty, $closure:expr, $call:expr, $expect:expr) => {{
        let heap = $heap;
        let t = heap.$make::<$f, _>($closure).unwrap();
        let f: $f = t.as_fn();
        // The thunk is alive.
        assert_eq!($call(f), $expect);
        println!("ADDR {:#x}", f as usize);
        drop(t);
        // The stale call debug mode reports (it aborts before the dropped
        // closure could be reached).
        let _ = $call(f);
        unreachable!("a call through a dropped thunk returned");
    }};
}

/// 1, opaque to the optimizer (so closures capture something).
fn kv() -> u64 {
    std::hint::black_box(1)
}

fn call1(f: F1) -> u64 {
    // SAFETY: the caller passes a thunk's pointer.
    unsafe { f(20) }
}

fn call_float(f: FFloat) -> u64 {
    // SAFETY: as above.
    unsafe { f(1, 2, 3, 4, 5, 6, 7.0) }
}

fn call_frame(f: FFrame) -> u64 {
    // SAFETY: as above.
    unsafe { f(1, 2, 3, 4, 5, 6, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0) }
}

/// The cases: (test name, strategy, what the child does).
macro_rules! debug_case {
    ($test:ident, $strategy:expr, $make:ident, $kind:ident) => {
        #[test]
        fn $test() {
            let name = stringify!($test);
            if support::is_child(name) {
                let Some(heap) = debug_heap($strategy) else {
                    return;
                };
                debug_case!(@call $kind, &heap, $make);
            }
            assert_reported(
                name,
                &[],
                debug_case!(@sig $kind),
                concat!("debug::", stringify!($test), "::{{closure}}"),
            );
        }
    };
    // The signatures: one integer (the register path), six and a float
    // (the context in `xmm1`), six and eight floats (the frame path), and
    // one integer with a counting `FnMut` closure.
    (@sig one) => { "unsafe extern \"C\" fn(u64) -> u64" };
    (@sig counting) => { debug_case!(@sig one) };
    (@sig float) => { "unsafe extern \"C\" fn(u64, u64, u64, u64, u64, u64, f64) -> u64" };
    (@sig frame) => {
        "unsafe extern \"C\" fn(u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64) -> u64"
    };
    (@call one, $heap:expr, $make:ident) => {{
        let k = kv();
        stale_call!($heap, $make, F1, move |x: u64| x + k, call1, 21)
    }};
    (@call counting, $heap:expr, $make:ident) => {{
        let k = kv();
        let mut n = 0;
        let counting = move |x: u64| {
            n += k;
            x + n
        };
        stale_call!($heap, $make, F1, counting, call1, 21)
    }};
    (@call float, $heap:expr, $make:ident) => {{
        let k = kv();
        let sum = move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: f64| {
            a + b + c + d + e + f + g as u64 + k - 1
        };
        stale_call!($heap, $make, FFloat, sum, call_float, 28)
    }};
    (@call frame, $heap:expr, $make:ident) => {{
        let k = kv();
        #[rustfmt::skip]
        let sum = move |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64,
                        g: f64, h: f64, i: f64, j: f64, l: f64, m: f64, n: f64, o: f64| {
            a + b + c + d + e + f + (g + h + i + j + l + m + n + o) as u64 + k - 1
        };
        stale_call!($heap, $make, FFrame, sum, call_frame, 57)
    }};
}

const STATIC: Option<Strategy> = Some(Strategy::StaticTrampolines);

debug_case!(generated_register_path, None, thunk, one);
debug_case!(generated_float_path, None, thunk, float);
debug_case!(generated_frame_path, None, thunk, frame);
debug_case!(generated_fn_mut, None, thunk_mut, counting);
debug_case!(generated_fn_once, None, thunk_once, one);
debug_case!(generated_protect, Some(Strategy::Protect), thunk, one);
debug_case!(static_register_path, STATIC, thunk, one);
debug_case!(static_float_path, STATIC, thunk, float);
debug_case!(static_frame_path, STATIC, thunk, frame);

/// `WXTHUNK_DEBUG=1` puts the default heaps (`Heap::global`, and so
/// `Thunk::new`) in debug mode, and the probe reports it.
#[test]
fn wxthunk_debug_1_reports_through_the_global_heap() {
    let name = "wxthunk_debug_1_reports_through_the_global_heap";
    if support::is_child(name) {
        let policy = wxthunk::probe();
        assert!(policy.debug_thunks);
        assert!(policy.to_string().contains("WXTHUNK_DEBUG"), "{policy}");
        let global = Heap::global().unwrap();
        assert!(global.is_debug());
        debug_case!(@call one, global, thunk);
    }
    assert_reported(
        name,
        &[("WXTHUNK_DEBUG", "1")],
        debug_case!(@sig one),
        "debug::wxthunk_debug_1_reports_through_the_global_heap::{{closure}}",
    );
}

/// Without debug mode a stale call traps (SIGTRAP on generated code's
/// int3, SIGILL on a freed trampoline's ud2) and nothing is printed.
#[test]
fn the_default_mode_traps_without_a_report() {
    let name = "the_default_mode_traps_without_a_report";
    if support::is_child(name) {
        assert!(!wxthunk::probe().debug_thunks);
        let heap = Heap::builder().build().unwrap();
        assert!(!heap.is_debug());
        debug_case!(@call one, &heap, thunk);
    }
    let (ended, _, stderr) = run_child(name, &[]);
    assert_eq!(ended, Ending::Trapped);
    assert!(!stderr.contains("wxthunk: call through"), "{stderr}");
}

/// In debug mode no address is handed out twice, on any heap: dropped
/// thunks stay quarantined. (Without it, the same address comes back at
/// once.)
#[test]
fn dropped_thunks_are_not_reused() {
    let name = "dropped_thunks_are_not_reused";
    if !support::is_child(name) {
        let (ended, stdout, _) = run_child(name, &[]);
        assert_eq!(ended, Ending::Exited);
        assert!(stdout.contains("1 passed"), "{stdout}");
        return;
    }
    let k = std::hint::black_box(1u64);
    for (config, builder) in support::thunk_heap_configs() {
        let heap = builder.debug(true).build().unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..500u64 {
            let t = heap.thunk::<F1, _>(move |x: u64| x + k + i).unwrap();
            assert_eq!(call1(t.as_fn()), 21 + i);
            assert!(seen.insert(t.as_fn() as usize), "{config}: address reused");
        }
    }
    let plain = Heap::builder().build().unwrap();
    let first = plain.thunk::<F1, _>(move |x: u64| x + k).unwrap().as_fn() as usize;
    let second = plain.thunk::<F1, _>(move |x: u64| x + k).unwrap().as_fn() as usize;
    assert_eq!(
        first, second,
        "the default mode reuses a dropped thunk's address"
    );
}

/// Past `DEBUG_QUARANTINE` dropped thunks, wxthunk says so once and frees
/// them as usual (the next drop's address is handed out again).
#[test]
fn a_full_quarantine_says_so_and_reuses() {
    let name = "a_full_quarantine_says_so_and_reuses";
    if support::is_child(name) {
        let heap = debug_heap(None).unwrap();
        let k = std::hint::black_box(1u64);
        for _ in 0..DEBUG_QUARANTINE {
            drop(heap.thunk::<F1, _>(move |x: u64| x + k).unwrap());
        }
        let past = heap.thunk::<F1, _>(move |x: u64| x + k).unwrap();
        let addr = past.as_fn() as usize;
        drop(past);
        let again = heap.thunk::<F1, _>(move |x: u64| x + 2 * k).unwrap();
        assert_eq!(
            again.as_fn() as usize,
            addr,
            "past the limit, freed code is reused"
        );
        assert_eq!(call1(again.as_fn()), 22);
        println!("QUARANTINE-OK");
        return;
    }
    let (ended, stdout, stderr) = run_child(name, &[]);
    assert_eq!(ended, Ending::Exited);
    assert!(stdout.contains("QUARANTINE-OK"), "{stdout}");
    let full: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("debug quarantine full"))
        .collect();
    assert_eq!(full.len(), 1, "{stderr}");
    assert!(full[0].contains(&DEBUG_QUARANTINE.to_string()));
}

/// With `WXTHUNK_DEBUG=1`, short-lived threads that each make and drop one
/// thunk on `Heap::thread_local()` leave no descriptor behind (9bc2f4c kept
/// each thread's whole heap and memfd for its one quarantined thunk:
/// EMFILE long before the quarantine's bound), and a stale call through a
/// thunk of an ended thread is still reported: its code stays mapped.
#[test]
fn per_thread_debug_heaps_keep_their_code_but_no_descriptor() {
    let name = "per_thread_debug_heaps_keep_their_code_but_no_descriptor";
    if support::is_child(name) {
        // Descriptors are Linux's memfds; Windows has none to count (its
        // heaps make no files), so only the stale call is checked there.
        let open_fds = || {
            if cfg!(target_os = "linux") {
                std::fs::read_dir("/proc/self/fd").unwrap().count()
            } else {
                0
            }
        };
        let one_thread = |i: u64| {
            std::thread::spawn(move || {
                let heap = Heap::thread_local().unwrap();
                assert!(heap.is_debug());
                let k = std::hint::black_box(i);
                let t = heap.thunk::<F1, _>(move |x: u64| x + k).unwrap();
                assert!(!t.code().is_empty());
                // SAFETY: the thunk is alive.
                assert_eq!(unsafe { (t.as_fn())(1) }, i + 1);
                t.as_fn() as usize
            })
            .join()
            .unwrap()
        };
        for i in 0..4 {
            one_thread(i);
        }
        let before = open_fds();
        let mut last = 0;
        for i in 0..300 {
            last = one_thread(i);
        }
        let after = open_fds();
        println!("fds {before} -> {after} over 300 threads");
        assert_eq!(after, before, "descriptors kept by ended threads' heaps");
        println!("ADDR {last:#x}");
        // SAFETY: deliberately stale: debug mode must report it and abort.
        let f: F1 = unsafe { std::mem::transmute(last) };
        // SAFETY: as above.
        unsafe { f(1) };
        unreachable!("a stale call returned");
    }
    let (ended, stdout, stderr) = run_child(name, &[("WXTHUNK_DEBUG", "1")]);
    assert!(!stdout.contains("descriptors kept"), "{stdout}");
    assert_eq!(ended, Ending::Aborted, "the stale call did not abort");
    let addr = printed_addr(&stdout);
    assert!(
        stderr.contains(&format!("wxthunk: call through a dropped thunk at {addr} ")),
        "{stderr}"
    );
}
