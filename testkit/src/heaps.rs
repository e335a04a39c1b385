//! The heap configurations tests run their checks under.

use wxthunk::{Heap, HeapBuilder, Strategy};

/// Every configuration of a heap for written code this process allows:
/// dual mapping (plain and strict) and protect.
pub fn heap_configs() -> Vec<(&'static str, HeapBuilder)> {
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
    assert!(!v.is_empty(), "no heap strategy works here:\n{policy}");
    v
}

/// Every configuration of a heap for thunks this process allows: the
/// written-code ones of [`heap_configs`] and static trampolines.
pub fn thunk_heap_configs() -> Vec<(&'static str, HeapBuilder)> {
    let mut v = heap_configs();
    if wxthunk::probe().allows(Strategy::StaticTrampolines) {
        v.push((
            "static-trampolines",
            Heap::builder().strategy(Strategy::StaticTrampolines),
        ));
    }
    v
}
