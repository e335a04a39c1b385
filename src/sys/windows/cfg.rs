//! Control Flow Guard: which addresses of generated code may be the target
//! of an indirect call checked by CFG.
//!
//! By default Windows makes every 16-byte-aligned address of a page a
//! valid target when the page becomes executable. Where the process has
//! CFG (`ProcessControlFlowGuardPolicy`) and the system has
//! `SetProcessValidCallTargets` (found at run time with `GetProcAddress`,
//! as old systems and Wine lack it), guarded code ([`Prot::ReadExecGuarded`]:
//! a heap's code unless built without branch protection, or a block that
//! asks) is made executable with no valid target at all
//! (`PAGE_TARGETS_INVALID` when committed, `PAGE_TARGETS_NO_UPDATE` when its
//! protection changes, `FILE_MAP_TARGETS_INVALID` for a section's
//! executable view), and the layer above registers each entry (a thunk's,
//! a span's start) with [`set_call_target`] when it publishes the code,
//! and unregisters it when it frees it.
//!
//! Wine has neither CFG nor the function: there this is the skip path.
//! What would be passed to the system is checked there by a test switch,
//! [`SIMULATE_CFG_VAR`], which turns registration on and records each
//! call's arguments instead of making it (the page bits are not set then:
//! Wine does not know them).

use std::ffi::c_void;
use std::io;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Memory::{CFG_CALL_TARGET_INFO, MEM_MAPPED};
use windows_sys::Win32::System::SystemServices::CFG_CALL_TARGET_VALID;
use windows_sys::Win32::System::Threading::GetCurrentProcess;
use windows_sys::core::BOOL;

use super::{last_error, query, section};
use crate::sys::Prot;

/// The granularity of CFG's bitmap: a valid target is 16-byte aligned.
const TARGET_ALIGN: usize = 16;

/// `SetProcessValidCallTargets`.
type SetTargets =
    unsafe extern "system" fn(HANDLE, *const c_void, usize, u32, *mut CFG_CALL_TARGET_INFO) -> BOOL;
/// `SetProcessValidCallTargetsForMappedView`.
type SetTargetsForView = unsafe extern "system" fn(
    HANDLE,
    *const c_void,
    usize,
    u32,
    *mut CFG_CALL_TARGET_INFO,
    HANDLE,
    u64,
) -> BOOL;

/// The registration functions, where the system has them.
struct Api {
    set: SetTargets,
    /// For views of sections (Windows 10 1809 and later).
    for_view: Option<SetTargetsForView>,
}

/// The functions, looked up once in `kernelbase.dll`.
fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        let name: Vec<u16> = "kernelbase.dll\0".encode_utf16().collect();
        // SAFETY: a NUL-terminated UTF-16 name; the module handle, if any,
        // needs no release (kernelbase is never unloaded).
        let module = unsafe { GetModuleHandleW(name.as_ptr()) };
        if module.is_null() {
            return None;
        }
        // SAFETY: `module` is loaded; the names are NUL-terminated.
        let set = unsafe { GetProcAddress(module, c"SetProcessValidCallTargets".as_ptr().cast()) }?;
        // SAFETY: as above.
        let for_view = unsafe {
            GetProcAddress(
                module,
                c"SetProcessValidCallTargetsForMappedView".as_ptr().cast(),
            )
        };
        Some(Api {
            // SAFETY: the exported function has this signature (its
            // documented prototype, as windows-sys declares it).
            set: unsafe {
                std::mem::transmute::<unsafe extern "system" fn() -> isize, SetTargets>(set)
            },
            // SAFETY: as above.
            for_view: for_view.map(|f| unsafe {
                std::mem::transmute::<unsafe extern "system" fn() -> isize, SetTargetsForView>(f)
            }),
        })
    })
    .as_ref()
}

/// The test switch that turns call-target registration on where the
/// process has no CFG (Wine): set to `1` before the first thunk, it makes
/// every registration record its arguments (see [`recorded`]) instead of
/// calling the system, and sets no CFG page bits.
pub(crate) const SIMULATE_CFG_VAR: &str = "WXTHUNK_SIMULATE_CFG";

/// Whether [`SIMULATE_CFG_VAR`] is set (read once).
fn simulated() -> bool {
    static SIMULATED: OnceLock<bool> = OnceLock::new();
    *SIMULATED.get_or_init(|| std::env::var_os(SIMULATE_CFG_VAR).is_some_and(|v| v == "1"))
}

/// Whether guarded code's call targets are registered one by one: the
/// process has CFG and the system the function to register them (or the
/// test switch says to act as if).
pub(crate) fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        simulated() || super::process_mitigations()[2] == Some(true) && api().is_some()
    })
}

/// Whether the system's CFG bits are set (registration on, for real).
pub(super) fn for_real() -> bool {
    enabled() && !simulated()
}

/// One registration, as the system would have been asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The allocation (or view) the offsets are from, and its length.
    pub(crate) base: usize,
    pub(crate) len: usize,
    /// Whether it was a section's view (`...ForMappedView`).
    pub(crate) view: bool,
    /// `(offset, flags)` of each entry, in the order passed.
    pub(crate) entries: Vec<(usize, usize)>,
}

/// The registrations made under [`SIMULATE_CFG_VAR`], in order.
fn registrations() -> std::sync::MutexGuard<'static, Vec<Registration>> {
    static RECORDED: std::sync::Mutex<Vec<Registration>> = std::sync::Mutex::new(Vec::new());
    RECORDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What was registered so far under [`SIMULATE_CFG_VAR`].
#[cfg(test)]
pub(crate) fn recorded() -> Vec<Registration> {
    registrations().clone()
}

/// The extra bit for a page protection of `prot` (`PAGE_TARGETS_INVALID`
/// for an allocation or a commit, `PAGE_TARGETS_NO_UPDATE` for a protection
/// change: one bit, read by each call in its own sense): set for guarded
/// code where targets are registered.
pub(super) fn protection_bits(prot: Prot) -> u32 {
    use windows_sys::Win32::System::Memory::PAGE_TARGETS_INVALID;
    const _: () =
        assert!(PAGE_TARGETS_INVALID == windows_sys::Win32::System::Memory::PAGE_TARGETS_NO_UPDATE);
    if prot == Prot::ReadExecGuarded && for_real() {
        PAGE_TARGETS_INVALID
    } else {
        0
    }
}

/// The entries to pass for `targets`, addresses of the allocation of `len`
/// bytes at `base`: offsets from `base`, ascending, without repeats, each
/// 16-byte aligned, flagged valid or not. An error (and nothing to pass)
/// for an address outside the allocation or not aligned.
pub(crate) fn call_target_infos(
    base: usize,
    len: usize,
    targets: &[usize],
    valid: bool,
) -> io::Result<Vec<CFG_CALL_TARGET_INFO>> {
    let mut offsets = Vec::with_capacity(targets.len());
    for &addr in targets {
        let offset = addr.wrapping_sub(base);
        if addr < base || offset >= len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("call target {addr:#x} is outside its allocation {base:#x}+{len:#x}"),
            ));
        }
        if offset % TARGET_ALIGN != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("call target {addr:#x} is not {TARGET_ALIGN}-byte aligned"),
            ));
        }
        offsets.push(offset);
    }
    offsets.sort_unstable();
    offsets.dedup();
    let flags = if valid {
        CFG_CALL_TARGET_VALID as usize
    } else {
        0
    };
    Ok(offsets
        .into_iter()
        .map(|offset| CFG_CALL_TARGET_INFO {
            Offset: offset,
            Flags: flags,
        })
        .collect())
}

/// Makes `addr`, the entry of guarded code this layer mapped, a valid
/// target of CFG-checked indirect calls (or no longer one). Nothing where
/// targets are not registered ([`enabled`] is false).
///
/// # Errors
///
/// The system's refusal; an address outside code this layer made.
pub(crate) fn set_call_target(addr: usize, valid: bool) -> io::Result<()> {
    if !enabled() {
        return Ok(());
    }
    let info = query(addr as *const u8)?;
    let (base, len, section) = if info.Type == MEM_MAPPED {
        let (view, len, section) = section::exec_view_of(addr).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a call target in a view this layer did not map",
            )
        })?;
        (view, len, Some(section))
    } else {
        let base = info.AllocationBase as usize;
        (base, allocation_len(base)?, None)
    };
    let mut infos = call_target_infos(base, len, &[addr], valid)?;
    if simulated() {
        registrations().push(Registration {
            base,
            len,
            view: section.is_some(),
            entries: infos.iter().map(|i| (i.Offset, i.Flags)).collect(),
        });
        return Ok(());
    }
    let api = api().ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
    // SAFETY: no preconditions; a pseudo-handle that needs no closing.
    let process = unsafe { GetCurrentProcess() };
    let ok = match section {
        Some(section) => {
            let for_view = api.for_view.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this system cannot register call targets in a section's view \
                     (SetProcessValidCallTargetsForMappedView is missing)",
                )
            })?;
            // SAFETY: `infos` is a valid array of its length; the view (from
            // offset 0 of `section`, which is open) is ours.
            unsafe {
                for_view(
                    process,
                    base as *const c_void,
                    len,
                    infos.len() as u32,
                    infos.as_mut_ptr(),
                    section,
                    0,
                )
            }
        }
        // SAFETY: `infos` is a valid array of its length; the allocation is
        // ours.
        None => unsafe {
            (api.set)(
                process,
                base as *const c_void,
                len,
                infos.len() as u32,
                infos.as_mut_ptr(),
            )
        },
    };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(())
}

/// The length of the allocation that starts at `base`: its runs of pages
/// up to the first that belongs to another allocation.
fn allocation_len(base: usize) -> io::Result<usize> {
    let mut at = base;
    loop {
        let info = query(at as *const u8)?;
        if info.AllocationBase as usize != base || info.RegionSize == 0 {
            return Ok(at - base);
        }
        at = info.BaseAddress as usize + info.RegionSize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_ascending_aligned_and_unique() {
        let base = 0x10_0000;
        let infos = call_target_infos(
            base,
            0x1000,
            &[base + 0x40, base, base + 0x20, base + 0x40],
            true,
        )
        .unwrap();
        let got: Vec<_> = infos.iter().map(|i| (i.Offset, i.Flags)).collect();
        let valid = CFG_CALL_TARGET_VALID as usize;
        assert_eq!(got, [(0, valid), (0x20, valid), (0x40, valid)]);
        let infos = call_target_infos(base, 0x1000, &[base + 0xff0], false).unwrap();
        assert_eq!((infos[0].Offset, infos[0].Flags), (0xff0, 0));
    }

    #[test]
    fn targets_outside_or_misaligned_are_refused() {
        let base = 0x10_0000;
        for bad in [base - 16, base + 0x1000, base + 8, base + 0x21] {
            let Err(e) = call_target_infos(base, 0x1000, &[base, bad], true) else {
                panic!("{bad:#x} was accepted");
            };
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:#x}: {e}");
        }
    }

    /// Under the test switch, every entry of guarded code is registered
    /// as the system would be asked: each thunk's entry and span's start
    /// when made (from its view's start for dual-mapped code, from its
    /// allocation's for protect), each as invalid when freed, a guarded
    /// block's start when sealed; code of an unguarded heap registers
    /// nothing (its pages keep Windows' default, every address valid).
    /// Where the process has no CFG (Wine, or a binary built without it)
    /// nothing is registered, and guarded code gets no extra bits: the
    /// skip path, which is what runs under Wine.
    #[test]
    fn without_cfg_nothing_is_registered() {
        let cfg = super::super::process_mitigations()[2];
        if enabled() {
            println!("CFG is on here: call targets are registered");
            return;
        }
        println!(
            "CFG {cfg:?}, SetProcessValidCallTargets {}: registration skipped",
            if api().is_some() { "found" } else { "absent" }
        );
        assert_eq!(protection_bits(Prot::ReadExecGuarded), 0);
        // Any address: nothing is asked of the system.
        set_call_target(16, true).unwrap();
        set_call_target(16, false).unwrap();
    }
}
