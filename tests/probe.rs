//! `probe()`: found by trying, consistent with what the library does, cheap
//! after the first call.
#![cfg(any(target_os = "linux", windows))]

use wxthunk::{Block, Check, Policy, Strategy};

#[test]
fn probe_is_cached() {
    let a: *const Policy = wxthunk::probe();
    let b: *const Policy = wxthunk::probe();
    assert_eq!(a, b, "the second call returns the same cached report");
}

#[test]
fn probe_reports_this_machine() {
    let p = wxthunk::probe();
    println!("{p}");
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert_eq!(p.page_size, page);
    }
    assert_eq!(p.page_size, wxthunk::page_size());
    assert_eq!(p.os, std::env::consts::OS);
    assert_eq!(p.arch, std::env::consts::ARCH);
    // Each check was tried: nothing is left unknown (but the RWX check on
    // Windows, which has no fork-like child to try it in).
    for (name, c) in [
        ("mprotect", &p.mprotect_exec),
        ("dual", &p.dual_mapping),
        ("rwx", &p.rwx_mapping),
    ] {
        if name == "rwx" && cfg!(windows) {
            assert!(c.to_string().contains("no fork-like child"), "{c}");
            continue;
        }
        assert!(!matches!(c, Check::Unknown { .. }), "{name}: {c}");
    }
    // Windows: the mitigation policies have their rows, and Linux's
    // settings none.
    if cfg!(windows) {
        let text = p.to_string();
        for row in ["DEP", "ACG", "CFG", "CET shadow stacks"] {
            assert!(
                text.lines().any(|l| l.trim_start().starts_with(row)),
                "{text}"
            );
        }
        assert!(!text.contains("MDWE"), "{text}");
    } else {
        assert_eq!(p.mitigations, wxthunk::Mitigations::default());
    }
    // The chosen strategies are ones that work, in the documented order.
    if p.allows(Strategy::Protect) {
        assert_eq!(p.block_strategy, Some(Strategy::Protect));
    }
    if p.allows(Strategy::DualMap) {
        assert_eq!(p.heap_strategy, Some(Strategy::DualMap));
        // A memfd's seal is Linux's question (Windows dual-maps sections).
        assert_eq!(p.memfd_noexec_seal.is_some(), cfg!(target_os = "linux"));
    }
    for s in [p.block_strategy, p.heap_strategy].into_iter().flatten() {
        assert!(p.allows(s));
    }
    assert_eq!(Block::new(0).ok().map(|b| b.strategy()), p.block_strategy);
    // The report says what it chose and why.
    let text = p.to_string();
    assert!(text.contains("Block strategy"));
    assert!(text.contains("heap strategy"));
    assert!(!p.notes.is_empty());
}

#[test]
fn detect_agrees_with_the_cached_probe() {
    let fresh = Policy::detect();
    let cached = wxthunk::probe();
    assert_eq!(fresh.mprotect_exec, cached.mprotect_exec);
    assert_eq!(fresh.dual_mapping, cached.dual_mapping);
    assert_eq!(fresh.rwx_mapping, cached.rwx_mapping);
    assert_eq!(fresh.mdwe, cached.mdwe);
    assert_eq!(fresh.block_strategy, cached.block_strategy);
}

/// Runs this test binary's test `name` in a child with `WXTHUNK_STRATEGY`
/// set to `value`, and returns its stdout (the child asserts).
fn with_strategy_var(name: &str, value: &str) -> Option<String> {
    const MARK: &str = "WXTHUNK_TEST_STRATEGY_CHILD";
    if std::env::var_os(MARK).is_some() {
        return None;
    }
    let out = wxthunk_testkit::self_command()
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .env(wxthunk::STRATEGY_VAR, value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{value:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

#[test]
fn a_strategy_variable_naming_no_strategy_is_reported_and_named_in_errors() {
    let name = "a_strategy_variable_naming_no_strategy_is_reported_and_named_in_errors";
    if std::env::var_os("WXTHUNK_TEST_STRATEGY_CHILD").is_some() {
        let value = std::env::var(wxthunk::STRATEGY_VAR).unwrap();
        let p = wxthunk::probe();
        println!("{p}");
        assert_eq!(
            p.strategy_setting,
            wxthunk::StrategySetting::Invalid {
                value: value.clone()
            }
        );
        assert_eq!(p.thunk_strategy, None, "the default heaps fail");
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("WXTHUNK_STRATEGY") && n.contains(&format!("{value:?}"))),
            "{:?}",
            p.notes
        );
        let e = wxthunk::Heap::global().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("WXTHUNK_STRATEGY") && msg.contains(&format!("{value:?}")),
            "{msg}"
        );
        let e = wxthunk::Thunk::<unsafe extern "C" fn() -> u32>::new(|| 1).unwrap_err();
        assert!(matches!(e, wxthunk::Error::InvalidSetting { .. }), "{e}");
        // Heaps that do not read the variable are unaffected.
        assert!(wxthunk::Heap::new().is_ok());
        return;
    }
    // (Set to nothing means unset: `an_empty_strategy_variable_means_unset`.)
    for value in ["bogus", " ", "dual map"] {
        with_strategy_var(name, value);
    }
}

#[test]
fn a_forced_strategy_is_reported_case_insensitively_and_explained_truthfully() {
    let name = "a_forced_strategy_is_reported_case_insensitively_and_explained_truthfully";
    if std::env::var_os("WXTHUNK_TEST_STRATEGY_CHILD").is_some() {
        let value = std::env::var(wxthunk::STRATEGY_VAR).unwrap();
        let s: Strategy = value.parse().unwrap();
        let p = wxthunk::probe();
        println!("{p}");
        assert_eq!(p.strategy_setting, wxthunk::StrategySetting::Forced(s));
        assert_eq!(p.thunk_strategy, Some(s));
        // The heap strategy row says what the default heaps write code with.
        if s.code().is_some() {
            let table = p.to_string();
            let row = table.lines().find(|l| l.contains("heap strategy")).unwrap();
            assert!(
                row.contains(&format!("{s} (forced by WXTHUNK_STRATEGY")),
                "{row}"
            );
        }
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with(&format!("WXTHUNK_STRATEGY={s}:"))),
            "{:?}",
            p.notes
        );
        // No note claims that what works here does not.
        assert!(
            !p.notes.iter().any(|n| n.contains("neither")),
            "{:?}",
            p.notes
        );
        assert_eq!(wxthunk::Heap::global().unwrap().strategy(), s);
        return;
    }
    let p = wxthunk::probe();
    for s in [Strategy::Protect, Strategy::StaticTrampolines] {
        if !p.allows(s) {
            println!("SKIPPED: {s} does not work here");
            continue;
        }
        let shouting = s.name().to_uppercase();
        with_strategy_var(name, &shouting);
    }
}

/// `WXTHUNK_STRATEGY=` (set to nothing, as a unit file that clears it
/// writes it) means unset: the default heaps use the probed strategy
/// (every default-heap thunk failed with an invalid-setting error).
#[test]
fn an_empty_strategy_variable_means_unset() {
    let name = "an_empty_strategy_variable_means_unset";
    if let Some(out) = wxthunk_testkit::in_child_with_env(name, &[("WXTHUNK_STRATEGY", "")], || {
        let p = wxthunk::probe();
        assert_eq!(p.strategy_setting, wxthunk::StrategySetting::Unset);
        let k = std::hint::black_box(2u32);
        let t =
            wxthunk::Thunk::<unsafe extern "C" fn(u32) -> u32>::new(move |x: u32| x * k).unwrap();
        // SAFETY: alive.
        assert_eq!(unsafe { (t.as_fn())(21) }, 42);
        println!("EMPTY-OK");
    }) {
        assert!(out.contains("EMPTY-OK"), "{out}");
    }
}
