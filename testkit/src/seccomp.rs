//! Seccomp filters that reproduce the lockdowns hardened services run
//! under, installed in a child process (they cannot be removed); see
//! [`Lockdown`](crate::Lockdown) for the whole lockdowns built from them.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Which system calls a filter refuses (with `EPERM`).
#[derive(Clone, Copy, Debug)]
pub enum Filter {
    /// `memfd_create` fails.
    NoMemfd,
    /// `membarrier` fails (the process-wide barrier the global heap's
    /// per-thread caches need).
    NoMembarrier,
    /// systemd's `MemoryDenyWriteExecute=`: `mmap` asking for write and
    /// exec together fails, and so does `mprotect`/`pkey_mprotect` asking
    /// for exec.
    SystemdWx,
    /// A sandbox that kills the process on any fork-like call: `fork`,
    /// `vfork`, and `clone` without `CLONE_THREAD` (threads still work).
    /// Install [`no_clone3`] too, so that glibc creates threads with `clone`.
    KillForks,
}

/// `clone3` fails with `ENOSYS` (its flags are behind a pointer, so a
/// filter cannot tell a thread from a fork; glibc then falls back to
/// `clone`), as container runtimes' default profiles do.
pub fn no_clone3() -> BpfProgram {
    let filter = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    filter.try_into().unwrap()
}

fn masked(arg: u8, mask: u64) -> SeccompRule {
    SeccompRule::new(vec![
        SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(mask),
            mask,
        )
        .unwrap(),
    ])
    .unwrap()
}

/// Compiles the filter (before any `fork`, so that a `pre_exec` hook only
/// has to install it).
pub fn program(filter: Filter) -> BpfProgram {
    let wx = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let x = libc::PROT_EXEC as u64;
    let rules: BTreeMap<i64, Vec<SeccompRule>> = match filter {
        Filter::NoMemfd => [(libc::SYS_memfd_create, vec![])].into(),
        Filter::NoMembarrier => [(libc::SYS_membarrier, vec![])].into(),
        Filter::SystemdWx => [
            (libc::SYS_mmap, vec![masked(2, wx)]),
            (libc::SYS_mprotect, vec![masked(2, x)]),
            (libc::SYS_pkey_mprotect, vec![masked(2, x)]),
        ]
        .into(),
        Filter::KillForks => {
            let no_thread_flag = SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
                    0,
                )
                .unwrap(),
            ])
            .unwrap();
            #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
            let mut rules = BTreeMap::from([(libc::SYS_clone, vec![no_thread_flag])]);
            // AArch64 has no fork or vfork system call: clone is the only way.
            #[cfg(target_arch = "x86_64")]
            rules.extend([(libc::SYS_fork, vec![]), (libc::SYS_vfork, vec![])]);
            rules
        }
    };
    let on_match = match filter {
        Filter::KillForks => SeccompAction::KillProcess,
        _ => SeccompAction::Errno(libc::EPERM as u32),
    };
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        on_match,
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    filter.try_into().unwrap()
}

/// Installs a compiled filter on the calling thread (with
/// `PR_SET_NO_NEW_PRIVS`, which seccomp requires of unprivileged callers).
pub fn install(program: &BpfProgram) -> std::io::Result<()> {
    seccompiler::apply_filter(program).map_err(std::io::Error::other)
}
