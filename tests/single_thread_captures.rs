//! Closures that are neither `Send` nor `Sync` (an `Rc`, a `RefCell`) on
//! heaps of one thread: `Heap::unlocked()` and `Heap::thread_local()`,
//! whose thunks cannot leave their thread, so the closure is called and
//! dropped where it was made. (Compiling is half the test; the other half
//! is that each closure runs, keeps its state and is dropped once, when
//! its thunk or page is.) The shared heaps keep refusing them:
//! `tests/ui/non_send_on_shared_heap.rs`.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::cell::RefCell;
use std::rc::Rc;

use wxthunk::{Heap, NoLock};

/// Makes thunks of `Rc`/`RefCell` closures on `heap`, calls them, drops
/// them, and checks that each closure was dropped (the `Rc`'s count).
fn rc_closures_run_and_drop(heap: &Heap<NoLock>) {
    let log = Rc::new(RefCell::new(Vec::<u32>::new()));
    {
        let l = Rc::clone(&log);
        let mut calls = 0;
        let push = heap
            .thunk_mut::<unsafe extern "C" fn(u32) -> u32, _>(move |x| {
                calls += 1;
                l.borrow_mut().push(x);
                calls
            })
            .unwrap();
        let l = Rc::clone(&log);
        let len = heap
            .thunk::<unsafe extern "C" fn() -> usize, _>(move || l.borrow().len())
            .unwrap();
        let l = Rc::clone(&log);
        let clear = heap
            .thunk_once::<unsafe extern "C" fn(), _>(move || l.borrow_mut().clear())
            .unwrap();
        assert_eq!(Rc::strong_count(&log), 4);
        // SAFETY: the thunks are alive and called on their heap's thread.
        unsafe {
            assert_eq!((push.as_fn())(7), 1);
            assert_eq!((push.as_fn())(8), 2);
            assert_eq!((len.as_fn())(), 2);
            (clear.as_fn())();
            assert_eq!((len.as_fn())(), 0);
        }
    }
    assert_eq!(Rc::strong_count(&log), 1, "a closure was not dropped");

    // A page of them, dropped as a unit.
    {
        let mut page = heap.thunk_page::<unsafe extern "C" fn(u32)>().unwrap();
        for _ in 0..3 {
            let l = Rc::clone(&log);
            page.push_mut(move |x| l.borrow_mut().push(x)).unwrap();
        }
        let page = page.exec().unwrap();
        for i in 0..3 {
            // SAFETY: the page is alive; called on its heap's thread.
            unsafe { (page.func(i).unwrap())(i as u32) };
        }
        assert_eq!(Rc::strong_count(&log), 4);
    }
    assert_eq!(*log.borrow(), [0, 1, 2]);
    assert_eq!(
        Rc::strong_count(&log),
        1,
        "a page's closure was not dropped"
    );
}

#[test]
fn rc_and_refcell_captures_on_an_unlocked_heap() {
    rc_closures_run_and_drop(&Heap::unlocked().unwrap());
}

#[test]
fn rc_and_refcell_captures_on_the_thread_local_heap() {
    rc_closures_run_and_drop(Heap::thread_local().unwrap());
    // And on another thread's own thread-local heap.
    std::thread::spawn(|| rc_closures_run_and_drop(Heap::thread_local().unwrap()))
        .join()
        .unwrap();
}

#[test]
fn every_strategy_of_one_thread_takes_them() {
    for (name, builder) in wxthunk_testkit::thunk_heap_configs() {
        let heap = builder.build_unlocked().unwrap();
        eprintln!("{name}");
        rc_closures_run_and_drop(&heap);
    }
}
