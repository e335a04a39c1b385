//! Hardened processes, for real: each test re-runs itself in a child process
//! that locks itself down first, then uses the library end to end.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod support;

use std::io::Write;

use support::code;
use wxthunk::{Block, Check, Error, Mdwe, Strategy};

#[test]
fn blocks_work_under_mdwe() {
    let Some(out) = support::in_child("blocks_work_under_mdwe", || {
        if !support::set_mdwe() {
            println!("MDWE-UNSUPPORTED");
            return;
        }
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
        // SAFETY: offset 0 holds `mov eax, 7; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 7);
        let mut b = x.into_writable().unwrap();
        b.as_mut_slice()[1] = 9;
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
    if out.contains("MDWE-UNSUPPORTED") {
        println!("this kernel has no PR_SET_MDWE: could not check blocks under MDWE");
        return;
    }
    assert!(out.contains("MDWE-OK strategy=dual-map"), "{out}");
}

#[test]
fn heaps_work_under_mdwe() {
    let Some(out) = support::in_child("heaps_work_under_mdwe", || {
        if !support::set_mdwe() {
            println!("MDWE-UNSUPPORTED");
            return;
        }
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
        println!("MDWE-HEAP-OK");
    }) else {
        return;
    };
    if out.contains("MDWE-UNSUPPORTED") {
        println!("this kernel has no PR_SET_MDWE: could not check heaps under MDWE");
        return;
    }
    assert!(out.contains("MDWE-HEAP-OK"), "{out}");
}
