//! The `wxthunk` binary, run as a user would.

use std::process::Command;

use wxthunk_testkit::Lockdown;

fn wxthunk(args: &[&str]) -> String {
    let out = wxthunk_testkit::command(env!("CARGO_BIN_EXE_wxthunk"))
        .args(args)
        .output()
        .expect("run wxthunk");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(
        out.status.success(),
        "wxthunk {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn probe_json_is_machine_readable() {
    let v: serde_json::Value =
        serde_json::from_str(&wxthunk(&["probe", "--json"])).expect("valid JSON");
    assert_eq!(v["os"], std::env::consts::OS);
    assert!(v["page_size"].as_u64().unwrap().is_power_of_two());
    for key in [
        "rwx_mapping",
        "mprotect_exec",
        "dual_mapping",
        "static_trampolines",
    ] {
        let result = v[key]["result"].as_str().unwrap();
        assert!(
            ["allowed", "refused", "unknown"].contains(&result),
            "{key}: {result}"
        );
    }
    assert_eq!(
        v["block_strategy"].as_str().map(str::to_owned),
        wxthunk::probe().block_strategy.map(|s| s.to_string())
    );
    assert!(v["notes"].as_array().is_some_and(|n| !n.is_empty()));
    assert_eq!(v["version"], wxthunk::VERSION);
    // Every other key is a field of `wxthunk::Policy`, spelled as in Rust.
    let debug = format!("{:?}", wxthunk::probe());
    for key in v.as_object().unwrap().keys().filter(|k| *k != "version") {
        assert!(
            debug.contains(&format!(" {key}: ")),
            "{key} is not a Policy field"
        );
    }
    assert_eq!(v["strategy_setting"]["state"], "unset");
}

#[test]
fn help_says_what_running_with_no_command_does() {
    let out = wxthunk(&["--help"]);
    assert!(
        out.contains("With no command: the probe report, the demo, then a quick bench"),
        "{out}"
    );
}

#[test]
fn probe_table_names_the_strategies() {
    let out = wxthunk(&["probe"]);
    assert!(out.contains("Block strategy"), "{out}");
    assert!(out.contains("mprotect RW->RX"), "{out}");
}

#[test]
fn no_arguments_prints_the_probe_then_runs_the_demo() {
    let out = wxthunk(&[]);
    assert!(out.contains("wxthunk probe"), "{out}");
    if matches!(std::env::consts::ARCH, "x86_64" | "aarch64") {
        assert!(out.contains("add(2, 40)          = 42"), "{out}");
        assert!(out.contains("square(7) + 1       = 50"), "{out}");
        assert!(out.contains("square(7) + 100     = 149"), "{out}");
        assert!(
            out.contains(
                "sorted by distance from 50: [47, 57, 37, 67, 30, 74, 20, 84, 10, 94, 3, 0]"
            ),
            "{out}"
        );
        assert!(out.contains("collected 3 files into a Vec"), "{out}");
    }
}

#[test]
fn bench_json_reports_every_group_and_memory_per_thunk() {
    let v: serde_json::Value =
        serde_json::from_str(&wxthunk(&["bench", "--quick", "--json"])).expect("valid JSON");
    let rows = v["rows"].as_array().expect("rows");
    for group in ["call", "create+drop", "heap", "block"] {
        assert!(rows.iter().any(|r| r["group"] == group), "no {group} row");
    }
    // Every row is measured; under an emulator, rows of a strategy the
    // probe refuses there (dual mapping) say so instead.
    let measured = |r: &serde_json::Value| r["median_ns"].as_f64().is_some_and(|ns| ns > 0.0);
    let refused = |r: &serde_json::Value| {
        r["skipped"]
            .as_str()
            .is_some_and(|why| why.contains("cannot be used in this process"))
    };
    assert!(
        rows.iter()
            .all(|r| measured(r) || (wxthunk_testkit::emulated() && refused(r))),
        "{rows:#?}"
    );
    let mem = &v["memory_per_thunk"];
    let resident = mem["resident_bytes"].as_f64().unwrap();
    if mem["strategy"] == "static-trampolines" {
        // Where dual mapping is refused (under an emulator).
        assert!(
            (64.0..65.0).contains(&resident),
            "a 32-byte record, its 16-byte data slot and the table's code per thunk: {resident}"
        );
    } else {
        assert!(
            (48.0..49.0).contains(&resident),
            "a 32-byte granule and its 16-byte data slot (the 8-byte closure inline) per \
             thunk, plus partial last pages: {resident}"
        );
    }
    assert!(mem["handle_bytes"].as_u64().is_some());
}

/// Runs `wxthunk args` inside lockdown (b): `memfd_create` refused by
/// seccomp and `PR_SET_MDWE`, both set up in the child before it runs the
/// command. `None` (and a SKIPPED line) where the kernel has no MDWE.
fn under_lockdown_b(args: &[&str]) -> Option<std::process::Output> {
    use std::os::unix::process::CommandExt;

    let mut cmd = wxthunk_testkit::command(env!("CARGO_BIN_EXE_wxthunk"));
    cmd.args(args);
    // SAFETY: the hook runs in the forked child before exec and only makes
    // system calls (prctl, then installing the filter compiled here).
    unsafe { cmd.pre_exec(Lockdown::NoMemfdMdwe.pre_exec_hook()) };
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            println!("SKIPPED: this kernel has no PR_SET_MDWE: lockdown (b) could not be set up");
            None
        }
        Err(e) => panic!("spawn wxthunk {args:?} under lockdown: {e}"),
    }
}

/// `wxthunk probe` inside lockdown (b).
#[test]
fn probe_inside_mdwe_and_a_memfd_refusing_seccomp_filter() {
    let Some(out) = under_lockdown_b(&["probe"]) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "MDWE                  on",
        "seccomp               filter",
        "memfd dual mapping    refused (memfd_create failed: Operation not permitted",
        "static trampolines    allowed, table mapped from",
        "file dual mapping     allowed, in ",
        "thunk strategy        static-trampolines",
        "Block strategy        dual-map-file",
        "heap strategy         dual-map-file",
    ] {
        assert!(stdout.contains(want), "missing {want:?}");
    }
}

/// Every subcommand works inside lockdown (b), where thunks are static
/// trampolines and written code lives in files without a name in a
/// directory (memfds and `mprotect` to exec are refused): it shows what
/// works, says per row why the rest is skipped, and exits 0.
#[test]
fn every_subcommand_shows_what_works_inside_lockdown_b() {
    for args in [
        &["demo"][..],
        &["bench", "--quick"],
        &[],
        &["bench", "--quick", "--json"],
    ] {
        let Some(out) = under_lockdown_b(args) else {
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("--- wxthunk {args:?} ---\n{stdout}{stderr}");
        assert!(
            out.status.success(),
            "wxthunk {args:?}: {}\n{stderr}",
            out.status
        );
        if args.first() == Some(&"bench") && args.contains(&"--json") {
            let v: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
            let rows = v["rows"].as_array().unwrap();
            assert!(rows.iter().any(|r| r["skipped"].is_string()), "{stdout}");
            assert!(
                rows.iter().any(
                    |r| r["name"] == "thunk (static-trampolines)" && r["median_ns"].is_number()
                ),
                "{stdout}"
            );
            assert_eq!(v["memory_per_thunk"]["strategy"], "static-trampolines");
            continue;
        }
        if args.is_empty() || args[0] == "demo" {
            assert!(
                stdout.contains("strategy dual-map-file")
                    && stdout.contains("square(7) + 100     = 149"),
                "the Block half runs from a file: {stdout}"
            );
            assert!(
                stdout.contains("sorted by distance"),
                "the thunk half runs: {stdout}"
            );
            assert!(stdout.contains("nftw walk"), "{stdout}");
        }
        if args.is_empty() || args[0] == "bench" {
            assert!(stdout.contains("thunk (static-trampolines)"), "{stdout}");
            assert!(stdout.contains("skipped:"), "{stdout}");
            assert!(
                stdout.contains("ratio = "),
                "the ratio has a legend: {stdout}"
            );
            assert!(
                stdout.contains("memory per live thunk at 100000 (static-trampolines)"),
                "{stdout}"
            );
        }
    }
}

/// The demo's nftw walk writes its files in a directory it made itself:
/// a directory planted where a predictable name (`wxthunk-demo-<pid>`)
/// would be, a link to a victim's directory, is never written through.
/// The test plants such a link for each of the next 400 process ids in a
/// `TMPDIR` of its own, then runs the demo there.
#[test]
fn the_demo_never_writes_through_a_planted_directory() {
    let Ok(last) = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid") else {
        println!(
            "SKIPPED: /proc/sys/kernel/ns_last_pid is not readable (no process ids to plant for)"
        );
        return;
    };
    let last: u32 = last.trim().parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    let planted = tmp.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    for pid in last + 1..=last + 400 {
        std::os::unix::fs::symlink(victim.path(), planted.join(format!("wxthunk-demo-{pid}")))
            .unwrap();
    }
    let out = wxthunk_testkit::command(env!("CARGO_BIN_EXE_wxthunk"))
        .arg("demo")
        .env("TMPDIR", &planted)
        .output()
        .expect("run wxthunk");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let written: Vec<_> = std::fs::read_dir(victim.path()).unwrap().collect();
    assert!(
        written.is_empty(),
        "the demo wrote into the victim's directory: {written:?}"
    );
    assert!(stdout.contains("notes.txt"), "the walk ran: {stdout}");
    // Only the planted links are left: the demo removed its own directory.
    let left = std::fs::read_dir(&planted).unwrap().count();
    assert_eq!(left, 400, "the demo left its directory behind");
}

/// `probe --check` is a health check: status 0 where thunks (and, with
/// `--code`, written code) work; status 1 naming why when the environment
/// is invalid or nothing works.
#[test]
fn probe_check_fails_where_wxthunk_cannot_work() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        wxthunk_testkit::command(env!("CARGO_BIN_EXE_wxthunk"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run wxthunk")
    };
    let ok = run(&["probe", "--check", "--code"], &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = run(&["probe", "--check"], &[("WXTHUNK_STRATEGY", "bogus")]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("health check failed") && stderr.contains("WXTHUNK_STRATEGY"),
        "{stderr}"
    );
    // The report itself is still printed.
    assert!(String::from_utf8_lossy(&bad.stdout).contains("WXTHUNK_STRATEGY"));
    // Without --check an invalid setting is reported, not a failure.
    assert!(
        run(&["probe"], &[("WXTHUNK_STRATEGY", "bogus")])
            .status
            .success()
    );
}

/// Under an emulator that translates code once per address (qemu-user
/// here; valgrind without `--smc-check=all` alike), code rewritten through
/// a dual mapping's writable view runs stale. The probe rewrites its test
/// code at the same address and refuses dual mapping there, with the
/// cause; the library then makes thunks that work there, and the demo runs
/// them. Natively, the same checks allow dual mapping on this machine.
#[test]
fn under_an_emulator_that_misses_aliased_writes_dual_mapping_is_refused() {
    let Some(qemu) = ["qemu-x86_64", "/usr/bin/qemu-x86_64"]
        .into_iter()
        .find(|q| Command::new(q).arg("--version").output().is_ok())
    else {
        println!("SKIPPED: no qemu-x86_64 (Debian's qemu-user): the emulated probe was not run");
        return;
    };
    if !cfg!(target_arch = "x86_64") {
        println!("SKIPPED: qemu-x86_64 runs an x86_64 build of wxthunk only");
        return;
    }
    let run = |args: &[&str]| {
        let out = Command::new(qemu)
            .arg(env!("CARGO_BIN_EXE_wxthunk"))
            .args(args)
            .output()
            .expect("run wxthunk under qemu-x86_64");
        assert!(
            out.status.success(),
            "wxthunk {args:?} under {qemu} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let v: serde_json::Value = serde_json::from_str(&run(&["probe", "--json"])).unwrap();
    for key in ["dual_mapping", "file_dual_mapping"] {
        assert_eq!(
            v[key]["result"], "refused",
            "{key} under {qemu}: {}",
            v[key]
        );
        let reason = v[key]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("ran the old code"), "{key}: {reason}");
    }
    assert_eq!(v["heap_strategy"], "protect", "{v}");
    assert_ne!(v["thunk_strategy"], "dual-map", "{v}");
    // What the library picked works there: the demo makes, calls and drops
    // thunks and spans, reusing their memory.
    run(&["demo"]);
    // Natively, dual mapping passes the same rewrite check here.
    if wxthunk::probe().dual_mapping.is_allowed() {
        let native: serde_json::Value =
            serde_json::from_str(&wxthunk(&["probe", "--json"])).unwrap();
        assert_eq!(native["dual_mapping"]["result"], "allowed");
    }
}
