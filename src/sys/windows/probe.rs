//! What the policy probe asks of Windows.

use std::io;

use crate::sys::ChildRwx;

/// Not tried: Windows starts no child by copying this process, and a new
/// process would run under its own policy, not this one's. (Whether this
/// process may make code at all is its dynamic-code policy, ACG.)
pub(crate) fn rwx_mapping_in_child() -> ChildRwx {
    ChildRwx::NotTried(io::Error::new(
        io::ErrorKind::Unsupported,
        "not tried on Windows (no fork)",
    ))
}
