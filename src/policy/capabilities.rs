//! What this process may do with code memory, found by trying each strategy
//! on a scratch page and running a `ret` from it, once per process.

use std::sync::Arc;

use once_cell::race::OnceBox;

use super::Check;
use crate::arch;
use crate::error::{Error, Result};
use crate::strategy::{CodeStrategy, Strategy, ThunkStrategy};
use crate::sys::{self, CodeDir, CodeFile, Mapping, Prot};

/// The result of trying each strategy once.
#[derive(Debug)]
pub(crate) struct Capabilities {
    /// `mmap` read-write, then `mprotect` read+exec.
    pub(crate) protect: Check,
    /// A memfd mapped read-write and read+exec at once.
    pub(crate) dual_map: Check,
    /// Whether the memfd was created with `MFD_NOEXEC_SEAL` (`None` if no
    /// memfd could be made).
    pub(crate) memfd_noexec_seal: Option<bool>,
    /// An unlinked file in a directory mapped read-write and read+exec at
    /// once.
    pub(crate) dual_map_file: Check,
    /// The directory where that worked: the first of
    /// [`CodeDir::candidates`] (`None` where none did).
    pub(crate) code_dir: Option<Arc<CodeDir>>,
    /// The trampoline table mapped from the binary's file, and a call
    /// through one of its entries.
    pub(crate) static_trampolines: Check,
}

/// The capabilities of this process, probed on first use and then cached.
///
/// The cache is not refreshed: a process that tightens its own policy later
/// (say, `prctl(PR_SET_MDWE)` after the first probe) gets a clear error from
/// the operation that is refused, and [`Policy::detect`](super::Policy::detect)
/// shows the new state.
///
/// Published by compare-and-swap, not behind a `Once`: a `fork()` while
/// another thread probes must not leave the child waiting for a thread it
/// does not have (racing first uses may each probe; one result is kept).
pub(crate) fn capabilities() -> &'static Capabilities {
    static CAPS: OnceBox<Capabilities> = OnceBox::new();
    CAPS.get_or_init(|| Box::new(Capabilities::detect()))
}

impl Capabilities {
    pub(crate) fn detect() -> Self {
        if sys::read_implies_exec() {
            // Every strategy needs a read-write mapping (of code, or of
            // trampoline records), which would be executable too.
            let refused = || Check::Refused {
                reason: sys::READ_IMPLIES_EXEC_REASON.into(),
            };
            return Capabilities {
                protect: refused(),
                dual_map: refused(),
                memfd_noexec_seal: None,
                dual_map_file: refused(),
                code_dir: None,
                static_trampolines: refused(),
            };
        }
        let (dual_map, memfd_noexec_seal) = try_dual_map();
        let (dual_map_file, code_dir) = try_dual_map_file();
        Capabilities {
            protect: try_protect(),
            dual_map,
            memfd_noexec_seal,
            dual_map_file,
            code_dir,
            static_trampolines: try_static_trampolines(),
        }
    }

    pub(crate) fn check(&self, strategy: Strategy) -> &Check {
        match strategy {
            Strategy::Protect => &self.protect,
            Strategy::DualMap => &self.dual_map,
            Strategy::DualMapFile => &self.dual_map_file,
            Strategy::StaticTrampolines => &self.static_trampolines,
        }
    }

    /// The first strategy of `preference` that works here.
    pub(crate) fn choose<S: Copy + Into<Strategy>>(&self, preference: &[S]) -> Result<S> {
        if let Some(&s) = preference
            .iter()
            .find(|&&s| self.check(s.into()).is_allowed())
        {
            return Ok(s);
        }
        // Strategies refused for the same reason share one mention of it
        // (READ_IMPLIES_EXEC refuses all of them alike).
        let mut reasons: Vec<(Vec<String>, String)> = Vec::new();
        for &s in preference {
            let s = s.into();
            let why = self.check(s).to_string();
            match reasons.iter_mut().find(|(_, r)| *r == why) {
                Some((names, _)) => names.push(s.to_string()),
                None => reasons.push((vec![s.to_string()], why)),
            }
        }
        let reasons: Vec<String> = reasons
            .into_iter()
            .map(|(names, why)| format!("{}: {why}", names.join(", ")))
            .collect();
        Err(Error::NoExecutableMemory {
            reason: reasons.join("; "),
        })
    }

    /// `Ok` if `strategy` works here, else why not.
    pub(crate) fn require(&self, strategy: impl Into<Strategy>) -> Result<()> {
        let strategy = strategy.into();
        match self.check(strategy) {
            Check::Allowed => Ok(()),
            other => Err(Error::StrategyUnavailable {
                strategy,
                reason: other.to_string(),
            }),
        }
    }
}

/// The order in which a [`Block`](crate::Block) prefers strategies: whole
/// blocks are sealed once, so one `mprotect` beats creating a file. A file
/// in a directory comes last everywhere: it is the one strategy that
/// touches a filesystem.
pub(crate) const BLOCK_PREFERENCE: &[CodeStrategy] = &[
    CodeStrategy::Protect,
    CodeStrategy::DualMap,
    CodeStrategy::DualMapFile,
];

/// The order in which a code heap prefers strategies for the code written
/// into it: many small pieces of code share a page, and dual mapping writes
/// them without a system call.
pub(crate) const HEAP_PREFERENCE: &[CodeStrategy] = &[
    CodeStrategy::DualMap,
    CodeStrategy::Protect,
    CodeStrategy::DualMapFile,
];

/// The order in which a heap prefers strategies for its thunks.
pub(crate) const THUNK_PREFERENCE: &[ThunkStrategy] = &[
    ThunkStrategy::Generated(CodeStrategy::DualMap),
    ThunkStrategy::StaticTrampolines,
    ThunkStrategy::Generated(CodeStrategy::Protect),
    ThunkStrategy::Generated(CodeStrategy::DualMapFile),
];

/// The directory [`Strategy::DualMapFile`] makes its files in, found by
/// the probe; `None` where no directory works.
fn code_dir() -> Option<&'static Arc<CodeDir>> {
    capabilities().code_dir.as_ref()
}

/// A new file of `len` zero bytes for code dual-mapped under `strategy`: a
/// memfd for [`CodeStrategy::DualMap`] (or, where `memfd_create` is refused
/// by now, a file in the probe's [`code_dir`] if one works), an unlinked
/// file in the probe's [`code_dir`] for [`CodeStrategy::DualMapFile`]. `ops` names the failing
/// operation for each, in that order, for the error.
///
/// # Errors
///
/// [`Error::Os`] if the file cannot be made;
/// [`Error::StrategyUnavailable`] for `DualMapFile` where no directory
/// works (the probe says why).
pub(crate) fn code_file(
    strategy: CodeStrategy,
    len: usize,
    ops: [&'static str; 2],
) -> Result<CodeFile> {
    debug_assert!(strategy.dual_maps());
    if strategy != CodeStrategy::DualMapFile {
        return CodeFile::create(len).or_else(|memfd| {
            // `memfd_create` refused since the probe (a seccomp filter
            // installed after start-up, say): a file in the probe's
            // directory serves the same (two views of one file), where one
            // works; else the memfd's error.
            match code_dir() {
                Some(dir) => CodeFile::create_in(dir, len).map_err(|_| Error::os(ops[0], memfd)),
                None => Err(Error::os(ops[0], memfd)),
            }
        });
    }
    let dir = code_dir().ok_or_else(|| Error::StrategyUnavailable {
        strategy: Strategy::DualMapFile,
        reason: capabilities().dual_map_file.to_string(),
    })?;
    CodeFile::create_in(dir, len).map_err(|e| Error::os(ops[1], e))
}

/// Calls the `ret` instruction at `code`.
///
/// # Safety
/// `code` must be mapped executable and hold `arch::RET`.
unsafe fn call_ret(code: *const u8) {
    // SAFETY: the caller guarantees a `ret` is mapped executable at `code`;
    // calling it returns at once and touches nothing.
    let f: extern "C" fn() = unsafe { std::mem::transmute::<*const u8, extern "C" fn()>(code) };
    f();
}

fn try_protect() -> Check {
    let page = sys::page_size();
    let base = match Mapping::anon(page, Prot::ReadWrite) {
        Ok(p) => p,
        Err(e) => {
            return Check::Unknown {
                reason: format!("mmap of a scratch page failed: {e}"),
            };
        }
    };
    // SAFETY: `base` is a fresh read-write page of `page >= RET.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(arch::RET.as_ptr(), base.as_ptr(), arch::RET.len()) };
    sys::flush_icache(base.as_ptr(), arch::RET.len());
    // SAFETY: we own the scratch page; nothing else refers to it.
    match unsafe { base.protect(0, page, Prot::ReadExec) } {
        Ok(()) if arch::RET.is_empty() => Check::Unknown {
            reason: "no test instruction for this architecture".into(),
        },
        Ok(()) => {
            // SAFETY: the page is now read+exec and starts with `ret`.
            unsafe { call_ret(base.as_ptr()) };
            Check::Allowed
        }
        Err(e) => Check::Refused {
            reason: format!("mprotect(PROT_READ|PROT_EXEC) of a written page failed: {e}"),
        },
    }
}

fn try_dual_map() -> (Check, Option<bool>) {
    let file = match CodeFile::create(sys::page_size()) {
        Ok(f) => f,
        Err(e) => {
            return (
                Check::Refused {
                    reason: format!("memfd_create failed: {e}"),
                },
                None,
            );
        }
    };
    (try_views(&file, "a memfd"), Some(file.noexec_sealed()))
}

/// Tries each candidate directory in turn with a file of its own: the
/// check, and the first directory where it worked.
fn try_dual_map_file() -> (Check, Option<Arc<CodeDir>>) {
    let mut tried = Vec::new();
    for (path, chosen_by) in CodeDir::candidates() {
        let dir = match CodeDir::open(&path, chosen_by) {
            Ok(dir) => Arc::new(dir),
            Err(why) => {
                tried.push(format!("{why} ({chosen_by})"));
                continue;
            }
        };
        let file = match CodeFile::create_in(&dir, sys::page_size()) {
            Ok(f) => f,
            Err(e) => {
                let path = path.display();
                tried.push(format!("{path}: creating a file failed: {e} ({chosen_by})"));
                continue;
            }
        };
        match try_views(&file, "a file") {
            Check::Refused { reason } => {
                tried.push(format!("{}: {reason} ({chosen_by})", path.display()))
            }
            works => return (works, Some(dir)),
        }
    }
    let reason = if tried.is_empty() {
        "no directory to make files in on this platform".to_owned()
    } else {
        format!(
            "no directory works: {}; name one that does (a filesystem mounted without noexec) \
             in WXTHUNK_TMPDIR",
            tried.join("; ")
        )
    };
    (Check::Refused { reason }, None)
}

/// Maps a page of `file` (`what` it is, for the reasons) read-write and
/// read+exec, writes a `ret` through the one and calls it through the
/// other.
fn try_views(file: &CodeFile, what: &str) -> Check {
    let page = sys::page_size();
    let rw = match file.map(page, Prot::ReadWrite) {
        Ok(p) => p,
        Err(e) => {
            return Check::Refused {
                reason: format!("mapping {what} read-write failed: {e}"),
            };
        }
    };
    match file.map(page, Prot::ReadExec) {
        Err(e) => Check::Refused {
            reason: format!("mapping {what} read+exec failed: {e}"),
        },
        Ok(rx) => {
            // SAFETY: `rw` is a read-write shared view of `page` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(arch::RET.as_ptr(), rw.as_ptr(), arch::RET.len())
            };
            sys::flush_icache(rx.as_ptr(), arch::RET.len());
            if arch::RET.is_empty() {
                Check::Unknown {
                    reason: "no test instruction for this architecture".into(),
                }
            } else {
                // SAFETY: `rx` maps the same file read+exec; it starts with
                // the `ret` just written through `rw`.
                unsafe { call_ret(rx.as_ptr()) };
                Check::Allowed
            }
        }
    }
}

/// Maps a trampoline table and calls through it (see
/// `trampoline::self_test`).
fn try_static_trampolines() -> Check {
    match crate::trampoline::self_test() {
        Ok(()) => Check::Allowed,
        Err(reason) => Check::Refused { reason },
    }
}
