//! A thread that enters a heap it is already inside: a `#[global_allocator]`
//! that makes and drops a thunk whenever it allocates (tracing and profiling
//! allocators hand callbacks to C), and a signal handler that makes and
//! drops one while the thread it interrupted is making thunks. 9bc2f4c
//! waited for its own shard lock (a hang) or panicked ("NoLock taken
//! twice") inside the allocator (an abort). Now a nested creation that
//! would wait for itself is an error, a nested drop is done when the thread
//! leaves the heap, and nothing is lost: every result is right and every
//! heap ends with nothing live. Each case runs in a forked child, waited
//! for with a time-out, so a hang fails the test.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use support::fork::{ForkPath, spawn, wait};
use wxthunk::{Heap, NoLock, Strategy};

type F1 = unsafe extern "C" fn(u64) -> u64;

/// The heap the allocator's hook makes its thunks on (a `Heap<NoLock>` or
/// a `Heap`, by `HOOK_KIND`), set by the child before it arms the hook.
static HOOK_HEAP: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());
static HOOK_KIND: AtomicUsize = AtomicUsize::new(0);
const LOCKED: usize = 1;
const UNLOCKED: usize = 2;
static HOOK_MADE: AtomicUsize = AtomicUsize::new(0);
static HOOK_REFUSED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, plus a thunk made, called and dropped on every
/// allocation of an armed thread (not nested in itself).
struct Tracing;

// SAFETY: allocation is the system allocator's; the hook does not touch
// the memory handed out.
unsafe impl GlobalAlloc for Tracing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: passed on.
        let p = unsafe { System.alloc(layout) };
        if ARMED.get() && !IN_HOOK.replace(true) {
            hook();
            IN_HOOK.set(false);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracing = Tracing;

/// Makes a thunk capturing a runtime value on the hook's heap, calls it,
/// drops it; counts whether it could be made.
fn hook() {
    let heap = HOOK_HEAP.load(Ordering::Acquire);
    let k = std::hint::black_box(3u64);
    let made = match HOOK_KIND.load(Ordering::Acquire) {
        // SAFETY: the child set it to a heap that outlives the armed part.
        LOCKED => unsafe { &*heap.cast::<Heap>() }
            .thunk::<F1, _>(move |x: u64| x * k)
            .map(|t| {
                // SAFETY: alive.
                assert_eq!(unsafe { (t.as_fn())(2) }, 6);
            })
            .is_ok(),
        // SAFETY: as above; the hook runs on the heap's own thread.
        UNLOCKED => unsafe { &*heap.cast::<Heap<NoLock>>() }
            .thunk::<F1, _>(move |x: u64| x * k)
            .map(|t| {
                // SAFETY: alive.
                assert_eq!(unsafe { (t.as_fn())(2) }, 6);
            })
            .is_ok(),
        _ => return,
    };
    let counter = if made { &HOOK_MADE } else { &HOOK_REFUSED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// In a forked child: arms the hook on `heap` and makes (and keeps) 3,000
/// thunks with 24-byte captures there, then drops them; every result must
/// be right and nothing live at the end. `make` makes one on `heap` (the
/// caller's closure: one function generic over shared and unlocked heaps
/// could not name the bound of a closure made inside it).
fn allocator_case<'h, L: lock_api::RawMutex>(
    heap: &'h Heap<L>,
    kind: usize,
    make: impl Fn(u64, u64) -> wxthunk::Thunk<'h, F1, L>,
) -> i32 {
    HOOK_HEAP.store(
        std::ptr::from_ref(heap).cast_mut().cast(),
        Ordering::Release,
    );
    HOOK_KIND.store(kind, Ordering::Release);
    ARMED.set(true);
    let mut live = Vec::new();
    for i in 0..3000u64 {
        let (a, b) = std::hint::black_box((i, 1u64));
        live.push(make(a, b));
    }
    for (i, t) in live.iter().enumerate() {
        // SAFETY: alive.
        assert_eq!(unsafe { (t.as_fn())(1) }, i as u64 + 2);
    }
    drop(live);
    ARMED.set(false);
    let stats = heap.stats();
    println!(
        "hook made {} thunks, {} refused; live at the end: {}",
        HOOK_MADE.load(Ordering::Relaxed),
        HOOK_REFUSED.load(Ordering::Relaxed),
        stats.live_allocations
    );
    assert!(HOOK_MADE.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.live_allocations, 0);
    0
}

#[test]
fn a_global_allocator_that_makes_thunks_on_a_locked_heap() {
    for strategy in [
        Strategy::DualMap,
        Strategy::StaticTrampolines,
        Strategy::Protect,
    ] {
        if !wxthunk::probe().allows(strategy) {
            println!("SKIPPED: {strategy} is not allowed here");
            continue;
        }
        let heap = Heap::builder().strategy(strategy).build().unwrap();
        let pid = spawn(ForkPath::Libc, || {
            allocator_case(&heap, LOCKED, |a, b| {
                heap.thunk(move |x| x + a + b).unwrap()
            })
        });
        assert_eq!(wait(pid), Ok(0), "{strategy}");
    }
}

#[test]
fn a_global_allocator_that_makes_thunks_on_an_unlocked_heap() {
    for strategy in [Strategy::DualMap, Strategy::StaticTrampolines] {
        if !wxthunk::probe().allows(strategy) {
            println!("SKIPPED: {strategy} is not allowed here");
            continue;
        }
        let pid = spawn(ForkPath::Libc, || {
            let heap = Heap::builder().strategy(strategy).build_unlocked().unwrap();
            allocator_case(&heap, UNLOCKED, |a, b| {
                heap.thunk(move |x| x + a + b).unwrap()
            })
        });
        assert_eq!(wait(pid), Ok(0), "{strategy}");
    }
}

/// The global heap: its thread caches and its shards.
#[test]
fn a_global_allocator_that_makes_thunks_on_the_global_heap() {
    let heap = Heap::global().unwrap();
    let pid = spawn(ForkPath::Libc, || {
        allocator_case(heap, LOCKED, |a, b| heap.thunk(move |x| x + a + b).unwrap())
    });
    assert_eq!(wait(pid), Ok(0));
}

/// A signal handler that makes, calls and drops a thunk on the heap the
/// interrupted thread is making thunks on (inline closures: no `malloc`
/// in the handler on the steady path), 20,000 signals.
#[test]
fn a_signal_handler_that_makes_thunks_on_the_interrupted_heap() {
    static HEAP: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());
    static HANDLED: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn on_signal(_: libc::c_int) {
        // SAFETY: set before the handler is installed; lives until the end.
        let heap = unsafe { &*HEAP.load(Ordering::Acquire).cast::<Heap<NoLock>>() };
        let k = std::hint::black_box(5u64);
        if let Ok(t) = heap.thunk::<F1, _>(move |x: u64| x + k) {
            // SAFETY: alive.
            assert_eq!(unsafe { (t.as_fn())(1) }, 6);
        }
        HANDLED.fetch_add(1, Ordering::Relaxed);
    }
    if !wxthunk::probe().allows(Strategy::DualMap) {
        println!("SKIPPED: dual-map is not allowed here, so no signal case");
        return;
    }
    let pid = spawn(ForkPath::Libc, || {
        let heap = Heap::builder().strategy(Strategy::DualMap).build_unlocked();
        let Ok(heap) = heap else {
            return 0; // (the parent said SKIPPED)
        };
        HEAP.store(
            std::ptr::from_ref(&heap).cast_mut().cast(),
            Ordering::Release,
        );
        // SAFETY: a plain handler for SIGUSR1, which nothing else uses here.
        unsafe { libc::signal(libc::SIGUSR1, on_signal as *const () as libc::sighandler_t) };
        // SAFETY: this thread's id.
        let me = unsafe { libc::pthread_self() };
        let sender = std::thread::spawn(move || {
            for _ in 0..20_000 {
                // SAFETY: the target thread lives until this one is joined.
                unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
                std::thread::yield_now();
            }
        });
        let mut i = 0u64;
        while !sender.is_finished() {
            let k = std::hint::black_box(i);
            let t = heap.thunk::<F1, _>(move |x: u64| x + k).unwrap();
            // SAFETY: alive.
            assert_eq!(unsafe { (t.as_fn())(1) }, i + 1);
            i += 1;
        }
        sender.join().unwrap();
        assert_eq!(heap.stats().live_allocations, 0);
        println!(
            "{} signals handled, {i} thunks made meanwhile",
            HANDLED.load(Ordering::Relaxed)
        );
        0
    });
    assert_eq!(wait(pid), Ok(0));
}
