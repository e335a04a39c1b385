//! A tiny JIT with re-JIT: write machine code into a writable `Block`,
//! seal it (`exec`: read+exec, never writable at the same time), call it;
//! then take it back (`into_writable`), `clear` it, write new code and seal
//! it again. The bytes are x86_64 or AArch64 instructions, for the machine
//! it runs on.
//!
//! `cargo run --example tiny_jit`

use std::io::Write;

use wxthunk::Block;

/// A function returning `value`: `mov eax, value; ret`.
#[cfg(target_arch = "x86_64")]
fn returns(value: u32) -> Option<Vec<u8>> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&value.to_le_bytes());
    code.push(0xc3);
    Some(code)
}

/// A function returning `value`: `movz w0, #low; movk w0, #high, lsl 16;
/// ret`. (A block is mapped without branch protection unless asked, so no
/// `bti c` landing pad is needed.)
#[cfg(target_arch = "aarch64")]
fn returns(value: u32) -> Option<Vec<u8>> {
    let (low, high) = (value & 0xffff, value >> 16);
    let words = [
        0x5280_0000 | (low << 5),
        0x72a0_0000 | (high << 5),
        0xd65f_03c0,
    ];
    Some(words.iter().flat_map(|w| w.to_le_bytes()).collect())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn returns(_: u32) -> Option<Vec<u8>> {
    None
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (Some(seven), Some(answer)) = (returns(7), returns(42)) else {
        println!("this example writes x86_64 or AArch64 code; nothing to do here");
        return Ok(());
    };
    let mut block = Block::new(64)?; // one page
    block.write_all(&seven)?;
    let code = block.exec()?; // consumes the writable block
    // SAFETY: offset 0 holds a complete `extern "C" fn() -> u32`.
    let f: extern "C" fn() -> u32 = unsafe { code.func(0)? };
    println!("first version returns {}", f());

    // Re-JIT: back to writable (nothing may be running it now: the old
    // `f` must not be called again), empty, new code, sealed again.
    let mut block = code.into_writable()?;
    block.clear();
    block.write_all(&answer)?;
    let code = block.exec()?;
    // SAFETY: as above.
    let g: extern "C" fn() -> u32 = unsafe { code.func(0)? };
    println!(
        "second version returns {} (strategy: {})",
        g(),
        code.strategy()
    );
    assert_eq!(g(), 42);
    Ok(())
}
