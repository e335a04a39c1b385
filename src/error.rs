//! The one error type of the crate, and the error that hands a block back
//! when a W^X transition fails.

use std::fmt;
use std::io;

use crate::strategy::Strategy;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in wxthunk.
///
/// Every variant leaves the process, the heap and every live block or thunk
/// intact: an operation that fails changes nothing that was there before.
///
/// `Error` is `Send + Sync + 'static`, implements [`std::error::Error`] (with
/// [`source`](std::error::Error::source) returning the operating-system error
/// where there is one; `Display` does not repeat it, the standard
/// convention, so print the chain, or use `{:#}` with anyhow, to see it) and
/// converts into [`io::Error`], so `?` works in functions returning either.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The requested size cannot be rounded up to whole pages without
    /// overflowing the address space.
    SizeOverflow {
        /// The size that was asked for, in bytes.
        requested: usize,
    },
    /// An offset does not point into the bytes written so far (or, for a
    /// thunk page, an index past its last thunk).
    OutOfBounds {
        /// The offset that was asked for.
        offset: usize,
        /// How many bytes were written (the valid offsets are `0..len`).
        len: usize,
    },
    /// The operating system refused or failed a call.
    Os {
        /// What was being done, e.g. `"mmap"` or `"mprotect(PROT_READ|PROT_EXEC)"`.
        op: &'static str,
        /// The error the operating system reported.
        source: io::Error,
    },
    /// A W^X strategy that was asked for explicitly cannot work in this
    /// process (see [`probe`](crate::probe) for why).
    StrategyUnavailable {
        /// The strategy that was asked for.
        strategy: Strategy,
        /// Why it cannot be used here.
        reason: String,
    },
    /// No W^X strategy can produce executable memory in this process.
    NoExecutableMemory {
        /// What was tried and why each attempt failed.
        reason: String,
    },
    /// A code span of zero bytes was asked for.
    ZeroSize,
    /// A size is larger than what the operation can ever serve (not a
    /// temporary shortage: asking again cannot succeed).
    TooLarge {
        /// What was too large, e.g. `"a heap region"`.
        what: &'static str,
        /// The size that was asked for, in bytes.
        requested: usize,
        /// The largest size accepted, in bytes.
        limit: usize,
    },
    /// A heap's [`max_reserved`](crate::HeapBuilder::max_reserved) limit
    /// would be exceeded.
    HeapExhausted {
        /// The bytes a new region needed.
        requested: usize,
        /// The bytes the heap has reserved already.
        reserved: usize,
        /// The heap's limit.
        limit: usize,
    },
    /// A [`ThunkPage`](crate::ThunkPage) has no free slot
    /// (member_thunk's `page_full`).
    PageFull {
        /// How many thunks the page holds.
        capacity: usize,
    },
    /// An environment switch has a value wxthunk cannot use (e.g.
    /// `WXTHUNK_STRATEGY=bogus`).
    InvalidSetting {
        /// The variable, e.g. `"WXTHUNK_STRATEGY"`.
        variable: &'static str,
        /// Its value, as read.
        value: String,
        /// The values it accepts.
        expected: &'static str,
    },
    /// A heap cannot be used now: a default heap whose thread is exiting,
    /// or a heap this thread is already inside of (a global allocator or a
    /// signal handler that makes a thunk while the heap works on the same
    /// thread), where waiting would never end.
    HeapUnavailable {
        /// Why not.
        reason: &'static str,
    },
    /// The operation is not supported on this platform.
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// A signature given at run time ([`Heap::dyn_thunk`](crate::Heap::dyn_thunk))
    /// that no thunk can have.
    InvalidSignature {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Every static trampoline of the table compiled into this binary is
    /// in use (Windows, where the table is part of the image so that no
    /// code is made at run time: a fixed number of thunks, shared by every
    /// heap of the process under [`Strategy::StaticTrampolines`]).
    TrampolinesExhausted {
        /// How many thunks the table holds.
        capacity: usize,
    },
}

impl Error {
    /// Wraps an [`io::Error`] from the platform layer.
    #[cold]
    pub(crate) fn os(op: &'static str, source: io::Error) -> Self {
        Error::Os { op, source }
    }

    /// This error followed by its causes, `": "`-separated: for a log line
    /// or a report where the [`source`](std::error::Error::source) chain is
    /// not printed.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let e = heap.alloc(0).unwrap_err();
    /// assert_eq!(e.with_causes(), "a code span needs at least one byte");
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn with_causes(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }

    /// The [`io::ErrorKind`] that best describes this error.
    ///
    /// # Examples
    ///
    /// ```
    /// let heap = wxthunk::Heap::new()?;
    /// let e = heap.alloc(0).unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), wxthunk::Error>(())
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::SizeOverflow { .. }
            | Error::OutOfBounds { .. }
            | Error::ZeroSize
            | Error::TooLarge { .. }
            | Error::InvalidSignature { .. } => io::ErrorKind::InvalidInput,
            Error::HeapExhausted { .. } => io::ErrorKind::OutOfMemory,
            Error::HeapUnavailable { .. } => io::ErrorKind::Other,
            Error::InvalidSetting { .. } => io::ErrorKind::InvalidInput,
            Error::PageFull { .. } => io::ErrorKind::StorageFull,
            Error::TrampolinesExhausted { .. } => io::ErrorKind::OutOfMemory,
            Error::Os { source, .. } => source.kind(),
            Error::StrategyUnavailable { .. } | Error::NoExecutableMemory { .. } => {
                io::ErrorKind::PermissionDenied
            }
            Error::Unsupported { .. } => io::ErrorKind::Unsupported,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SizeOverflow { requested } => {
                write!(
                    f,
                    "a size of {requested} bytes cannot be rounded up to whole pages"
                )
            }
            Error::OutOfBounds { offset, len } => {
                write!(f, "offset {offset} is outside the {len} bytes written")
            }
            // The OS error itself is `source()`: error-chain reporters
            // (anyhow, eyre, `Report`) print it after this.
            Error::Os { op, .. } => write!(f, "{op} failed"),
            Error::StrategyUnavailable { strategy, reason } => {
                write!(
                    f,
                    "the {strategy} strategy cannot be used in this process: {reason}"
                )
            }
            Error::NoExecutableMemory { reason } => {
                write!(f, "this process cannot make executable memory: {reason}")
            }
            Error::ZeroSize => f.write_str("a code span needs at least one byte"),
            Error::TooLarge {
                what,
                requested,
                limit,
            } => write!(
                f,
                "{what} of {requested} bytes is larger than the limit of {limit} bytes"
            ),
            Error::HeapExhausted {
                requested,
                reserved,
                limit,
            } => write!(
                f,
                "the heap cannot reserve {requested} more bytes: {reserved} of its {limit}-byte limit are reserved"
            ),
            Error::HeapUnavailable { reason } => write!(f, "no heap available: {reason}"),
            Error::InvalidSetting {
                variable,
                value,
                expected,
            } => write!(f, "{variable}={value:?} is not valid (expected {expected})"),
            Error::PageFull { capacity } => write!(f, "the thunk page is full ({capacity} thunks)"),
            Error::Unsupported { what } => write!(f, "not supported on this platform: {what}"),
            Error::InvalidSignature { reason } => write!(f, "invalid thunk signature: {reason}"),
            Error::TrampolinesExhausted { capacity } => write!(
                f,
                "all {capacity} static trampolines compiled into this binary are in use (drop \
                 thunks, or make them with a strategy that writes code where the process allows it)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        io::Error::new(error.kind(), error)
    }
}

/// A W^X transition ([`Block::exec`](crate::Block::exec) or
/// [`ExecBlock::into_writable`](crate::ExecBlock::into_writable)) that failed.
///
/// Like [`std::io::IntoInnerError`], it hands back the value that was
/// consumed, unchanged, so nothing written is lost. `?` converts it into
/// [`Error`] or [`io::Error`] (dropping the value) when you do not need it.
pub struct TransitionError<T> {
    error: Error,
    value: T,
}

impl<T> TransitionError<T> {
    pub(crate) fn new(error: Error, value: T) -> Self {
        TransitionError { error, value }
    }

    /// The reason the transition failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xc3])?;
    /// match block.exec() {
    ///     Ok(code) => assert_eq!(code.len(), 1),
    ///     Err(failed) => eprintln!("could not seal: {}", failed.error()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The value the transition consumed, unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xc3])?;
    /// let code = match block.exec() {
    ///     Ok(code) => code,
    ///     Err(failed) => {
    ///         let block = failed.into_inner(); // unchanged: its bytes are still there
    ///         assert_eq!(block.as_slice(), &[0xc3]);
    ///         return Ok(());
    ///     }
    /// };
    /// assert_eq!(code.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Both parts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let mut block = wxthunk::Block::new(0)?;
    /// block.write_all(&[0xc3])?;
    /// if let Err(failed) = block.exec() {
    ///     let (error, block) = failed.into_parts();
    ///     eprintln!("{error}; {} bytes kept", block.len());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_parts(self) -> (Error, T) {
        (self.error, self.value)
    }
}

impl<T> fmt::Debug for TransitionError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitionError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for TransitionError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Transparent: it displays as its [`Error`] and has that error's source,
/// so a reporter that walks the chain prints each cause once.
impl<T> std::error::Error for TransitionError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<T> From<TransitionError<T>> for Error {
    fn from(e: TransitionError<T>) -> Self {
        e.error
    }
}

impl<T> From<TransitionError<T>> for io::Error {
    fn from(e: TransitionError<T>) -> Self {
        e.error.into()
    }
}
