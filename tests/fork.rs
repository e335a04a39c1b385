//! Blocks across `fork()`: code sealed before the fork runs in parent and
//! child, and what the child writes never reaches the parent's code.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod support;

use std::io::Write;

use support::code;
use wxthunk::{Block, ExecBlock, Strategy};

fn sealed(strategy: Strategy, value: u32) -> ExecBlock {
    let mut b = Block::with_strategy(0, strategy).unwrap();
    b.write_all(&code::ret_u32(value)).unwrap();
    b.exec().unwrap()
}

/// Forks; the child runs `child` and exits with its result; the parent
/// returns the child's exit code.
fn fork_and_wait(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` (machine code, the allocator,
    // mmap) and leaves with `_exit`, running no destructors or atexit
    // handlers of the parent's state.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `status` is a valid place to write; `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn a_block_sealed_before_fork_runs_in_parent_and_child() {
    for &s in Strategy::ALL
        .iter()
        .filter(|&&s| wxthunk::probe().allows(s))
    {
        let x = sealed(s, 21);
        // SAFETY: offset 0 holds `mov eax, 21; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        let from_child = fork_and_wait(|| f() as i32);
        assert_eq!(from_child, 21, "{s}: child");
        assert_eq!(f(), 21, "{s}: parent");
    }
}

#[test]
fn a_child_rewriting_its_copy_does_not_change_the_parents_code() {
    for &s in Strategy::ALL
        .iter()
        .filter(|&&s| wxthunk::probe().allows(s))
    {
        let x = sealed(s, 1);
        // SAFETY: offset 0 holds `mov eax, 1; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        // Keep the parent's block alive while the child works on its copy.
        let child_copy = std::mem::ManuallyDrop::new(
            // SAFETY: the child owns this bitwise copy of the block after
            // fork; the parent never touches it (ManuallyDrop, and the
            // pointer read happens only in the child).
            unsafe { std::ptr::read(&x) },
        );
        let from_child = fork_and_wait(move || {
            let copy = std::mem::ManuallyDrop::into_inner(child_copy);
            let mut b = copy.into_writable().unwrap();
            b.as_mut_slice()[1] = 2;
            let y = b.exec().unwrap();
            // SAFETY: as above, patched.
            let g: extern "C" fn() -> u32 = unsafe { y.func(0).unwrap() };
            g() as i32 * 10 + f() as i32
        });
        assert_eq!(from_child, 22, "{s}: the child sees its own new code");
        assert_eq!(f(), 1, "{s}: the parent's code is unchanged");
        // A parent re-JIT after the fork works too.
        let mut b = x.into_writable().unwrap();
        b.as_mut_slice()[1] = 3;
        let x = b.exec().unwrap();
        // SAFETY: as above.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 3);
    }
}
