//! What wxthunk's integration tests, benchmarks and CLI share, in one place:
//!
//! - [`code`]: small x86_64 functions as bytes (the CLI's demo uses them
//!   too);
//! - [`heaps`]: the heap configurations checks run under;
//! - [`error_chain`]: an error and its sources, checked for repetition;
//! - with the `harness` feature (tests): `child` (a test body in a fresh
//!   child process), `lockdown` (MDWE and seccomp lockdowns entered by
//!   such a child), `seccomp` (the filters), `fork` (fork children with
//!   a time-out) and `maps` (`/proc/self/maps`).

pub mod code;
pub mod heaps;

#[cfg(feature = "harness")]
pub mod child;
#[cfg(all(feature = "harness", target_os = "linux"))]
pub mod fork;
#[cfg(all(feature = "harness", target_os = "linux"))]
pub mod lockdown;
#[cfg(all(feature = "harness", any(target_os = "linux", windows)))]
pub mod maps;
#[cfg(all(feature = "harness", target_os = "linux"))]
pub mod seccomp;

#[cfg(feature = "harness")]
pub use child::{
    RUNNER_VAR, STRATEGY_VAR, command, emulated, expect_child, in_child, in_child_with_env,
    is_child, rerun_all_with_default_strategy, self_command, skipped_under_emulator,
};
pub use heaps::{heap_configs, thunk_heap_configs, thunk_heaps};
#[cfg(all(feature = "harness", target_os = "linux"))]
pub use lockdown::{Lockdown, NO_MDWE, run_locked, run_locked_with_env, set_mdwe};

/// An error and its sources, joined by ": " (what an error-chain reporter
/// prints). Panics if a message repeats its source's, the mistake such
/// reporters show twice.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        let msg = s.to_string();
        assert!(
            !parts.last().unwrap().contains(&msg),
            "{:?} repeats its source {msg:?}",
            parts.last().unwrap()
        );
        parts.push(msg);
        next = s.source();
    }
    parts.join(": ")
}
