//! Model-based property test of the code heap: random sequences of
//! allocate slot / allocate span / allocate page / make a burst of thunks /
//! write / seal / free / compact, checked against a plain model after every
//! step.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::collections::BTreeMap;
use std::io::Write;

use proptest::prelude::*;
use support::{code, maps};
use wxthunk::{ExecSpan, Heap, HeapBuilder, Span, Strategy as WxStrategy, Thunk};

type F1 = unsafe extern "C" fn(u64) -> u64;

#[derive(Clone, Debug)]
enum Op {
    /// A thunk-sized slot (32 bytes).
    AllocSlot,
    /// A code span of this many bytes.
    AllocSpan(usize),
    /// A whole page.
    AllocPage,
    /// This many thunks at once (ready granules are taken in runs).
    Thunks(usize),
    /// Write the identifying function into the n-th unsealed allocation.
    Write(usize),
    /// Seal the n-th unsealed allocation.
    Seal(usize),
    /// Free the n-th live allocation (sealed or not).
    Free(usize),
    Compact,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::AllocSlot),
        3 => (1usize..3000).prop_map(Op::AllocSpan),
        1 => Just(Op::AllocPage),
        2 => (1usize..150).prop_map(Op::Thunks),
        3 => any::<usize>().prop_map(Op::Write),
        4 => any::<usize>().prop_map(Op::Seal),
        4 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Compact),
    ]
}

/// What the model knows about one allocation.
struct Entry<'h> {
    value: u32,
    /// Bytes the allocation occupies in the heap (granule-rounded).
    size: usize,
    state: State<'h>,
}

enum State<'h> {
    Open {
        span: Span<'h>,
        written: bool,
    },
    Sealed(ExecSpan<'h>),
    /// A thunk returning its argument plus its value.
    Thunk(Thunk<'h, F1>),
}

fn run(builder: HeapBuilder, ops: &[Op]) {
    let heap = builder
        .region_size(16 * 1024)
        .max_region_size(64 * 1024)
        .build()
        .unwrap();
    let granule = heap.granule();
    let dual = heap.code_strategy() == Some(wxthunk::CodeStrategy::DualMap);
    // A protect heap's thunks are 32-byte entries of sealed trampoline
    // tables, except on Windows, where each is a page of generated code.
    let thunk_unit = if dual || cfg!(windows) { granule } else { 32 };
    let zero = std::hint::black_box(0u64);
    let page = wxthunk::page_size();
    let mut live: BTreeMap<u64, Entry<'_>> = BTreeMap::new();
    let mut next_id = 0u64;
    for op in ops {
        match *op {
            Op::AllocSlot | Op::AllocSpan(_) | Op::AllocPage => {
                let (span, asked) = match *op {
                    Op::AllocSlot => (heap.alloc(32).unwrap(), 32),
                    Op::AllocSpan(n) => (heap.alloc(n).unwrap(), n),
                    _ => (heap.allocate_page().unwrap(), page),
                };
                if matches!(op, Op::AllocPage) {
                    assert_eq!(span.exec_ptr() as usize % page, 0);
                }
                let size = asked.next_multiple_of(granule);
                assert_eq!(span.capacity(), size);
                let value = next_id as u32;
                live.insert(
                    next_id,
                    Entry {
                        value,
                        size,
                        state: State::Open {
                            span,
                            written: false,
                        },
                    },
                );
                next_id += 1;
            }
            Op::Thunks(count) => {
                for i in 0..count {
                    let value = next_id as u32;
                    let v = u64::from(value);
                    // One unit each (a granule; a table entry on a protect
                    // heap); a 24-byte closure takes two granules on a
                    // dual-mapped heap.
                    let (thunk, size) = if i % 3 == 2 {
                        let (p, q) = std::hint::black_box((v, 0u64));
                        let t = heap.thunk::<F1, _>(move |x: u64| x + p + q + zero).unwrap();
                        (t, if dual { 2 * granule } else { thunk_unit })
                    } else {
                        (
                            heap.thunk::<F1, _>(move |x: u64| x + v).unwrap(),
                            thunk_unit,
                        )
                    };
                    let state = State::Thunk(thunk);
                    live.insert(next_id, Entry { value, size, state });
                    next_id += 1;
                }
            }
            Op::Write(n) | Op::Seal(n) => {
                let open: Vec<u64> = live
                    .iter()
                    .filter(|(_, e)| matches!(e.state, State::Open { .. }))
                    .map(|(&k, _)| k)
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let id = open[n % open.len()];
                let mut entry = live.remove(&id).unwrap();
                let State::Open { mut span, written } = entry.state else {
                    unreachable!()
                };
                if !written {
                    // The function first, then filler up to the end.
                    span.write_all(&code::ret_u32(entry.value)).unwrap();
                    let fill = vec![0x90; span.remaining()];
                    span.write_all(&fill).unwrap();
                }
                entry.state = if matches!(op, Op::Seal(_)) {
                    State::Sealed(span.exec().unwrap())
                } else {
                    State::Open {
                        span,
                        written: true,
                    }
                };
                live.insert(id, entry);
            }
            Op::Free(n) => {
                if !live.is_empty() {
                    let id = *live.keys().nth(n % live.len()).unwrap();
                    live.remove(&id);
                }
            }
            Op::Compact => {
                heap.compact();
            }
        }
        // Every sealed allocation still runs and returns its own value, and
        // no two allocations overlap.
        let mut ranges = Vec::new();
        for e in live.values() {
            let (addr, len) = match &e.state {
                State::Open { span, .. } => (span.exec_ptr() as usize, e.size),
                State::Sealed(x) => {
                    // SAFETY: every sealed span starts with `mov eax, v; ret`.
                    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
                    assert_eq!(f(), e.value);
                    (x.as_ptr() as usize, e.size)
                }
                State::Thunk(t) => {
                    // SAFETY: the thunk is live; it adds its value.
                    assert_eq!(unsafe { t.as_fn()(1) }, 1 + u64::from(e.value));
                    (t.as_fn() as usize, e.size)
                }
            };
            ranges.push((addr, addr + len));
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "allocations overlap: {w:x?}");
        }
        // The statistics agree with the model.
        let stats = heap.stats();
        assert_eq!(stats.live_allocations, live.len());
        assert_eq!(
            stats.bytes_in_use,
            live.values().map(|e| e.size).sum::<usize>()
        );
        assert!(stats.bytes_in_use <= stats.bytes_reserved);
        assert!(stats.bytes_committed <= stats.bytes_reserved);
        // No mapping is writable and executable.
        let wx = maps::wx_mappings();
        assert!(wx.is_empty(), "{wx:?}");
    }
    drop(live);
    heap.compact();
    assert_eq!(heap.stats().regions, 0);
}

fn builders() -> Vec<HeapBuilder> {
    let mut v = Vec::new();
    if wxthunk::probe().allows(WxStrategy::DualMap) {
        v.push(Heap::builder().strategy(WxStrategy::DualMap));
        v.push(Heap::builder().strategy(WxStrategy::DualMap).strict(true));
    }
    if wxthunk::probe().allows(WxStrategy::Protect) {
        v.push(Heap::builder().strategy(WxStrategy::Protect));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn heap_matches_its_model(ops in proptest::collection::vec(op(), 1..120)) {
        for builder in builders() {
            run(builder, &ops);
        }
    }
}
