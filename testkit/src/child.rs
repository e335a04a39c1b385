//! Running a test body in a fresh child process, made by re-running the
//! test binary with only that test (process-wide settings such as MDWE or
//! seccomp then touch no other test), and re-running a whole test binary
//! under a forced strategy.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a child test may run before it is taken for hung and killed:
/// far past what any of them takes on a loaded two-core machine (a limit
/// against deadlocks, not a measure of speed).
pub const CHILD_HANG: Duration = Duration::from_secs(300);

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
    in_child_with_env::<&str>(name, &[], body)
}

/// Whether this process is the child [`in_child`] made for the test `name`
/// (for a test whose parent sets something up for the child).
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

/// [`in_child`], with the environment variables `env` set in the child
/// (for settings wxthunk reads once, such as `WXTHUNK_TMPDIR`).
/// The values may be any bytes (`&str`, `&OsStr`, `PathBuf`).
pub fn in_child_with_env<V: AsRef<std::ffi::OsStr>>(
    name: &str,
    env: &[(&str, V)],
    body: impl FnOnce(),
) -> Option<String> {
    if std::env::var(CHILD_VAR).as_deref() == Ok(name) {
        body();
        return None;
    }
    let out = output_or_kill(
        self_command()
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_VAR, name)
            .envs(env.iter().map(|(k, v)| (k, v.as_ref()))),
    )
    .unwrap_or_else(|e| panic!("child {name}: {e}"));
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

/// Checks a child's output `out`: where it printed a line containing
/// `skipped` (it could not set its case up here), prints that line as
/// `SKIPPED: ...`; otherwise fails unless it printed `ok`.
pub fn expect_child(out: &str, ok: &str, skipped: &str) {
    if let Some(line) = out.lines().find(|l| l.contains(skipped)) {
        println!("SKIPPED: {line}");
        return;
    }
    assert!(out.contains(ok), "the child did not print {ok:?}:\n{out}");
}

/// Runs `cmd` to its end and collects its output, as `Command::output`
/// does, but kills it and says so if it runs past [`CHILD_HANG`] (a deadlock
/// fails the test instead of hanging it).
pub fn output_or_kill(cmd: &mut Command) -> Result<Output, String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            break status;
        }
        if start.elapsed() > CHILD_HANG {
            let _ = child.kill();
            let _ = child.wait();
            // Both streams: whether the child's test had started at all
            // tells a hang in the test from one in starting the process.
            let text = |pipe: std::thread::JoinHandle<Vec<u8>>| {
                String::from_utf8_lossy(&pipe.join().unwrap_or_default()).into_owned()
            };
            let (out, err) = (text(stdout), text(stderr));
            return Err(format!(
                "hung for {CHILD_HANG:?} (deadlock?) and was killed; stdout:\n{out}\nstderr:\n{err}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
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
    let out = self_command()
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

/// A test that re-runs every test of the file (its binary) with the
/// default heaps on static trampolines (see
/// [`rerun_all_with_default_strategy`]); inside that run, it checks that
/// the global heap took the forced strategy.
#[macro_export]
macro_rules! rerun_file_with_static_trampolines {
    () => {
        /// The tests of this file that use the default heap (`Thunk::new`)
        /// run again, with the rest of the file, with the default heap on
        /// static trampolines.
        #[test]
        fn the_whole_file_again_with_static_trampolines_as_the_default() {
            if $crate::rerun_all_with_default_strategy(::wxthunk::Strategy::StaticTrampolines) {
                return;
            }
            if let Ok(s) = ::std::env::var($crate::STRATEGY_VAR) {
                assert_eq!(::wxthunk::Heap::global().unwrap().strategy().name(), s);
            }
        }
    };
}

/// The variable naming the program that runs this test binary when it is
/// not native (CI sets it to `qemu-aarch64 -cpu max` for the AArch64 build,
/// as cargo's runner): child processes of a test run through it too.
pub const RUNNER_VAR: &str = "WXTHUNK_TEST_RUNNER";

/// A command that runs this test binary again, through [`RUNNER_VAR`]'s
/// program when it is set (an emulator: the binary cannot be executed
/// directly on the host).
pub fn self_command() -> Command {
    command(std::env::current_exe().expect("test binary path"))
}

/// A command that runs `program`, a binary of this build (e.g. a crate's
/// `CARGO_BIN_EXE_*`), through [`RUNNER_VAR`]'s program when it is set.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let runner = std::env::var(RUNNER_VAR).unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Whether this test binary runs under an emulator ([`RUNNER_VAR`] is set).
pub fn emulated() -> bool {
    std::env::var_os(RUNNER_VAR).is_some_and(|r| !r.is_empty())
}

/// Under an emulator that refuses `strategy` (qemu-user runs stale code
/// after a rewrite through a dual mapping's other view, so the probe
/// refuses both dual mappings there), prints `SKIPPED: why` and returns
/// true. Natively it returns false whatever the probe says: a test that
/// needs the strategy then fails where it is refused, as it should.
///
/// Natively it does not probe: a test may set the process up (variables,
/// lockdowns) before the probe runs.
pub fn skipped_under_emulator(strategy: wxthunk::Strategy) -> bool {
    if !emulated() {
        return false;
    }
    let policy = wxthunk::probe();
    if policy.allows(strategy) {
        return false;
    }
    println!(
        "SKIPPED: {strategy} is refused under this emulator ({})",
        policy.check(strategy)
    );
    true
}
