#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod abi;
mod arch;
mod bitmap;
mod block;
mod data_slot;
mod error;
mod heap;
mod owner;
mod perf_map;
mod policy;
mod strategy;
mod sys;
mod thunk;
mod trampoline;

pub use abi::{ArgClass, FnPtr, ThunkArg, ThunkRet, ThunkSig};
pub use block::{Block, ExecBlock};
pub use error::{Error, Result, TransitionError};
pub use heap::{DefaultLock, ExecSpan, Heap, HeapBuilder, HeapStats, NoLock, Span};
pub use lock_api;
pub use perf_map::{PERF_MAP_VAR, enable_perf_map};
pub use policy::{
    Check, CodeFileDir, DEBUG_VAR, Mdwe, Policy, STRATEGY_VAR, Seccomp, Selinux, StrategySetting,
    probe,
};
pub use strategy::{CodeStrategy, ParseStrategyError, Strategy, ThunkStrategy};

/// This crate's version (as `probe --json` reports it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use thunk::{
    DEBUG_QUARANTINE, SealedThunkPage, Thunk, ThunkFn, ThunkFnMut, ThunkFnOnce, ThunkPage,
};

/// The size of a memory page on this system, in bytes (cached after the
/// first call).
pub fn page_size() -> usize {
    sys::page_size()
}
