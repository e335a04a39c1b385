//! Control Flow Guard's call targets, registered where they are made
//! (`sys/windows/cfg.rs`): checked under its test switch, which records
//! what the system would be asked, since Wine has no CFG. Windows only
//! (the registration is Windows'); here, at the top layer, because it
//! makes thunks, spans and blocks.

use std::io::Write;

use crate::block::Block;
use crate::heap::Heap;
use crate::strategy::Strategy;
use crate::sys::{self, SIMULATE_CFG_VAR};

/// `mov eax, 5; ret`.
const RET_5: [u8; 6] = [0xb8, 5, 0, 0, 0, 0xc3];

#[test]
fn simulated_cfg_registers_every_entry_and_unregisters_it() {
    let name = format!(
        "{}::simulated_cfg_registers_every_entry_and_unregisters_it",
        module_path!().trim_start_matches("wxthunk::")
    );
    // In a child process of its own (the switch is read once): this
    // test binary again, with the switch and only this test.
    if std::env::var_os(SIMULATE_CFG_VAR).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([&name, "--exact", "--nocapture", "--test-threads=1"])
            .env(SIMULATE_CFG_VAR, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("--- child ---\n{stdout}{stderr}---");
        assert!(out.status.success(), "{}", out.status);
        assert!(stdout.contains("CFG-SIMULATED-OK") && stdout.contains("1 passed"));
        return;
    }
    {
        assert!(sys::call_targets_registered());
        let policy = crate::policy::probe();
        assert!(policy.mitigations.call_targets_registered);
        assert!(
            policy.to_string().contains("registered as made"),
            "{policy}"
        );
        let valid = 1; // CFG_CALL_TARGET_VALID
        // (absolute address, flags) of every registration from `from`.
        let since = |from: usize| -> Vec<(usize, usize, bool)> {
            sys::recorded_call_targets()[from..]
                .iter()
                .map(|r| {
                    assert_eq!(r.entries.len(), 1, "{r:?}");
                    let (offset, flags) = r.entries[0];
                    assert!(offset % 16 == 0 && offset < r.len, "{r:?}");
                    (r.base + offset, flags, r.view)
                })
                .collect()
        };
        for strategy in [Strategy::DualMap, Strategy::Protect] {
            let heap = Heap::builder().strategy(strategy).build().unwrap();
            let mark = sys::recorded_call_targets().len();
            let k = std::hint::black_box(40u64);
            let thunks: Vec<_> = (0..3u64)
                .map(|i| {
                    heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x| k + i + x)
                        .unwrap()
                })
                .collect();
            for (i, t) in thunks.iter().enumerate() {
                // SAFETY: alive; the arguments match its type.
                assert_eq!(unsafe { t.as_fn()(2) }, 42 + i as u64);
            }
            let view = strategy == Strategy::DualMap;
            let want: Vec<_> = thunks
                .iter()
                .map(|t| (t.as_fn() as usize, valid, view))
                .collect();
            assert_eq!(since(mark), want, "{strategy}");
            let gone = thunks[1].as_fn() as usize;
            let mark = sys::recorded_call_targets().len();
            drop(thunks);
            assert!(
                since(mark).contains(&(gone, 0, view)),
                "{strategy}: {:?}",
                since(mark)
            );
            // A span's start.
            let mut span = heap.alloc(64).unwrap();
            span.write_all(&RET_5).unwrap();
            let mark = sys::recorded_call_targets().len();
            let x = span.exec().unwrap();
            let start = x.as_ptr() as usize;
            assert_eq!(since(mark), [(start, valid, view)], "{strategy}");
            println!("{strategy}: thunks, their frees and a span start registered");
        }
        // Unguarded code keeps Windows' default: nothing registered.
        let heap = Heap::builder().branch_protection(false).build().unwrap();
        let mark = sys::recorded_call_targets().len();
        let k = std::hint::black_box(1u64);
        let t = heap
            .thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x| k + x)
            .unwrap();
        // SAFETY: alive; the arguments match its type.
        assert_eq!(unsafe { t.as_fn()(1) }, 2);
        assert_eq!(since(mark), []);
        // A guarded block's start.
        let mut b = Block::new(16).unwrap();
        b.set_branch_protection(true);
        b.write_all(&RET_5).unwrap();
        let mark = sys::recorded_call_targets().len();
        let x = b.exec().unwrap();
        assert_eq!(since(mark), [(x.as_ptr() as usize, valid, false)]);
        println!("CFG-SIMULATED-OK");
    }
}
