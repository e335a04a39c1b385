//! Thunks that allocate nothing (a counting global allocator checks):
//! closures that capture nothing (no heap memory either; the pointer is a
//! compiled function of exactly the signature, called by real C code), and
//! small `Fn` closures on a dual-mapped heap, which live in their thunk's
//! private data slot.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use wxthunk::{Heap, Thunk};

/// Counts allocations made on this thread while `COUNTING` is set (other
/// test threads allocate too, so the count is per thread).
struct Counting;

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This thread's count (a shared one would add up other threads' counts
    /// made at the same time).
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is passed straight to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
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
    let before = ALLOCATIONS.with(|n| n.get());
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(|n| n.get()) - before
}

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

/// Held by the tests that count the global heap's live allocations or make
/// thunks on it, so that they do not see each other's.
static GLOBAL_HEAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_capture_free_thunk_allocates_nothing_and_sorts_with_qsort() {
    let _alone = GLOBAL_HEAP.lock().unwrap();
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
    // Another ABI than "C" (Windows x64's where Rust can call it).
    #[cfg(target_arch = "x86_64")]
    type Win = unsafe extern "win64" fn(f64, u32, f64, u64, u64) -> f64;
    #[cfg(not(target_arch = "x86_64"))]
    type Win = unsafe extern "C-unwind" fn(f64, u32, f64, u64, u64) -> f64;
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

/// A drop that counts.
struct Counted(&'static AtomicUsize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The heaps whose thunks keep small closures in data slots: dual-mapped
/// regions, static-trampoline tables, and (on Linux) a protect heap's
/// sealed tables.
fn slot_heaps() -> Vec<(&'static str, Heap<wxthunk::NoLock>)> {
    let mut v = Vec::new();
    let mut strategies = vec![
        ("dual-map", wxthunk::Strategy::DualMap),
        ("static-trampolines", wxthunk::Strategy::StaticTrampolines),
    ];
    if cfg!(target_os = "linux") {
        strategies.push(("protect", wxthunk::Strategy::Protect));
    }
    for (name, s) in strategies {
        if wxthunk::probe().allows(s) {
            v.push((name, Heap::builder().strategy(s).build_unlocked().unwrap()));
        } else {
            println!("SKIPPED: {name} does not work here: its data slots are not checked");
        }
    }
    v
}

#[test]
fn dyn_thunks_allocate_nothing_where_thunks_have_slots() {
    use std::ffi::c_void;
    use wxthunk::ArgClass::{Float, Integer};
    extern "C" fn one(x: u64, ctx: *mut c_void) -> u64 {
        x + ctx as u64
    }
    #[allow(clippy::too_many_arguments)]
    extern "C" fn seven(
        a: u64,
        b: u64,
        c: u64,
        d: u64,
        e: u64,
        f: u64,
        g: f64,
        ctx: *mut c_void,
    ) -> u64 {
        a + b + c + d + e + f + g as u64 + ctx as u64
    }
    type Seven = extern "C" fn(u64, u64, u64, u64, u64, u64, f64) -> u64;
    for (name, heap) in slot_heaps() {
        let tables = heap.thunk_strategy()
            != wxthunk::ThunkStrategy::Generated(wxthunk::CodeStrategy::DualMap);
        let warm = heap.dyn_thunk(&[Integer], one as *const c_void, std::ptr::null_mut());
        drop(warm.unwrap());
        let n = allocations_in(|| {
            for i in 0..1000u64 {
                let t = heap
                    .dyn_thunk(&[Integer], one as *const c_void, i as *mut c_void)
                    .unwrap();
                // SAFETY: the signature given, the target's result.
                let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(t.as_ptr()) };
                assert_eq!(f(3), 3 + i);
            }
        });
        assert_eq!(n, 0, "{name}: a register-path DynThunk allocated");
        // The context after six integer registers: the frame path, a
        // record of the table where there is one (generated code reads a
        // boxed one).
        let args = [Integer, Integer, Integer, Integer, Integer, Integer, Float];
        let n = allocations_in(|| {
            for i in 0..100u64 {
                let t = heap
                    .dyn_thunk(&args, seven as *const c_void, i as *mut c_void)
                    .unwrap();
                // SAFETY: as above.
                let f: Seven = unsafe { std::mem::transmute(t.as_ptr()) };
                assert_eq!(f(1, 2, 3, 4, 5, 6, 7.0), 28 + i);
            }
        });
        if tables {
            assert_eq!(n, 0, "{name}: a frame-path DynThunk allocated");
        }
        assert_eq!(heap.stats().live_allocations, 0, "{name}");
    }
}

#[test]
fn small_closures_live_in_data_slots_and_allocate_nothing() {
    for (name, heap) in slot_heaps() {
        small_closures_on(name, &heap);
    }
}

fn small_closures_on(name: &str, heap: &Heap<wxthunk::NoLock>) {
    let k = std::hint::black_box(7u64);
    // Warm up: the first region and the heap's own bookkeeping.
    let warm: Vec<_> = (0..10)
        .map(|i| {
            heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x: u64| x + i)
                .unwrap()
        })
        .collect();
    drop(warm);
    let n = allocations_in(|| {
        for i in 0..1000u64 {
            let t = heap
                .thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x: u64| x * k + i)
                .unwrap();
            // SAFETY: `t` is alive.
            assert_eq!(unsafe { (t.as_fn())(3) }, 21 + i);
        }
    });
    assert_eq!(
        n, 0,
        "creating and dropping a thunk of an 8-byte closure allocated"
    );

    // 16 bytes aligned to 16 fit a slot too; every one keeps its own value.
    let wide = std::hint::black_box(1u128 << 100);
    let thunks: Vec<_> = (0..300u64)
        .map(|i| {
            heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x: u64| {
                ((wide >> 100) as u64) * 1000 + x + i
            })
            .unwrap()
        })
        .collect();
    for (i, t) in thunks.iter().enumerate() {
        // SAFETY: alive.
        assert_eq!(unsafe { (t.as_fn())(5) }, 1005 + i as u64);
    }
    drop(thunks);
    assert_eq!(heap.stats().live_allocations, 0, "{name}");
    // Compaction gives the data pages back with the code pages (and the
    // tables with their record and data pages).
    heap.compact();
    assert_eq!(
        heap.stats().bytes_committed,
        0,
        "{name}: {:?}",
        heap.stats()
    );
}

#[test]
fn an_inline_closure_is_dropped_once_after_its_code_is_freed() {
    let Some((_, heap)) = slot_heaps().into_iter().find(|(n, _)| *n == "dual-map") else {
        return;
    };
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let counted = Counted(&DROPS);
    let t = heap
        .thunk::<unsafe extern "C" fn() -> usize, _>(move || {
            // The whole `Counted` (8 bytes), not just its field.
            let counted = &counted;
            counted.0.load(Ordering::SeqCst) + 1
        })
        .unwrap();
    let p = t.as_fn();
    // SAFETY: alive.
    assert_eq!(unsafe { p() }, 1);
    let code = t.code().as_ptr();
    assert_eq!(heap.stats().live_allocations, 1);
    drop(t);
    assert_eq!(DROPS.load(Ordering::SeqCst), 1, "dropped exactly once");
    // SAFETY: the granule is still mapped read+exec (the heap holds it,
    // freed); only read.
    assert_eq!(unsafe { *code }, 0xcc, "the freed code is a trap");
    // A 24-byte closure does not fit a slot: it is boxed, and works alike.
    let (a, b, c) = std::hint::black_box((1u64, 2u64, 3u64));
    let big = heap
        .thunk::<unsafe extern "C" fn() -> u64, _>(move || a + b + c)
        .unwrap();
    // SAFETY: alive.
    assert_eq!(unsafe { (big.as_fn())() }, 6);
}

/// Two words (the function pointer and what the thunk keeps), so that a
/// `Thunk` moves in two registers.
#[test]
fn the_handle_is_two_words() {
    type T = Thunk<'static, unsafe extern "C" fn(u64) -> u64>;
    assert_eq!(std::mem::size_of::<T>(), 2 * std::mem::size_of::<usize>());
    assert_eq!(std::mem::size_of::<Option<T>>(), std::mem::size_of::<T>());
}

/// A closure of one word that needs a drop (an `Arc`) lives inline too: no
/// allocation, and dropped once, after its code is freed; on the global
/// heap (through this thread's cache) and on heaps with data slots.
#[test]
fn a_word_that_needs_a_drop_lives_inline_and_is_dropped_once() {
    // A macro: used on the global heap and on unlocked ones, which one
    // generic function could not make thunks of its own closures on.
    macro_rules! check {
        ($name:expr, $heap:expr) => {{
            let (name, heap): (&str, &Heap<_>) = ($name, $heap);
            let shared = std::sync::Arc::new(5u64);
            let make = || {
                let held = shared.clone();
                heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x: u64| *held * x)
                    .unwrap()
            };
            drop(make()); // warm up
            let n = allocations_in(|| {
                for k in 0..500u64 {
                    let t = make();
                    // SAFETY: alive.
                    assert_eq!(unsafe { (t.as_fn())(k) }, 5 * k, "{name}");
                    assert_eq!(std::sync::Arc::strong_count(&shared), 2, "{name}");
                }
            });
            assert_eq!(n, 0, "{name}: an inline Arc capture allocated {n} times");
            assert_eq!(
                std::sync::Arc::strong_count(&shared),
                1,
                "{name}: dropped once"
            );
            // Two words that need a drop are boxed, and dropped once too.
            let wide = std::hint::black_box(3u64);
            let held = shared.clone();
            let boxed = heap
                .thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x: u64| *held + x + wide)
                .unwrap();
            // SAFETY: alive.
            assert_eq!(unsafe { (boxed.as_fn())(1) }, 9, "{name}");
            drop(boxed);
            assert_eq!(std::sync::Arc::strong_count(&shared), 1, "{name}");
        }};
    }
    {
        let _alone = GLOBAL_HEAP.lock().unwrap();
        check!("global", Heap::global().unwrap());
    }
    for (name, heap) in slot_heaps() {
        check!(name, &heap);
    }
}

/// Closures too large for one data slot: on a dual-mapped heap one of up
/// to 32 bytes (24 if it needs a drop, aligned to at most 16) takes both
/// data slots of a two-granule thunk and allocates nothing, as it lives in
/// a table entry's 32-byte data slot; any larger or more aligned one is
/// one allocation, its box, kept in the slot. All are called
/// right, see their own captures, and are dropped once; on the global heap
/// and on heaps with data slots.
#[test]
fn closures_too_large_for_a_slot_take_a_pair_or_one_box_and_drop_once() {
    #[derive(Clone, Copy)]
    #[repr(align(64))]
    struct Aligned(u64);
    // A macro: used on the global heap and on unlocked ones, which one
    // generic function could not make thunks of its own closures on.
    macro_rules! check {
        ($name:expr, $heap:expr) => {{
            let (name, heap): (&str, &Heap<_>) = ($name, $heap);
            type F1 = unsafe extern "C" fn(u64) -> u64;
            // Both data slots of a pair of granules, or a table entry's
            // 32-byte data slot (static trampolines, and a protect heap's
            // tables on Linux).
            let tables = heap.thunk_strategy() == wxthunk::ThunkStrategy::StaticTrampolines
                || (heap.strategy() == wxthunk::Strategy::Protect && cfg!(target_os = "linux"));
            let pairs = heap.code_strategy() == Some(wxthunk::CodeStrategy::DualMap) || tables;
            let shared = std::sync::Arc::new(7u64);
            let (a, b, c, d) = std::hint::black_box((1u64, 2u64, 3u64, 4u64));
            let big = std::hint::black_box([5u64; 16]);
            let aligned = std::hint::black_box(Aligned(11));
            drop(heap.thunk::<F1, _>(move |x: u64| x + a + b + c).unwrap()); // warm up
            drop(
                heap.thunk::<F1, _>(move |x: u64| x + a + b + c + d)
                    .unwrap(),
            );
            for k in 0..200u64 {
                // Each thunk keeps its own captures, next to the others'.
                let (a, b) = (a + k, b + 2 * k);
                let held = shared.clone();
                let small = allocations_in(|| {
                    let t24 = heap.thunk::<F1, _>(move |x: u64| x + a + b + c).unwrap();
                    let t32 = heap
                        .thunk::<F1, _>(move |x: u64| x + a + b + c + d)
                        .unwrap();
                    let t_drop = heap
                        .thunk::<F1, _>(move |x: u64| x * *held + a + b)
                        .unwrap();
                    // SAFETY: all alive.
                    unsafe {
                        assert_eq!((t24.as_fn())(k), 4 * k + 6, "{name}");
                        assert_eq!((t32.as_fn())(k), 4 * k + 10, "{name}");
                        assert_eq!((t_drop.as_fn())(k), 10 * k + 3, "{name}");
                    }
                    assert_eq!(std::sync::Arc::strong_count(&shared), 2, "{name}");
                });
                let expected = if pairs { 0 } else { 3 };
                assert_eq!(
                    small, expected,
                    "{name}: 17-32-byte closures, {small} allocations"
                );
                assert_eq!(
                    std::sync::Arc::strong_count(&shared),
                    1,
                    "{name}: dropped once"
                );
                let large = allocations_in(|| {
                    let t128 = heap
                        .thunk::<F1, _>(move |x: u64| x + big.iter().sum::<u64>())
                        .unwrap();
                    let t64 = heap
                        .thunk::<F1, _>(move |x: u64| {
                            let at = std::ptr::from_ref(&aligned) as usize;
                            assert_eq!(at % 64, 0, "the capture is aligned");
                            x + aligned.0
                        })
                        .unwrap();
                    // SAFETY: all alive.
                    unsafe {
                        assert_eq!((t128.as_fn())(k), k + 80, "{name}");
                        assert_eq!((t64.as_fn())(k), k + 11, "{name}");
                    }
                });
                assert_eq!(large, 2, "{name}: two boxed closures, {large} allocations");
            }
            assert_eq!(heap.stats().live_allocations, 0, "{name}");
        }};
    }
    {
        let _alone = GLOBAL_HEAP.lock().unwrap();
        check!("global", Heap::global().unwrap());
    }
    for (name, heap) in slot_heaps() {
        check!(name, &heap);
    }
}
