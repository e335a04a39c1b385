//! `Block` / `ExecBlock`: real machine code, sizes, bounds, transitions,
//! errors, auto traits. Every behaviour is checked under each strategy this
//! process allows.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::{self, Write};

use support::code;
use wxthunk::{Block, Error, ExecBlock, Strategy, TransitionError};

/// The strategies this process allows; both on an ordinary Linux machine.
fn strategies() -> Vec<Strategy> {
    let policy = wxthunk::probe();
    let writers = || Strategy::ALL.iter().copied().filter(|s| s.writes_code());
    let all: Vec<Strategy> = writers().filter(|&s| policy.allows(s)).collect();
    assert!(!all.is_empty(), "no strategy works here:\n{policy}");
    if all.len() < writers().count() {
        println!("note: only {all:?} can be tested in this process:\n{policy}");
    }
    all
}

fn sealed(strategy: Strategy, bytes: &[u8]) -> ExecBlock {
    let mut b = Block::with_strategy(bytes.len(), strategy).unwrap();
    b.write_all(bytes).unwrap();
    b.exec().unwrap()
}

#[test]
fn adds_two_arguments() {
    for s in strategies() {
        let x = sealed(s, code::ADD);
        assert_eq!(x.strategy(), s);
        // SAFETY: offset 0 holds `lea rax, [rdi+rsi]; ret`.
        let add: extern "C" fn(u64, u64) -> u64 = unsafe { x.func(0).unwrap() };
        assert_eq!(add(2, 40), 42, "{s}");
        assert_eq!(add(u64::MAX, 1), 0, "{s}");
    }
}

extern "C" fn triple(x: u64) -> u64 {
    3 * x
}

#[test]
fn calls_back_into_rust_through_an_absolute_address() {
    for s in strategies() {
        let x = sealed(
            s,
            &code::call_then_add_one(triple as extern "C" fn(u64) -> u64 as usize),
        );
        // SAFETY: the code is a C function (u64) -> u64 calling `triple`.
        let f: extern "C" fn(u64) -> u64 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(14), 43, "{s}");
    }
}

#[test]
fn many_functions_in_one_block_at_their_offsets() {
    for s in strategies() {
        let mut b = Block::with_strategy(0, s).unwrap();
        let mut offsets = Vec::new();
        for v in 0..100u32 {
            offsets.push(b.len());
            b.write_all(&code::ret_u32(v * 7)).unwrap();
        }
        let x = b.exec().unwrap();
        for (v, &off) in offsets.iter().enumerate() {
            // SAFETY: each offset holds `mov eax, imm32; ret`.
            let f: extern "C" fn() -> u32 = unsafe { x.func(off).unwrap() };
            assert_eq!(f(), v as u32 * 7);
        }
    }
}

#[test]
fn capacity_is_rounded_up_to_whole_pages() {
    let page = wxthunk::page_size();
    assert!(page.is_power_of_two());
    let table = [
        (0, page),
        (1, page),
        (page - 1, page),
        (page, page),
        (page + 1, 2 * page),
        (3 * page + 17, 4 * page),
    ];
    for s in strategies() {
        for &(len, want) in &table {
            let b = Block::with_strategy(len, s).unwrap();
            assert_eq!(b.capacity(), want, "Block::new({len}) with {s}");
            assert_eq!((b.len(), b.remaining()), (0, want));
            assert!(b.is_empty());
        }
    }
}

#[test]
fn sizes_that_cannot_be_mapped_are_errors() {
    let page = wxthunk::page_size();
    for len in [usize::MAX, usize::MAX - page + 2, isize::MAX as usize + 1] {
        match Block::new(len) {
            Err(Error::SizeOverflow { requested }) => assert_eq!(requested, len),
            other => panic!("Block::new({len}) = {other:?}"),
        }
    }
    // Larger than any x86_64 address space (even with 5-level paging).
    for s in strategies() {
        match Block::with_strategy(1 << 60, s) {
            Err(e @ Error::Os { .. }) => {
                // The size refused is in the message, not only "mmap failed".
                let why = support::error_chain(&e);
                assert!(why.contains(&(1usize << 60).to_string()), "{s}: {why}");
                println!("{s}: {why}");
            }
            other => panic!("1 EiB block with {s}: {other:?}"),
        }
    }
    // The process is intact: a normal block still works.
    let x = sealed(Strategy::ALL[0], code::ADD);
    // SAFETY: offset 0 holds ADD.
    let add: extern "C" fn(u64, u64) -> u64 = unsafe { x.func(0).unwrap() };
    assert_eq!(add(1, 2), 3);
}

#[test]
fn writes_past_capacity_write_what_fits_then_fail() {
    for s in strategies() {
        let mut b = Block::with_strategy(1, s).unwrap();
        let cap = b.capacity();
        let data: Vec<u8> = (0..cap + 100).map(|i| (i % 251) as u8).collect();
        let err = b.write_all(&data).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert_eq!(b.len(), cap);
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.as_slice(), &data[..cap], "nothing written is lost");
        assert_eq!(b.write(&[1, 2, 3]).unwrap(), 0);

        // A partial write reports how much it took.
        let mut b = Block::with_strategy(1, s).unwrap();
        b.write_all(&data[..cap - 2]).unwrap();
        assert_eq!(b.write(&[7, 8, 9, 10]).unwrap(), 2);
        assert_eq!(&b.as_slice()[cap - 2..], &[7, 8]);
    }
}

#[test]
fn offsets_outside_the_written_bytes_are_errors() {
    for s in strategies() {
        let x = sealed(s, code::ADD);
        for offset in [code::ADD.len(), code::ADD.len() + 1, 4096, usize::MAX] {
            // SAFETY: the call fails before any pointer is made.
            let r: Result<extern "C" fn(), _> = unsafe { x.func(offset) };
            match r {
                Err(Error::OutOfBounds { offset: o, len }) => {
                    assert_eq!((o, len), (offset, code::ADD.len()));
                }
                other => panic!("func({offset}) = {:?}", other.map(|f| f as usize)),
            }
        }
        let empty = Block::with_strategy(0, s).unwrap().exec().unwrap();
        assert!(empty.is_empty());
        // SAFETY: the call fails before any pointer is made.
        assert!(unsafe { empty.func::<extern "C" fn()>(0) }.is_err());
    }
}

#[test]
fn written_bytes_read_back_before_and_after_sealing() {
    for s in strategies() {
        let mut b = Block::with_strategy(100, s).unwrap();
        let data: Vec<u8> = (0..=255).collect();
        b.write_all(&data).unwrap();
        b.write_all(&data[..10]).unwrap();
        assert_eq!(b.len(), 266);
        assert_eq!(&b.as_slice()[..256], &data[..]);
        let addr = b.exec_ptr();
        let x = b.exec().unwrap();
        assert_eq!(x.as_ptr(), addr, "code runs where the block said it would");
        assert_eq!(x.len(), 266);
        assert_eq!(&x.as_slice()[..256], &data[..]);
        assert_eq!(&x.as_slice()[256..], &data[..10]);
        // The rest of the last page is filled with traps.
        // SAFETY: the executable mapping is readable for its whole capacity.
        let tail =
            unsafe { std::slice::from_raw_parts(x.as_ptr().add(x.len()), x.capacity() - x.len()) };
        assert!(
            code::is_traps(tail, x.as_ptr() as usize + x.len()),
            "{s}: tail not filled with traps"
        );
    }
}

#[test]
fn into_writable_keeps_contents_and_address_and_reseals() {
    for s in strategies() {
        let x = sealed(s, &code::ret_u32(1));
        let addr = x.as_ptr();
        // SAFETY: offset 0 holds a function returning 1.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 1);
        let mut b = x.into_writable().unwrap();
        assert_eq!(b.as_slice(), &code::ret_u32(1)[..]);
        assert_eq!(b.exec_ptr(), addr);
        // Rewrite the first function in place, and append a second.
        let one = code::ret_u32(2).len();
        b.as_mut_slice()[..one].copy_from_slice(&code::ret_u32(2));
        let second = b.len();
        b.write_all(&code::ret_u32(3)).unwrap();
        let x = b.exec().unwrap();
        assert_eq!(x.as_ptr(), addr);
        // SAFETY: offsets 0 and `second` hold `mov eax, imm; ret`.
        let (f, g): (extern "C" fn() -> u32, extern "C" fn() -> u32) =
            unsafe { (x.func(0).unwrap(), x.func(second).unwrap()) };
        assert_eq!((f(), g()), (2, 3), "{s}");
        // And a third round trip.
        let mut b = x.into_writable().unwrap();
        b.as_mut_slice()[..one].copy_from_slice(&code::ret_u32(4));
        let x = b.exec().unwrap();
        // SAFETY: as above.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 4, "{s}");
    }
}

#[test]
fn a_sealed_block_runs_on_many_threads_at_once() {
    for s in strategies() {
        let x = sealed(s, code::ADD);
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let x = &x;
                scope.spawn(move || {
                    // SAFETY: offset 0 holds ADD; `x` outlives the scope.
                    let add: extern "C" fn(u64, u64) -> u64 = unsafe { x.func(0).unwrap() };
                    for i in 0..10_000 {
                        assert_eq!(add(i, t), i + t);
                    }
                });
            }
        });
    }
}

#[test]
fn forcing_a_strategy_the_process_refuses_is_an_error() {
    let policy = wxthunk::probe();
    for &s in Strategy::ALL {
        match (
            policy.allows(s) && s.writes_code(),
            Block::with_strategy(0, s),
        ) {
            (true, Ok(b)) => assert_eq!(b.strategy(), s),
            (false, Err(Error::StrategyUnavailable { strategy, reason })) => {
                assert_eq!(strategy, s);
                assert!(!reason.is_empty());
            }
            (allowed, r) => panic!("{s}: allowed={allowed} but {r:?}"),
        }
    }
}

#[test]
fn block_new_uses_the_probed_strategy() {
    let b = Block::new(0).unwrap();
    assert_eq!(Some(b.strategy()), wxthunk::probe().block_strategy);
}

#[test]
fn errors_are_send_sync_and_convert_to_io_errors() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
    assert_error::<TransitionError<Block>>();
    assert_error::<TransitionError<ExecBlock>>();

    let e = Error::OutOfBounds { offset: 9, len: 5 };
    assert_eq!(e.to_string(), "offset 9 is outside the 5 bytes written");
    let io: io::Error = e.into();
    assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
    assert!(io.get_ref().unwrap().downcast_ref::<Error>().is_some());

    let denied = io::Error::from(io::ErrorKind::PermissionDenied);
    let os = Error::Os {
        op: "mprotect",
        source: denied,
    };
    let source = std::error::Error::source(&os).expect("the OS error");
    assert_eq!(source.to_string(), "permission denied");
    // Display does not repeat what `source()` returns (error-chain
    // reporters print both).
    assert_eq!(os.to_string(), "mprotect failed");
    assert_eq!(
        support::error_chain(&os),
        "mprotect failed: permission denied"
    );
    assert_eq!(io::Error::from(os).kind(), io::ErrorKind::PermissionDenied);

    // `?` works from both kinds of function.
    fn in_io() -> io::Result<ExecBlock> {
        let mut b = Block::new(0)?;
        b.write_all(code::RET)?;
        Ok(b.exec()?)
    }
    fn in_wx() -> wxthunk::Result<ExecBlock> {
        Ok(Block::new(0)?.exec()?)
    }
    assert_eq!(in_io().unwrap().len(), code::RET.len());
    assert_eq!(in_wx().unwrap().len(), 0);
}

/// What each type promises about threads, checked by the compiler.
#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Block>();
    send_sync::<ExecBlock>();
    send_sync::<Error>();
    send_sync::<wxthunk::Policy>();
}

/// In-place blocks write where the code runs, under every strategy: an
/// absolute address of the block itself, written before sealing, is right
/// after sealing, after `into_writable` (contents and address kept) and
/// after sealing again; bytes written through `as_mut_ptr` count once
/// `set_len` says so.
#[test]
fn in_place_blocks_run_where_they_were_written() {
    for s in strategies() {
        let code_strategy = s.code().unwrap();
        let mut b = match Block::in_place_with_code_strategy(100, code_strategy) {
            // Windows cannot map a view over the memory a block was written
            // in: in-place blocks are Protect only there, and say why.
            Err(Error::StrategyUnavailable { strategy, reason })
                if cfg!(windows) && code_strategy.dual_maps() =>
            {
                assert_eq!(strategy, s);
                assert!(reason.contains("placeholders"), "{reason}");
                println!("note: in-place {s} is refused on Windows: {reason}");
                continue;
            }
            r => r.unwrap(),
        };
        assert_eq!(b.code_strategy(), code_strategy);
        let at = b.as_mut_ptr() as usize;
        assert_eq!(at, b.exec_ptr() as usize, "{s}");
        // A function returning this block's own address.
        let own = code::ret_u64(at as u64);
        // SAFETY: `own` fits the block's capacity; the pointer is valid for
        // it while `b` lives.
        unsafe { std::ptr::copy_nonoverlapping(own.as_ptr(), b.as_mut_ptr(), own.len()) };
        b.set_len(own.len()).unwrap();
        assert!(matches!(
            b.set_len(b.capacity() + 1),
            Err(Error::OutOfBounds { .. })
        ));
        let x = b.exec().unwrap();
        assert_eq!(x.as_ptr() as usize, at, "{s}");
        // SAFETY: offset 0 holds a function returning a u64.
        let f: extern "C" fn() -> u64 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), at as u64, "{s}");
        let mut b = x.into_writable().unwrap();
        assert_eq!(b.as_slice(), &own[..], "{s}");
        assert_eq!(b.as_mut_ptr() as usize, at, "{s}");
        b.as_mut_slice()
            .copy_from_slice(&code::ret_u64(at as u64 + 1));
        let x = b.exec().unwrap();
        // SAFETY: as above, with the constant rewritten.
        let f: extern "C" fn() -> u64 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), at as u64 + 1, "{s}");
    }
}

/// A child forked while an in-place block is writable writes its own
/// copy: the parent's code, sealed later, is what the parent wrote.
#[cfg(target_os = "linux")]
#[test]
fn a_forked_child_cannot_write_a_parents_in_place_block() {
    for s in strategies() {
        let mut b = Block::in_place_with_code_strategy(16, s.code().unwrap()).unwrap();
        b.write_all(&code::ret_u32(1)).unwrap();
        let child_copy = std::mem::ManuallyDrop::new(
            // SAFETY: after the fork only the child owns this bitwise copy;
            // the parent never uses it.
            unsafe { std::ptr::read(&b) },
        );
        let child = support::fork::fork_and_wait(move || {
            let mut b = std::mem::ManuallyDrop::into_inner(child_copy);
            b.as_mut_slice().copy_from_slice(&code::ret_u32(2));
            let x = match b.exec() {
                Ok(x) => x,
                Err(_) => return 3,
            };
            // SAFETY: offset 0 holds `mov eax, 2; ret`.
            let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
            if f() == 2 { 0 } else { 4 }
        });
        assert_eq!(child, 0, "{s}");
        let x = b.exec().unwrap();
        // SAFETY: offset 0 holds `mov eax, 1; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 1, "{s}");
    }
}

/// After `into_writable`, a block can be truncated (`set_len`) or emptied
/// (`clear`) and written anew at the same address, under every strategy.
#[test]
fn truncate_and_clear_for_re_jit() {
    for s in strategies() {
        let mut b = Block::with_strategy(16, s).unwrap();
        b.write_all(&code::ret_u32(1)).unwrap();
        b.write_all(&code::ret_u32(2)).unwrap();
        let at = b.exec_ptr();
        let mut b = b.exec().unwrap().into_writable().unwrap();
        b.set_len(code::ret_u32(1).len()).unwrap();
        assert_eq!(b.as_slice(), &code::ret_u32(1)[..], "{s}");
        b.clear();
        assert!(b.is_empty());
        b.write_all(&code::ret_u32(3)).unwrap();
        let x = b.exec().unwrap();
        assert_eq!(x.as_ptr(), at, "{s}");
        assert_eq!(x.len(), code::ret_u32(3).len());
        // SAFETY: offset 0 holds `mov eax, 3; ret`.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 3, "{s}");
    }
}
