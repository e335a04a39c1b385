//! What the criterion benchmarks in `benches/` share: one measurement
//! configuration, so every group is measured alike, and the peer set-ups
//! more than one group uses.

use std::time::Duration;

use criterion::Criterion;
use jit_allocator2::{JitAllocator, JitAllocatorOptions};

/// The measurement settings of every group: short warm-up, two seconds of
/// measurement (ratios within one run are what counts on a noisy machine).
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// asmjit's allocator (jit-allocator2), with or without dual mapping.
pub fn jit_allocator(dual: bool) -> Box<JitAllocator> {
    JitAllocator::new(JitAllocatorOptions {
        use_dual_mapping: dual,
        ..Default::default()
    })
}

/// One jit-allocator2 round trip: allocate `code.len()` bytes, copy `code`
/// through the writable view, release.
pub fn jit_write_release(jit: &mut JitAllocator, code: &[u8]) {
    let (rx, rw) = jit.alloc(code.len()).unwrap();
    // SAFETY: `rw` is the writable view of `code.len()` fresh bytes.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), rw, code.len()) };
    // SAFETY: `rx` was just allocated by this allocator and is not used
    // again.
    unsafe { jit.release(std::hint::black_box(rx)).unwrap() };
}
