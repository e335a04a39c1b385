//! Written code in files without a name in a directory
//! (`Strategy::DualMapFile`), for where memfds are refused. Blocks, spans,
//! thunk pages and thunks run from such files under every lockdown. The
//! probe names the directory, and `WXTHUNK_TMPDIR` chooses it. Every
//! mapping of code is of an unlinked file. Nothing is ever left in the
//! directory, after a normal exit or a crash. Each case runs in a child
//! process.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;
use std::path::{Path, PathBuf};

use support::{Lockdown, code, maps};
use wxthunk::{Block, CodeStrategy, Error, Heap, Strategy};

type F1 = unsafe extern "C" fn(u64) -> u64;

/// The names in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The open descriptors of this process that name a file in `dir`.
fn fds_in(dir: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&format!("{dir}/")))
        .collect()
}

/// A fresh, empty directory of this test's own, under the system's
/// temporary directory, made exclusively (a random name, mode 0700; removed
/// by the caller).
fn fresh_dir(name: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("wxthunk-{name}-"))
        .tempdir()
        .unwrap()
        .keep()
}

/// Blocks (sealed, made writable again, sealed again), spans, a thunk page
/// and thunks under `Strategy::DualMapFile`: each runs, every mapping of
/// their code is of a file without a name in the probe's directory, none
/// is writable and executable, and once they are dropped and the heap is
/// compacted no mapping or descriptor of such a file is left.
fn exercise_file_code() {
    let policy = wxthunk::probe();
    assert!(policy.allows(Strategy::DualMapFile), "{policy}");
    let dir = maps::code_file_dir().expect("the probe names a directory");
    let in_dir = |addr: usize| {
        let m = maps::mapping_at(addr).expect("mapped");
        assert!(
            m.is_unnamed_file_in(&dir),
            "code at {addr:#x} is not a file without a name in {dir}: {m:?}"
        );
        assert_eq!(m.perms, "r-xs", "{m:?}");
    };

    let mut block = Block::with_code_strategy(64, CodeStrategy::DualMapFile).unwrap();
    assert_eq!(block.code_strategy(), CodeStrategy::DualMapFile);
    block.write_all(&code::ret_u32(5)).unwrap();
    let x = block.exec().unwrap();
    in_dir(x.as_ptr() as usize);
    // SAFETY: offset 0 holds `mov eax, 5; ret`.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    assert_eq!(f(), 5);
    // Re-JIT: writable again, rewritten, sealed again (a new file).
    let mut block = x.into_writable().unwrap();
    block.as_mut_slice().copy_from_slice(&code::ret_u32(6));
    let x = block.exec().unwrap();
    in_dir(x.as_ptr() as usize);
    // SAFETY: offset 0 now holds `mov eax, 6; ret`.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    assert_eq!(f(), 6);

    // In place: written where it runs, then the same pages read+exec.
    let mut in_place = Block::in_place_with_code_strategy(64, CodeStrategy::DualMapFile).unwrap();
    let at = in_place.as_mut_ptr() as usize;
    in_place.write_all(&code::ret_u32(7)).unwrap();
    let in_place = in_place.exec().unwrap();
    assert_eq!(in_place.as_ptr() as usize, at);
    in_dir(at);
    // SAFETY: offset 0 holds `mov eax, 7; ret`.
    let f: extern "C" fn() -> u32 = unsafe { in_place.func(0).unwrap() };
    assert_eq!(f(), 7);
    drop(in_place);

    let heap = Heap::builder()
        .strategy(Strategy::DualMapFile)
        .build()
        .unwrap();
    assert_eq!(heap.span_strategy(), Some(Strategy::DualMapFile));
    assert_eq!(heap.code_strategy(), Some(CodeStrategy::DualMapFile));
    let spans: Vec<_> = (0..200u32)
        .map(|v| {
            let mut s = heap.alloc(64).unwrap();
            s.write_all(&code::ret_u32(v)).unwrap();
            s.exec().unwrap()
        })
        .collect();
    for (v, s) in (0..).zip(&spans) {
        in_dir(s.as_ptr() as usize);
        // SAFETY: the span holds `mov eax, v; ret`.
        let f: extern "C" fn() -> u32 = unsafe { s.func(0).unwrap() };
        assert_eq!(f(), v);
    }
    let mut page = heap.thunk_page::<F1>().unwrap();
    for k in 0..8u64 {
        page.push(move |x: u64| x * 10 + k).unwrap();
    }
    let page = page.exec().unwrap();
    for k in 0..8 {
        let f = page.func(k).unwrap();
        in_dir(f as usize);
        // SAFETY: the page is alive.
        assert_eq!(unsafe { f(3) }, 30 + k as u64);
    }
    let thunks: Vec<_> = (0..500u64)
        .map(|k| heap.thunk::<F1, _>(move |x: u64| x + k).unwrap())
        .collect();
    for (k, t) in (0..).zip(&thunks) {
        in_dir(t.as_fn() as usize);
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(1) }, k + 1);
    }
    assert!(maps::wx_mappings().is_empty(), "{:?}", maps::wx_mappings());

    // `compact` gives back every file of the heap's emptied regions (the
    // heap itself stays).
    drop((x, spans, page, thunks));
    heap.compact();
    let left: Vec<_> = maps::code_file_mappings()
        .into_iter()
        .filter(|m| m.name.starts_with(&format!("{dir}/")))
        .collect();
    assert!(left.is_empty(), "file mappings left: {left:?}");
    assert!(
        fds_in(&dir).is_empty(),
        "descriptors left: {:?}",
        fds_in(&dir)
    );
    println!("FILE-CODE-OK in {dir}");
}

#[test]
fn plain_process_forced_to_files() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    if let Some(out) = support::in_child("plain_process_forced_to_files", exercise_file_code) {
        assert!(out.contains("FILE-CODE-OK"), "{out}");
    }
}

#[test]
fn a_mdwe_forced_to_files() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    support::run_locked("a_mdwe_forced_to_files", Lockdown::Mdwe, exercise_file_code);
}

/// Where memfds are refused and MDWE is on, files are what written code
/// gets without being asked: the probe says so, and `Block::new` and the
/// global heap's spans use them.
#[test]
fn b_no_memfd_and_mdwe_chooses_files() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    support::run_locked(
        "b_no_memfd_and_mdwe_chooses_files",
        Lockdown::NoMemfdMdwe,
        || {
            let policy = wxthunk::probe();
            println!("{policy}");
            assert!(!policy.allows(Strategy::DualMap), "{policy}");
            assert!(!policy.allows(Strategy::Protect), "{policy}");
            assert_eq!(policy.block_strategy, Some(Strategy::DualMapFile));
            assert_eq!(policy.heap_strategy, Some(Strategy::DualMapFile));
            let dir = policy.code_file_dir.as_ref().unwrap();
            assert!(
                policy.to_string().contains(&format!("in {dir}")),
                "{policy}"
            );
            let block = Block::new(16).unwrap();
            assert_eq!(block.code_strategy(), CodeStrategy::DualMapFile);
            assert_eq!(
                Heap::global().unwrap().span_strategy(),
                Some(Strategy::DualMapFile)
            );
            exercise_file_code();
        },
    );
}

#[test]
fn c_systemd_rule_set_forced_to_files() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    support::run_locked(
        "c_systemd_rule_set_forced_to_files",
        Lockdown::SystemdWx,
        exercise_file_code,
    );
}

#[test]
fn e_no_memfd_forced_to_files() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    support::run_locked(
        "e_no_memfd_forced_to_files",
        Lockdown::NoMemfd,
        exercise_file_code,
    );
}

/// `WXTHUNK_TMPDIR` names the directory (and no other is tried); the
/// probe reports it and why, and the directory is empty after the child
/// exits.
#[test]
fn wxthunk_tmpdir_chooses_the_directory() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    let name = "wxthunk_tmpdir_chooses_the_directory";
    let body = || {
        let policy = wxthunk::probe();
        println!("{policy}");
        let chosen = policy.code_file_dir.as_ref().unwrap();
        assert_eq!(chosen.chosen_by, "WXTHUNK_TMPDIR");
        assert_eq!(
            Path::new(&chosen.path),
            Path::new(&std::env::var("WXTHUNK_TMPDIR").unwrap())
        );
        exercise_file_code();
    };
    if support::is_child(name) {
        support::run_locked(name, Lockdown::NoMemfdMdwe, body);
        return;
    }
    let dir = fresh_dir("tmpdir-choice");
    let path = dir.to_str().unwrap();
    let out = support::run_locked_with_env(
        name,
        Lockdown::NoMemfdMdwe,
        &[("WXTHUNK_TMPDIR", path)],
        body,
    );
    let left = entries(&dir);
    std::fs::remove_dir(&dir).unwrap();
    if out.is_some() {
        assert!(left.is_empty(), "left in {path}: {left:?}");
    }
}

/// A directory that does not work is named with why, in the probe and in
/// the error of what needed it; nothing else breaks (thunks still work).
#[test]
fn a_directory_that_does_not_work_says_why() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    let name = "a_directory_that_does_not_work_says_why";
    let missing = "/nonexistent/wxthunk-code";
    support::run_locked_with_env(
        name,
        Lockdown::NoMemfdMdwe,
        &[("WXTHUNK_TMPDIR", missing)],
        || {
            let policy = wxthunk::probe();
            println!("{policy}");
            let reason = policy.file_dual_mapping.reason().unwrap();
            assert!(
                reason.contains("/nonexistent/wxthunk-code: No such file or directory")
                    && reason.contains("WXTHUNK_TMPDIR"),
                "{reason}"
            );
            assert!(policy.code_file_dir.is_none());
            match Block::new(16) {
                Err(e @ Error::NoExecutableMemory { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("dual-map-file") && text.contains(missing),
                        "{text}"
                    );
                }
                other => panic!("Block::new: {:?}", other.map(|_| ())),
            }
            match Block::with_code_strategy(16, CodeStrategy::DualMapFile) {
                Err(e @ Error::StrategyUnavailable { .. }) => {
                    assert!(e.to_string().contains(missing), "{e}");
                }
                other => panic!("Block::with_code_strategy: {:?}", other.map(|_| ())),
            }
            // A runtime capture: code on the heap, not a compiled function.
            let one = std::hint::black_box(1u64);
            let t = wxthunk::Thunk::<F1>::new(move |x: u64| x + one).unwrap();
            assert!(!t.code().is_empty(), "a capture-free closure tests no heap");
            // SAFETY: the thunk is alive.
            assert_eq!(unsafe { (t.as_fn())(1) }, 2);
        },
    );
}

/// A process killed while its code lives in files leaves nothing in the
/// directory: the files had no name from the start.
#[test]
fn nothing_is_left_after_a_crash() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    let name = "nothing_is_left_after_a_crash";
    let body = || {
        let pid = support::fork::spawn(support::fork::ForkPath::Libc, || {
            let heap = Heap::builder()
                .strategy(Strategy::DualMapFile)
                .build()
                .unwrap();
            let spans: Vec<_> = (0..50u32)
                .map(|v| {
                    let mut s = heap.alloc(64).unwrap();
                    s.write_all(&code::ret_u32(v)).unwrap();
                    s.exec().unwrap()
                })
                .collect();
            let block = Block::with_code_strategy(64, CodeStrategy::DualMapFile).unwrap();
            std::hint::black_box((&spans, &block));
            // SAFETY: raising a signal at ourselves; nothing is unwound.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!("SIGKILL returned");
        });
        let how = support::fork::wait(pid);
        assert_eq!(how, Err(format!("killed by signal {}", libc::SIGKILL)));
        println!("CRASHED-CHILD-KILLED");
    };
    if support::is_child(name) {
        support::in_child(name, body);
        return;
    }
    let dir = fresh_dir("crash");
    let path = dir.to_str().unwrap();
    let out = support::in_child_with_env(name, &[("WXTHUNK_TMPDIR", path)], body);
    let left = entries(&dir);
    std::fs::remove_dir(&dir).unwrap();
    if let Some(out) = out {
        assert!(out.contains("CRASHED-CHILD-KILLED"), "{out}");
        assert!(left.is_empty(), "left in {path}: {left:?}");
    }
}

/// A directory on a filesystem mounted `noexec` is refused by name, before
/// any file is made there: a tmpfs mounted so in a mount namespace of the
/// test's own (a forked, single-threaded child, which `unshare` needs).
#[test]
fn a_noexec_directory_is_refused_by_name() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    let name = "a_noexec_directory_is_refused_by_name";
    let Some(out) = support::in_child(name, || {
        let dir = fresh_dir("noexec");
        let path = dir.to_str().unwrap().to_owned();
        let pid = support::fork::spawn(support::fork::ForkPath::Libc, || {
            // SAFETY: plain system calls in a single-threaded child; the
            // new namespaces are this child's alone.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
                println!(
                    "NOEXEC-SKIPPED unshare: {}",
                    std::io::Error::last_os_error()
                );
                return 0;
            }
            let target = std::ffi::CString::new(path.as_str()).unwrap();
            // SAFETY: NUL-terminated strings; no data argument.
            let mounted = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            };
            if mounted != 0 {
                println!("NOEXEC-SKIPPED mount: {}", std::io::Error::last_os_error());
                return 0;
            }
            // SAFETY: this child has one thread, and nothing reads the
            // environment concurrently.
            unsafe { std::env::set_var("WXTHUNK_TMPDIR", &path) };
            let policy = wxthunk::probe();
            let reason = policy.file_dual_mapping.reason().unwrap_or("");
            // The reason says what to do: name a directory that works.
            if reason.contains(&format!("{path}: mounted noexec"))
                && reason.contains("in WXTHUNK_TMPDIR")
                && policy.code_file_dir.is_none()
            {
                println!("NOEXEC-REFUSED {reason}");
                0
            } else {
                println!("NOEXEC-WRONG {policy}");
                1
            }
        });
        let how = support::fork::wait(pid);
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(how, Ok(0));
    }) else {
        return;
    };
    support::expect_child(&out, "NOEXEC-REFUSED", "NOEXEC-SKIPPED");
}

/// `WXTHUNK_STRATEGY=dual-map-file` puts the default heaps' thunks and
/// spans in such files, without a code change.
#[test]
fn wxthunk_strategy_forces_the_default_heaps_to_files() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    let name = "wxthunk_strategy_forces_the_default_heaps_to_files";
    let out = support::in_child_with_env(name, &[("WXTHUNK_STRATEGY", "dual-map-file")], || {
        let heap = Heap::global().unwrap();
        assert_eq!(heap.strategy(), Strategy::DualMapFile);
        let dir = maps::code_file_dir().unwrap();
        let k = std::hint::black_box(40);
        let t = wxthunk::Thunk::<F1>::new(move |x: u64| x + k).unwrap();
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(2) }, 42);
        let m = maps::mapping_at(t.as_fn() as usize).unwrap();
        assert!(m.is_unnamed_file_in(&dir), "{m:?}");
        println!("FORCED-OK");
    });
    if let Some(out) = out {
        assert!(out.contains("FORCED-OK"), "{out}");
    }
}

/// A `WXTHUNK_TMPDIR` whose name is not UTF-8 is used as the bytes it is:
/// under a lockdown that refuses memfds, file-backed code is made there
/// and the probe reports that very path (9bc2f4c reported "No such file or
/// directory" for a path with U+FFFD the user never wrote).
#[test]
fn a_wxthunk_tmpdir_that_is_not_utf8_is_used_as_is() {
    if support::skipped_under_emulator(Strategy::DualMapFile) {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let name = "a_wxthunk_tmpdir_that_is_not_utf8_is_used_as_is";
    let body = || {
        let policy = wxthunk::probe();
        println!("{policy}");
        let chosen = policy.code_file_dir.as_ref().expect("a directory works");
        let wanted = std::env::var_os("WXTHUNK_TMPDIR").unwrap();
        assert_eq!(std::path::Path::new(&chosen.path).as_os_str(), wanted);
        assert_eq!(chosen.chosen_by, "WXTHUNK_TMPDIR");
        exercise_file_code();
    };
    if support::is_child(name) {
        support::run_locked(name, Lockdown::NoMemfdMdwe, body);
        return;
    }
    let parent = fresh_dir("not-utf8");
    let dir = parent.join(std::ffi::OsStr::from_bytes(b"code-\xff\xfe"));
    std::fs::create_dir(&dir).unwrap();
    let out = support::run_locked_with_env(
        name,
        Lockdown::NoMemfdMdwe,
        &[("WXTHUNK_TMPDIR", dir.as_os_str())],
        body,
    );
    let left = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&parent).unwrap();
    if out.is_some() {
        assert_eq!(left, 0, "files left in the directory");
    }
}
