//! Small x86_64 System V functions, as bytes: what the tests, the
//! benchmarks and the CLI's demo write into executable memory. (Bytes are
//! data on any machine; they run only on x86_64, see [`RUNS_HERE`].)

/// Whether these snippets run on this machine.
pub const RUNS_HERE: bool = cfg!(target_arch = "x86_64");

/// `ret`.
pub const RET: u8 = 0xc3;

/// `int3`.
pub const TRAP: u8 = 0xcc;

/// `lea rax, [rdi + rsi]; ret`: `extern "C" fn(u64, u64) -> u64`.
pub const ADD: &[u8] = &[0x48, 0x8d, 0x04, 0x37, 0xc3];

/// `mov eax, imm32; ret`: `extern "C" fn() -> u32` returning `value`.
pub fn ret_u32(value: u32) -> Vec<u8> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&value.to_le_bytes());
    code.push(RET);
    code
}

/// Offset of the 8-bit immediate of `add rax, imm8` in
/// [`call_then_add_one`]'s code (patch it to add something else).
pub const CALL_THEN_ADD_ONE_ADDEND: usize = 4 + 10 + 2 + 3;

/// `extern "C" fn(u64) -> u64` that calls the C function at `target` with
/// its argument (through an absolute address) and returns its result plus 1.
pub fn call_then_add_one(target: usize) -> Vec<u8> {
    let mut code = vec![0x48, 0x83, 0xec, 0x08]; // sub rsp, 8 (align the stack)
    code.extend_from_slice(&[0x48, 0xb8]); // mov rax, imm64
    code.extend_from_slice(&(target as u64).to_le_bytes());
    code.extend_from_slice(&[0xff, 0xd0]); // call rax
    code.extend_from_slice(&[0x48, 0x83, 0xc0, 0x01]); // add rax, 1
    code.extend_from_slice(&[0x48, 0x83, 0xc4, 0x08]); // add rsp, 8
    code.push(RET);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addend_offset_points_at_add_rax_imm8() {
        let code = call_then_add_one(0x1122_3344_5566_7788);
        assert_eq!(
            &code[CALL_THEN_ADD_ONE_ADDEND - 3..CALL_THEN_ADD_ONE_ADDEND],
            &[0x48, 0x83, 0xc0]
        );
        assert_eq!(code[CALL_THEN_ADD_ONE_ADDEND], 1);
    }
}
