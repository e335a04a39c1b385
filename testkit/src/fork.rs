//! Children made by copying the test process (libc `fork()`, raw
//! `SYS_fork`, raw `clone`), and waiting for them with a time-out, so that a
//! deadlocked child fails its test instead of hanging it.

use std::time::{Duration, Instant};

/// How long a child may take before it is taken for deadlocked (and
/// killed). Generous: the machine may be busy; a working child takes
/// milliseconds.
pub const HANG: Duration = Duration::from_secs(20);

/// [`HANG`], or 10 times as long under an emulator (a forked emulator is
/// slow to start, more so on a loaded machine): a deadlock is still caught.
fn hang() -> Duration {
    if crate::emulated() { HANG * 10 } else { HANG }
}

/// How a child is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkPath {
    /// libc `fork()`: `pthread_atfork` handlers run.
    Libc,
    /// `syscall(SYS_fork)`: no handler runs. Kernels without a `fork`
    /// system call (AArch64's) make the same copy with
    /// `clone(SIGCHLD)`, which is what [`ForkPath::RawClone`] does too.
    SysFork,
    /// `syscall(SYS_clone, SIGCHLD)` without `CLONE_VM`, as container
    /// runtimes do: no handler runs.
    RawClone,
}

/// Makes a child with `path`; the child runs `child` and leaves with
/// `_exit(code)` (101 on a panic). Returns the child's pid.
pub fn spawn(path: ForkPath, child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child runs only `child` and leaves with `_exit`, never
    // returning into the test harness; the parent gets the pid.
    let pid = unsafe {
        match path {
            ForkPath::Libc => libc::fork(),
            #[cfg(target_arch = "x86_64")]
            ForkPath::SysFork => libc::syscall(libc::SYS_fork) as libc::pid_t,
            #[cfg(not(target_arch = "x86_64"))]
            ForkPath::SysFork => raw_clone(),
            ForkPath::RawClone => raw_clone(),
        }
    };
    assert!(pid >= 0, "{path:?}: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: ends the child at once, running none of the parent's
        // destructors or exit handlers.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// `syscall(SYS_clone, SIGCHLD)`: a copy of the process without `CLONE_VM`.
///
/// # Safety
///
/// As for `fork()`: the child may only run async-signal-safe code until it
/// leaves with `_exit` (the caller's child closure is trusted with that).
unsafe fn raw_clone() -> libc::pid_t {
    let zero: libc::c_long = 0;
    // SAFETY: clone with only SIGCHLD (no CLONE_VM) duplicates the process
    // like fork; the caller's contract covers what the child runs.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_long::from(libc::SIGCHLD),
            zero,
            zero,
            zero,
            zero,
        ) as libc::pid_t
    }
}

/// Waits for `pid`: its exit code, or `Err` with what happened (killed by a
/// signal, or hung past [`HANG`] (natively), in which case it is killed).
pub fn wait(pid: libc::pid_t) -> Result<i32, String> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid place to write; `pid` is our child.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(ret >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if ret == pid {
            if libc::WIFEXITED(status) {
                return Ok(libc::WEXITSTATUS(status));
            }
            return Err(format!("killed by signal {}", libc::WTERMSIG(status)));
        }
        if start.elapsed() > hang() {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("hung for {:?} (deadlock?)", hang()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// libc-forks, runs `child` there, and returns its exit code (panics if it
/// was killed or hung).
pub fn fork_and_wait(child: impl FnOnce() -> i32) -> i32 {
    let pid = spawn(ForkPath::Libc, child);
    wait(pid).unwrap_or_else(|e| panic!("fork child: {e}"))
}
