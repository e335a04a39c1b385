//! Branch protection (AArch64's BTI): heaps and static trampolines map
//! their code guarded where the kernel offers it, blocks only when asked.
//! A call through a pointer to guarded code without a landing pad then
//! faults (SIGILL); with one it runs; unguarded code runs either way.
//! Where nothing is guarded (x86_64, or an AArch64 kernel or CPU without
//! BTI) the tests check that every kind of code runs and say SKIPPED for
//! the faults.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;

use support::code;
use support::fork::{ForkPath, spawn, wait};
use wxthunk::{Block, Heap};

/// `extern "C" fn() -> u32` returning 7 without a landing pad: testkit's
/// code with its `bti c` taken off on AArch64 (x86_64's has none).
fn without_landing_pad() -> Vec<u8> {
    let with = code::ret_u32(7);
    match with.strip_prefix(code::LANDING_PAD) {
        Some(rest) if cfg!(target_arch = "aarch64") => rest.to_vec(),
        _ => with,
    }
}

/// Calls `f` in a forked child: `Ok(0)` if it returned 7, `Err` naming
/// the signal that ended the child otherwise.
fn call_in_child(f: extern "C" fn() -> u32) -> Result<i32, String> {
    let pid = spawn(ForkPath::Libc, move || i32::from(f() != 7));
    wait(pid)
}

/// What a call to code without a landing pad gives: SIGILL where pages are
/// guarded, 7 where they are not.
fn expected(guarded: bool) -> Result<i32, String> {
    if guarded {
        Err(format!("killed by signal {}", libc::SIGILL))
    } else {
        Ok(0)
    }
}

fn guard_offered() -> bool {
    let offered = wxthunk::probe().branch_protection;
    if !offered {
        println!(
            "SKIPPED: no page is guarded here ({}): only that unguarded code runs is checked",
            std::env::consts::ARCH
        );
    }
    offered
}

#[test]
fn the_probe_says_whether_pages_are_guarded() {
    let policy = wxthunk::probe();
    let line = policy
        .to_string()
        .lines()
        .find(|l| l.trim_start().starts_with("branch protection"))
        .map(str::to_owned)
        .expect("a branch protection line");
    println!("{line}");
    assert_eq!(
        line.contains("PROT_BTI"),
        policy.branch_protection,
        "{line}"
    );
    if cfg!(target_arch = "x86_64") {
        assert!(!policy.branch_protection);
    }
}

#[test]
fn heap_code_is_guarded_unless_the_heap_is_built_without() {
    let guarded = guard_offered();
    let heap = Heap::new().unwrap();
    assert!(heap.branch_protection());
    // Code with a landing pad runs on a guarded heap.
    let mut span = heap.alloc(16).unwrap();
    span.write_all(&code::ret_u32(7)).unwrap();
    let with = span.exec().unwrap();
    // SAFETY: testkit's code, a complete function returning 7.
    let f: extern "C" fn() -> u32 = unsafe { with.func(0).unwrap() };
    assert_eq!(f(), 7);
    // Code without one faults there (where pages are guarded).
    let mut span = heap.alloc(16).unwrap();
    span.write_all(&without_landing_pad()).unwrap();
    let without = span.exec().unwrap();
    // SAFETY: as above, without its landing pad.
    let f: extern "C" fn() -> u32 = unsafe { without.func(0).unwrap() };
    assert_eq!(call_in_child(f), expected(guarded));
    // A heap built without branch protection runs it.
    let open = Heap::builder().branch_protection(false).build().unwrap();
    assert!(!open.branch_protection());
    let mut span = open.alloc(16).unwrap();
    span.write_all(&without_landing_pad()).unwrap();
    let x = span.exec().unwrap();
    // SAFETY: as above.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    assert_eq!(f(), 7);
    // And the guarded heap's thunks run (each starts with a landing pad).
    let k = std::hint::black_box(7u32);
    let t = heap
        .thunk::<unsafe extern "C" fn() -> u32, _>(move || k)
        .unwrap();
    assert!(t.code().starts_with(code::LANDING_PAD));
    // SAFETY: the thunk is alive.
    assert_eq!(unsafe { (t.as_fn())() }, 7);
}

#[test]
fn blocks_are_guarded_only_when_asked() {
    let guarded = guard_offered();
    for ask in [false, true] {
        let mut block = Block::new(16).unwrap();
        assert!(!block.branch_protection());
        block.set_branch_protection(ask);
        block.write_all(&without_landing_pad()).unwrap();
        let x = block.exec().unwrap();
        // SAFETY: testkit's code without its landing pad, returning 7.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(call_in_child(f), expected(guarded && ask), "asked: {ask}");
        // The setting stays with the block across a rewrite.
        let mut again = x.into_writable().unwrap();
        assert_eq!(again.branch_protection(), ask);
        again.clear();
        again.write_all(&code::ret_u32(7)).unwrap();
        let x = again.exec().unwrap();
        // SAFETY: testkit's code with its landing pad.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 7);
    }
}
