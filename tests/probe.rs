//! `probe()`: found by trying, consistent with what the library does, cheap
//! after the first call.
#![cfg(target_os = "linux")]

use wxthunk::{Block, Check, Policy, Strategy};

#[test]
fn probe_is_cached() {
    let a: *const Policy = wxthunk::probe();
    let b: *const Policy = wxthunk::probe();
    assert_eq!(a, b, "the second call returns the same cached report");
}

#[test]
fn probe_reports_this_machine() {
    let p = wxthunk::probe();
    println!("{p}");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    assert_eq!(p.page_size, page);
    assert_eq!(p.page_size, wxthunk::page_size());
    assert_eq!(p.os, "linux");
    assert_eq!(p.arch, std::env::consts::ARCH);
    // Each check was tried: on Linux nothing is left unknown.
    for (name, c) in [
        ("mprotect", &p.mprotect_exec),
        ("dual", &p.dual_mapping),
        ("rwx", &p.rwx_mapping),
    ] {
        assert!(!matches!(c, Check::Unknown { .. }), "{name}: {c}");
    }
    // The chosen strategies are ones that work, in the documented order.
    if p.allows(Strategy::Protect) {
        assert_eq!(p.block_strategy, Some(Strategy::Protect));
    }
    if p.allows(Strategy::DualMap) {
        assert_eq!(p.heap_strategy, Some(Strategy::DualMap));
        assert!(p.memfd_noexec_seal.is_some());
    }
    for s in [p.block_strategy, p.heap_strategy].into_iter().flatten() {
        assert!(p.allows(s));
    }
    assert_eq!(Block::new(0).ok().map(|b| b.strategy()), p.block_strategy);
    // The report says what it chose and why.
    let text = p.to_string();
    assert!(text.contains("Block strategy"));
    assert!(text.contains("heap strategy"));
    assert!(!p.notes.is_empty());
}

#[test]
fn detect_agrees_with_the_cached_probe() {
    let fresh = Policy::detect();
    let cached = wxthunk::probe();
    assert_eq!(fresh.mprotect_exec, cached.mprotect_exec);
    assert_eq!(fresh.dual_mapping, cached.dual_mapping);
    assert_eq!(fresh.rwx_mapping, cached.rwx_mapping);
    assert_eq!(fresh.mdwe, cached.mdwe);
    assert_eq!(fresh.block_strategy, cached.block_strategy);
}
