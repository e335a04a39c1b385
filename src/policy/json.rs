//! The probe's report as JSON ([`Policy::to_json`]), behind the `json`
//! feature: what `wxthunk probe --json` prints and the C API's
//! `wx_probe_json` returns, from one place.

use serde_json::{Value, json};

use super::{Check, Mdwe, Policy, Seccomp, Selinux, StrategySetting};

impl Policy {
    /// The report as pretty-printed JSON: every field of the policy, its
    /// checks as `{"result": "allowed" | "refused" | "unknown", "reason"}`,
    /// the strategies by name, and the crate's version.
    ///
    /// # Examples
    ///
    /// ```
    /// let json = wxthunk::probe().to_json();
    /// assert!(json.contains(&format!("\"version\": \"{}\"", wxthunk::VERSION)));
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&to_value(self)).expect("JSON of plain values")
    }
}

fn check(c: &Check) -> Value {
    match c {
        Check::Allowed => json!({ "result": "allowed" }),
        Check::Refused { reason } => json!({ "result": "refused", "reason": reason }),
        Check::Unknown { reason } => json!({ "result": "unknown", "reason": reason }),
    }
}

fn to_value(p: &Policy) -> Value {
    let mdwe = match &p.mdwe {
        Mdwe::NotSupported => json!({ "state": "not-supported" }),
        Mdwe::Off => json!({ "state": "off" }),
        Mdwe::RefuseExecGain { inherited } => {
            json!({ "state": "refuse-exec-gain", "inherited": inherited })
        }
        Mdwe::Unknown { reason } => json!({ "state": "unknown", "reason": reason }),
    };
    let selinux = match &p.selinux {
        Selinux::Absent => json!({ "state": "absent" }),
        Selinux::Permissive { deny_execmem } => {
            json!({ "state": "permissive", "deny_execmem": deny_execmem })
        }
        Selinux::Enforcing { deny_execmem } => {
            json!({ "state": "enforcing", "deny_execmem": deny_execmem })
        }
    };
    let seccomp = match &p.seccomp {
        Seccomp::Unknown => json!({ "mode": "unknown" }),
        Seccomp::Disabled => json!({ "mode": "disabled" }),
        Seccomp::Strict => json!({ "mode": "strict" }),
        Seccomp::Filter { filters } => json!({ "mode": "filter", "filters": filters }),
    };
    let setting = match &p.strategy_setting {
        StrategySetting::Unset => json!({ "state": "unset" }),
        StrategySetting::Forced(s) => json!({ "state": "forced", "strategy": s.name() }),
        StrategySetting::Invalid { value } => json!({ "state": "invalid", "value": value }),
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
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
