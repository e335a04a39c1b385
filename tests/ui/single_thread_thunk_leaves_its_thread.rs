// A thunk of the thread-local heap, whose closure holds an `Rc`, cannot be
// sent to another thread, where it would be called or dropped.
use std::rc::Rc;

fn main() {
    let heap = wxthunk::Heap::thread_local().unwrap();
    let shared = Rc::new(5);
    let t = heap
        .thunk_mut::<unsafe extern "C" fn() -> i32, _>(move || *shared)
        .unwrap();
    std::thread::spawn(move || drop(t));
}
