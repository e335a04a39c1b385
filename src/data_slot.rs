//! The private data slot paired with a thunk's code: where a small `Fn`
//! closure lives, so that making its thunk allocates nothing else. Heap
//! regions (`heap/region`) and static-trampoline tables (`trampoline`)
//! both keep one per code slot, in private anonymous read-write memory:
//! never executable, never shared with another process. A region's slots
//! follow each other as its granules do, so a thunk of two granules has
//! 32 bytes of them (`thunk/handle.rs` says which closures go where).

/// Bytes of a data slot; slots are aligned to their size.
pub(crate) const DATA_SLOT: usize = 16;
/// Bytes of a trampoline table entry's data slot: two data slots, as a
/// pair of granules has (the closure laid out as in a pair). A table's data
/// page is whole pages either way: 32 bytes for each of its entries fill it.
pub(crate) const TABLE_DATA_SLOT: usize = 2 * DATA_SLOT;
