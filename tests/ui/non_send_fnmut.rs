// An `FnMut` thunk may be called from another thread, so its closure must be
// `Send`: an `Rc` is refused.
use std::rc::Rc;

fn main() {
    let shared = Rc::new(5);
    let t = wxthunk::Thunk::<unsafe extern "C" fn() -> i32>::new_mut(move || *shared);
    drop(t);
}
