//! A C program loads the cdylib with `dlopen` and calls thunks it made with
//! static trampolines: the table must be found in the library's own file.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/libwxthunk_dlopen_check.so`, built by cargo with this
/// test (the library is a cdylib of this package).
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps directory");
    let name = "libwxthunk_dlopen_check.so";
    [
        deps.join(name),
        deps.parent().expect("profile directory").join(name),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("{name} not found next to {}", exe.display()))
}

#[test]
fn a_c_program_dlopens_the_library_and_calls_its_static_thunks() {
    let lib = library();
    let out = Command::new(env!("WXTHUNK_DLOPEN_DRIVER"))
        .arg(&lib)
        .output()
        .expect("run the C driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "driver failed: {}", out.status);
    assert!(stdout.contains("a(32)=42 b(47)=42"), "{stdout}");
    // The table came from the library, not from the driver program.
    let lib = lib.canonicalize().unwrap();
    let table = stdout.lines().find(|l| l.starts_with("table: ")).unwrap();
    assert!(
        table.contains(lib.file_name().unwrap().to_str().unwrap()),
        "{table} (library {})",
        lib.display()
    );
}
