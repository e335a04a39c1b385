// A heap shared between threads may drop its thunks on another thread, so
// it refuses closures that are not `Send` (an `Rc`) for every kind of
// thunk, and `Fn` closures that are not `Sync` (a `RefCell`); a heap of one
// thread takes them (`tests/single_thread_captures.rs`).
use std::cell::RefCell;
use std::rc::Rc;

fn main() {
    let heap = wxthunk::Heap::new().unwrap();
    let shared = Rc::new(5);
    let t = heap.thunk_mut::<unsafe extern "C" fn() -> i32, _>(move || *shared);
    drop(t);
    let cell = RefCell::new(0);
    let u = heap.thunk::<unsafe extern "C" fn(), _>(move || *cell.borrow_mut() += 1);
    drop(u);
}
