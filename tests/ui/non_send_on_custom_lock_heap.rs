// A heap with a lock of your choice is shared between threads too: it
// refuses an `FnOnce` closure holding an `Rc`.
use std::rc::Rc;

fn main() {
    let custom = wxthunk::Heap::builder()
        .build_with_lock::<parking_lot::RawMutex>()
        .unwrap();
    let shared = Rc::new(5);
    let v = custom.thunk_once::<unsafe extern "C" fn() -> i32, _>(move || *shared);
    drop(v);
}
