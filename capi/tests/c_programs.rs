//! The C and C++ tests (`tests/c/*.c`, `tests/cpp/*.cpp`) and the examples
//! (`examples/*.c`, `*.cpp`): compiled with the system's C and C++
//! compilers (`CC`, `CXX`; `cc` and `c++` by default) against the static
//! library this package builds (and `api.c` against the shared one too),
//! then run plainly and inside each lockdown of the test kit (MDWE,
//! memfd refused, systemd's `MemoryDenyWriteExecute=`), entered before
//! `exec`, so the program starts locked. Each must print its line of
//! success and exit 0.

#![cfg(target_os = "linux")]

mod matrix_gen;

use std::path::{Path, PathBuf};
use std::process::Command;

use wxthunk_testkit::child::{emulated, output_or_kill};
use wxthunk_testkit::lockdown::Lockdown;

/// The directory where cargo built this package's libraries for this test
/// run: `target/<profile>/deps`, beside the test binary (the copies in
/// `target/<profile>` are refreshed only by `cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().expect("target/<profile>/deps").to_owned()
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A compiled program, and how it was linked.
struct Program {
    path: PathBuf,
    name: String,
}

/// Whether the tests can run here (natively, with a compiler).
fn runnable() -> bool {
    if emulated() {
        println!(
            "SKIPPED: the C tests compile with the host's compilers; under an emulator the CI's \
             cross step builds and runs them (.ci/capi-cross)"
        );
        return false;
    }
    true
}

/// Compiles `source` (C or C++ by its extension) into `dir`, linked with
/// this package's static library, or the shared one when `shared`.
fn compile(source: &Path, dir: &Path, shared: bool) -> Program {
    let stem = source.file_stem().unwrap().to_string_lossy().into_owned();
    let cpp = source.extension().is_some_and(|e| e == "cpp");
    let name = format!("{stem}{}", if shared { "-shared" } else { "" });
    let path = dir.join(&name);
    let compiler = if cpp {
        std::env::var("CXX").unwrap_or_else(|_| "c++".into())
    } else {
        std::env::var("CC").unwrap_or_else(|_| "cc".into())
    };
    let lib = lib_dir();
    let mut cmd = Command::new(&compiler);
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c11" })
        .args(["-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"])
        // The tests cast thunk pointers (`void *`) to their function
        // types by design.
        .arg("-Wno-cast-function-type")
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg("-I")
        .arg(manifest_dir().join("tests/c"))
        .arg(source)
        .arg("-o")
        .arg(&path);
    if shared {
        // As a user links the library cargo built, where it is.
        cmd.arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lwxthunk_c");
    } else {
        cmd.arg(lib.join("libwxthunk_c.a"));
    }
    // What Rust's standard library needs of the system when linked
    // statically (rustc --print native-static-libs).
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let out = cmd.output().unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {}: failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Program { path, name }
}

/// Runs `program` (with `args`), in `lockdown` if any; its output, or
/// `None` after a SKIPPED line when the lockdown cannot be set up here.
fn run(program: &Program, args: &[&str], lockdown: Option<Lockdown>) -> Option<String> {
    let mut cmd = Command::new(&program.path);
    cmd.args(args);
    if let Some(l) = lockdown {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook only makes system calls (prctl, seccomp) in
        // the forked child before exec; the filters were compiled before.
        unsafe { cmd.pre_exec(l.pre_exec_hook()) };
    }
    let where_ = lockdown.map_or("plainly".to_owned(), |l| format!("under {}", l.name()));
    let out = match output_or_kill(&mut cmd) {
        Ok(out) => out,
        Err(e) if lockdown.is_some() && e.contains("Invalid argument") => {
            println!(
                "SKIPPED: {} {where_}: the lockdown cannot be set up here ({e})",
                program.name
            );
            return None;
        }
        Err(e) => panic!("{} {where_}: {e}", program.name),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {where_} failed ({}):\n{stdout}\n{stderr}",
        program.name,
        out.status
    );
    Some(stdout)
}

/// Runs each program plainly and in every lockdown for code, checking the
/// lockdown took (the probe, from `api`, sees it).
fn run_everywhere(programs: &[Program], args: &[&str]) {
    for p in programs {
        let out = run(p, args, None).unwrap();
        println!("{} plainly:\n{out}", p.name);
    }
    for lockdown in Lockdown::FOR_CODE {
        for p in programs {
            if let Some(out) = run(p, args, Some(lockdown)) {
                println!(
                    "{} under {}: {}",
                    p.name,
                    lockdown.name(),
                    out.lines().last().unwrap_or("")
                );
            }
        }
    }
}

fn sources(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The C tests (`tests/c/*.c`) but the million, plainly and locked.
#[test]
fn c_tests_pass_plainly_and_in_every_lockdown() {
    if !runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let programs: Vec<Program> = sources("tests/c", "c")
        .iter()
        .filter(|s| !s.ends_with("million.c"))
        .map(|s| compile(s, dir.path(), false))
        .collect();
    run_everywhere(&programs, &[]);
}

/// The lockdowns take: the probe of a locked C program reports them.
#[test]
fn the_lockdowns_reach_the_c_programs() {
    if !runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = compile(&manifest_dir().join("tests/c/api.c"), dir.path(), false);
    for lockdown in [Lockdown::Mdwe, Lockdown::NoMemfdMdwe] {
        if let Some(json) = run(&api, &["--probe"], Some(lockdown)) {
            assert!(
                json.contains("refuse-exec-gain"),
                "{}: {json}",
                lockdown.name()
            );
        }
    }
}

/// The library as a shared object: `api.c` linked against it.
#[test]
fn the_shared_library_serves_the_same_api() {
    if !runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = compile(&manifest_dir().join("tests/c/api.c"), dir.path(), true);
    let out = run(&api, &[], None).unwrap();
    assert!(out.contains("api: all checks passed"), "{out}");
    // It was the shared library that ran: the program needs it.
    let needed = Command::new("readelf").arg("-d").arg(&api.path).output();
    if let Ok(needed) = needed {
        let text = String::from_utf8_lossy(&needed.stdout);
        assert!(text.contains("[libwxthunk_c.so]"), "{text}");
    }
}

/// A million thunks created and freed, three rounds: flat memory.
#[test]
fn a_million_thunks_leave_memory_flat() {
    if !runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let million = compile(&manifest_dir().join("tests/c/million.c"), dir.path(), false);
    let out = run(&million, &[], None).unwrap();
    println!("{out}");
    // Under the lockdown that forces static trampolines too.
    if let Some(out) = run(&million, &[], Some(Lockdown::NoMemfdMdwe)) {
        println!("under {}:\n{out}", Lockdown::NoMemfdMdwe.name());
    }
}

/// The C++ tests (`tests/cpp/*.cpp`), plainly and locked.
#[test]
fn cpp_tests_pass_plainly_and_in_every_lockdown() {
    if !runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let programs: Vec<Program> = sources("tests/cpp", "cpp")
        .iter()
        .map(|s| compile(s, dir.path(), false))
        .collect();
    run_everywhere(&programs, &[]);
}

/// What `wxthunk.hpp` refuses does not compile, with its message: each
/// `tests/cpp/fail/*.cpp` names the words its error must contain.
#[test]
fn cpp_misuse_is_a_static_assert_with_a_message() {
    if !runnable() {
        return;
    }
    let cases = sources("tests/cpp/fail", "cpp");
    assert!(cases.len() >= 5);
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("// expect: "))
            .expect("a `// expect:` line");
        let out = Command::new(&compiler)
            .args(["-std=c++17", "-fsyntax-only", "-I"])
            .arg(manifest_dir().join("include"))
            .arg(&case)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} compiled", case.display());
        assert!(
            stderr.contains(expect),
            "{}: the error lacks {expect:?}:\n{stderr}",
            case.display()
        );
    }
}

/// The examples (`examples/*.c`, `*.cpp`), plainly and locked.
#[test]
fn examples_run_plainly_and_in_every_lockdown() {
    if !runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let programs: Vec<Program> = sources("examples", "c")
        .into_iter()
        .chain(sources("examples", "cpp"))
        .map(|s| compile(&s, dir.path(), false))
        .collect();
    assert!(!programs.is_empty());
    run_everywhere(&programs, &[]);
}

/// `tests/c/matrix.c` is what the generator writes.
#[test]
fn the_checked_in_matrix_is_current() {
    let path = manifest_dir().join("tests/c/matrix.c");
    let generated = matrix_gen::source();
    if std::env::var_os("WXTHUNK_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "tests/c/matrix.c is stale: `WXTHUNK_BLESS=1 cargo test -p wxthunk-c --test c_programs` \
         rewrites it"
    );
}
