//! What the policy probe asks of the kernel: read-only look-ups (`prctl`,
//! `/proc`, `/sys`) and one short-lived child that tries a
//! writable+executable mapping so that this process never has one.

use std::fs;
use std::io;
use std::ptr;

use libc::c_int;

use super::page_size;
use crate::sys::ChildRwx;

/// `prctl(PR_GET_MDWE)`: the memory-deny-write-execute flags of this process
/// (`PR_MDWE_REFUSE_EXEC_GAIN`, `PR_MDWE_NO_INHERIT`), or `None` when the
/// kernel has no MDWE (it answers `EINVAL` before Linux 6.3).
pub(crate) fn mdwe_flags() -> io::Result<Option<u32>> {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_GET_MDWE takes no pointers; the unused arguments must be 0.
    let ret = unsafe { libc::prctl(libc::PR_GET_MDWE, zero, zero, zero, zero) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(None);
        }
        return Err(err);
    }
    Ok(Some(ret as u32))
}

/// The `vm.memfd_noexec` sysctl (0, 1 or 2), if the kernel has it.
pub(crate) fn memfd_noexec_sysctl() -> Option<u8> {
    fs::read_to_string("/proc/sys/vm/memfd_noexec")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SELinux: `None` when it is absent, else whether it enforces and the
/// `deny_execmem` boolean (when readable).
pub(crate) fn selinux() -> Option<(bool, Option<bool>)> {
    let enforce = fs::read_to_string("/sys/fs/selinux/enforce").ok()?;
    let enforcing = enforce.trim() == "1";
    let deny_execmem = fs::read_to_string("/sys/fs/selinux/booleans/deny_execmem")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(|v| v == "1"));
    Some((enforcing, deny_execmem))
}

fn status_field(name: &str) -> Option<String> {
    // This thread's view: seccomp filters are per thread (a filter installed
    // on a thread other than the main one does not show in /proc/self).
    let status = fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| fs::read_to_string("/proc/self/status"))
        .ok()?;
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// The seccomp mode of this thread (0 off, 1 strict, 2 filter) and the number
/// of filters installed, from `/proc/thread-self/status`.
pub(crate) fn seccomp() -> Option<(u8, Option<u32>)> {
    let mode = status_field("Seccomp")?.parse().ok()?;
    let filters = status_field("Seccomp_filters").and_then(|f| f.parse().ok());
    Some((mode, filters))
}

/// The PaX flags of this process, on kernels patched with PaX.
pub(crate) fn pax_flags() -> Option<String> {
    status_field("PaX")
}

/// Asks a short-lived child process to map one page readable, writable and
/// executable at once, and reports what happened.
///
/// The child shares this process's restrictions (MDWE, seccomp filters and
/// the SELinux domain are inherited), so its answer is ours, yet the RWX
/// mapping never exists in this process.
pub(crate) fn rwx_mapping_in_child() -> ChildRwx {
    let page = page_size();
    // SAFETY: `clone` without CLONE_VM gives the child a copy of the address
    // space, like fork(). It skips pthread_atfork handlers, so the child must
    // not use locks that another thread may have held: it only makes raw
    // system calls (mmap, _exit) before it exits.
    let pid = unsafe {
        let zero: libc::c_long = 0;
        libc::syscall(
            libc::SYS_clone,
            libc::c_long::from(libc::SIGCHLD),
            zero,
            zero,
            zero,
            zero,
        )
    };
    if pid < 0 {
        return ChildRwx::NotTried(io::Error::last_os_error());
    }
    if pid == 0 {
        // In the child: only system calls from here.
        // SAFETY: a fresh anonymous mapping touches nothing that exists.
        let ret = unsafe {
            libc::mmap(
                ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let code = if ret == libc::MAP_FAILED {
            // Reading errno allocates nothing.
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(255)
                .clamp(1, 255)
        } else {
            0
        };
        // SAFETY: _exit ends the child at once, running nothing else.
        unsafe { libc::_exit(code) }
    }
    let pid = pid as libc::pid_t;
    let mut status: c_int = 0;
    loop {
        // SAFETY: `status` is a valid place for waitpid to write; `pid` is
        // our child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return ChildRwx::NotTried(err);
        }
    }
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => ChildRwx::Allowed,
            errno => ChildRwx::Refused(io::Error::from_raw_os_error(errno)),
        }
    } else if libc::WIFSIGNALED(status) {
        ChildRwx::Killed(libc::WTERMSIG(status))
    } else {
        ChildRwx::NotTried(io::Error::other(
            "the probe child neither exited nor was killed",
        ))
    }
}

/// Windows' process mitigation policies: none on Linux (its counterparts
/// are MDWE, SELinux and seccomp, reported above).
pub(crate) fn process_mitigations() -> [Option<bool>; 4] {
    [None; 4]
}
