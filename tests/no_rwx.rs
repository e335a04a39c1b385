//! No mapping is ever writable and executable at once, and dropped blocks
//! leave nothing behind. One test in this binary, so that only its own
//! threads change the address space while it looks.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::{code, maps};
use wxthunk::{Block, Strategy};

#[test]
fn no_rwx_mapping_while_two_threads_churn_blocks_and_none_left_behind() {
    let strategies: Vec<Strategy> = Strategy::ALL
        .iter()
        .copied()
        .filter(|&s| s.writes_code() && wxthunk::probe().allows(s))
        .collect();
    let done = AtomicBool::new(false);
    let scans = AtomicUsize::new(0);
    let mut seen = Vec::new();
    std::thread::scope(|scope| {
        let scanner = scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let wx = maps::wx_mappings();
                assert!(wx.is_empty(), "writable+executable mapping: {wx:?}");
                scans.fetch_add(1, Ordering::Relaxed);
            }
        });
        let workers: Vec<_> = (0..2u32)
            .map(|t| {
                let strategies = &strategies;
                scope.spawn(move || {
                    let mut addrs = Vec::new();
                    for i in 0..300u32 {
                        let s = strategies[i as usize % strategies.len()];
                        let mut b =
                            Block::with_strategy(1 + (i as usize * 97) % 20_000, s).unwrap();
                        addrs.push(b.exec_ptr() as usize);
                        let v = t * 1000 + i;
                        b.write_all(&code::ret_u32(v)).unwrap();
                        let x = b.exec().unwrap();
                        // SAFETY: offset 0 holds testkit's code returning `v`.
                        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
                        assert_eq!(f(), v);
                        if i % 50 == 0 {
                            // The probe asks its RWX question in a child
                            // process, never here.
                            let policy = wxthunk::Policy::detect();
                            assert_eq!(policy.block_strategy, wxthunk::probe().block_strategy);
                        }
                        if i % 3 == 0 {
                            let mut b = x.into_writable().unwrap();
                            let patched = code::ret_u32(v ^ 1);
                            b.as_mut_slice()[..patched.len()].copy_from_slice(&patched);
                            let x = b.exec().unwrap();
                            // SAFETY: as above, patched.
                            let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
                            assert_eq!(f(), v ^ 1);
                        }
                    }
                    addrs
                })
            })
            .collect();
        for w in workers {
            seen.extend(w.join().unwrap());
        }
        done.store(true, Ordering::Release);
        scanner.join().unwrap();
    });
    let scans = scans.load(Ordering::Relaxed);
    println!(
        "{} blocks, {scans} scans of /proc/self/maps, no W+X mapping seen",
        seen.len()
    );
    assert!(scans > 0);

    // Every block is gone: none of their addresses is still mapped as code,
    // and no code file of ours (a memfd, or a file in a directory) is
    // mapped.
    let after = maps::read();
    let files: Vec<_> = after.iter().filter(|m| m.is_code_file()).collect();
    assert!(files.is_empty(), "code file mappings left: {files:?}");
    let exec_left: Vec<_> = seen
        .iter()
        .filter_map(|&a| {
            after
                .iter()
                .find(|m| m.contains(a) && m.perms.contains('x'))
        })
        .collect();
    assert!(
        exec_left.is_empty(),
        "executable mappings left behind: {exec_left:?}"
    );
}
