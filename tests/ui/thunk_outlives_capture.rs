// A thunk cannot outlive what its closure borrows.
fn main() {
    let t = {
        let secret = String::from("gone at the end of this block");
        wxthunk::Thunk::<unsafe extern "C" fn() -> usize>::new(|| secret.len()).unwrap()
    };
    drop(t);
}
