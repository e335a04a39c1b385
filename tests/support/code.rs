//! Small x86_64 System V functions, as bytes.

/// `lea rax, [rdi + rsi]; ret`: `extern "C" fn(u64, u64) -> u64`.
pub const ADD: &[u8] = &[0x48, 0x8d, 0x04, 0x37, 0xc3];

/// `mov eax, imm32; ret`: `extern "C" fn() -> u32` returning `value`.
pub fn ret_u32(value: u32) -> Vec<u8> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&value.to_le_bytes());
    code.push(0xc3);
    code
}

/// `extern "C" fn(u64) -> u64` that calls the C function at `target` with
/// its argument (through an absolute address) and returns its result plus 1.
pub fn call_then_add_one(target: usize) -> Vec<u8> {
    let mut code = vec![0x48, 0x83, 0xec, 0x08]; // sub rsp, 8
    code.extend_from_slice(&[0x48, 0xb8]); // mov rax, imm64
    code.extend_from_slice(&(target as u64).to_le_bytes());
    code.extend_from_slice(&[0xff, 0xd0]); // call rax
    code.extend_from_slice(&[0x48, 0x83, 0xc0, 0x01]); // add rax, 1
    code.extend_from_slice(&[0x48, 0x83, 0xc4, 0x08]); // add rsp, 8
    code.push(0xc3); // ret
    code
}

/// `int3`.
pub const TRAP: u8 = 0xcc;
