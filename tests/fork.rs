//! Blocks across `fork()`: code sealed before the fork runs in parent and
//! child, and what the child writes never reaches the parent's code.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;

use support::code;
use support::fork::fork_and_wait;
use wxthunk::{Block, ExecBlock, Strategy};

fn sealed(strategy: Strategy, value: u32) -> ExecBlock {
    let mut b = Block::with_strategy(0, strategy).unwrap();
    b.write_all(&code::ret_u32(value)).unwrap();
    b.exec().unwrap()
}

#[test]
fn a_block_sealed_before_fork_runs_in_parent_and_child() {
    for &s in Strategy::ALL
        .iter()
        .filter(|&&s| s.writes_code() && wxthunk::probe().allows(s))
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
        .filter(|&&s| s.writes_code() && wxthunk::probe().allows(s))
    {
        let x = sealed(s, 1);
        // SAFETY: offset 0 holds a function returning 1.
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
            b.as_mut_slice().copy_from_slice(&code::ret_u32(2));
            let y = b.exec().unwrap();
            // SAFETY: as above, rewritten.
            let g: extern "C" fn() -> u32 = unsafe { y.func(0).unwrap() };
            g() as i32 * 10 + f() as i32
        });
        assert_eq!(from_child, 22, "{s}: the child sees its own new code");
        assert_eq!(f(), 1, "{s}: the parent's code is unchanged");
        // A parent re-JIT after the fork works too.
        let mut b = x.into_writable().unwrap();
        b.as_mut_slice().copy_from_slice(&code::ret_u32(3));
        let x = b.exec().unwrap();
        // SAFETY: as above.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 3);
    }
}

mod heap {
    use std::io::Write;
    use std::mem::ManuallyDrop;

    use super::code;
    use super::support::fork::{ForkPath, spawn, wait};
    use wxthunk::{ExecSpan, Heap, Strategy};

    fn sealed(heap: &Heap, value: u32) -> ExecSpan<'_> {
        let mut s = heap.alloc(6).unwrap();
        s.write_all(&code::ret_u32(value)).unwrap();
        s.exec().unwrap()
    }

    fn call(addr: usize) -> u32 {
        // SAFETY: callers pass the address of a live `mov eax, v; ret`.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(addr) };
        f()
    }

    /// Parent and child each free and reuse a slot the other still runs;
    /// neither sees the other's writes, and both keep running their code.
    fn check(name: &str, heap: &Heap) {
        let a = sealed(heap, 1);
        let b = sealed(heap, 2);
        let (a_addr, b_addr) = (a.as_ptr() as usize, b.as_ptr() as usize);
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read_fd, write_fd] = fds;
        // The child's own copy of `a`, which only the child drops.
        // SAFETY: after fork the child owns this bitwise copy; the parent
        // never drops it.
        let child_a = ManuallyDrop::new(unsafe { std::ptr::read(&a) });
        let pid = spawn(ForkPath::Libc, move || {
            // Free A in the child and fill its slot with new code.
            drop(ManuallyDrop::into_inner(child_a));
            let fresh: Vec<_> = (100..150).map(|v| sealed(heap, v)).collect();
            assert!(
                fresh.iter().any(|x| x.as_ptr() as usize == a_addr),
                "the child reuses A's slot"
            );
            for (v, x) in (100..).zip(&fresh) {
                assert_eq!(call(x.as_ptr() as usize), v);
            }
            // Wait until the parent has freed B and put new code in its slot.
            let mut byte = [0u8];
            // SAFETY: reading one byte into a one-byte buffer.
            let got = unsafe { libc::read(read_fd, byte.as_mut_ptr().cast(), 1) };
            assert_eq!(got, 1);
            if call(b_addr) != 2 {
                return 2; // the parent's write reached the child
            }
            std::mem::forget(fresh);
            0
        });
        // While the child runs, the parent frees B and reuses its slot.
        drop(b);
        let reused: Vec<_> = (200..250).map(|v| sealed(heap, v)).collect();
        assert!(
            reused.iter().any(|x| x.as_ptr() as usize == b_addr),
            "{name}: the parent reuses B's slot"
        );
        // SAFETY: writing one byte from a one-byte buffer.
        let sent = unsafe { libc::write(write_fd, [1u8].as_ptr().cast(), 1) };
        assert_eq!(sent, 1);
        assert_eq!(
            wait(pid).unwrap(),
            0,
            "{name}: child failed (2: it saw the parent's new code)"
        );
        assert_eq!(
            call(a_addr),
            1,
            "{name}: the child's reuse of A's slot reached the parent"
        );
        for (v, x) in (200..).zip(&reused) {
            assert_eq!(call(x.as_ptr() as usize), v);
        }
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        drop(reused);
        drop(a);
    }

    #[test]
    fn heap_code_is_private_to_each_process_after_fork() {
        if !wxthunk::probe().allows(Strategy::DualMap) {
            println!(
                "SKIPPED: dual mapping is not allowed here: fork safety of dual-mapped heaps not checked"
            );
            return;
        }
        let plain = Heap::builder().strategy(Strategy::DualMap).build().unwrap();
        check("dual-map", &plain);
        let strict = Heap::builder()
            .strategy(Strategy::DualMap)
            .strict(true)
            .build()
            .unwrap();
        check("dual-map strict", &strict);
        check("global", Heap::global().unwrap());
    }
}
