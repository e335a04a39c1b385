// C may call a thunk from any thread at once, so an `Fn` closure must be
// `Sync`: a closure holding a `Cell` is refused by the safe constructors.
use std::cell::Cell;

fn main() {
    let count = Cell::new(0);
    let t = wxthunk::Thunk::<unsafe extern "C" fn()>::new(move || count.set(count.get() + 1));
    drop(t);
}
