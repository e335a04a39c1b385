//! The private data slot paired with a thunk's code: where a small `Fn`
//! closure lives, so that making its thunk allocates nothing else. Heap
//! regions (`heap/region`) and static-trampoline tables (`trampoline`)
//! both keep one per code slot, in private anonymous read-write memory:
//! never executable, never shared with another process.

/// Bytes of a data slot; slots are aligned to their size.
pub(crate) const DATA_SLOT: usize = 16;

/// Whether a value of type `T` fits a data slot.
pub(crate) const fn fits<T>() -> bool {
    size_of::<T>() <= DATA_SLOT && align_of::<T>() <= DATA_SLOT
}
