//! The environment switches, read in one place, once per process: what they
//! say is reported by the probe and obeyed by the default heaps.

use once_cell::race::OnceBox;

use crate::strategy::ParseStrategyError;
use crate::strategy::Strategy;

/// The environment variable that forces the default heaps' strategy.
pub const STRATEGY_VAR: &str = "WXTHUNK_STRATEGY";

/// What [`STRATEGY_VAR`] (`WXTHUNK_STRATEGY`) asks of the default heaps
/// ([`Heap::global`](crate::Heap::global), `Heap::thread_local`, and so
/// [`Thunk::new`](crate::Thunk::new)), as read when the process first used
/// wxthunk.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StrategySetting {
    /// Not set, or set to nothing (`WXTHUNK_STRATEGY=`, as a service file
    /// clearing it writes it): the default heaps use the probed strategy.
    Unset,
    /// Set to a strategy's name (case-insensitive): the default heaps use it,
    /// or fail if it does not work here.
    Forced(Strategy),
    /// Set to something that names no strategy: the default heaps fail
    /// with [`Error::InvalidSetting`](crate::Error::InvalidSetting).
    Invalid {
        /// The value as it was read (lossily, if it was not UTF-8).
        value: String,
    },
}

impl StrategySetting {
    fn read() -> StrategySetting {
        let Some(raw) = std::env::var_os(STRATEGY_VAR).filter(|v| !v.is_empty()) else {
            return StrategySetting::Unset;
        };
        let value = raw.to_string_lossy();
        match value.parse::<Strategy>() {
            Ok(s) if raw.to_str().is_some() => StrategySetting::Forced(s),
            _ => StrategySetting::Invalid {
                value: value.into_owned(),
            },
        }
    }

    /// The strategy it forces, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = wxthunk::probe();
    /// match policy.strategy_setting.forced() {
    ///     Some(s) => println!("WXTHUNK_STRATEGY forces {s}"),
    ///     None => println!("the probe chooses"),
    /// }
    /// ```
    pub fn forced(&self) -> Option<Strategy> {
        match self {
            StrategySetting::Forced(s) => Some(*s),
            _ => None,
        }
    }

    /// The error the default heaps return for it, if it is invalid.
    #[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
    pub(crate) fn error(&self) -> Option<crate::error::Error> {
        match self {
            StrategySetting::Invalid { value } => Some(crate::error::Error::InvalidSetting {
                variable: STRATEGY_VAR,
                value: value.clone(),
                expected: ParseStrategyError::EXPECTED,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for StrategySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StrategySetting::Unset => f.write_str("unset"),
            StrategySetting::Forced(s) => write!(f, "{s} (forces the default heaps)"),
            StrategySetting::Invalid { value } => write!(
                f,
                "{value:?}: names no strategy (expected {}); the default heaps fail",
                ParseStrategyError::EXPECTED
            ),
        }
    }
}

/// [`STRATEGY_VAR`], read once (published by compare-and-swap: fork-safe).
pub(crate) fn strategy_setting() -> &'static StrategySetting {
    static SETTING: OnceBox<StrategySetting> = OnceBox::new();
    SETTING.get_or_init(|| Box::new(StrategySetting::read()))
}

/// The environment variable that turns on debug mode for thunks (`1`):
/// see [`HeapBuilder::debug`](crate::HeapBuilder::debug).
pub const DEBUG_VAR: &str = "WXTHUNK_DEBUG";

/// Whether [`DEBUG_VAR`] is `1`, read once (fork-safe, like
/// [`strategy_setting`]).
pub(crate) fn debug_setting() -> bool {
    static SETTING: OnceBox<bool> = OnceBox::new();
    *SETTING.get_or_init(|| Box::new(std::env::var_os(DEBUG_VAR).is_some_and(|v| v == "1")))
}
