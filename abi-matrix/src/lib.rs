//! The generated signature matrix (see `build.rs`): C functions that call a
//! thunk with known arguments and check its result, and the Rust thunks
//! that check they saw exactly those arguments. The test is in
//! `tests/matrix.rs`.

#![cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    any(target_os = "linux", windows)
))]

include!(concat!(env!("OUT_DIR"), "/matrix.rs"));
