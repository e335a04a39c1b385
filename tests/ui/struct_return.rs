// A struct returned by value comes back through hidden memory, not a
// register: refused, with what to do instead.
#[derive(Clone, Copy)]
struct Pair {
    a: u64,
    b: u64,
}

fn main() {
    let t = wxthunk::Thunk::<unsafe extern "C" fn(u64) -> Pair>::new(|x: u64| Pair { a: x, b: x });
    drop(t);
}
