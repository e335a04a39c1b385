//! [`Strategy`]: how writable code memory becomes executable.

use std::fmt;
use std::str::FromStr;

/// How wxthunk turns memory it wrote into memory that runs, without ever
/// having a page that is writable and executable at once.
///
/// [`probe`](crate::probe) finds which strategies this process may use and
/// which one each part of the crate picks;
/// [`Block::with_strategy`](crate::Block::with_strategy) forces one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// Write into private read-write pages, then `mprotect` them to
    /// read+exec. One system call per seal; refused where the kernel will not
    /// let writable memory become executable (Linux `PR_SET_MDWE`, systemd's
    /// `MemoryDenyWriteExecute=`, SELinux `deny_execmem`, PaX MPROTECT).
    Protect,
    /// Keep the code in an anonymous file (a `memfd`) and run it from a
    /// read+exec mapping of that file that is never writable; the bytes are
    /// written through a separate mapping. Works under `PR_SET_MDWE`; needs
    /// `memfd_create`.
    DualMap,
    /// For thunks only: a table of identical trampolines assembled into
    /// this library's text is mapped again, read+exec, from the file the
    /// process loaded it from, next to a read-write page of records; a
    /// thunk is a record (its closure's context and entry), so creating one
    /// writes data, never code. Needs no `mprotect` to exec and no memfd,
    /// so it works under `PR_SET_MDWE`, systemd's `MemoryDenyWriteExecute=`
    /// and a seccomp filter that refuses `memfd_create`. Needs the binary's
    /// file to still be there (found through `/proc/self/maps`, or the
    /// dynamic loader without `/proc`).
    StaticTrampolines,
}

impl Strategy {
    /// Every strategy, in the order the probe reports them.
    pub const ALL: &'static [Strategy] = &[
        Strategy::Protect,
        Strategy::DualMap,
        Strategy::StaticTrampolines,
    ];

    /// A short, stable name: `"protect"`, `"dual-map"` or
    /// `"static-trampolines"`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Protect => "protect",
            Strategy::DualMap => "dual-map",
            Strategy::StaticTrampolines => "static-trampolines",
        }
    }

    /// The strategy called `name`, as [`FromStr`](std::str::FromStr) reads
    /// it (case-insensitive).
    ///
    /// ```
    /// use wxthunk::Strategy;
    /// assert_eq!(Strategy::from_name("dual-map"), Some(Strategy::DualMap));
    /// assert_eq!(Strategy::from_name("rwx"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Strategy> {
        name.parse().ok()
    }

    /// Whether the strategy can hold code that wxthunk or you write
    /// ([`Block`](crate::Block)s, heap spans and pages), rather than only
    /// thunks.
    pub fn writes_code(self) -> bool {
        !matches!(self, Strategy::StaticTrampolines)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a strategy by its [`name`](Strategy::name), ignoring ASCII case and
/// surrounding white space (`"Dual-Map"` is [`Strategy::DualMap`]).
///
/// ```
/// use wxthunk::Strategy;
/// assert_eq!("Protect".parse::<Strategy>(), Ok(Strategy::Protect));
/// let e = "rwx".parse::<Strategy>().unwrap_err();
/// assert_eq!(e.to_string(), "\"rwx\" is not a strategy (expected protect, dual-map or static-trampolines)");
/// ```
impl FromStr for Strategy {
    type Err = ParseStrategyError;

    fn from_str(s: &str) -> Result<Strategy, ParseStrategyError> {
        let name = s.trim();
        Strategy::ALL
            .iter()
            .copied()
            .find(|st| st.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| ParseStrategyError {
                value: s.to_owned(),
            })
    }
}

/// A string that names no [`Strategy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseStrategyError {
    value: String,
}

impl ParseStrategyError {
    /// The names a strategy can be given by.
    pub const EXPECTED: &'static str = "protect, dual-map or static-trampolines";

    /// The string that was read.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ParseStrategyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a strategy (expected {})",
            self.value,
            Self::EXPECTED
        )
    }
}

impl std::error::Error for ParseStrategyError {}
