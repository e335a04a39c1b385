//! [`probe`]: what this process may do with executable memory, and why.
//!
//! - `capabilities.rs`: trying each strategy once on scratch memory (what
//!   the rest of the crate chooses from), and the preference orders;
//! - `settings.rs`: `WXTHUNK_STRATEGY`, read once;
//! - `report.rs`: [`Policy`] and the types it reports in, gathered from the
//!   capabilities and the kernel's settings;
//! - `notes.rs`: the plain-language notes that explain a policy;
//! - `display.rs`: the table `probe` prints.

mod capabilities;
mod display;
#[cfg(feature = "json")]
mod json;
mod notes;
mod report;
mod settings;

use once_cell::race::OnceBox;

pub(crate) use capabilities::{
    BLOCK_PREFERENCE, HEAP_PREFERENCE, THUNK_PREFERENCE, capabilities, code_file,
};
pub use report::{Check, CodeFileDir, Mdwe, Mitigations, Policy, Seccomp, Selinux};
pub(crate) use settings::debug_setting;
#[cfg(feature = "default-heap")]
pub(crate) use settings::strategy_setting;
pub use settings::{DEBUG_VAR, STRATEGY_VAR, StrategySetting};

/// What this process may do with executable memory, and why.
///
/// The first call tries each strategy on scratch memory (and, for
/// [`Policy::rwx_mapping`], in a short-lived child process); later calls
/// return the cached answer at the cost of an atomic load.
///
/// # Examples
///
/// ```
/// let policy = wxthunk::probe();
/// println!("{policy}");
/// assert!(policy.page_size.is_power_of_two());
/// ```
///
/// # Platform-specific behaviour
///
/// On platforms without a platform layer every check is
/// [`Check::Refused`] or [`Check::Unknown`] and no strategy is chosen.
pub fn probe() -> &'static Policy {
    // Compare-and-swap, not a `Once`: fork-safe (see `capabilities`).
    static POLICY: OnceBox<Policy> = OnceBox::new();
    POLICY.get_or_init(|| Box::new(Policy::from_capabilities(capabilities())))
}
