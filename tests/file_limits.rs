//! Code files past a limit are errors, never signals: a file size limit
//! (`RLIMIT_FSIZE`, `ulimit -f`, common in sandboxes) made `ftruncate` of a
//! new region's file raise SIGXFSZ, and a size-limited tmpfs (Docker's
//! 64 MiB `/dev/shm`) made the first store to a new page fault with
//! SIGBUS. Both killed the process; now the heap says why, and it and its
//! live thunks stay intact. Each case runs in a child process, where a
//! signal fails the test instead of the test runner.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;

use support::code;
use wxthunk::{Block, Heap, Strategy};

type F1 = unsafe extern "C" fn(u64) -> u64;

/// Under a file size limit lowered after start-up, new code files (a new
/// heap's region, a block sealed through a file) are refused with
/// `RLIMIT_FSIZE` named, and a thunk made before keeps working.
#[test]
fn a_file_size_limit_is_an_error_not_sigxfsz() {
    let name = "a_file_size_limit_is_an_error_not_sigxfsz";
    let Some(out) = support::in_child(name, || {
        let policy = wxthunk::probe();
        let strategy = [Strategy::DualMap, Strategy::DualMapFile]
            .into_iter()
            .find(|s| policy.allows(*s));
        let Some(strategy) = strategy else {
            println!("LIMIT-SKIPPED no file-backed strategy works here: {policy}");
            return;
        };
        let heap = Heap::builder().strategy(strategy).build().unwrap();
        let k = std::hint::black_box(7u64);
        let before = heap.thunk::<F1, _>(move |x: u64| x + k).unwrap();
        let limit = libc::rlimit {
            rlim_cur: 4096,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: a valid rlimit; lowering our own soft limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);

        let fresh = Heap::builder()
            .strategy(strategy)
            .build()
            .and_then(|h| h.thunk::<F1, _>(move |x: u64| x * k).map(drop));
        let err = fresh.expect_err("a new region's file past the limit");
        let why = support::error_chain(&err);
        assert!(why.contains("RLIMIT_FSIZE"), "{why}");

        let code_strategy = strategy.code().unwrap();
        let mut block = Block::in_place_with_code_strategy(64 * 1024, code_strategy).unwrap();
        block.write_all(&code::ret_u32(5)).unwrap();
        block.set_len(64 * 1024).unwrap();
        let err = block.exec().expect_err("a block's file past the limit");
        let why = support::error_chain(&err);
        assert!(why.contains("RLIMIT_FSIZE"), "{why}");

        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (before.as_fn())(1) }, 8);
        assert_eq!(heap.stats().live_allocations, 1);
        println!("LIMIT-OK {why}");
    }) else {
        return;
    };
    support::expect_child(&out, "LIMIT-OK", "LIMIT-SKIPPED");
}

/// A heap whose code files are on a tmpfs of 64 KiB (mounted in a mount
/// namespace of the test's own) fills it: the thunk that finds no room is
/// an error naming the full filesystem, and every thunk made before still
/// runs. In a forked single-threaded child, which `unshare` needs.
#[test]
fn a_full_filesystem_is_an_error_not_sigbus() {
    let name = "a_full_filesystem_is_an_error_not_sigbus";
    let Some(out) = support::in_child(name, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let pid = support::fork::spawn(support::fork::ForkPath::Libc, || {
            if let Err(why) = own_mount_namespace() {
                println!("FULL-SKIPPED {why}");
                return 0;
            }
            let target = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: NUL-terminated strings.
            let mounted = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    c"size=64k".as_ptr().cast(),
                )
            };
            if mounted != 0 {
                println!("FULL-SKIPPED mount: {}", std::io::Error::last_os_error());
                return 0;
            }
            // SAFETY: this child has one thread, and nothing reads the
            // environment concurrently.
            unsafe { std::env::set_var("WXTHUNK_TMPDIR", &path) };
            let heap = match Heap::builder().strategy(Strategy::DualMapFile).build() {
                Ok(heap) => heap,
                Err(e) => {
                    println!("FULL-SKIPPED no file-backed heap: {e}");
                    return 0;
                }
            };
            let mut live = Vec::new();
            let err = loop {
                let k = std::hint::black_box(live.len() as u64);
                match heap.thunk::<F1, _>(move |x: u64| x + k) {
                    Ok(t) => live.push(t),
                    Err(e) => break e,
                }
                assert!(live.len() < 1_000_000, "64 KiB never filled");
            };
            let why = support::error_chain(&err);
            for (i, t) in live.iter().enumerate() {
                // SAFETY: the thunk is alive.
                assert_eq!(unsafe { (t.as_fn())(1) }, i as u64 + 1);
            }
            assert_eq!(heap.stats().live_allocations, live.len());
            println!("FULL-OK after {} thunks: {why}", live.len());
            i32::from(!why.contains("no space left"))
        });
        assert_eq!(support::fork::wait(pid), Ok(0));
    }) else {
        return;
    };
    support::expect_child(&out, "FULL-OK", "FULL-SKIPPED");
}

/// Enters a mount namespace of this (single-threaded) process's own: a
/// plain one where the process may (root), else inside a new user
/// namespace that maps this user to itself (files made on a tmpfs there
/// need an owner).
fn own_mount_namespace() -> Result<(), String> {
    // SAFETY: a plain system call in a single-threaded child.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } == 0 {
        // Keep mounts made here out of the parent's namespace.
        // SAFETY: NUL-terminated strings.
        let private = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        return if private == 0 {
            Ok(())
        } else {
            Err(format!(
                "mount --make-rprivate /: {}",
                std::io::Error::last_os_error()
            ))
        };
    }
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    std::fs::write("/proc/self/setgroups", "deny")
        .and_then(|()| std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")))
        .and_then(|()| std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")))
        .map_err(|e| format!("user namespace id maps: {e}"))
}
