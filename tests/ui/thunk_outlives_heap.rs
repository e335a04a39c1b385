// A thunk cannot outlive the heap its code lives in.
fn main() {
    let t = {
        let heap = wxthunk::Heap::new().unwrap();
        heap.thunk::<unsafe extern "C" fn() -> u32, _>(|| 7).unwrap()
    };
    drop(t);
}
