//! Strategies: how wxthunk makes memory it wrote executable
//! ([`CodeStrategy`]), how it makes a thunk ([`ThunkStrategy`]), and
//! [`Strategy`], the one flat name for either that users force strategies
//! by (`HeapBuilder::strategy`, `Block::with_strategy`, `WXTHUNK_STRATEGY`).
//!
//! Written code (a [`Block`](crate::Block), a heap span or page, a
//! generated thunk) needs a [`CodeStrategy`]. A thunk is either generated
//! code, which then needs one too, or a static trampoline, which needs
//! none; so a heap's pair of strategies is always one of
//! `Generated(c)` with its spans under `c`, or static trampolines with
//! spans under whatever works (possibly nothing): no other combination can
//! be written.

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
    ///
    /// A protect heap's thunks do not get a page each: on Linux they are
    /// entries of trampoline tables (as [`StaticTrampolines`](Strategy::StaticTrampolines)'
    /// are) whose code is copied from this library and sealed once per
    /// table of 512 entries (2048 on AArch64), so creating one writes a
    /// record, never code, and makes no system call. On Windows each is a
    /// page of generated code.
    Protect,
    /// Keep the code in an anonymous file (a `memfd`) and run it from a
    /// read+exec mapping of that file that is never writable; the bytes are
    /// written through a separate mapping. Works under `PR_SET_MDWE`; needs
    /// `memfd_create`.
    ///
    /// On Windows the file is a pagefile-backed section with a writable view
    /// and a read+exec view (the writable view can never be made
    /// executable); a region's executable view stays inaccessible except
    /// where code was written. Heaps and [`Block`](crate::Block)s use it
    /// there; an in-place block
    /// ([`Block::in_place_with_code_strategy`](crate::Block::in_place_with_code_strategy))
    /// cannot (Windows cannot map a view over the memory it was written in)
    /// and is refused with [`Error::StrategyUnavailable`](crate::Error::StrategyUnavailable).
    DualMap,
    /// As [`DualMap`](Strategy::DualMap), with the code in a file that has
    /// no name in a directory whose filesystem allows executable mappings
    /// (made with `O_TMPFILE`, or named and unlinked at once, so nothing is
    /// ever left in the directory), for where `memfd_create` is refused.
    /// [`probe`](crate::probe) names the directory; the environment
    /// variable `WXTHUNK_TMPDIR` chooses it. Works under `PR_SET_MDWE` and
    /// systemd's `MemoryDenyWriteExecute=`, which let a file be mapped
    /// read+exec. Linux only: it has no meaning on Windows, where the memory
    /// behind a dual mapping is a pagefile-backed section, not a file.
    DualMapFile,
    /// For thunks only: a table of identical trampolines assembled into
    /// this library's text is mapped again, read+exec, from the file the
    /// process loaded it from, next to a read-write page of records; a
    /// thunk is a record (its closure's context and entry), so creating one
    /// writes data, never code. Needs no `mprotect` to exec and no memfd,
    /// so it works under `PR_SET_MDWE`, systemd's `MemoryDenyWriteExecute=`
    /// and a seccomp filter that refuses `memfd_create`. Needs the binary's
    /// file to still be there (found through `/proc/self/maps`, or the
    /// dynamic loader without `/proc`). On Windows the table is compiled
    /// into the image whole, with its records in a writable section, so it
    /// works under Arbitrary Code Guard (no executable memory is ever made
    /// at run time); it holds 2048 thunks for the whole process, past which
    /// creation fails with [`Error::TrampolinesExhausted`](crate::Error::TrampolinesExhausted).
    StaticTrampolines,
}

impl Strategy {
    /// Every strategy, in the order the probe reports them.
    pub const ALL: &'static [Strategy] = &[
        Strategy::Protect,
        Strategy::DualMap,
        Strategy::DualMapFile,
        Strategy::StaticTrampolines,
    ];

    /// A short, stable name: `"protect"`, `"dual-map"`, `"dual-map-file"`
    /// or `"static-trampolines"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Strategy;
    /// assert_eq!(Strategy::DualMapFile.name(), "dual-map-file");
    /// // The names round-trip, as `WXTHUNK_STRATEGY` takes them.
    /// for &s in Strategy::ALL {
    ///     assert_eq!(Strategy::from_name(s.name()), Some(s));
    /// }
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Protect => "protect",
            Strategy::DualMap => "dual-map",
            Strategy::DualMapFile => "dual-map-file",
            Strategy::StaticTrampolines => "static-trampolines",
        }
    }

    /// The strategy called `name`, as [`FromStr`](std::str::FromStr) reads
    /// it (case-insensitive).
    ///
    /// # Examples
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
    /// thunks: whether it is a [`CodeStrategy`].
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::Strategy;
    /// assert!(Strategy::Protect.writes_code());
    /// assert!(!Strategy::StaticTrampolines.writes_code());
    /// ```
    pub fn writes_code(self) -> bool {
        self.code().is_some()
    }

    /// The strategy for written code this names, if it names one.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{CodeStrategy, Strategy};
    /// assert_eq!(Strategy::Protect.code(), Some(CodeStrategy::Protect));
    /// assert_eq!(Strategy::StaticTrampolines.code(), None);
    /// ```
    pub fn code(self) -> Option<CodeStrategy> {
        match self {
            Strategy::Protect => Some(CodeStrategy::Protect),
            Strategy::DualMap => Some(CodeStrategy::DualMap),
            Strategy::DualMapFile => Some(CodeStrategy::DualMapFile),
            Strategy::StaticTrampolines => None,
        }
    }

    /// The way of making thunks this names: generated code under a
    /// [`CodeStrategy`], or static trampolines.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{CodeStrategy, Strategy, ThunkStrategy};
    /// assert_eq!(
    ///     Strategy::DualMap.thunks(),
    ///     ThunkStrategy::Generated(CodeStrategy::DualMap)
    /// );
    /// assert_eq!(Strategy::StaticTrampolines.thunks(), ThunkStrategy::StaticTrampolines);
    /// ```
    pub fn thunks(self) -> ThunkStrategy {
        match self.code() {
            Some(code) => ThunkStrategy::Generated(code),
            None => ThunkStrategy::StaticTrampolines,
        }
    }
}

/// How written code becomes executable: the strategies a
/// [`Block`](crate::Block), a heap's spans and pages, and generated thunks
/// can use (every [`Strategy`] but
/// [`StaticTrampolines`](Strategy::StaticTrampolines)).
///
/// ```
/// use wxthunk::{CodeStrategy, Strategy};
/// let s: Strategy = CodeStrategy::DualMap.into();
/// assert_eq!(s, Strategy::DualMap);
/// assert_eq!(CodeStrategy::try_from(Strategy::StaticTrampolines), Err(Strategy::StaticTrampolines));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodeStrategy {
    /// [`Strategy::Protect`]: write private pages, then `mprotect` them to
    /// read+exec.
    Protect,
    /// [`Strategy::DualMap`]: write through a read-write view of a memfd,
    /// run from a read+exec view that is never writable.
    DualMap,
    /// [`Strategy::DualMapFile`]: as `DualMap`, with an unlinked file in a
    /// directory instead of a memfd.
    DualMapFile,
}

impl CodeStrategy {
    /// Its name, as [`Strategy::name`] gives it.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{CodeStrategy, Strategy};
    /// assert_eq!(CodeStrategy::DualMap.name(), Strategy::DualMap.name());
    /// ```
    pub fn name(self) -> &'static str {
        Strategy::from(self).name()
    }

    /// Whether code is written through one view of a file and run from
    /// another ([`DualMap`](Self::DualMap) or
    /// [`DualMapFile`](Self::DualMapFile)), rather than `mprotect`ed.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::CodeStrategy;
    /// assert!(CodeStrategy::DualMapFile.dual_maps());
    /// assert!(!CodeStrategy::Protect.dual_maps());
    /// ```
    pub fn dual_maps(self) -> bool {
        matches!(self, CodeStrategy::DualMap | CodeStrategy::DualMapFile)
    }
}

impl From<CodeStrategy> for Strategy {
    fn from(code: CodeStrategy) -> Strategy {
        match code {
            CodeStrategy::Protect => Strategy::Protect,
            CodeStrategy::DualMap => Strategy::DualMap,
            CodeStrategy::DualMapFile => Strategy::DualMapFile,
        }
    }
}

/// The strategy for written code a [`Strategy`] names; the strategy itself
/// back as the error when it names none.
impl TryFrom<Strategy> for CodeStrategy {
    type Error = Strategy;

    fn try_from(s: Strategy) -> Result<CodeStrategy, Strategy> {
        s.code().ok_or(s)
    }
}

impl fmt::Display for CodeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a heap makes its thunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThunkStrategy {
    /// A few bytes of code per thunk, written under this strategy (one
    /// direct jump per call); under [`CodeStrategy::Protect`] on Linux, an
    /// entry of a trampoline table sealed under it instead (see
    /// [`Strategy::Protect`]).
    Generated(CodeStrategy),
    /// [`Strategy::StaticTrampolines`]: a record in a trampoline table
    /// mapped from the binary's file; no code is written.
    StaticTrampolines,
}

impl ThunkStrategy {
    /// The flat [`Strategy`] naming this one.
    ///
    /// # Examples
    ///
    /// ```
    /// use wxthunk::{CodeStrategy, Strategy, ThunkStrategy};
    /// assert_eq!(ThunkStrategy::StaticTrampolines.strategy(), Strategy::StaticTrampolines);
    /// assert_eq!(ThunkStrategy::Generated(CodeStrategy::DualMap).strategy(), Strategy::DualMap);
    /// ```
    pub fn strategy(self) -> Strategy {
        match self {
            ThunkStrategy::Generated(code) => code.into(),
            ThunkStrategy::StaticTrampolines => Strategy::StaticTrampolines,
        }
    }
}

impl From<ThunkStrategy> for Strategy {
    fn from(thunks: ThunkStrategy) -> Strategy {
        thunks.strategy()
    }
}

impl From<Strategy> for ThunkStrategy {
    fn from(s: Strategy) -> ThunkStrategy {
        s.thunks()
    }
}

impl fmt::Display for ThunkStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.strategy().name())
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
/// assert_eq!(
///     e.to_string(),
///     "\"rwx\" is not a strategy (expected protect, dual-map, dual-map-file or static-trampolines)"
/// );
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
    pub const EXPECTED: &'static str = "protect, dual-map, dual-map-file or static-trampolines";

    /// The string that was read.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = "rwx".parse::<wxthunk::Strategy>().unwrap_err();
    /// assert_eq!(e.value(), "rwx");
    /// ```
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
