//! `wxthunk demo`: wxthunk at work on real machine code.

#[cfg(any(target_os = "linux", windows))]
mod thunks;

use std::io::Write;

use wxthunk::Block;
use wxthunk_testkit::code;

extern "C" fn square(x: u64) -> u64 {
    x * x
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each half shows what works here and says why the rest is skipped; an
/// error of the tool itself (writing the output, a temporary directory) is
/// the only failure.
pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("demo: JIT with Block");
    if let Err(e) = block() {
        println!("  skipped: {}", crate::causes(&*e));
    }
    #[cfg(any(target_os = "linux", windows))]
    {
        println!();
        thunks::run()?;
    }
    Ok(())
}

fn block() -> Result<(), Box<dyn std::error::Error>> {
    if !code::RUNS_HERE {
        println!(
            "  no demo code for {} yet; the library itself works here",
            std::env::consts::ARCH
        );
        return Ok(());
    }
    let mut block = Block::new(0)?;
    println!(
        "  Block::new(0): {} bytes, strategy {}, code will run at {:p}",
        block.capacity(),
        block.strategy(),
        block.exec_ptr()
    );
    block.write_all(code::ADD)?;
    let add_at = 0;
    let callback_at = block.len();
    let callback = code::call_then_add_one(square as extern "C" fn(u64) -> u64 as usize);
    block.write_all(&callback)?;
    println!("  wrote {} bytes; sealing (exec)", block.len());
    let exec = block.exec()?;
    // SAFETY: `add_at` holds a SysV/C function (u64, u64) -> u64.
    let add_fn: extern "C" fn(u64, u64) -> u64 = unsafe { exec.func(add_at)? };
    // SAFETY: `callback_at` holds a C function (u64) -> u64 that calls
    // `square`, which lives as long as the program.
    let cb_fn: extern "C" fn(u64) -> u64 = unsafe { exec.func(callback_at)? };
    println!(
        "  add      [{}]",
        hex(&exec.as_slice()[add_at..callback_at])
    );
    println!("    add(2, 40)          = {}", add_fn(2, 40));
    println!("  callback [{}]", hex(&exec.as_slice()[callback_at..]));
    println!(
        "    square(7) + 1       = {}  (JIT code calling back into Rust)",
        cb_fn(7)
    );
    let mut again = exec.into_writable()?;
    code::set_addend(&mut again.as_mut_slice()[callback_at..], 100);
    let exec = again.exec()?;
    // SAFETY: as above; only the immediate operand changed.
    let cb_fn: extern "C" fn(u64) -> u64 = unsafe { exec.func(callback_at)? };
    println!(
        "  re-JIT (into_writable, patch, exec) at the same address {:p}",
        exec.as_ptr()
    );
    println!("    square(7) + 100     = {}", cb_fn(7));
    Ok(())
}
