//! Thunks of closures that capture nothing: no allocation at all (a
//! counting global allocator sees none), no heap memory, no lock, and the
//! pointer is a compiled function of exactly the signature, called by real
//! C code (libc `qsort`).
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use wxthunk::{Heap, Thunk};

/// Counts allocations made on this thread while `COUNTING` is set (other
/// test threads allocate too, so the count is per thread).
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: every call is passed straight to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

#[test]
fn a_capture_free_thunk_allocates_nothing_and_sorts_with_qsort() {
    let heap = Heap::global().unwrap();
    let cmp = |a: *const c_void, b: *const c_void| {
        // SAFETY: qsort passes pointers to elements of `v`.
        let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
        b.cmp(&a) as c_int
    };
    let live = heap.stats().live_allocations;
    let n = allocations_in(|| {
        for _ in 0..1000 {
            let t = Thunk::<Cmp>::new(cmp).unwrap();
            std::hint::black_box(t.as_fn());
        }
    });
    assert_eq!(n, 0, "a thunk of a closure that captures nothing allocated");
    let t = Thunk::<Cmp>::new(cmp).unwrap();
    assert_eq!(heap.stats().live_allocations, live, "no heap memory");
    assert!(t.code().is_empty());
    assert!(!t.builds_frame());
    let mut v = [3, 1, 4, 1, 5, 9, 2, 6];
    // SAFETY: `t` lives across the call; the arguments describe `v`.
    unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(t.as_fn())) };
    assert_eq!(v, [9, 6, 5, 4, 3, 2, 1, 1]);
    // One closure type, one function: two thunks share the pointer.
    assert_eq!(
        t.as_fn() as usize,
        Thunk::<Cmp>::new(cmp).unwrap().as_fn() as usize
    );
}

#[test]
fn every_path_and_abi_of_a_capture_free_thunk() {
    type Eight = extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
    type Win = unsafe extern "win64" fn(f64, u32, f64, u64, u64) -> f64;
    type Unwind = extern "C-unwind" fn(u32) -> u32;
    let heap = Heap::unlocked().unwrap();
    // Where a generated thunk would build a frame, this is still a plain
    // call: the function has the signature itself.
    let t = heap
        .thunk::<Eight, _>(
            |a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64| {
                a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h
            },
        )
        .unwrap();
    assert!(!t.builds_frame());
    // SAFETY: `t` is alive.
    assert_eq!(unsafe { (t.as_fn())(1, 1, 1, 1, 1, 1, 1, 1) }, 36);
    let w = heap
        .thunk::<Win, _>(|a: f64, b: u32, c: f64, d: u64, e: u64| a + b as f64 + c + (d + e) as f64)
        .unwrap();
    // SAFETY: `w` is alive.
    assert_eq!(unsafe { (w.as_fn())(0.5, 1, 0.25, 2, 3) }, 6.75);
    // A panic unwinds through an -unwind ABI.
    let p = heap
        .thunk::<Unwind, _>(|v: u32| if v == 0 { panic!("zero") } else { v })
        .unwrap();
    let f = p.as_fn();
    // SAFETY: `p` is alive.
    let err = std::panic::catch_unwind(|| unsafe { f(0) }).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"zero"));
    assert_eq!(heap.stats().live_allocations, 0);
}

#[test]
fn a_zero_sized_capture_is_dropped_once_with_its_thunk() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Token;
    impl Drop for Token {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let token = Token;
    let t = Thunk::<extern "C" fn() -> u32>::new(move || {
        let _held = &token;
        7
    })
    .unwrap();
    for _ in 0..3 {
        // SAFETY: `t` is alive.
        assert_eq!(unsafe { (t.as_fn())() }, 7);
    }
    assert_eq!(DROPS.load(Ordering::SeqCst), 0);
    drop(t);
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
}
