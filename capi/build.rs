//! The shared library's soname, for installed copies: `capi/install.sh`
//! builds with `WXTHUNK_C_SONAME=1`, which names the library
//! `libwxthunk.so.<compatible version>` (the major version, or
//! `0.<minor>` before 1.0, as Cargo reads versions), the name it installs
//! it under, so programs linked against it load any later compatible
//! release. A plain `cargo build` sets none, so programs linked against
//! `target/<profile>/libwxthunk_c.so` find it there by that file name.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WXTHUNK_C_SONAME");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    );
    if elf && std::env::var_os("WXTHUNK_C_SONAME").is_some_and(|v| v == "1") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo");
        let compatible = if major == "0" {
            format!("0.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwxthunk.so.{compatible}");
    }
}
