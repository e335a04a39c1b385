//! What a thunk's closure lives through: the `FnMut` and `FnOnce` guards,
//! drops (with the thunk, during the thunk's own call, from another thread
//! mid-call) and leaks.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use wxthunk::{Heap, Thunk};

use support::thunk_heaps as heaps;

support::rerun_file_with_static_trampolines!();

#[test]
fn fn_mut_thunks_catch_reentrant_calls() {
    let me = AtomicUsize::new(0);
    let mut total = 0u32;
    let t = Thunk::<unsafe extern "C-unwind" fn(u32) -> u32>::new_mut(|v: u32| {
        total += v;
        if v == 0 {
            let again: unsafe extern "C-unwind" fn(u32) -> u32 =
                // SAFETY: `me` holds this thunk's own pointer.
                unsafe { std::mem::transmute(me.load(Ordering::SeqCst)) };
            // SAFETY: calling ourselves while running: must be caught.
            unsafe { again(1) };
        }
        total
    })
    .unwrap();
    me.store(t.as_fn() as usize, Ordering::SeqCst);
    // SAFETY: the thunk is alive.
    unsafe {
        assert_eq!((t.as_fn())(5), 5);
        let err = catch_unwind(AssertUnwindSafe(|| (t.as_fn())(0))).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("wxthunk: an FnMut thunk was called while a call to it was still running"),
            "{msg}"
        );
        // The guard was released: ordinary calls work again.
        assert_eq!((t.as_fn())(2), 7);
    }
}

#[test]
fn fn_once_thunks_catch_a_second_call() {
    let s = String::from("moved in");
    let t = Thunk::<unsafe extern "C-unwind" fn() -> usize>::new_once(move || {
        let owned: String = s; // consumes the capture
        owned.len()
    })
    .unwrap();
    // SAFETY: the thunk is alive.
    unsafe {
        assert_eq!((t.as_fn())(), 8);
        let err = catch_unwind(AssertUnwindSafe(|| (t.as_fn())())).unwrap_err();
        assert!(
            err.downcast_ref::<String>()
                .unwrap()
                .contains("FnOnce thunk was called a second time")
        );
    }
    // Dropping an FnOnce thunk that was never called drops its closure.
    let dropped = std::sync::Arc::new(());
    let held = dropped.clone();
    let t = Thunk::<unsafe extern "C" fn()>::new_once(move || drop(held)).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&dropped), 2);
    drop(t);
    assert_eq!(std::sync::Arc::strong_count(&dropped), 1);
}

#[test]
fn closures_are_dropped_with_their_thunks_and_leaked_thunks_live_on() {
    let marker = std::sync::Arc::new(());
    let held = marker.clone();
    let t =
        Thunk::<unsafe extern "C" fn() -> usize>::new(move || std::sync::Arc::strong_count(&held))
            .unwrap();
    // SAFETY: alive.
    assert_eq!(unsafe { (t.as_fn())() }, 2);
    drop(t);
    assert_eq!(std::sync::Arc::strong_count(&marker), 1);

    // A runtime capture: leaked code on the heap (a capture-free closure
    // would be a compiled function, valid forever anyway).
    let one = std::hint::black_box(1u32);
    let leaked = Thunk::<unsafe extern "C" fn(u32) -> u32>::new(move |v: u32| v + one).unwrap();
    assert!(!leaked.code().is_empty());
    let forever: unsafe extern "C" fn(u32) -> u32 = leaked.leak();
    let other_thread = std::thread::spawn(move || {
        // SAFETY: leaked: valid for the rest of the process.
        unsafe { forever(41) }
    });
    assert_eq!(other_thread.join().unwrap(), 42);
}

/// Counts drops of the value it is attached to.
struct DropCounter(&'static AtomicUsize);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn fn_mut_and_fn_once_thunks_dropped_during_their_own_call_free_nothing_under_it() {
    type One = unsafe extern "C-unwind" fn(u64) -> u64;
    // Eight integers and eight floats: both register files full, so the
    // frame path (fewer floats would put the context in an xmm register).
    type Frame = unsafe extern "C-unwind" fn(
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
    ) -> u64;
    for (name, heap) in heaps() {
        // Register path: the closure takes its own thunk out of shared
        // state and drops it, then still uses its captures.
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        DROPS.store(0, Ordering::SeqCst);
        let slot: std::sync::Arc<Mutex<Option<Thunk<'_, One>>>> = Default::default();
        let shared = slot.clone();
        let counter = DropCounter(&DROPS);
        let mut calls = vec![0u64; 64];
        let t = heap
            .thunk_mut::<One, _>(move |v: u64| {
                let own = shared.lock().unwrap().take();
                drop(own); // the thunk, its code and (deferred) this closure
                // Still inside the call: the captures must be intact.
                let held: &DropCounter = &counter; // captures all of `counter`
                assert_eq!(held.0.load(Ordering::SeqCst), 0, "dropped under the call");
                calls.push(v); // writes into captured heap memory
                calls.len() as u64
            })
            .unwrap();
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        // SAFETY: the thunk is alive when the call starts; it drops itself
        // during the call, which must be deferred to the call's end.
        assert_eq!(unsafe { f(7) }, 65, "{name}");
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "{name}: freed at the end");
        assert!(slot.lock().unwrap().is_none());
        assert_eq!(heap.stats().live_allocations, 0, "{name}");

        // Frame path, and a panic after the drop (unwinding frees it too).
        static FRAME_DROPS: AtomicUsize = AtomicUsize::new(0);
        FRAME_DROPS.store(0, Ordering::SeqCst);
        let slot: std::sync::Arc<Mutex<Option<Thunk<'_, Frame>>>> = Default::default();
        let shared = slot.clone();
        let counter = DropCounter(&FRAME_DROPS);
        let t = heap
            .thunk_mut::<Frame, _>(
                move |a: u64,
                      b: u64,
                      c: u64,
                      d: u64,
                      e: u64,
                      g: u64,
                      h: u64,
                      i: u64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64| {
                    drop(shared.lock().unwrap().take());
                    let held: &DropCounter = &counter;
                    assert_eq!(held.0.load(Ordering::SeqCst), 0);
                    if a == 0 {
                        panic!("after the drop");
                    }
                    a + b + c + d + e + g + h + i
                },
            )
            .unwrap();
        assert!(t.builds_frame());
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        let [z0, z1, z2, z3, z4, z5, z6, z7] = [0.0; 8];
        // SAFETY: as above.
        let got = unsafe { f(1, 2, 3, 4, 5, 6, 7, 8, z0, z1, z2, z3, z4, z5, z6, z7) };
        assert_eq!(got, 36, "{name}");
        assert_eq!(FRAME_DROPS.load(Ordering::SeqCst), 1, "{name}");

        FRAME_DROPS.store(0, Ordering::SeqCst);
        let shared = slot.clone();
        let counter = DropCounter(&FRAME_DROPS);
        let t = heap
            .thunk_mut::<Frame, _>(
                move |a: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: u64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64,
                      _: f64| {
                    drop(shared.lock().unwrap().take());
                    let held: &DropCounter = &counter;
                    assert_eq!(held.0.load(Ordering::SeqCst), 0);
                    if a == 0 {
                        panic!("after the drop");
                    }
                    a
                },
            )
            .unwrap();
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        // SAFETY: as above; the panic unwinds through the -unwind thunk.
        let err =
            catch_unwind(|| unsafe { f(0, 0, 0, 0, 0, 0, 0, 0, z0, z1, z2, z3, z4, z5, z6, z7) })
                .unwrap_err();
        assert_eq!(err.downcast_ref::<&str>(), Some(&"after the drop"));
        assert_eq!(
            FRAME_DROPS.load(Ordering::SeqCst),
            1,
            "{name}: freed while unwinding"
        );
        assert_eq!(heap.stats().live_allocations, 0, "{name}");

        // FnOnce: the closure is moved out of the thunk before it runs, so
        // dropping the thunk during the call frees nothing the call uses.
        static ONCE_DROPS: AtomicUsize = AtomicUsize::new(0);
        ONCE_DROPS.store(0, Ordering::SeqCst);
        let slot: std::sync::Arc<Mutex<Option<Thunk<'_, One>>>> = Default::default();
        let shared = slot.clone();
        let counter = DropCounter(&ONCE_DROPS);
        let mut owned = vec![1u64; 8];
        let t = heap
            .thunk_once::<One, _>(move |v: u64| {
                drop(shared.lock().unwrap().take());
                let held: &DropCounter = &counter;
                assert_eq!(held.0.load(Ordering::SeqCst), 0);
                owned.push(v);
                owned.iter().sum::<u64>()
            })
            .unwrap();
        let f = t.as_fn();
        *slot.lock().unwrap() = Some(t);
        // SAFETY: alive when the call starts.
        assert_eq!(unsafe { f(2) }, 10, "{name}");
        assert_eq!(ONCE_DROPS.load(Ordering::SeqCst), 1, "{name}");
        assert_eq!(heap.stats().live_allocations, 0, "{name}");
    }
}

/// An `FnMut` thunk dropped by another thread while its call is leaving
/// (which `as_fn`'s contract allows: the caller kept it alive until the call
/// started) frees its closure exactly once. The call's exit and the drop
/// race for the state word; a drop landing between a load and a store of it
/// used to be lost, leaking the closure (hundreds per 100,000).
#[test]
fn fn_mut_thunks_dropped_by_another_thread_mid_call_free_their_closure_once() {
    use std::sync::atomic::AtomicU8;
    type One = unsafe extern "C" fn(u64) -> u64;
    const ROUNDS: usize = 50_000;
    const IDLE: u8 = 0;
    const CALL: u8 = 1;
    const INSIDE: u8 = 2;
    const DONE: u8 = 3;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static PHASE: AtomicU8 = AtomicU8::new(IDLE);
    static FN: AtomicUsize = AtomicUsize::new(0);
    /// Waits until the phase is `phase` or later (spinning, then yielding
    /// to the other thread when the machine is busy).
    fn wait_for(phase: u8) {
        wait_until(|p| p >= phase);
    }
    fn wait_until(done: impl Fn(u8) -> bool) {
        let mut spins = 0u32;
        while !done(PHASE.load(Ordering::Acquire)) {
            spins += 1;
            if spins % 128 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let caller = std::thread::spawn(|| {
        let mut sum = 0u64;
        for _ in 0..ROUNDS {
            wait_until(|p| p == CALL);
            // SAFETY: `One`'s address, published by the owner, which keeps
            // the thunk alive until this call has started (`INSIDE`).
            let f: One = unsafe { std::mem::transmute(FN.load(Ordering::Acquire)) };
            // SAFETY: the thunk is alive when the call starts.
            sum += unsafe { f(1) };
            PHASE.store(DONE, Ordering::Release);
        }
        sum
    });
    let heap = Heap::global().unwrap();
    for round in 0..ROUNDS {
        let counter = DropCounter(&DROPS);
        let mut calls = std::hint::black_box(round as u64);
        let t = heap
            .thunk_mut::<One, _>(move |v: u64| {
                let _held: &DropCounter = &counter;
                calls += v;
                PHASE.store(INSIDE, Ordering::Release);
                // A delay that sweeps where the drop lands in the call's
                // exit, round by round.
                for _ in 0..calls % 256 {
                    std::hint::spin_loop();
                }
                calls
            })
            .unwrap();
        FN.store(t.as_fn() as usize, Ordering::Release);
        PHASE.store(CALL, Ordering::Release);
        wait_for(INSIDE); // (or already `DONE`: then no race this round)
        drop(t); // while the call is returning, on the other thread
        wait_for(DONE);
        PHASE.store(IDLE, Ordering::Release);
    }
    let sum = caller.join().unwrap();
    assert_eq!(sum, (1..=ROUNDS as u64).sum::<u64>());
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        ROUNDS,
        "closures leaked by drops racing the call's exit"
    );
}
