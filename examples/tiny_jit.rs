//! A tiny JIT with re-JIT: write machine code into a writable `Block`,
//! seal it (`exec`: read+exec, never writable at the same time), call it;
//! then take it back (`into_writable`), `clear` it, write new code and seal
//! it again. x86_64 only (the bytes are x86_64 instructions).
//!
//! `cargo run --example tiny_jit`

use std::io::Write;

use wxthunk::Block;

/// `mov eax, value; ret`: a function returning `value`.
fn returns(value: u32) -> Vec<u8> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&value.to_le_bytes());
    code.push(0xc3);
    code
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !cfg!(target_arch = "x86_64") {
        println!("this example writes x86_64 code; nothing to do here");
        return Ok(());
    }
    let mut block = Block::new(64)?; // one page
    block.write_all(&returns(7))?;
    let code = block.exec()?; // consumes the writable block
    // SAFETY: offset 0 holds a complete `extern "C" fn() -> u32`.
    let f: extern "C" fn() -> u32 = unsafe { code.func(0)? };
    println!("first version returns {}", f());

    // Re-JIT: back to writable (nothing may be running it now: the old
    // `f` must not be called again), empty, new code, sealed again.
    let mut block = code.into_writable()?;
    block.clear();
    block.write_all(&returns(42))?;
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
