// A closure whose parameters do not match the signature is refused, with
// the signature named: too few parameters, and a reference parameter
// annotated with another type.
fn main() {
    let t = wxthunk::Thunk::<unsafe extern "C" fn(&i32, &mut i64) -> i32>::new(|a| *a);
    drop(t);
    let u = wxthunk::Thunk::<unsafe extern "C" fn(&i32, &mut i64) -> i32>::new(
        |a: &u64, _out| *a as i32,
    );
    drop(u);
}
