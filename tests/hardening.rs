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
