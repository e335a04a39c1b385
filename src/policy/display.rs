//! The table [`Policy`]'s `Display` prints (the CLI's `probe`).

use std::fmt;

use super::report::{Check, Mdwe, Policy, Seccomp, Selinux};
use super::settings::{DEBUG_VAR, STRATEGY_VAR};
use crate::strategy::Strategy;
use crate::sys;

fn opt_strategy(s: Option<Strategy>) -> &'static str {
    s.map_or("none (no strategy works here)", Strategy::name)
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            writeln!(f, "  {key:<22}{value}")
        };
        writeln!(
            f,
            "wxthunk probe: what this process may do with executable memory"
        )?;
        row(
            f,
            "platform",
            &format_args!("{} {}, page size {}", self.os, self.arch, self.page_size),
        )?;
        match &self.rwx_mapping {
            Check::Unknown { reason } if reason.starts_with("not tried") => {
                row(f, "rwx mapping", &format_args!("{reason}"))?
            }
            other => row(
                f,
                "rwx mapping",
                &format_args!("{other} (tried in a child process)"),
            )?,
        }
        row(f, "mprotect RW->RX", &self.mprotect_exec)?;
        let seal = match self.memfd_noexec_seal {
            Some(true) => ", memfd with MFD_NOEXEC_SEAL",
            Some(false) => ", memfd without MFD_NOEXEC_SEAL",
            None => "",
        };
        row(
            f,
            &format!("{} dual mapping", sys::CODE_FILE_KIND),
            &format_args!("{}{seal}", self.dual_mapping),
        )?;
        match &self.code_file_dir {
            Some(dir) if self.file_dual_mapping.is_allowed() => {
                row(f, "file dual mapping", &format_args!("allowed, in {dir}"))?
            }
            _ => row(f, "file dual mapping", &self.file_dual_mapping)?,
        }
        let mdwe = match &self.mdwe {
            Mdwe::NotSupported => "not supported by this kernel".to_owned(),
            Mdwe::Off => "off".to_owned(),
            Mdwe::RefuseExecGain { inherited: true } => {
                "on (refuse exec gain, inherited)".to_owned()
            }
            Mdwe::RefuseExecGain { inherited: false } => {
                "on (refuse exec gain, not inherited)".to_owned()
            }
            Mdwe::Unknown { reason } => format!("unknown ({reason})"),
        };
        match &self.trampoline_source {
            Some(source) if self.static_trampolines.is_allowed() => row(
                f,
                "static trampolines",
                &format_args!("allowed, table {source}"),
            )?,
            _ => row(f, "static trampolines", &self.static_trampolines)?,
        }
        if self.os == "windows" {
            let m = &self.mitigations;
            let said = |v: Option<bool>, on: &str| match v {
                Some(true) => format!("on{on}"),
                Some(false) => "off".to_owned(),
                None => "not reported by the system".to_owned(),
            };
            row(f, "DEP", &said(m.dep, ""))?;
            row(
                f,
                "ACG",
                &said(
                    m.arbitrary_code_guard,
                    " (no executable memory may be made: thunks use the table compiled into \
                     the image)",
                ),
            )?;
            let targets = if m.call_targets_registered {
                "; the valid call targets in generated code are thunk entries and span \
                 starts, registered as made (SetProcessValidCallTargets)"
            } else {
                "; every address of generated code is a valid call target (Windows' \
                 default: nothing registered)"
            };
            row(
                f,
                "CFG",
                &format_args!("{}{targets}", said(m.control_flow_guard, "")),
            )?;
            row(f, "CET shadow stacks", &said(m.shadow_stack, ""))?;
        } else {
            row(f, "MDWE", &mdwe)?;
            let sysctl = self
                .memfd_noexec
                .map_or("absent".to_owned(), |v| v.to_string());
            row(f, "vm.memfd_noexec", &sysctl)?;
            let execmem = |d: &Option<bool>| match d {
                Some(true) => ", deny_execmem on",
                Some(false) => ", deny_execmem off",
                None => "",
            };
            let selinux = match &self.selinux {
                Selinux::Absent => "absent".to_owned(),
                Selinux::Permissive { deny_execmem } => {
                    format!("permissive{}", execmem(deny_execmem))
                }
                Selinux::Enforcing { deny_execmem } => {
                    format!("enforcing{}", execmem(deny_execmem))
                }
            };
            row(f, "SELinux", &selinux)?;
            let seccomp = match &self.seccomp {
                Seccomp::Unknown => "unknown".to_owned(),
                Seccomp::Disabled => "off".to_owned(),
                Seccomp::Strict => "strict".to_owned(),
                Seccomp::Filter { filters: Some(n) } => format!("filter ({n} installed)"),
                Seccomp::Filter { filters: None } => "filter".to_owned(),
            };
            row(f, "seccomp", &seccomp)?;
            row(f, "PaX", &self.pax.as_deref().unwrap_or("absent"))?;
            let persona = if self.read_implies_exec {
                "READ_IMPLIES_EXEC (readable mappings are executable: refused)"
            } else {
                "normal"
            };
            row(f, "personality", &persona)?;
        }
        let guard = match (self.branch_protection, self.arch) {
            (true, _) => "PROT_BTI: thunk and heap pages are guarded (entries start with bti c)",
            (false, "aarch64") => "none (this kernel or CPU has no BTI)",
            (false, _) => "none (no page-level guard on this architecture)",
        };
        row(f, "branch protection", &guard)?;
        row(f, "Block strategy", &opt_strategy(self.block_strategy))?;
        // The default heaps write code with a forced strategy (one for
        // written code); other heaps use the probed one.
        match self
            .strategy_setting
            .forced()
            .filter(|s| s.code().is_some())
        {
            Some(forced) => row(
                f,
                "heap strategy",
                &format_args!(
                    "{forced} (forced by {STRATEGY_VAR}, for the default heaps; other heaps: {})",
                    opt_strategy(self.heap_strategy)
                ),
            )?,
            None => row(f, "heap strategy", &opt_strategy(self.heap_strategy))?,
        }
        row(f, "thunk strategy", &opt_strategy(self.thunk_strategy))?;
        row(f, STRATEGY_VAR, &self.strategy_setting)?;
        let debug = if self.debug_thunks {
            "1 (calls through dropped thunks are reported; freed thunks are quarantined)"
        } else {
            "unset"
        };
        row(f, DEBUG_VAR, &debug)?;
        if !self.notes.is_empty() {
            writeln!(f, "notes:")?;
            for note in &self.notes {
                writeln!(f, "  - {note}")?;
            }
        }
        Ok(())
    }
}
