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

/// The order in which a heap prefers strategies for its thunks. Static
/// trampolines come before `protect` where the table is mapped again as
/// often as needed (both make table entries there, and static trampolines
/// make no memory executable at run time), and after it where the table is a
/// fixed part of the image (`arch::BUILTIN_UNITS`: Windows, 2048 thunks
/// for the whole process): there they are for the process that may not
/// make code at all (Arbitrary Code Guard), or for a heap that asks for
/// them.
pub(crate) const THUNK_PREFERENCE: &[ThunkStrategy] = if crate::arch::BUILTIN_UNITS == 0 {
    &[
        ThunkStrategy::Generated(CodeStrategy::DualMap),
        ThunkStrategy::StaticTrampolines,
        ThunkStrategy::Generated(CodeStrategy::Protect),
        ThunkStrategy::Generated(CodeStrategy::DualMapFile),
    ]
} else {
    &[
        ThunkStrategy::Generated(CodeStrategy::DualMap),
        ThunkStrategy::Generated(CodeStrategy::Protect),
        ThunkStrategy::StaticTrampolines,
        ThunkStrategy::Generated(CodeStrategy::DualMapFile),
    ]
};

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

/// Calls the C function at `code`, one of `arch::RETURN_ONE` and
/// `RETURN_TWO`, and returns what it returned.
///
/// # Safety
/// `code` must be mapped executable and hold one of those functions.
unsafe fn call_returning(code: *const u8) -> u32 {
    // SAFETY: the caller guarantees such a function is mapped executable at
    // `code`; it returns a constant and touches nothing else.
    let f: extern "C" fn() -> u32 =
        unsafe { std::mem::transmute::<*const u8, extern "C" fn() -> u32>(code) };
    f()
}

/// The reason of a dual-mapping strategy whose rewrite at the same address
/// was not seen, through `what` (a memfd, a file in a directory).
fn rewrite_not_seen(what: &str) -> String {
    format!(
        "code rewritten through {what}'s writable view ran the old code at its executable \
         address, as an emulator that translates code once per address does (qemu-user, or \
         valgrind without --smc-check=all): reused thunks and spans would run stale code"
    )
}

/// Writes `code` at `at` (the start of `len` writable bytes) and flushes
/// the instruction cache for `exec`, where it runs.
///
/// # Safety
/// `at` is writable for `code.len()` bytes, nothing runs there meanwhile,
/// and `exec` maps the same bytes (or is `at`).
unsafe fn write_code(at: *mut u8, exec: *const u8, code: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), at, code.len()) };
    sys::flush_icache(exec, code.len());
}

/// Writes a function returning 1, makes it executable, runs it; makes the
/// page writable again, rewrites it to return 2, makes it executable, runs
/// it: the rewrite must be seen.
fn try_protect() -> Check {
    if arch::RETURN_ONE.is_empty() {
        return Check::Unknown {
            reason: "no test code for this architecture".into(),
        };
    }
    let page = sys::page_size();
    let base = match Mapping::anon(page, Prot::ReadWrite) {
        Ok(p) => p,
        Err(e) => {
            return Check::Unknown {
                reason: format!("mmap of a scratch page failed: {e}"),
            };
        }
    };
    let mut results = [0; 2];
    for (round, code) in [arch::RETURN_ONE, arch::RETURN_TWO].into_iter().enumerate() {
        if round > 0 {
            // SAFETY: we own the scratch page; nothing refers to it or runs
            // it now.
            if let Err(e) = unsafe { base.protect(0, page, Prot::ReadWrite) } {
                return Check::Refused {
                    reason: format!("mprotect(PROT_READ|PROT_WRITE) of run code failed: {e}"),
                };
            }
        }
        // SAFETY: the page is read-write, ours, and runs nothing now.
        unsafe { write_code(base.as_ptr(), base.as_ptr(), code) };
        // SAFETY: as above.
        if let Err(e) = unsafe { base.protect(0, page, Prot::ReadExec) } {
            return Check::Refused {
                reason: format!("mprotect(PROT_READ|PROT_EXEC) of a written page failed: {e}"),
            };
        }
        // SAFETY: the page is read+exec and holds the function just written.
        results[round] = unsafe { call_returning(base.as_ptr()) };
    }
    match results {
        [1, 2] => Check::Allowed,
        [one, two] => Check::Refused {
            reason: format!(
                "code rewritten after mprotect ran as returning {one}, then {two}, not 1, then 2"
            ),
        },
    }
}

fn try_dual_map() -> (Check, Option<bool>) {
    let file = match CodeFile::create(sys::page_size()) {
        Ok(f) => f,
        Err(e) => {
            return (
                Check::Refused {
                    reason: format!("{} failed: {e}", sys::CODE_FILE_CREATE),
                },
                None,
            );
        }
    };
    let what = format!("a {}", sys::CODE_FILE_KIND);
    (try_views(&file, &what), file.noexec_sealed())
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
        let what = format!("a file in {}", path.display());
        match try_views(&file, &what) {
            // The emulator's doing, not the directory's: another directory
            // would fare the same.
            Check::Refused { reason } if reason == rewrite_not_seen(&what) => {
                return (Check::Refused { reason }, None);
            }
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
/// read+exec, writes a function returning 1 through the one and calls it
/// through the other, then rewrites it through the same path to return 2
/// and calls it again: the rewrite must be seen at the executable address.
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
    let rx = match file.map(page, Prot::ReadExec) {
        Ok(rx) => rx,
        Err(e) => {
            return Check::Refused {
                reason: format!("mapping {what} read+exec failed: {e}"),
            };
        }
    };
    if arch::RETURN_ONE.is_empty() {
        return Check::Unknown {
            reason: "no test code for this architecture".into(),
        };
    }
    let mut results = [0; 2];
    for (round, code) in [arch::RETURN_ONE, arch::RETURN_TWO].into_iter().enumerate() {
        // SAFETY: `rw` is a read-write shared view of `page` bytes, `rx`
        // the same bytes read+exec; nothing runs them meanwhile.
        unsafe { write_code(rw.as_ptr(), rx.as_ptr(), code) };
        // SAFETY: `rx` maps the same file read+exec and starts with the
        // function just written through `rw`.
        results[round] = unsafe { call_returning(rx.as_ptr()) };
    }
    match results {
        [1, 2] => Check::Allowed,
        [1, 1] => Check::Refused {
            reason: rewrite_not_seen(what),
        },
        [one, two] => Check::Refused {
            reason: format!(
                "code written through {what}'s writable view ran as returning {one}, then {two}, \
                 not 1, then 2"
            ),
        },
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
