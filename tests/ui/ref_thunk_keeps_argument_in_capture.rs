// `ref_thunk!` hands its body references that live for the call only: the
// body cannot keep one in something it captured.
use std::sync::Mutex;

struct Node {
    value: i32,
}

fn main() {
    let cell: Mutex<Option<&Node>> = Mutex::new(None);
    let cell = &cell;
    let heap = wxthunk::Heap::new().unwrap();
    let kept = wxthunk::ref_thunk!(in &heap,
        unsafe extern "C" fn(depth: u32, node: &mut Node) -> i32 => {
            *cell.lock().unwrap() = Some(&*node);
            depth as i32 + node.value
        }
    );
    drop(kept);
}
