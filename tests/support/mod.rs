//! Helpers shared by the integration tests: running a test body in a fresh
//! child process (for process-wide settings such as MDWE), reading
//! `/proc/self/maps`, and small x86_64 code snippets.

#![allow(dead_code)]

pub mod code;
pub mod maps;
pub mod seccomp;

use std::process::Command;

const CHILD_VAR: &str = "WXTHUNK_TEST_CHILD";

/// Runs `body` in a child process made by re-running this test binary with
/// only the test `name`, and returns the child's standard output to the
/// parent; returns `None` inside the child (after `body` ran).
///
/// The child must be able to change process-wide state (MDWE, seccomp)
/// without touching the other tests, which is why it is a new process rather
/// than a fork of the multi-threaded test runner. A panic in the child fails
/// the parent's test with the child's output.
pub fn in_child(name: &str, body: impl FnOnce()) -> Option<String> {
    if std::env::var(CHILD_VAR).as_deref() == Ok(name) {
        body();
        return None;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .output()
        .expect("spawn the test binary as a child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("--- child {name} stdout ---\n{stdout}--- child stderr ---\n{stderr}---");
    assert!(out.status.success(), "child {name} failed: {}", out.status);
    assert!(
        stdout.contains("1 passed"),
        "child {name} did not run its test"
    );
    Some(stdout)
}

/// An error and its sources, joined by ": " (what an error-chain reporter
/// prints). Panics if a message repeats its source's, the mistake such
/// reporters show twice.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        let msg = s.to_string();
        assert!(
            !parts.last().unwrap().contains(&msg),
            "{:?} repeats its source {msg:?}",
            parts.last().unwrap()
        );
        parts.push(msg);
        next = s.source();
    }
    parts.join(": ")
}

/// Every configuration of a heap for written code this process allows:
/// dual mapping (plain and strict) and protect.
pub fn heap_configs() -> Vec<(&'static str, wxthunk::HeapBuilder)> {
    use wxthunk::{Heap, Strategy};
    let policy = wxthunk::probe();
    let mut v = Vec::new();
    if policy.allows(Strategy::DualMap) {
        v.push(("dual-map", Heap::builder().strategy(Strategy::DualMap)));
        v.push((
            "dual-map strict",
            Heap::builder().strategy(Strategy::DualMap).strict(true),
        ));
    }
    if policy.allows(Strategy::Protect) {
        v.push(("protect", Heap::builder().strategy(Strategy::Protect)));
    }
    assert!(!v.is_empty(), "no heap strategy works here:\n{policy}");
    v
}

/// The variable that forces the default heaps' strategy.
pub const STRATEGY_VAR: &str = "WXTHUNK_STRATEGY";

/// Re-runs every test of this binary in a child process with the default
/// heaps forced to `strategy` (through `WXTHUNK_STRATEGY`) and checks that
/// they all pass; returns false inside that child, where there is nothing
/// more to do. Prints what it could not run (a strategy this process does
/// not allow).
pub fn rerun_all_with_default_strategy(strategy: wxthunk::Strategy) -> bool {
    if std::env::var(STRATEGY_VAR).is_ok() {
        println!("already running under {STRATEGY_VAR}; not re-running");
        return false;
    }
    if !wxthunk::probe().allows(strategy) {
        println!(
            "SKIPPED: {strategy} does not work in this process; the suite was not re-run under it:\n{}",
            wxthunk::probe()
        );
        return false;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .arg("--nocapture")
        .env(STRATEGY_VAR, strategy.name())
        .output()
        .expect("spawn the test binary as a child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("--- re-run under {strategy} ---\n{stdout}--- stderr ---\n{stderr}---");
    assert!(
        out.status.success(),
        "re-run under {strategy} failed: {}",
        out.status
    );
    assert!(
        stdout.contains("test result: ok"),
        "the re-run ran no tests"
    );
    true
}

/// Turns on `PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN)` for this process.
/// Returns false if the kernel has no MDWE.
pub fn set_mdwe() -> bool {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_SET_MDWE takes flags by value and no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MDWE,
            libc::PR_MDWE_REFUSE_EXEC_GAIN as libc::c_ulong,
            zero,
            zero,
            zero,
        )
    };
    if ret == 0 {
        return true;
    }
    let err = std::io::Error::last_os_error();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EINVAL),
        "PR_SET_MDWE failed: {err}"
    );
    false
}
