//! Seccomp filters that reproduce the lockdowns hardened services run
//! under, installed in a child process (they cannot be removed).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Which system calls a filter refuses (with `EPERM`).
#[derive(Clone, Copy, Debug)]
pub enum Lockdown {
    /// `memfd_create` fails.
    NoMemfd,
    /// systemd's `MemoryDenyWriteExecute=`: `mmap` asking for write and
    /// exec together fails, and so does `mprotect`/`pkey_mprotect` asking
    /// for exec.
    SystemdWx,
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
pub fn program(lockdown: Lockdown) -> BpfProgram {
    let wx = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let x = libc::PROT_EXEC as u64;
    let rules: BTreeMap<i64, Vec<SeccompRule>> = match lockdown {
        Lockdown::NoMemfd => [(libc::SYS_memfd_create, vec![])].into(),
        Lockdown::SystemdWx => [
            (libc::SYS_mmap, vec![masked(2, wx)]),
            (libc::SYS_mprotect, vec![masked(2, x)]),
            (libc::SYS_pkey_mprotect, vec![masked(2, x)]),
        ]
        .into(),
    };
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
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
