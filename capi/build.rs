//! The shared library's soname on Linux: `libwxthunk.so.<compatible
//! version>` (the major version, or `0.<minor>` before 1.0, as Cargo reads
//! versions), the name it is installed under (`capi/install.sh`), so
//! programs linked against it load any later compatible release.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
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
