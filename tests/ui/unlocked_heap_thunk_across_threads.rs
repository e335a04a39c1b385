// A thunk from a heap without a lock stays on its thread.
fn main() {
    let heap: &'static wxthunk::Heap<wxthunk::NoLock> = Box::leak(Box::new(wxthunk::Heap::unlocked().unwrap()));
    let t = heap.thunk::<unsafe extern "C" fn() -> u32, _>(|| 1).unwrap();
    std::thread::spawn(move || drop(t));
}
