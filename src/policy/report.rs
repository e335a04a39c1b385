//! [`Policy`], what [`probe`](crate::probe) reports, and the types it
//! reports in: each check found by trying, and the kernel settings that
//! explain the outcome.

use std::fmt;

use super::capabilities::{self, BLOCK_PREFERENCE, HEAP_PREFERENCE, THUNK_PREFERENCE};
use super::settings::{StrategySetting, strategy_setting};
use crate::arch;
use crate::strategy::Strategy;
use crate::sys::{self, ChildRwx};

/// The outcome of trying one thing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    /// It was tried and it worked (code made executable this way ran).
    Allowed,
    /// It was tried and refused.
    Refused {
        /// What failed and how.
        reason: String,
    },
    /// It could not be tried.
    Unknown {
        /// Why not.
        reason: String,
    },
}

impl Check {
    /// Whether it was tried and worked.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = wxthunk::probe();
    /// if !policy.mprotect_exec.is_allowed() {
    ///     println!("mprotect to exec is refused: {}", policy.mprotect_exec);
    /// }
    /// ```
    pub fn is_allowed(&self) -> bool {
        matches!(self, Check::Allowed)
    }

    /// Why it was refused or could not be tried; `None` when allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = wxthunk::probe();
    /// match policy.dual_mapping.reason() {
    ///     None => println!("dual mapping works"),
    ///     Some(why) => println!("no dual mapping: {why}"),
    /// }
    /// ```
    pub fn reason(&self) -> Option<&str> {
        match self {
            Check::Allowed => None,
            Check::Refused { reason } | Check::Unknown { reason } => Some(reason),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Allowed => f.write_str("allowed"),
            Check::Refused { reason } => write!(f, "refused ({reason})"),
            Check::Unknown { reason } => write!(f, "unknown ({reason})"),
        }
    }
}

/// Linux's memory-deny-write-execute state (`prctl(PR_GET_MDWE)`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mdwe {
    /// The kernel has no MDWE (Linux before 6.3), or this is not Linux.
    NotSupported,
    /// MDWE is available and off.
    Off,
    /// `PR_MDWE_REFUSE_EXEC_GAIN`: no mapping may be writable and executable,
    /// and no mapping may gain exec after it was created.
    RefuseExecGain {
        /// Whether children inherit the setting (false when
        /// `PR_MDWE_NO_INHERIT` is set).
        inherited: bool,
    },
    /// The state could not be read.
    Unknown {
        /// Why not.
        reason: String,
    },
}

/// SELinux's state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selinux {
    /// SELinux is not active (or this is not Linux).
    Absent,
    /// Active; logs denials but does not enforce them.
    Permissive {
        /// The `deny_execmem` boolean, when readable.
        deny_execmem: Option<bool>,
    },
    /// Active and enforcing.
    Enforcing {
        /// The `deny_execmem` boolean, when readable.
        deny_execmem: Option<bool>,
    },
}

/// The seccomp state of the calling thread.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seccomp {
    /// Could not be read (no `/proc`, or not Linux).
    Unknown,
    /// No seccomp.
    Disabled,
    /// Strict mode: only `read`, `write`, `exit` and `sigreturn`.
    Strict,
    /// One or more BPF filters decide which system calls are allowed.
    Filter {
        /// How many filters are installed, when the kernel says.
        filters: Option<u32>,
    },
}

/// The directory [`Strategy::DualMapFile`] makes its code files in: the
/// first of `WXTHUNK_TMPDIR` (alone, when set), `/dev/shm`,
/// `XDG_RUNTIME_DIR`, `TMPDIR`, `/tmp` and `/var/tmp` where a file could be
/// made and mapped read+exec, and a `ret` written through a read-write
/// view of it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodeFileDir {
    /// The directory's path, as the environment or default spelled it
    /// (not only UTF-8).
    pub path: std::path::PathBuf,
    /// Why it was tried: `"WXTHUNK_TMPDIR"`, `"XDG_RUNTIME_DIR"`,
    /// `"TMPDIR"` or `"a default"`.
    pub chosen_by: &'static str,
    /// Whether files are made without a name (`O_TMPFILE`); if not, each
    /// is made under a fresh name and unlinked before wxthunk uses it.
    pub o_tmpfile: bool,
}

impl std::fmt::Display for CodeFileDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.o_tmpfile {
            "files made with O_TMPFILE"
        } else {
            "files named and unlinked at once"
        };
        write!(f, "{} ({}; {how})", self.path.display(), self.chosen_by)
    }
}

/// Windows' process mitigation policies that bear on executable memory,
/// as the system reports them for this process. Every field is `None`
/// where the system has no such policy (every OS but Windows) or does not
/// say (Wine).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mitigations {
    /// Data Execution Prevention (always on for a 64-bit process).
    pub dep: Option<bool>,
    /// Arbitrary Code Guard: the dynamic-code policy's
    /// `ProhibitDynamicCode`. When on, no memory may become executable
    /// after the process starts: only static trampolines (the table
    /// compiled into the image) make thunks, and blocks and spans fail.
    pub arbitrary_code_guard: Option<bool>,
    /// Control Flow Guard: indirect calls must land on registered targets.
    pub control_flow_guard: Option<bool>,
    /// Whether the call targets of generated code are registered one by
    /// one: the entry of each thunk and the start of each span of a heap
    /// with branch protection (the default), and the start of a guarded
    /// block, are then its only valid targets, each unregistered when
    /// freed. Needs CFG and `SetProcessValidCallTargets`; elsewhere every
    /// address of generated code is a valid target (Windows' default).
    pub call_targets_registered: bool,
    /// CET user-mode shadow stacks: returns must match their calls (no
    /// thunk touches a return address).
    pub shadow_stack: Option<bool>,
}

/// What this process may do with executable memory, and what wxthunk will
/// therefore do. Returned by [`probe`](crate::probe).
///
/// Every `Check` was found by trying, on scratch memory, not guessed from
/// settings: the settings (`mdwe`, `memfd_noexec`, `selinux`, `seccomp`,
/// `pax`) are reported alongside to explain the outcome. Its `Display` is a
/// table for people; the fields are for programs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Policy {
    /// The operating system (`std::env::consts::OS` spelling).
    pub os: &'static str,
    /// The architecture (`std::env::consts::ARCH` spelling).
    pub arch: &'static str,
    /// The page size in bytes.
    pub page_size: usize,
    /// Mapping memory writable and executable at once. wxthunk never does
    /// this in your process: a short-lived child process tries it.
    pub rwx_mapping: Check,
    /// Making a written read-write page read+exec with `mprotect`
    /// ([`Strategy::Protect`]).
    pub mprotect_exec: Check,
    /// Mapping a `memfd` read-write and read+exec at once
    /// ([`Strategy::DualMap`]).
    pub dual_mapping: Check,
    /// Whether memfds are created with `MFD_NOEXEC_SEAL` (`None` when no
    /// memfd could be created).
    pub memfd_noexec_seal: Option<bool>,
    /// Mapping a file that has no name, in a directory, read-write and
    /// read+exec at once ([`Strategy::DualMapFile`]), tried in each
    /// candidate directory in turn; the reason, when refused, says why
    /// each one does not work.
    pub file_dual_mapping: Check,
    /// The directory [`Strategy::DualMapFile`] makes its files in, when
    /// one works.
    pub code_file_dir: Option<CodeFileDir>,
    /// Linux MDWE state.
    pub mdwe: Mdwe,
    /// The `vm.memfd_noexec` sysctl (0, 1, 2), when present.
    pub memfd_noexec: Option<u8>,
    /// SELinux state.
    pub selinux: Selinux,
    /// Seccomp state.
    pub seccomp: Seccomp,
    /// PaX flags, on PaX kernels.
    pub pax: Option<String>,
    /// Whether the `READ_IMPLIES_EXEC` personality is set: the kernel then
    /// makes every readable mapping executable, so wxthunk refuses every
    /// strategy (each needs a read-write mapping) and every writable mapping
    /// it would make, whenever the personality is set.
    pub read_implies_exec: bool,
    /// Windows' mitigation policies (all `None` elsewhere).
    pub mitigations: Mitigations,
    /// Whether the kernel guards code pages against branches into the
    /// middle of code: AArch64's BTI (`PROT_BTI`, announced in `AT_HWCAP2`),
    /// which heaps and static trampolines use
    /// ([`HeapBuilder::branch_protection`](crate::HeapBuilder::branch_protection)).
    /// Always `false` on x86_64, where Linux offers no page-level guard.
    pub branch_protection: bool,
    /// The strategy [`Block::new`](crate::Block::new) uses, `None` if no
    /// strategy works.
    pub block_strategy: Option<Strategy>,
    /// Mapping the static trampoline table again from the binary's file and
    /// calling through it ([`Strategy::StaticTrampolines`]).
    pub static_trampolines: Check,
    /// Where the trampoline table's code is mapped from (file, offset, and
    /// how it was found), when it was found.
    pub trampoline_source: Option<String>,
    /// The strategy a code heap uses by default for the code written into
    /// it (spans, pages), `None` if no strategy for written code works.
    pub heap_strategy: Option<Strategy>,
    /// The strategy thunks use by default (the default heap's
    /// [`Heap::strategy`](crate::Heap::strategy)), `None` if none works.
    pub thunk_strategy: Option<Strategy>,
    /// What `WXTHUNK_STRATEGY` asks of the default heaps (read once, at the
    /// first use of wxthunk).
    pub strategy_setting: StrategySetting,
    /// Whether `WXTHUNK_DEBUG=1` puts heaps in debug mode by default
    /// (read once, at the first use of wxthunk): calls through dropped
    /// thunks are reported, and their memory is quarantined.
    pub debug_thunks: bool,
    /// Plain-language explanations of the choices above.
    pub notes: Vec<String>,
}

impl Policy {
    /// Probes again, now, without the cache [`probe`](crate::probe) keeps; for a process
    /// that changed its own restrictions since. The strategies the rest of
    /// the crate uses were fixed at the first probe.
    ///
    /// # Examples
    ///
    /// ```
    /// // After a process tightened its own restrictions (a seccomp filter, say):
    /// let now = wxthunk::Policy::detect();
    /// println!("{now}");
    /// ```
    pub fn detect() -> Policy {
        Policy::from_capabilities(&capabilities::Capabilities::detect())
    }

    /// Asks a short-lived child process to map memory writable and
    /// executable (never done in this process).
    fn rwx_in_child() -> Check {
        match sys::rwx_mapping_in_child() {
            ChildRwx::Allowed => Check::Allowed,
            ChildRwx::Refused(e) => Check::Refused {
                reason: format!("mmap(PROT_WRITE|PROT_EXEC) failed: {e}"),
            },
            ChildRwx::Killed(sig) => Check::Refused {
                reason: format!("the child trying it was killed by signal {sig}"),
            },
            ChildRwx::NotTried(e) => Check::Unknown {
                reason: format!("not tried: {e}"),
            },
        }
    }

    pub(super) fn from_capabilities(caps: &capabilities::Capabilities) -> Policy {
        let seccomp_state = sys::seccomp();
        // The RWX check needs a fork-like `clone`, which a seccomp filter
        // may refuse or punish by killing the whole process (sandboxes do),
        // so it is only tried where no filter is installed.
        let rwx_mapping = match seccomp_state {
            // No seccomp at all (not Linux): the platform says whether it
            // can try (Windows cannot: no fork-like child).
            None if sys::OS != "linux" => Self::rwx_in_child(),
            Some((0, _)) => Self::rwx_in_child(),
            Some(_) => Check::Unknown {
                reason: "not tried: a seccomp filter is installed, and the child process this \
                         check needs (a fork-like clone) could be refused or kill this process"
                    .into(),
            },
            None => Check::Unknown {
                reason: "not tried: the seccomp state is unknown, and the child process this \
                         check needs (a fork-like clone) could kill this process"
                    .into(),
            },
        };
        let mdwe = match sys::mdwe_flags() {
            Ok(None) => Mdwe::NotSupported,
            Ok(Some(0)) => Mdwe::Off,
            Ok(Some(flags)) if flags & 1 != 0 => Mdwe::RefuseExecGain {
                inherited: flags & 2 == 0,
            },
            Ok(Some(flags)) => Mdwe::Unknown {
                reason: format!("unknown flags {flags:#x}"),
            },
            Err(e) => Mdwe::Unknown {
                reason: e.to_string(),
            },
        };
        let selinux = match sys::selinux() {
            None => Selinux::Absent,
            Some((true, deny_execmem)) => Selinux::Enforcing { deny_execmem },
            Some((false, deny_execmem)) => Selinux::Permissive { deny_execmem },
        };
        let seccomp = match seccomp_state {
            None => Seccomp::Unknown,
            Some((0, _)) => Seccomp::Disabled,
            Some((1, _)) => Seccomp::Strict,
            Some((_, filters)) => Seccomp::Filter { filters },
        };
        let mut policy = Policy {
            os: sys::OS,
            arch: arch::NAME,
            page_size: sys::page_size(),
            rwx_mapping,
            mprotect_exec: caps.protect.clone(),
            dual_mapping: caps.dual_map.clone(),
            memfd_noexec_seal: caps.memfd_noexec_seal,
            file_dual_mapping: caps.dual_map_file.clone(),
            code_file_dir: caps.code_dir.as_deref().map(|dir| CodeFileDir {
                path: dir.path().to_owned(),
                chosen_by: dir.chosen_by(),
                o_tmpfile: dir.unnamed_files(),
            }),
            mdwe,
            memfd_noexec: sys::memfd_noexec_sysctl(),
            selinux,
            seccomp,
            pax: sys::pax_flags(),
            read_implies_exec: sys::read_implies_exec(),
            mitigations: {
                let [dep, acg, cfg, shadow] = sys::process_mitigations();
                Mitigations {
                    dep,
                    arbitrary_code_guard: acg,
                    control_flow_guard: cfg,
                    call_targets_registered: sys::call_targets_registered(),
                    shadow_stack: shadow,
                }
            },
            branch_protection: sys::branch_targets_guarded(),
            block_strategy: caps.choose(BLOCK_PREFERENCE).ok().map(Strategy::from),
            static_trampolines: caps.static_trampolines.clone(),
            trampoline_source: crate::trampoline::source()
                .ok()
                .map(crate::trampoline::TableSource::describe),
            heap_strategy: caps.choose(HEAP_PREFERENCE).ok().map(Strategy::from),
            thunk_strategy: match strategy_setting() {
                StrategySetting::Forced(s) => Some(*s).filter(|&s| caps.check(s).is_allowed()),
                StrategySetting::Invalid { .. } => None,
                _ => caps.choose(THUNK_PREFERENCE).ok().map(Strategy::from),
            },
            strategy_setting: strategy_setting().clone(),
            debug_thunks: super::settings::debug_setting(),
            notes: Vec::new(),
        };
        policy.notes = policy.explain();
        policy
    }

    /// Whether `strategy` works in this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Strategy;
    /// let policy = wxthunk::probe();
    /// let usable: Vec<_> = Strategy::ALL.iter().filter(|&&s| policy.allows(s)).collect();
    /// println!("usable here: {usable:?}");
    /// ```
    pub fn allows(&self, strategy: Strategy) -> bool {
        self.check(strategy).is_allowed()
    }

    /// The check that says whether `strategy` works here.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Strategy;
    /// let check = wxthunk::probe().check(Strategy::DualMap);
    /// println!("dual-map: {check}"); // "allowed", or "refused: <why>"
    /// ```
    pub fn check(&self, strategy: Strategy) -> &Check {
        match strategy {
            Strategy::Protect => &self.mprotect_exec,
            Strategy::DualMap => &self.dual_mapping,
            Strategy::DualMapFile => &self.file_dual_mapping,
            Strategy::StaticTrampolines => &self.static_trampolines,
        }
    }
}
