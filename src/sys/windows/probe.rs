//! What the policy probe asks of Windows.

use std::io;

use crate::sys::ChildRwx;

/// Not tried: Windows starts no child by copying this process, and a new
/// process would run under its own policy, not this one's. (Whether this
/// process may make code at all is its dynamic-code policy, ACG.)
pub(crate) fn rwx_mapping_in_child() -> ChildRwx {
    ChildRwx::NotTried(io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows has no fork-like child to try it in (whether this process may make code at \
         all is its dynamic-code policy: the ACG line)",
    ))
}

/// Windows' process mitigation policies that bear on executable memory,
/// as `GetProcessMitigationPolicy` reports them for this process: Data
/// Execution Prevention, Arbitrary Code Guard (the dynamic-code policy's
/// `ProhibitDynamicCode`), Control Flow Guard and CET user shadow stacks,
/// in that order. `None` where the system does not say: the call fails, or
/// it succeeds without writing the answer (Wine 8 does, so the buffer is
/// filled with a value no answer has before each call).
pub(crate) fn process_mitigations() -> [Option<bool>; 4] {
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetProcessMitigationPolicy, PROCESS_MITIGATION_POLICY,
        ProcessControlFlowGuardPolicy, ProcessDEPPolicy, ProcessDynamicCodePolicy,
        ProcessUserShadowStackPolicy,
    };
    // Each policy's structure starts with its flags, bit 0 the one asked
    // about (`Enable`, `ProhibitDynamicCode`, `EnableControlFlowGuard`,
    // `EnableUserShadowStack`); DEP's has a `BOOLEAN Permanent` after them
    // (8 bytes in all), the others are the flags alone.
    let ask = |policy: PROCESS_MITIGATION_POLICY, len: usize| -> Option<bool> {
        const UNWRITTEN: u32 = u32::MAX;
        let mut buf = [UNWRITTEN; 2];
        // SAFETY: `buf` has room for `len` (4 or 8) bytes, the size of the
        // structure of `policy`; the pseudo-handle needs no closing.
        let ok = unsafe {
            GetProcessMitigationPolicy(GetCurrentProcess(), policy, buf.as_mut_ptr().cast(), len)
        };
        (ok != 0 && buf[0] != UNWRITTEN).then_some(buf[0] & 1 != 0)
    };
    [
        ask(ProcessDEPPolicy, 8),
        ask(ProcessDynamicCodePolicy, 4),
        ask(ProcessControlFlowGuardPolicy, 4),
        ask(ProcessUserShadowStackPolicy, 4),
    ]
}
