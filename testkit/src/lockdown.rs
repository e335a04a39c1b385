//! The lockdowns hardened services run under, entered by a child process
//! before it touches wxthunk, and the harness that runs a test body inside
//! one: the one place the tests (and the CLI's tests) set up MDWE and
//! seccomp.

use std::io;

use seccompiler::BpfProgram;

use crate::child::in_child_with_env;
use crate::seccomp::{self, Filter};

/// A lockdown: what a process can no longer do once it entered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lockdown {
    /// (a) `PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN)`: no writable+executable
    /// mapping, no mapping gains exec.
    Mdwe,
    /// (b) a seccomp filter refusing `memfd_create` (`EPERM`), plus MDWE.
    NoMemfdMdwe,
    /// (c) systemd's `MemoryDenyWriteExecute=` rule set: no `mmap` with
    /// write and exec, no `mprotect` adding exec.
    SystemdWx,
    /// (d) a sandbox that kills the process on any fork-like call (threads
    /// still work).
    KillForks,
    /// (e) a seccomp filter refusing `memfd_create` alone: `mprotect` still
    /// works.
    NoMemfd,
}

impl Lockdown {
    /// The lockdowns under which wxthunk must run code (every one but
    /// [`KillForks`](Lockdown::KillForks), which is about the probe).
    pub const FOR_CODE: [Lockdown; 4] = [
        Lockdown::Mdwe,
        Lockdown::NoMemfdMdwe,
        Lockdown::SystemdWx,
        Lockdown::NoMemfd,
    ];

    /// A short description, for test output.
    pub fn name(self) -> &'static str {
        match self {
            Lockdown::Mdwe => "(a) PR_SET_MDWE",
            Lockdown::NoMemfdMdwe => "(b) memfd_create refused + PR_SET_MDWE",
            Lockdown::SystemdWx => "(c) systemd MemoryDenyWriteExecute=",
            Lockdown::KillForks => "(d) fork-like calls kill",
            Lockdown::NoMemfd => "(e) memfd_create refused",
        }
    }

    fn mdwe(self) -> bool {
        matches!(self, Lockdown::Mdwe | Lockdown::NoMemfdMdwe)
    }

    /// The seccomp programs to install, compiled now (before any fork, so
    /// that a `pre_exec` hook only has to install them).
    fn programs(self) -> Vec<BpfProgram> {
        match self {
            Lockdown::Mdwe => vec![],
            Lockdown::NoMemfdMdwe | Lockdown::NoMemfd => vec![seccomp::program(Filter::NoMemfd)],
            Lockdown::SystemdWx => vec![seccomp::program(Filter::SystemdWx)],
            // glibc then creates threads with `clone`, which the filter can
            // tell from a fork.
            Lockdown::KillForks => vec![seccomp::no_clone3(), seccomp::program(Filter::KillForks)],
        }
    }

    /// Puts this process (this thread's filters, the process's MDWE) into
    /// the lockdown, for good.
    ///
    /// # Errors
    ///
    /// Why this kernel cannot (no MDWE before Linux 6.3).
    pub fn enter(self) -> Result<(), String> {
        if self.mdwe() && !set_mdwe() {
            return Err(NO_MDWE.into());
        }
        for program in self.programs() {
            seccomp::install(&program).map_err(|e| format!("seccomp: {e}"))?;
        }
        Ok(())
    }

    /// A hook for `CommandExt::pre_exec` that enters the lockdown in the
    /// forked child before it runs the command. Spawning fails with
    /// `EINVAL` where the kernel has no MDWE.
    pub fn pre_exec_hook(self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let programs = self.programs();
        let mdwe = self.mdwe();
        move || {
            if mdwe {
                let zero: libc::c_ulong = 0;
                let flags = libc::PR_MDWE_REFUSE_EXEC_GAIN as libc::c_ulong;
                // SAFETY: PR_SET_MDWE takes flags by value and no pointers.
                if unsafe { libc::prctl(libc::PR_SET_MDWE, flags, zero, zero, zero) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for program in &programs {
                seccomp::install(program)?;
            }
            Ok(())
        }
    }
}

const UNAVAILABLE: &str = "LOCKDOWN-UNAVAILABLE:";
const DONE: &str = "LOCKDOWN-BODY-DONE";

/// Runs `body` in a child process (see [`in_child`]) that first enters
/// `lockdown`. In the parent: the child's output, or `None` after printing
/// a `SKIPPED:` line when this kernel cannot set the lockdown up; `None`
/// in the child. Fails the test if the body did not run to its end.
pub fn run_locked(name: &str, lockdown: Lockdown, body: impl FnOnce()) -> Option<String> {
    run_locked_with_env::<&str>(name, lockdown, &[], body)
}

/// [`run_locked`], with the environment variables `env` set in the child.
pub fn run_locked_with_env<V: AsRef<std::ffi::OsStr>>(
    name: &str,
    lockdown: Lockdown,
    env: &[(&str, V)],
    body: impl FnOnce(),
) -> Option<String> {
    let out = in_child_with_env(name, env, || {
        if let Err(why) = lockdown.enter() {
            println!("{UNAVAILABLE} {why}");
            return;
        }
        body();
        println!("{DONE}");
    })?;
    // The marker may follow libtest's `test NAME ... ` on its line.
    if let Some(why) = out.lines().find_map(|l| l.split_once(UNAVAILABLE)) {
        println!(
            "SKIPPED: lockdown {} cannot be set up here ({}): {name} not checked",
            lockdown.name(),
            why.1.trim()
        );
        return None;
    }
    assert!(
        out.contains(DONE),
        "{name} under {}: the body did not finish:\n{out}",
        lockdown.name()
    );
    Some(out)
}

/// Why [`set_mdwe`] returned false. Under an emulator it is the emulator:
/// qemu-user 7.2 answers `PR_SET_MDWE` with `EINVAL` itself rather than pass
/// it to the kernel (and MDWE set on the emulator would stop its own code
/// generation).
pub const NO_MDWE: &str = "this kernel, or the emulator running the test, has no PR_SET_MDWE";

/// Turns on `PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN)` for this process.
/// Returns false if the kernel has no MDWE ([`NO_MDWE`]).
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
    let err = io::Error::last_os_error();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EINVAL),
        "PR_SET_MDWE failed: {err}"
    );
    false
}
