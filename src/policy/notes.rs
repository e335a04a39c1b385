//! The plain-language notes of a [`Policy`]: why each strategy was chosen,
//! and what the kernel's settings mean for this process.

use super::report::{Mdwe, Policy, Seccomp, Selinux};
use super::settings::{STRATEGY_VAR, StrategySetting};
use crate::strategy::Strategy;
use crate::sys;

impl Policy {
    pub(super) fn explain(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match &self.strategy_setting {
            StrategySetting::Forced(s) if self.allows(*s) => notes.push(format!(
                "{STRATEGY_VAR}={s}: the default heaps (Heap::global, Heap::thread_local, and so \
                 Thunk::new) use {s}"
            )),
            StrategySetting::Forced(s) => notes.push(format!(
                "{STRATEGY_VAR}={s}, which does not work here ({}): the default heaps fail",
                self.check(*s).reason().unwrap_or("")
            )),
            StrategySetting::Invalid { value } => notes.push(format!(
                "{STRATEGY_VAR}={value:?} names no strategy (expected {}): the default heaps fail",
                crate::strategy::ParseStrategyError::EXPECTED
            )),
            _ => {}
        }
        if self.read_implies_exec {
            notes.push(sys::READ_IMPLIES_EXEC_REASON.into());
        }
        if let Mdwe::RefuseExecGain { .. } = self.mdwe {
            notes.push(if self.dual_mapping.is_allowed() {
                "MDWE is on: the kernel refuses to make written memory executable, so code is \
                 written through a separate mapping of a memfd and run from a read+exec one"
                    .into()
            } else {
                "MDWE is on: the kernel refuses to make written memory executable (mprotect) \
                 or to map memory writable and executable"
                    .into()
            });
        }
        if self.memfd_noexec == Some(2) {
            notes.push(
                "vm.memfd_noexec=2: only non-executable (MFD_NOEXEC_SEAL) memfds may be created; \
                 wxthunk creates exactly those and maps them read+exec"
                    .into(),
            );
        }
        if self.memfd_noexec_seal == Some(false) {
            notes.push("this kernel lacks MFD_NOEXEC_SEAL (before Linux 6.3): memfds are created without it".into());
        }
        if let Selinux::Enforcing {
            deny_execmem: Some(true),
        } = self.selinux
        {
            notes.push(
                "SELinux deny_execmem is on: anonymous memory cannot become executable".into(),
            );
        }
        if let Seccomp::Filter { .. } = self.seccomp {
            notes.push(
                "seccomp filters are installed: the checks above show what they let through".into(),
            );
        }
        if let Some(pax) = &self.pax {
            notes.push(format!(
                "PaX flags {pax}: MPROTECT, if set, refuses to make written memory executable"
            ));
        }
        let dir = self
            .code_file_dir
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match self.block_strategy {
            Some(Strategy::Protect) => notes.push(
                "Block uses protect: one mprotect per seal is the cheapest way to seal a whole block"
                    .into(),
            ),
            Some(Strategy::DualMapFile) => notes.push(format!(
                "Block uses dual-map-file, with files in {dir}: neither mprotect to read+exec \
                 ({}) nor memfds ({}) work here",
                self.mprotect_exec.reason().unwrap_or(""),
                self.dual_mapping.reason().unwrap_or("")
            )),
            Some(s) => notes.push(format!(
                "Block uses {s}: mprotect to read+exec does not work here ({})",
                self.mprotect_exec.reason().unwrap_or("")
            )),
            None => notes.push("no strategy works here: Block::new will return an error".into()),
        }
        match self.heap_strategy {
            Some(Strategy::DualMap) => notes.push(
                "code heaps use dual-map: small pieces of code are written without a system call"
                    .into(),
            ),
            Some(Strategy::DualMapFile) => notes.push(format!(
                "code heaps use dual-map-file, with files in {dir}: memfds ({}) and mprotect to \
                 read+exec ({}) do not work here",
                self.dual_mapping.reason().unwrap_or(""),
                self.mprotect_exec.reason().unwrap_or("")
            )),
            Some(s) => notes.push(format!(
                "code heaps use {s}: dual mapping does not work here ({})",
                self.dual_mapping.reason().unwrap_or("")
            )),
            None => notes.push(
                "no strategy for written code works here: Heap::alloc returns an error".into(),
            ),
        }
        match self.thunk_strategy {
            // Forced: the note above says why.
            _ if self.strategy_setting != StrategySetting::Unset => {}
            Some(Strategy::DualMap) => notes.push(
                "thunks use dual-map: a generated thunk jumps straight to its closure, the \
                 cheapest call"
                    .into(),
            ),
            Some(Strategy::StaticTrampolines) => notes.push(format!(
                "thunks use static trampolines: dual mapping does not work here ({}); creating \
                 a thunk writes a record next to a table of code ({}), so no memory is ever made \
                 executable after it was written",
                self.dual_mapping.reason().unwrap_or(""),
                self.trampoline_source.as_deref().unwrap_or("")
            )),
            Some(Strategy::DualMapFile) => notes.push(format!(
                "thunks use dual-map-file, with files in {dir}: neither memfds ({}) nor static \
                 trampolines ({}) nor mprotect to read+exec ({}) work here",
                self.dual_mapping.reason().unwrap_or(""),
                self.static_trampolines.reason().unwrap_or(""),
                self.mprotect_exec.reason().unwrap_or("")
            )),
            Some(s) => notes.push(match self.static_trampolines.reason() {
                Some(no_table) => format!(
                    "thunks use {s} ({}): neither dual mapping ({}) nor static \
                     trampolines ({no_table}) work here",
                    thunk_cost(s),
                    self.dual_mapping.reason().unwrap_or("")
                ),
                None => format!(
                    "thunks use {s} ({}): dual mapping does not work here ({}); static \
                     trampolines do, but their table is {}: it is kept for a process that may \
                     not make code, or a heap that asks for it",
                    thunk_cost(s),
                    self.dual_mapping.reason().unwrap_or(""),
                    self.trampoline_source.as_deref().unwrap_or("")
                ),
            }),
            None => notes.push("no strategy works here: thunk constructors return errors".into()),
        }
        notes
    }
}

/// What a thunk costs under `s`, the strategy the probe's note names.
fn thunk_cost(s: Strategy) -> &'static str {
    if s == Strategy::Protect && crate::trampoline::TableCode::can_seal() {
        "entries of trampoline tables sealed once per table"
    } else {
        "one page each"
    }
}
