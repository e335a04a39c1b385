//! Hardened processes, for real: each test re-runs itself in a child process
//! that locks itself down first, then uses the library end to end.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;

use support::{Lockdown, code};
use wxthunk::{Block, Check, Error, Mdwe, Strategy};

#[test]
fn blocks_work_under_mdwe() {
    let Some(out) = support::run_locked("blocks_work_under_mdwe", Lockdown::Mdwe, || {
        let policy = wxthunk::probe();
        println!("{policy}");
        assert!(
            matches!(policy.mdwe, Mdwe::RefuseExecGain { inherited: true }),
            "{:?}",
            policy.mdwe
        );
        assert!(
            matches!(policy.mprotect_exec, Check::Refused { .. }),
            "{}",
            policy.mprotect_exec
        );
        assert!(
            matches!(policy.rwx_mapping, Check::Refused { .. }),
            "{}",
            policy.rwx_mapping
        );
        assert!(policy.dual_mapping.is_allowed(), "{}", policy.dual_mapping);
        assert_eq!(policy.block_strategy, Some(Strategy::DualMap));
        assert!(policy.notes.iter().any(|n| n.contains("MDWE is on")));

        // Allocate, write, seal, run, re-JIT, run.
        let mut b = Block::new(64).unwrap();
        assert_eq!(b.strategy(), Strategy::DualMap);
        let at = b.exec_ptr();
        b.write_all(&code::ret_u32(7)).unwrap();
        let x = b.exec().unwrap();
        assert_eq!(x.as_ptr(), at);
        // SAFETY: offset 0 holds testkit's code returning 7.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 7);
        let mut b = x.into_writable().unwrap();
        let nine = code::ret_u32(9);
        b.as_mut_slice()[..nine.len()].copy_from_slice(&nine);
        let x = b.exec().unwrap();
        // SAFETY: as above, patched.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 9);

        // Forcing the refused strategy is a clear error, and nothing breaks.
        match Block::with_strategy(0, Strategy::Protect) {
            Err(Error::StrategyUnavailable {
                strategy: Strategy::Protect,
                reason,
            }) => {
                println!("forcing protect: {reason}");
            }
            other => panic!("forcing protect under MDWE: {other:?}"),
        }
        assert_eq!(f(), 9);
        assert!(support::maps::wx_mappings().is_empty());
        println!("MDWE-OK strategy={}", x.strategy());
    }) else {
        return;
    };
    assert!(out.contains("MDWE-OK strategy=dual-map"), "{out}");
}

#[test]
fn heaps_work_under_mdwe() {
    support::run_locked("heaps_work_under_mdwe", Lockdown::Mdwe, || {
        let policy = wxthunk::probe();
        assert_eq!(policy.heap_strategy, Some(Strategy::DualMap), "{policy}");
        for (name, heap) in [
            ("default", wxthunk::Heap::new().unwrap()),
            (
                "strict",
                wxthunk::Heap::builder().strict(true).build().unwrap(),
            ),
        ] {
            assert_eq!(heap.strategy(), Strategy::DualMap);
            let spans: Vec<_> = (0..300u32)
                .map(|v| {
                    let mut s = heap.alloc(6 + v as usize % 100).unwrap();
                    s.write_all(&code::ret_u32(v)).unwrap();
                    s.exec().unwrap()
                })
                .collect();
            let mut page = heap.allocate_page().unwrap();
            page.write_all(&code::ret_u32(1000)).unwrap();
            let page = page.exec().unwrap();
            for (v, s) in spans.iter().enumerate() {
                // SAFETY: each span starts with `mov eax, v; ret`.
                let f: extern "C" fn() -> u32 = unsafe { s.func(0).unwrap() };
                assert_eq!(f(), v as u32, "{name}");
            }
            // SAFETY: as above.
            let f: extern "C" fn() -> u32 = unsafe { page.func(0).unwrap() };
            assert_eq!(f(), 1000);
            drop(spans);
            drop(page);
            heap.compact();
            assert_eq!(heap.stats().regions, 0);
        }
        match wxthunk::Heap::builder().strategy(Strategy::Protect).build() {
            Err(Error::StrategyUnavailable {
                strategy: Strategy::Protect,
                ..
            }) => {}
            other => panic!("forcing protect under MDWE: {other:?}"),
        }
        assert!(support::maps::wx_mappings().is_empty());
    });
}

/// Sets the `READ_IMPLIES_EXEC` personality on this process.
fn set_read_implies_exec() {
    // SAFETY: querying the personality has no preconditions.
    let old = unsafe { libc::personality(0xffff_ffff) };
    assert!(old != -1);
    // SAFETY: adds one flag to this process's personality; nothing else.
    let ret = unsafe { libc::personality((old | libc::READ_IMPLIES_EXEC) as libc::c_ulong) };
    assert!(
        ret != -1,
        "personality: {}",
        std::io::Error::last_os_error()
    );
}

/// Asserts that none of wxthunk's memfd mappings is writable and executable.
fn no_wx_memfd_mapping() {
    let wx: Vec<_> = support::maps::read()
        .into_iter()
        .filter(|m| m.name.contains("wxthunk") && m.writable_and_executable())
        .collect();
    assert!(wx.is_empty(), "{wx:?}");
}

#[test]
fn read_implies_exec_set_before_first_use_refuses_every_strategy() {
    let Some(out) = support::in_child(
        "read_implies_exec_set_before_first_use_refuses_every_strategy",
        || {
            set_read_implies_exec();
            let policy = wxthunk::probe();
            println!("{policy}");
            assert!(policy.read_implies_exec);
            for s in Strategy::ALL {
                assert!(!policy.allows(*s), "{s} allowed under READ_IMPLIES_EXEC");
            }
            assert_eq!(policy.block_strategy, None);
            assert_eq!(policy.thunk_strategy, None);
            assert!(
                policy.notes.iter().any(|n| n.contains("READ_IMPLIES_EXEC")),
                "{:?}",
                policy.notes
            );
            let e = Block::new(64).unwrap_err();
            let why = support::error_chain(&e);
            // Said once, not once per strategy.
            assert_eq!(
                why.matches("READ_IMPLIES_EXEC personality").count(),
                1,
                "{why}"
            );
            let e = wxthunk::Heap::new().unwrap_err();
            assert!(
                support::error_chain(&e).contains("READ_IMPLIES_EXEC"),
                "{e}"
            );
            let e = wxthunk::Thunk::<unsafe extern "C" fn() -> u32>::new(|| 1).unwrap_err();
            assert!(
                support::error_chain(&e).contains("READ_IMPLIES_EXEC"),
                "{e}"
            );
            no_wx_memfd_mapping();
            println!("REFUSED-ALL");
        },
    ) else {
        return;
    };
    assert!(out.contains("REFUSED-ALL"), "{out}");
}

#[test]
fn read_implies_exec_set_later_refuses_new_writable_mappings_and_keeps_live_code() {
    let Some(out) = support::in_child(
        "read_implies_exec_set_later_refuses_new_writable_mappings_and_keeps_live_code",
        || {
            let policy = wxthunk::probe();
            assert!(!policy.read_implies_exec);
            // A runtime capture: code on the heap, made before the change.
            let one = std::hint::black_box(1u32);
            let t = wxthunk::Thunk::<unsafe extern "C" fn(u32) -> u32>::new(move |v: u32| v + one)
                .unwrap();
            assert!(!t.code().is_empty(), "a capture-free closure tests no heap");
            let heaps: Vec<wxthunk::Heap> = [Strategy::DualMap, Strategy::Protect]
                .into_iter()
                .filter(|&s| policy.allows(s))
                .map(|s| wxthunk::Heap::builder().strategy(s).build().unwrap())
                .collect();
            set_read_implies_exec();
            // SAFETY: `t` is alive; made before the change, it still runs.
            assert_eq!(unsafe { (t.as_fn())(41) }, 42);
            // Blocks and new heap regions need a new writable mapping: refused.
            for s in [Strategy::DualMap, Strategy::Protect] {
                if !policy.allows(s) {
                    continue;
                }
                let e = Block::with_strategy(64, s).unwrap_err();
                assert!(
                    support::error_chain(&e).contains("READ_IMPLIES_EXEC"),
                    "{s}: {e}"
                );
            }
            for heap in &heaps {
                // Refused where the writable mapping is made: a dual-mapped
                // region's view at `alloc`, a protect page at `exec`.
                let e = heap
                    .alloc(16)
                    .and_then(|mut s| {
                        s.write_all(&code::ret_u32(1)).unwrap();
                        s.exec()
                    })
                    .unwrap_err();
                assert!(
                    support::error_chain(&e).contains("READ_IMPLIES_EXEC"),
                    "{}: {e}",
                    heap.strategy()
                );
                assert_eq!(heap.stats().live_allocations, 0);
            }
            assert!(wxthunk::Policy::detect().read_implies_exec);
            no_wx_memfd_mapping();
            // SAFETY: still alive.
            assert_eq!(unsafe { (t.as_fn())(1) }, 2);
            println!("REFUSED-LATER");
        },
    ) else {
        return;
    };
    assert!(out.contains("REFUSED-LATER"), "{out}");
}

#[test]
fn a_refused_seal_hands_the_span_and_the_block_back_intact() {
    let name = "a_refused_seal_hands_the_span_and_the_block_back_intact";
    let Some(out) = support::in_child(name, || {
        if !wxthunk::probe().allows(Strategy::Protect) {
            println!("SKIPPED: mprotect to exec is refused here already; no seal to make fail");
            return;
        }
        let heap = wxthunk::Heap::builder()
            .strategy(Strategy::Protect)
            .build()
            .unwrap();
        let mut span = heap.alloc(64).unwrap();
        span.write_all(&code::ret_u32(5)).unwrap();
        let mut block = Block::with_strategy(64, Strategy::Protect).unwrap();
        block.write_all(&code::ret_u32(6)).unwrap();
        // From now on making written memory executable is refused, so both
        // seals fail for real.
        if !support::set_mdwe() {
            println!("SKIPPED: {}; cannot make a seal fail", support::NO_MDWE);
            return;
        }
        let err = span.try_exec().unwrap_err();
        let chain = support::error_chain(&err);
        assert!(chain.contains("PROT_EXEC"), "{chain}");
        let span = err.into_inner();
        assert_eq!(span.as_slice(), &code::ret_u32(5)[..]);
        assert_eq!(heap.stats().live_allocations, 1);
        drop(span);
        assert_eq!(heap.stats().live_allocations, 0);

        let err = block.exec().unwrap_err();
        let chain = support::error_chain(&err);
        assert!(chain.contains("PROT_EXEC"), "{chain}");
        let block = err.into_inner();
        assert_eq!(block.as_slice(), &code::ret_u32(6)[..]);
        assert_eq!(block.strategy(), Strategy::Protect);
        println!("SEALS-REFUSED {chain}");
    }) else {
        return;
    };
    assert!(
        out.contains("SEALS-REFUSED") || out.contains("SKIPPED"),
        "{out}"
    );
}
