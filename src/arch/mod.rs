//! Per-architecture facts and code: the trap instruction that fills unused
//! code, the instruction-cache flush, and the code generators (where a
//! thunk's context goes, the thunk encoders, the static-trampoline table and
//! adapters as assembly). Depends on the ABI layer (`crate::abi`) and nothing
//! above it. Chosen by `cfg_if!` and `path`; besides the ABI layer (which
//! conventions a target has), no other module tests `target_arch`.

// The x86_64 code generator's assembly (trampoline table, adapters) is
// written for two object formats: ELF (every x86_64 Unix but Apple's,
// which is Mach-O, and Cygwin's, which is PE) and PE/COFF (Windows, for
// both the GNU and the MSVC targets: Rust's own assembler reads it). x86_64
// macOS gets no code generator (nor a platform layer: every operation there
// returns `Unsupported`). `.ci/check-asm` assembles the ELF assembly for
// several ELF targets; `.ci/windows` builds and runs the COFF assembly.
cfg_if::cfg_if! {
    if #[cfg(all(
        target_arch = "x86_64",
        any(windows, all(unix, not(target_vendor = "apple"), not(target_os = "cygwin")))
    ))] {
        #[path = "x86_64/mod.rs"]
        mod imp;
    } else if #[cfg(target_arch = "aarch64")] {
        #[path = "aarch64.rs"]
        mod imp;
    } else {
        #[path = "other.rs"]
        mod imp;
    }
}

pub(crate) use imp::*;

// The AArch64 code generator's encoders and placement: plain Rust, unit
// tested on every host, used by the AArch64 `imp`.
#[cfg(any(test, target_arch = "aarch64"))]
#[cfg_attr(not(any(test, target_arch = "aarch64")), allow(dead_code))]
mod aarch64_thunk;

/// The thunk API for architectures without a thunk code generator: every
/// signature is unplaceable, so thunk constructors return `Unsupported`.
#[allow(dead_code)]
mod no_thunks {
    use super::{Placement, ThunkCode};
    use crate::abi::{ArgClass, CallConv};

    /// No thunk code generator for this architecture yet.
    pub(crate) const fn placement(_conv: CallConv, _classes: &[ArgClass]) -> Option<Placement> {
        None
    }

    /// No thunk code generator for this architecture yet.
    pub(crate) const fn pointer_placement(
        _conv: CallConv,
        _classes: &[ArgClass],
    ) -> Option<Placement> {
        None
    }

    /// Never called: `placement` returns `None`.
    pub(crate) fn register_thunk(_reg: u8, _ctx: usize, _entry: usize, _at: usize) -> ThunkCode {
        unreachable!("no thunk code generator for this architecture")
    }

    /// Never called: `placement` returns `None`.
    pub(crate) fn float_thunk(_xmm: u8, _ctx: usize, _entry: usize, _at: usize) -> ThunkCode {
        unreachable!("no thunk code generator for this architecture")
    }

    /// Never called: `placement` returns `None`.
    pub(crate) fn register_thunk_len(_code: &[u8; super::THUNK_CODE_MAX]) -> usize {
        unreachable!("no thunk code generator for this architecture")
    }

    /// Never called: `placement` returns `None`.
    pub(crate) fn frame_thunk(
        _conv: CallConv,
        _stack_args: usize,
        _record: usize,
        _at: usize,
    ) -> ThunkCode {
        unreachable!("no thunk code generator for this architecture")
    }

    /// No frame adapters either.
    pub(crate) fn frame_adapters() -> Vec<(usize, usize, String)> {
        Vec::new()
    }

    /// No trampoline table either (its size and entry size are placeholders).
    pub(crate) const TABLE_SIZE: usize = 4096;
    /// A placeholder: there is no table.
    pub(crate) const ENTRY_SIZE: usize = 32;
    /// A placeholder: there is no table.
    pub(crate) const TABLE_KINDS: usize = 1;

    /// No trampoline table is assembled for this architecture.
    pub(crate) fn trampoline_table() -> Option<&'static [u8]> {
        None
    }

    /// No table, so none in the image either.
    pub(crate) const BUILTIN_UNITS: usize = 0;

    /// No table, so no records.
    pub(crate) fn trampoline_records() -> Option<usize> {
        None
    }

    /// Never called: there is no table.
    pub(crate) const fn trampoline_kind(_placement: Placement) -> usize {
        unreachable!()
    }

    /// Never called: there is no table.
    pub(crate) fn trampoline_target(
        _conv: CallConv,
        _placement: Placement,
        _entry: usize,
    ) -> usize {
        unreachable!("no trampoline table for this architecture")
    }

    /// Never called: there is no table.
    pub(crate) fn trampoline_freed() -> usize {
        unreachable!("no trampoline table for this architecture")
    }

    /// Never called: there is no table.
    pub(crate) fn trampoline_dropped() -> usize {
        unreachable!("no trampoline table for this architecture")
    }

    /// Never called: `placement` returns `None`.
    pub(crate) fn record_thunk(_placement: super::Placement, _record: usize) -> ThunkCode {
        unreachable!("no thunk code generator for this architecture")
    }
}

/// Fills `buf` with trap instructions. Each byte gets the byte of the trap
/// encoding that matches its address, so the traps line up with instruction
/// boundaries even when `buf` starts in the middle of an instruction slot.
pub(crate) fn fill_traps(buf: &mut [u8]) {
    let base = buf.as_ptr() as usize;
    fill_traps_at(buf, base);
}

/// Fills `buf` with the trap bytes that belong at address `addr` onwards
/// (for a buffer that will be copied to `addr`).
pub(crate) fn fill_traps_at(buf: &mut [u8], addr: usize) {
    if let [byte] = TRAP {
        buf.fill(*byte);
        return;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        *b = TRAP[(addr + i) % TRAP.len()];
    }
}

/// Where a thunk puts its context argument.
// Made only by a code generator's `placement` (the x86_64 ELF and COFF
// ones and AArch64's; elsewhere none is built).
#[cfg_attr(
    not(any(
        target_arch = "aarch64",
        all(
            target_arch = "x86_64",
            any(
                windows,
                all(unix, not(target_vendor = "apple"), not(target_os = "cygwin"))
            )
        )
    )),
    allow(dead_code)
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In this argument register (the architecture's register number).
    Register(u8),
    /// In this floating-point argument register (its number: `xmm` on
    /// x86_64), as a trailing `f64` parameter of the entry function: where
    /// the integer registers are used up but a float one is free (System
    /// V). The entry gets the pointer back from the `f64`'s bits.
    Float(u8),
    /// On the stack, after this many stack arguments of the caller's.
    Stack(usize),
}

/// The largest thunk: one 32-byte heap granule.
pub(crate) const THUNK_CODE_MAX: usize = 32;

/// A granule of traps, as a freed thunk granule holds them (granules are
/// aligned to their size, so the pattern lines up with instructions).
pub(crate) const TRAP_GRANULE: [u8; THUNK_CODE_MAX] = {
    let mut g = [0; THUNK_CODE_MAX];
    let mut i = 0;
    while i < THUNK_CODE_MAX {
        g[i] = TRAP[i % TRAP.len()];
        i += 1;
    }
    g
};

/// The machine code of one thunk, built on the stack.
#[derive(Clone, Copy)]
pub(crate) struct ThunkCode {
    bytes: [u8; THUNK_CODE_MAX],
    len: usize,
}

impl ThunkCode {
    /// No code yet: a granule of traps.
    #[allow(dead_code)]
    pub(crate) fn new() -> Self {
        ThunkCode {
            bytes: TRAP_GRANULE,
            len: 0,
        }
    }

    /// The first `len` bytes of `bytes`, which hold traps after them.
    #[allow(dead_code)]
    #[inline]
    pub(crate) fn from_bytes(bytes: [u8; THUNK_CODE_MAX], len: usize) -> Self {
        debug_assert!(bytes[len..] == TRAP_GRANULE[len..]);
        debug_assert!(len <= THUNK_CODE_MAX);
        ThunkCode { bytes, len }
    }

    #[allow(dead_code)]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The whole granule: the code, then traps (every `ThunkCode` keeps
    /// traps after its code).
    #[inline]
    pub(crate) fn into_granule(self) -> [u8; THUNK_CODE_MAX] {
        self.bytes
    }

    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl AsRef<[u8]> for ThunkCode {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}
