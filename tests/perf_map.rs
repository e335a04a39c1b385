//! perf's map of JIT code (`/tmp/perf-<pid>.map`): with
//! `WXTHUNK_PERF_MAP=1` or after `enable_perf_map`, its lines cover every
//! live thunk (named by its closure's type), span (by the name given, or
//! the default), block, thunk page and static-trampoline page; without
//! either, no file is made. Each case runs in a child process, which
//! removes its file when done.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;

use support::code;
use wxthunk::{Block, Heap, Strategy, Thunk};

type F1 = unsafe extern "C" fn(u64) -> u64;

/// `(start, len, name)` of every line of this process's map.
fn entries() -> Vec<(usize, usize, String)> {
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let start = usize::from_str_radix(parts.next().unwrap(), 16).unwrap();
            let len = usize::from_str_radix(parts.next().unwrap(), 16).unwrap();
            (start, len, parts.next().unwrap().to_owned())
        })
        .collect()
}

/// Panics unless a line covers `len` bytes at `addr` and its name contains
/// `name`.
fn assert_covered(entries: &[(usize, usize, String)], addr: usize, len: usize, name: &str) {
    assert!(
        entries
            .iter()
            .any(|(s, l, n)| *s <= addr && addr + len <= s + l && n.contains(name)),
        "no line covers {addr:#x}+{len} named like {name:?}; lines: {entries:#?}"
    );
}

fn remove_map() {
    let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", std::process::id()));
}

/// Thunks on every heap (an `Fn` capturing 8, 24 and 64 bytes, an `FnMut`,
/// an `FnOnce`), spans (named and not), a block and a thunk page: each
/// one's code is covered by a line naming what it is.
fn everything_is_in_the_map() {
    let k = std::hint::black_box(5u64);
    let heaps: Vec<_> = support::thunk_heap_configs()
        .into_iter()
        .map(|(name, b)| (name, b.build().unwrap()))
        .collect();
    let mut live = Vec::new();
    for (name, heap) in &heaps {
        let small = heap.thunk::<F1, _>(move |x: u64| x * 2 + k).unwrap();
        let big = [k; 3];
        let pair = heap.thunk::<F1, _>(move |x: u64| x + big[1]).unwrap();
        let boxed = [k; 8];
        let boxed = heap.thunk::<F1, _>(move |x: u64| x + boxed[7]).unwrap();
        let mut n = 0;
        let counting = heap
            .thunk_mut::<F1, _>(move |x: u64| {
                n += 1;
                x + n
            })
            .unwrap();
        let once = heap.thunk_once::<F1, _>(move |x: u64| x + k).unwrap();
        for t in [small, pair, boxed, counting, once] {
            live.push((name, t));
        }
    }
    let global = Thunk::<F1>::new(move |x: u64| x + k).unwrap();
    let heap = Heap::global().unwrap();
    let mut span = heap.alloc(6).unwrap();
    span.write_all(&code::ret_u32(1)).unwrap();
    let named = span.exec_named("jit: my_function").unwrap();
    let mut span = heap.alloc(6).unwrap();
    span.write_all(&code::ret_u32(2)).unwrap();
    let unnamed = span.exec().unwrap();
    let mut block = Block::new(6).unwrap();
    block.write_all(&code::ret_u32(3)).unwrap();
    let block = block.exec().unwrap();
    let mut page = heap.thunk_page::<F1>().unwrap();
    page.push(move |x: u64| x + k).unwrap();
    let page = page.exec().unwrap();

    let entries = entries();
    let closure = "wxthunk thunk perf_map::everything_is_in_the_map::{{closure}}";
    for (heap, t) in &live {
        let code = t.code();
        assert_covered(&entries, code.as_ptr() as usize, code.len(), closure);
        if **heap == "static-trampolines" {
            assert_covered(
                &entries,
                code.as_ptr() as usize,
                code.len(),
                "wxthunk static trampolines",
            );
        }
        // SAFETY: the thunk is alive.
        assert!(unsafe { (t.as_fn())(1) } > 1);
    }
    let code = global.code();
    for (addr, len, name) in [
        (code.as_ptr(), code.len(), "wxthunk thunk"),
        (named.as_ptr(), named.len(), "jit: my_function"),
        (unnamed.as_ptr(), unnamed.len(), "wxthunk span"),
        (block.as_ptr(), block.len(), "wxthunk block"),
    ] {
        assert_covered(&entries, addr as usize, len, name);
    }
    let first = page.func(0).unwrap() as usize;
    assert_covered(&entries, first, 32, "wxthunk thunk page");
    // Every line is perf's `START SIZE name` with a non-empty name.
    assert!(
        entries
            .iter()
            .all(|(_, len, name)| *len > 0 && !name.is_empty())
    );
    // The frame adapters come first: on x86_64 19 System V ones and 13
    // Windows x64 ones, apart from each other; on AArch64 nine AAPCS64
    // ones (0 to 8 stack arguments before the context).
    let mut adapters: Vec<_> = entries
        .iter()
        .filter(|(_, _, n)| n.starts_with("wxthunk frame adapter ("))
        .collect();
    let (count, first) = if cfg!(target_arch = "aarch64") {
        (9, "frame adapter (AAPCS64, 0 stack arguments)")
    } else {
        (32, "frame adapter (System V, 0 stack arguments)")
    };
    assert_eq!(adapters.len(), count, "{adapters:#?}");
    assert!(entries[0].2.contains(first), "{entries:#?}");
    adapters.sort();
    assert!(adapters.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    println!("PERF-MAP-OK {} lines", entries.len());
    remove_map();
}

#[test]
fn wxthunk_perf_map_1_names_every_piece_of_code() {
    let name = "wxthunk_perf_map_1_names_every_piece_of_code";
    if let Some(out) =
        support::in_child_with_env(name, &[("WXTHUNK_PERF_MAP", "1")], everything_is_in_the_map)
    {
        assert!(out.contains("PERF-MAP-OK"), "{out}");
    }
}

#[test]
fn enable_perf_map_turns_it_on_without_the_variable() {
    let name = "enable_perf_map_turns_it_on_without_the_variable";
    if let Some(out) = support::in_child(name, || {
        let path = wxthunk::enable_perf_map().unwrap();
        assert_eq!(
            path.to_str().unwrap(),
            format!("/tmp/perf-{}.map", std::process::id())
        );
        everything_is_in_the_map();
    }) {
        assert!(out.contains("PERF-MAP-OK"), "{out}");
    }
}

/// Off by default: code is made and no file appears.
#[test]
fn without_either_no_map_is_written() {
    let name = "without_either_no_map_is_written";
    if let Some(out) = support::in_child(name, || {
        assert!(std::env::var_os("WXTHUNK_PERF_MAP").is_none());
        let k = std::hint::black_box(1u64);
        let t = Thunk::<F1>::new(move |x: u64| x + k).unwrap();
        let statics = Heap::builder()
            .strategy(Strategy::StaticTrampolines)
            .build()
            .unwrap();
        let s = statics.thunk::<F1, _>(move |x: u64| x + k).unwrap();
        // SAFETY: both thunks are alive.
        assert_eq!(unsafe { (t.as_fn())(1) + (s.as_fn())(1) }, 4);
        let path = format!("/tmp/perf-{}.map", std::process::id());
        assert!(!std::path::Path::new(&path).exists(), "{path} was written");
        println!("NO-MAP-OK");
    }) {
        assert!(out.contains("NO-MAP-OK"), "{out}");
    }
}

/// A forked child's map starts with its parent's lines (its memory holds
/// the parent's code) and then gets its own.
#[test]
fn a_forked_child_has_its_parents_lines_and_its_own() {
    let name = "a_forked_child_has_its_parents_lines_and_its_own";
    if let Some(out) = support::in_child_with_env(name, &[("WXTHUNK_PERF_MAP", "1")], || {
        let k = std::hint::black_box(3u64);
        let parents = Thunk::<F1>::new(move |x: u64| x + k).unwrap();
        // SAFETY: the grandchild only makes a thunk (the fork model allows
        // it: no lock of wxthunk's is held across fork), reads a file with
        // std (glibc's allocator is fork-safe) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let own = Thunk::<F1>::new(move |x: u64| x * k).unwrap();
            let entries = entries();
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for t in [&parents, &own] {
                    let code = t.code();
                    assert_covered(
                        &entries,
                        code.as_ptr() as usize,
                        code.len(),
                        "wxthunk thunk",
                    );
                }
                // SAFETY: both thunks are alive.
                assert_eq!(unsafe { (parents.as_fn())(1) + (own.as_fn())(1) }, 7);
            }))
            .is_ok();
            remove_map();
            // SAFETY: leaving the forked grandchild at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        println!("FORK-MAP-OK");
        remove_map();
    }) {
        assert!(out.contains("FORK-MAP-OK"), "{out}");
    }
}

/// `perf report` itself names a span and a thunk by their lines, when the
/// code is in anonymous memory (`WXTHUNK_STRATEGY=protect`; perf reads the
/// map for anonymous memory only). The child spins in both under
/// `perf record`; the parent reads the report.
#[test]
fn perf_report_names_spans_and_thunks() {
    let name = "perf_report_names_spans_and_thunks";
    if support::emulated() {
        println!(
            "SKIPPED: under an emulator perf would sample the emulator's own code, not the \
             program's"
        );
        return;
    }
    if support::is_child(name) {
        // The child, run under `perf record` by the parent below.
        let heap = Heap::global().unwrap();
        let mut span = heap.alloc(32).unwrap();
        // A loop of 100,000,000 turns.
        #[cfg(target_arch = "x86_64")]
        // mov ecx, 100_000_000; 1: dec rcx; jnz 1b; ret
        let spin: Vec<u8> = vec![
            0xb9, 0x00, 0xe1, 0xf5, 0x05, 0x48, 0xff, 0xc9, 0x75, 0xfb, 0xc3,
        ];
        #[cfg(target_arch = "aarch64")]
        // bti c; mov w1, #0xe100; movk w1, #0x5f5, lsl #16;
        // 1: subs x1, x1, #1; b.ne 1b; ret
        let spin: Vec<u8> = [
            0xd503_245f_u32,
            0x529c_2001,
            0x72a0_bea1,
            0xf100_0421,
            0x54ff_ffe1,
            0xd65f_03c0,
        ]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
        span.write_all(&spin).unwrap();
        let spin = span.exec_named("jit: spin").unwrap();
        // SAFETY: the code above is a complete function taking nothing.
        let spin: extern "C" fn() = unsafe { std::mem::transmute(spin.as_ptr()) };
        spin();
        let k = std::hint::black_box(3u64);
        let t = Thunk::<F1>::new(move |x: u64| x.wrapping_mul(k)).unwrap();
        let mut acc = 0u64;
        for i in 0..20_000_000u64 {
            // SAFETY: the thunk is alive.
            acc = acc.wrapping_add(unsafe { (t.as_fn())(std::hint::black_box(i)) });
        }
        println!("CHILD-PID {} {acc}", std::process::id());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("perf.data");
    let perf = |args: &[&std::ffi::OsStr]| std::process::Command::new("perf").args(args).output();
    let probe = perf(&[
        "record".as_ref(),
        "-q".as_ref(),
        "-o".as_ref(),
        data.as_os_str(),
        "--".as_ref(),
        "true".as_ref(),
    ]);
    let _ = std::fs::remove_file(&data);
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        println!(
            "SKIPPED: perf cannot record here ({probe:?}); the map's lines are checked by the other tests"
        );
        let _ = std::fs::remove_file(&data);
        return;
    }
    if !wxthunk::probe().allows(Strategy::Protect) {
        println!(
            "SKIPPED: mprotect to read+exec is refused here, so no code is anonymous for perf to name"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("perf")
        .args(["record", "-q", "-o"])
        .arg(&data)
        .arg("--")
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("WXTHUNK_TEST_CHILD", name)
        .env("WXTHUNK_PERF_MAP", "1")
        .env("WXTHUNK_STRATEGY", "protect")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = stdout
        .split("CHILD-PID ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the child's pid")
        .to_owned();
    let report = std::process::Command::new("perf")
        .args(["report", "--stdio", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout).into_owned();
    let _ = std::fs::remove_file(&data);
    let _ = std::fs::remove_file(data.with_extension("data.old"));
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    println!("{report}");
    assert!(report.contains("jit: spin"), "the span is not named");
    assert!(
        report.contains("wxthunk thunk perf_map::perf_report_names_spans_and_thunks::{{closure}}"),
        "the thunk is not named"
    );
}

/// This process's map path, where a hostile user could plant something
/// before the first piece of code is made.
fn map_path() -> String {
    format!("/tmp/perf-{}.map", std::process::id())
}

/// Makes and calls a thunk that captures a runtime value (so it is code on
/// the heap, which the map would record).
fn make_a_thunk() {
    let k = std::hint::black_box(2u64);
    let t = Thunk::<F1>::new(move |x: u64| x + k).unwrap();
    // SAFETY: the thunk is alive.
    assert_eq!(unsafe { (t.as_fn())(1) }, 3);
}

/// A symbolic link planted at the map's path is never followed: the file
/// it names keeps its contents, `enable_perf_map` says why it refused, and
/// thunks are made as usual (with and without the variable).
#[test]
fn a_symlink_at_the_maps_path_is_refused_and_its_target_untouched() {
    for (case, env) in [("variable", "1"), ("enable", "0")] {
        let name = "a_symlink_at_the_maps_path_is_refused_and_its_target_untouched";
        if let Some(out) = support::in_child_with_env(name, &[("WXTHUNK_PERF_MAP", env)], || {
            let tmp = tempfile::tempdir().unwrap();
            let target = tmp.path().join("target");
            std::fs::write(&target, "precious\n").unwrap();
            std::os::unix::fs::symlink(&target, map_path()).unwrap();
            if std::env::var("WXTHUNK_PERF_MAP").as_deref() != Ok("1") {
                let err = wxthunk::enable_perf_map().unwrap_err();
                assert!(err.to_string().contains("symbolic link"), "{err}");
            }
            make_a_thunk();
            let kept = std::fs::read_to_string(&target).unwrap();
            let _ = std::fs::remove_file(map_path());
            assert_eq!(kept, "precious\n", "written through the link");
            println!("SYMLINK-OK");
        }) {
            assert!(out.contains("SYMLINK-OK"), "{case}: {out}");
        }
    }
}

/// A FIFO at the map's path never blocks thunk creation (it hung, and the
/// heap's other threads with it): refused as not a regular file.
#[test]
fn a_fifo_at_the_maps_path_does_not_block_creation() {
    let name = "a_fifo_at_the_maps_path_does_not_block_creation";
    if let Some(out) = support::in_child_with_env(name, &[("WXTHUNK_PERF_MAP", "1")], || {
        let path = std::ffi::CString::new(map_path()).unwrap();
        // SAFETY: a valid C string; makes a FIFO.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        make_a_thunk();
        let err = wxthunk::enable_perf_map().unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let _ = std::fs::remove_file(map_path());
        println!("FIFO-OK");
    }) {
        assert!(out.contains("FIFO-OK"), "{out}");
    }
}

/// A stale map left by an earlier process with the same pid is emptied
/// before the first line, and the file is this user's alone (0600).
#[test]
fn a_stale_map_is_emptied_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let name = "a_stale_map_is_emptied_and_the_file_is_private";
    if let Some(out) = support::in_child_with_env(name, &[("WXTHUNK_PERF_MAP", "1")], || {
        std::fs::write(map_path(), "1000 10 stale line of another process\n").unwrap();
        std::fs::set_permissions(map_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        make_a_thunk();
        let text = std::fs::read_to_string(map_path()).unwrap();
        let mode = std::fs::metadata(map_path()).unwrap().permissions().mode() & 0o777;
        let _ = std::fs::remove_file(map_path());
        assert!(!text.contains("stale"), "the stale lines stayed: {text}");
        assert!(text.contains("wxthunk thunk"), "{text}");
        assert_eq!(mode, 0o600, "readable by others");
        println!("STALE-OK");
    }) {
        assert!(out.contains("STALE-OK"), "{out}");
    }
}

/// Another user's file at the map's path is refused, and left as it was
/// (as root, the test makes one owned by `nobody`).
#[test]
fn another_users_file_at_the_maps_path_is_refused() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: needs root to make a file owned by another user");
        return;
    }
    let name = "another_users_file_at_the_maps_path_is_refused";
    if let Some(out) = support::in_child_with_env(name, &[("WXTHUNK_PERF_MAP", "0")], || {
        std::fs::write(map_path(), "theirs\n").unwrap();
        std::os::unix::fs::chown(map_path(), Some(65534), Some(65534)).unwrap();
        let err = wxthunk::enable_perf_map().unwrap_err();
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
        make_a_thunk();
        let text = std::fs::read_to_string(map_path()).unwrap();
        assert_eq!(std::fs::metadata(map_path()).unwrap().uid(), 65534);
        let _ = std::fs::remove_file(map_path());
        assert_eq!(text, "theirs\n");
        println!("OTHER-USER-OK");
    }) {
        assert!(out.contains("OTHER-USER-OK"), "{out}");
    }
}
