//! The demo's machine code for x86_64 (System V calling convention).

/// `lea rax, [rdi + rsi]; ret`: `extern "C" fn(u64, u64) -> u64`.
pub fn add_u64() -> Option<Vec<u8>> {
    Some(vec![0x48, 0x8d, 0x04, 0x37, 0xc3])
}

/// Offset of the 8-bit immediate in `add rax, imm8` in
/// [`call_then_add_one`]'s code.
pub const CALLBACK_ADDEND_OFFSET: usize = 4 + 10 + 2 + 3;

/// `extern "C" fn(u64) -> u64` that calls the C function at `target` with
/// its argument and adds 1 to the result.
pub fn call_then_add_one(target: usize) -> Option<Vec<u8>> {
    let mut code = vec![0x48, 0x83, 0xec, 0x08]; // sub rsp, 8 (align the stack)
    code.extend_from_slice(&[0x48, 0xb8]); // mov rax, imm64
    code.extend_from_slice(&(target as u64).to_le_bytes());
    code.extend_from_slice(&[0xff, 0xd0]); // call rax
    code.extend_from_slice(&[0x48, 0x83, 0xc0, 0x01]); // add rax, 1
    code.extend_from_slice(&[0x48, 0x83, 0xc4, 0x08]); // add rsp, 8
    code.push(0xc3); // ret
    Some(code)
}
