//! `wxthunk probe`: the policy report as a table or as JSON.

use serde_json::{Value, json};
use wxthunk::{Check, Mdwe, Policy, Seccomp, Selinux, StrategySetting};

pub fn run(as_json: bool) {
    let policy = wxthunk::probe();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(policy)).expect("JSON of plain values")
        );
    } else {
        print!("{policy}");
    }
}

/// `probe --check`: `Err` naming every reason this process cannot use
/// wxthunk as it is configured (`code`: written code too).
pub fn health(code: bool) -> Result<(), Box<dyn std::error::Error>> {
    let policy = wxthunk::probe();
    let mut failed = Vec::new();
    match &policy.strategy_setting {
        StrategySetting::Invalid { .. } => failed.push(format!(
            "{}: {}",
            wxthunk::STRATEGY_VAR,
            policy.strategy_setting
        )),
        StrategySetting::Forced(s) if !policy.allows(*s) => failed.push(format!(
            "{} forces {s}, which does not work here: {}",
            wxthunk::STRATEGY_VAR,
            policy.check(*s)
        )),
        _ => {}
    }
    if policy.thunk_strategy.is_none() {
        failed.push("no strategy for thunks works here".into());
    }
    if code && policy.block_strategy.is_none() {
        failed.push("no strategy for written code works here".into());
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!("health check failed: {}", failed.join("; ")).into())
}

fn check(c: &Check) -> Value {
    match c {
        Check::Allowed => json!({ "result": "allowed" }),
        Check::Refused { reason } => json!({ "result": "refused", "reason": reason }),
        Check::Unknown { reason } => json!({ "result": "unknown", "reason": reason }),
        other => json!({ "result": other.to_string() }),
    }
}

fn to_json(p: &Policy) -> Value {
    let mdwe = match &p.mdwe {
        Mdwe::NotSupported => json!({ "state": "not-supported" }),
        Mdwe::Off => json!({ "state": "off" }),
        Mdwe::RefuseExecGain { inherited } => {
            json!({ "state": "refuse-exec-gain", "inherited": inherited })
        }
        Mdwe::Unknown { reason } => json!({ "state": "unknown", "reason": reason }),
        other => json!({ "state": format!("{other:?}") }),
    };
    let selinux = match &p.selinux {
        Selinux::Absent => json!({ "state": "absent" }),
        Selinux::Permissive { deny_execmem } => {
            json!({ "state": "permissive", "deny_execmem": deny_execmem })
        }
        Selinux::Enforcing { deny_execmem } => {
            json!({ "state": "enforcing", "deny_execmem": deny_execmem })
        }
        other => json!({ "state": format!("{other:?}") }),
    };
    let seccomp = match &p.seccomp {
        Seccomp::Unknown => json!({ "mode": "unknown" }),
        Seccomp::Disabled => json!({ "mode": "disabled" }),
        Seccomp::Strict => json!({ "mode": "strict" }),
        Seccomp::Filter { filters } => json!({ "mode": "filter", "filters": filters }),
        other => json!({ "mode": format!("{other:?}") }),
    };
    let setting = match &p.strategy_setting {
        StrategySetting::Unset => json!({ "state": "unset" }),
        StrategySetting::Forced(s) => json!({ "state": "forced", "strategy": s.name() }),
        StrategySetting::Invalid { value } => json!({ "state": "invalid", "value": value }),
        other => json!({ "state": other.to_string() }),
    };
    json!({
        "version": wxthunk::VERSION,
        "os": p.os,
        "arch": p.arch,
        "page_size": p.page_size,
        "rwx_mapping": check(&p.rwx_mapping),
        "mprotect_exec": check(&p.mprotect_exec),
        "dual_mapping": check(&p.dual_mapping),
        "file_dual_mapping": check(&p.file_dual_mapping),
        "code_file_dir": p.code_file_dir.as_ref().map(|d| json!({
            "path": d.path.to_string_lossy(),
            "chosen_by": d.chosen_by,
            "o_tmpfile": d.o_tmpfile,
        })),
        "static_trampolines": check(&p.static_trampolines),
        "trampoline_source": p.trampoline_source,
        "memfd_noexec_seal": p.memfd_noexec_seal,
        "mdwe": mdwe,
        "memfd_noexec": p.memfd_noexec,
        "selinux": selinux,
        "seccomp": seccomp,
        "pax": p.pax,
        "read_implies_exec": p.read_implies_exec,
        "mitigations": json!({
            "dep": p.mitigations.dep,
            "arbitrary_code_guard": p.mitigations.arbitrary_code_guard,
            "control_flow_guard": p.mitigations.control_flow_guard,
            "call_targets_registered": p.mitigations.call_targets_registered,
            "shadow_stack": p.mitigations.shadow_stack,
        }),
        "block_strategy": p.block_strategy.map(|s| s.name()),
        "heap_strategy": p.heap_strategy.map(|s| s.name()),
        "thunk_strategy": p.thunk_strategy.map(|s| s.name()),
        "strategy_setting": setting,
        "debug_thunks": p.debug_thunks,
        "notes": p.notes,
    })
}
