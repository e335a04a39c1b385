//! Dual mapping on Windows, under Wine in CI (`.ci/windows`): a
//! pagefile-backed section per region with a writable view and a read+exec
//! view (`sys/windows/section.rs`), seen through the process's runs of
//! pages: where code runs, what stays closed, what is never writable and
//! executable; and a block that keeps one section for its life.
#![cfg(all(windows, target_arch = "x86_64"))]

use wxthunk_testkit as support;

use std::io::Write;

use wxthunk::{Block, Heap, Strategy};

/// The runs of pages of the allocation (a view, here) that holds `addr`.
fn runs_of_allocation(addr: usize) -> Vec<support::maps::Mapping> {
    let base = support::maps::mapping_at(addr).expect("mapped");
    let all = support::maps::read();
    // The runs that belong to the same view: contiguous section runs
    // around `addr` (VirtualQuery splits a view by protection only).
    let i = all.iter().position(|m| m.contains(addr)).unwrap();
    let mut first = i;
    while first > 0 && all[first - 1].name == base.name && all[first - 1].end == all[first].start {
        first -= 1;
    }
    let mut last = i;
    while last + 1 < all.len()
        && all[last + 1].name == base.name
        && all[last + 1].start == all[last].end
    {
        last += 1;
    }
    all[first..=last].to_vec()
}

/// Dual mapping on Windows is a pagefile-backed section with two views:
/// thunks run from the read+exec view (a `section` run, never writable),
/// pages of it that no code was written on stay inaccessible, the
/// writable view is never executable, and a strict heap (no writable
/// view: each write maps one for the moment) works the same. Thunks
/// capture runtime values, so each is heap code, over several pages.
#[test]
fn dual_mapping_runs_code_from_a_section_view_never_writable() {
    if !wxthunk::probe().allows(Strategy::DualMap) {
        println!(
            "SKIPPED: dual mapping is refused here: {}",
            wxthunk::probe()
        );
        return;
    }
    for strict in [false, true] {
        let heap = Heap::builder()
            .strategy(Strategy::DualMap)
            .strict(strict)
            .build()
            .unwrap();
        let base = std::hint::black_box(1000u64);
        let thunks: Vec<_> = (0..300u64)
            .map(|i| {
                heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x| base + i * x)
                    .unwrap()
            })
            .collect();
        for (i, t) in thunks.iter().enumerate() {
            // SAFETY: the thunk is alive; the arguments match its type.
            assert_eq!(unsafe { t.as_fn()(2) }, 1000 + 2 * i as u64);
        }
        let at = thunks[0].as_fn() as usize;
        let m = support::maps::mapping_at(at).unwrap();
        assert_eq!(
            (m.perms.as_str(), m.name.as_str()),
            ("r-xp", "section"),
            "{m:?}"
        );
        let runs = runs_of_allocation(at);
        assert!(
            runs.iter().all(|r| r.perms == "r-xp" || r.perms == "---p"),
            "strict={strict}: {runs:?}"
        );
        assert!(
            runs.iter().any(|r| r.perms == "---p"),
            "pages never written stay closed (strict={strict}): {runs:?}"
        );
        let sections: Vec<_> = support::maps::read()
            .into_iter()
            .filter(|m| m.name == "section")
            .collect();
        assert!(
            sections.iter().all(|m| !m.writable_and_executable()),
            "{sections:?}"
        );
        // The writable view (a strict heap maps one only while writing).
        if !strict {
            assert!(sections.iter().any(|m| m.perms == "rw-p"), "{sections:?}");
        }
        // Freed and made again: the granules are reused and run the new
        // closures.
        drop(thunks);
        let again: Vec<_> = (0..300u64)
            .map(|i| {
                heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x| base - i + x)
                    .unwrap()
            })
            .collect();
        for (i, t) in again.iter().enumerate() {
            // SAFETY: the thunk is alive; the arguments match its type.
            assert_eq!(unsafe { t.as_fn()(5) }, 1005 - i as u64);
        }
    }
}

/// A dual-mapped block on Windows has one section for its life: while
/// writable its code's view is closed, sealed it runs there (read+exec)
/// with no writable view left, and re-JIT keeps the address.
#[test]
fn a_dual_mapped_block_reseals_at_the_same_address() {
    if !wxthunk::probe().allows(Strategy::DualMap) {
        println!(
            "SKIPPED: dual mapping is refused here: {}",
            wxthunk::probe()
        );
        return;
    }
    let mut b = Block::with_strategy(64, Strategy::DualMap).unwrap();
    let at = b.exec_ptr() as usize;
    assert_eq!(support::maps::mapping_at(at).unwrap().perms, "---p");
    b.write_all(&support::code::ret_u32(7)).unwrap();
    let x = b.exec().unwrap();
    assert_eq!(x.as_ptr() as usize, at);
    let m = support::maps::mapping_at(at).unwrap();
    assert_eq!((m.perms.as_str(), m.name.as_str()), ("r-xp", "section"));
    // SAFETY: offset 0 holds `mov eax, 7; ret`.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    assert_eq!(f(), 7);
    let mut b = x.into_writable().unwrap();
    assert_eq!(support::maps::mapping_at(at).unwrap().perms, "---p");
    b.clear();
    b.write_all(&support::code::ret_u32(8)).unwrap();
    let x = b.exec().unwrap();
    assert_eq!(x.as_ptr() as usize, at);
    // SAFETY: offset 0 holds `mov eax, 8; ret`.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    assert_eq!(f(), 8);
}
