//! Small C functions of this machine, as bytes: what the tests, the
//! benchmarks and the CLI's demo write into executable memory. x86_64
//! (System V, or Windows x64 on Windows) and AArch64 (AAPCS64); on any other architecture the bytes are
//! x86_64's, which are data there and never run (see [`RUNS_HERE`]).

/// Whether these snippets run on this machine.
pub const RUNS_HERE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

// Every AArch64 function below starts with `bti c`, as compilers emit
// under `-mbranch-protection=bti`: heaps map their code guarded (PROT_BTI)
// where the kernel offers it, and a call through a pointer must land on
// one there (a no-op on CPUs without BTI).
#[cfg(target_arch = "aarch64")]
mod machine {
    /// `ret`.
    pub const RET: &[u8] = &0xd65f_03c0u32.to_le_bytes();
    /// `brk #0`, what the library fills unused and freed code with.
    pub const TRAP: &[u8] = &0xd420_0000u32.to_le_bytes();
    /// `bti c`: the landing pad every entry wxthunk makes starts with.
    pub const LANDING_PAD: &[u8] = &0xd503_245fu32.to_le_bytes();
    /// `bti c; add x0, x0, x1; ret`.
    pub const ADD: &[u8] = &[
        0x5f, 0x24, 0x03, 0xd5, 0x00, 0x00, 0x01, 0x8b, 0xc0, 0x03, 0x5f, 0xd6,
    ];
    /// `bti c; ret`: a function that returns.
    pub const RETURNS: &[u8] = &[0x5f, 0x24, 0x03, 0xd5, 0xc0, 0x03, 0x5f, 0xd6];

    /// `bti c; mov w0, #lo; movk w0, #hi, lsl #16; ret`.
    pub fn ret_u32(value: u32) -> Vec<u8> {
        let (lo, hi) = (value & 0xffff, value >> 16);
        [
            0xd503_245f,
            0x5280_0000 | lo << 5,
            0x72a0_0000 | hi << 5,
            0xd65f_03c0,
        ]
        .iter()
        .flat_map(|insn: &u32| insn.to_le_bytes())
        .collect()
    }

    /// `bti c; ldr x0, #12; ret; brk #0`, then the value: returns it
    /// (8-aligned within the code when the code is).
    pub fn ret_u64(value: u64) -> Vec<u8> {
        let mut code: Vec<u8> = [0xd503_245fu32, 0x5800_0060, 0xd65f_03c0, 0xd420_0000]
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        code.extend_from_slice(&value.to_le_bytes());
        code
    }

    /// `add x0, x0, #addend`.
    fn add_imm(addend: u8) -> u32 {
        0x9100_0000 | (u32::from(addend) << 10)
    }

    /// Where `add x0, x0, #1` is in [`call_then_add_one`]'s code.
    const ADD_AT: usize = 20;

    /// Calls `target` through an absolute address (a literal 8-aligned
    /// within the code when the code is), returns its result plus 1.
    pub fn call_then_add_one(target: usize) -> Vec<u8> {
        let insns: [u32; 8] = [
            0xd503_245f, // bti c
            0xa9bf_7bfd, // stp x29, x30, [sp, #-16]!
            0x9100_03fd, // mov x29, sp
            0x5800_00b0, // ldr x16, #20 (-> 32)
            0xd63f_0200, // blr x16
            add_imm(1),  // add x0, x0, #1
            0xa8c1_7bfd, // ldp x29, x30, [sp], #16
            0xd65f_03c0, // ret
        ];
        let mut code: Vec<u8> = insns.iter().flat_map(|i| i.to_le_bytes()).collect();
        code.extend_from_slice(&(target as u64).to_le_bytes());
        code
    }

    /// Makes [`call_then_add_one`]'s code add `addend` instead of 1.
    pub fn set_addend(code: &mut [u8], addend: u8) {
        code[ADD_AT..ADD_AT + 4].copy_from_slice(&add_imm(addend).to_le_bytes());
    }

    /// The addend [`call_then_add_one`]'s code adds now.
    #[cfg(test)]
    pub fn addend(code: &[u8]) -> u8 {
        let insn = u32::from_le_bytes(code[ADD_AT..ADD_AT + 4].try_into().unwrap());
        ((insn >> 10) & 0xfff) as u8
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod machine {
    /// `ret`.
    pub const RET: &[u8] = &[0xc3];
    /// `ret`: a function that returns.
    pub const RETURNS: &[u8] = RET;
    /// `int3`, what the library fills unused and freed code with.
    pub const TRAP: &[u8] = &[0xcc];
    /// `endbr64`: the landing pad every entry wxthunk makes starts with.
    pub const LANDING_PAD: &[u8] = &[0xf3, 0x0f, 0x1e, 0xfa];
    /// `lea rax, [rdi + rsi]; ret` (System V: the arguments in rdi, rsi).
    #[cfg(not(windows))]
    pub const ADD: &[u8] = &[0x48, 0x8d, 0x04, 0x37, 0xc3];
    /// `lea rax, [rcx + rdx]; ret` (Windows x64: the arguments in rcx, rdx).
    #[cfg(windows)]
    pub const ADD: &[u8] = &[0x48, 0x8d, 0x04, 0x11, 0xc3];

    /// What a caller reserves below its return address to keep the stack
    /// 16-aligned at a call: 8 bytes on System V, plus the 32-byte shadow
    /// space every Windows x64 callee may use.
    const FRAME: u8 = if cfg!(windows) { 40 } else { 8 };

    /// `mov eax, imm32; ret`.
    pub fn ret_u32(value: u32) -> Vec<u8> {
        let mut code = vec![0xb8];
        code.extend_from_slice(&value.to_le_bytes());
        code.extend_from_slice(RET);
        code
    }

    /// `mov rax, imm64; ret`.
    pub fn ret_u64(value: u64) -> Vec<u8> {
        let mut code = vec![0x48, 0xb8];
        code.extend_from_slice(&value.to_le_bytes());
        code.extend_from_slice(RET);
        code
    }

    /// Where the 8-bit immediate of `add rax, imm8` is in
    /// [`call_then_add_one`]'s code.
    const ADDEND_AT: usize = 4 + 10 + 2 + 3;

    /// Calls `target` through an absolute address, returns its result
    /// plus 1.
    pub fn call_then_add_one(target: usize) -> Vec<u8> {
        let mut code = vec![0x48, 0x83, 0xec, FRAME]; // sub rsp, FRAME
        code.extend_from_slice(&[0x48, 0xb8]); // mov rax, imm64
        code.extend_from_slice(&(target as u64).to_le_bytes());
        code.extend_from_slice(&[0xff, 0xd0]); // call rax
        code.extend_from_slice(&[0x48, 0x83, 0xc0, 0x01]); // add rax, 1
        code.extend_from_slice(&[0x48, 0x83, 0xc4, FRAME]); // add rsp, FRAME
        code.extend_from_slice(RET);
        code
    }

    /// Makes [`call_then_add_one`]'s code add `addend` instead of 1.
    pub fn set_addend(code: &mut [u8], addend: u8) {
        code[ADDEND_AT] = addend;
    }

    /// The addend [`call_then_add_one`]'s code adds now.
    #[cfg(test)]
    pub fn addend(code: &[u8]) -> u8 {
        code[ADDEND_AT]
    }
}

/// `ret`: `extern "C" fn()`.
pub const RET: &[u8] = machine::RET;

/// The trap instruction the library fills unused and freed code with.
pub const TRAP: &[u8] = machine::TRAP;

/// The landing pad of an indirect branch (CET's `endbr64`, BTI's `bti c`):
/// every thunk entry and trampoline wxthunk makes starts with it.
pub const LANDING_PAD: &[u8] = machine::LANDING_PAD;

/// `extern "C" fn(u64, u64) -> u64` returning the sum.
pub const ADD: &[u8] = machine::ADD;

/// `extern "C" fn() -> u32` returning `value`.
pub fn ret_u32(value: u32) -> Vec<u8> {
    machine::ret_u32(value)
}

/// `extern "C" fn() -> u64` returning `value` (placed 8-aligned, where the
/// machine keeps it as data within the code).
pub fn ret_u64(value: u64) -> Vec<u8> {
    machine::ret_u64(value)
}

/// `extern "C" fn(u64) -> u64` that calls the C function at `target` with
/// its argument and returns its result plus 1 (see [`set_addend`]).
pub fn call_then_add_one(target: usize) -> Vec<u8> {
    machine::call_then_add_one(target)
}

/// Patches the code of [`call_then_add_one`] (at the start of `code`) to
/// add `addend` instead.
pub fn set_addend(code: &mut [u8], addend: u8) {
    machine::set_addend(code, addend);
}

/// `len` bytes of functions that return at once (`len` a multiple of
/// their size: `ret` on x86_64, `bti c; ret` on AArch64).
pub fn rets(len: usize) -> Vec<u8> {
    let one = machine::RETURNS;
    assert_eq!(
        len % one.len(),
        0,
        "{len} bytes of {}-byte functions",
        one.len()
    );
    one.repeat(len / one.len())
}

/// Whether `bytes`, found at address `addr`, are all trap instructions (in
/// their place: the library aligns them to their size).
pub fn is_traps(bytes: &[u8], addr: usize) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == TRAP[(addr + i) % TRAP.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addend_can_be_read_back_and_patched() {
        let mut code = call_then_add_one(0x1122_3344_5566_7788);
        assert_eq!(machine::addend(&code), 1);
        set_addend(&mut code, 100);
        assert_eq!(machine::addend(&code), 100);
        assert!(
            code.windows(8)
                .any(|w| w == 0x1122_3344_5566_7788u64.to_le_bytes())
        );
    }

    #[test]
    fn traps_are_recognised_in_their_place() {
        let traps = TRAP.repeat(4);
        assert!(is_traps(&traps, 0));
        assert!(is_traps(&traps[TRAP.len()..], TRAP.len()));
        assert!(!is_traps(RET, 0));
    }
}
