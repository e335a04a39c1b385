//! Compiles the C driver program that loads this crate's cdylib.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=driver.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let exe = out.join("wxthunk-dlopen-driver");
    let compiler = cc::Build::new().get_compiler();
    let status = compiler
        .to_command()
        .arg("driver.c")
        .arg("-o")
        .arg(&exe)
        .arg("-ldl")
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling driver.c failed");
    println!("cargo:rustc-env=WXTHUNK_DLOPEN_DRIVER={}", exe.display());
}
