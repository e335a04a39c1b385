//! The heap configurations tests run their checks under.

use wxthunk::{Heap, HeapBuilder, Strategy};

/// The configurations for written code this process allows.
fn written_code_configs() -> Vec<(&'static str, HeapBuilder)> {
    let policy = wxthunk::probe();
    let mut v = Vec::new();
    if policy.allows(Strategy::DualMap) {
        v.push(("dual-map", Heap::builder().strategy(Strategy::DualMap)));
        v.push((
            "dual-map strict",
            Heap::builder().strategy(Strategy::DualMap).strict(true),
        ));
    }
    if policy.allows(Strategy::Protect) {
        v.push(("protect", Heap::builder().strategy(Strategy::Protect)));
    }
    if policy.allows(Strategy::DualMapFile) {
        v.push((
            "dual-map-file",
            Heap::builder().strategy(Strategy::DualMapFile),
        ));
    }
    v
}

/// Every configuration of a heap for written code this process allows:
/// dual mapping (plain and strict), protect, and dual mapping through a
/// file in a directory. Panics if there is none.
pub fn heap_configs() -> Vec<(&'static str, HeapBuilder)> {
    let v = written_code_configs();
    assert!(
        !v.is_empty(),
        "no heap strategy works here:\n{}",
        wxthunk::probe()
    );
    v
}

/// Every configuration of a heap for thunks this process allows: those of
/// [`heap_configs`] and static trampolines. Panics if there is none.
pub fn thunk_heap_configs() -> Vec<(&'static str, HeapBuilder)> {
    let mut v = written_code_configs();
    if wxthunk::probe().allows(Strategy::StaticTrampolines) {
        v.push((
            "static-trampolines",
            Heap::builder().strategy(Strategy::StaticTrampolines),
        ));
    }
    assert!(
        !v.is_empty(),
        "no thunk strategy works here:\n{}",
        wxthunk::probe()
    );
    v
}

/// A heap of every kind [`thunk_heap_configs`] lists, built.
pub fn thunk_heaps() -> Vec<(&'static str, Heap)> {
    thunk_heap_configs()
        .into_iter()
        .map(|(name, b)| (name, b.build().unwrap()))
        .collect()
}
