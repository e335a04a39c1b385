//! What this process may do with code memory, found by trying each strategy
//! on a scratch page and running a `ret` from it, once per process.

use once_cell::race::OnceBox;

use super::Check;
use crate::arch;
use crate::error::{Error, Result};
use crate::strategy::{CodeStrategy, Strategy, ThunkStrategy};
use crate::sys::{self, CodeFile, Mapping, Prot};

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
                static_trampolines: refused(),
            };
        }
        let (dual_map, memfd_noexec_seal) = try_dual_map();
        Capabilities {
            protect: try_protect(),
            dual_map,
            memfd_noexec_seal,
            static_trampolines: try_static_trampolines(),
        }
    }

    pub(crate) fn check(&self, strategy: Strategy) -> &Check {
        match strategy {
            Strategy::Protect => &self.protect,
            Strategy::DualMap => &self.dual_map,
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
        let reasons: Vec<String> = preference
            .iter()
            .map(|&s| {
                let s = s.into();
                format!("{s}: {}", self.check(s))
            })
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
/// blocks are sealed once, so one `mprotect` beats creating a file.
pub(crate) const BLOCK_PREFERENCE: &[CodeStrategy] =
    &[CodeStrategy::Protect, CodeStrategy::DualMap];

/// The order in which a code heap prefers strategies for the code written
/// into it: many small pieces of code share a page, and dual mapping writes
/// them without a system call.
pub(crate) const HEAP_PREFERENCE: &[CodeStrategy] = &[CodeStrategy::DualMap, CodeStrategy::Protect];

/// The order in which a heap prefers strategies for its thunks.
pub(crate) const THUNK_PREFERENCE: &[ThunkStrategy] = &[
    ThunkStrategy::Generated(CodeStrategy::DualMap),
    ThunkStrategy::StaticTrampolines,
    ThunkStrategy::Generated(CodeStrategy::Protect),
];

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
    let page = sys::page_size();
    let file = match CodeFile::create(page) {
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
    let noexec = Some(file.noexec_sealed());
    let rw = match file.map(page, Prot::ReadWrite) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("mapping a memfd read-write failed: {e}");
            return (Check::Refused { reason }, noexec);
        }
    };
    let check = match file.map(page, Prot::ReadExec) {
        Err(e) => Check::Refused {
            reason: format!("mapping a memfd read+exec failed: {e}"),
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
    };
    (check, noexec)
}

/// Maps a trampoline table and calls through it (see
/// `trampoline::self_test`).
fn try_static_trampolines() -> Check {
    match crate::trampoline::self_test() {
        Ok(()) => Check::Allowed,
        Err(reason) => Check::Refused { reason },
    }
}
