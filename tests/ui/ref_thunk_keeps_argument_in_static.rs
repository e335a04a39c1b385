// `ref_thunk!` hands its body references that live for the call only: the
// body cannot keep one in a `static` (the caller frees the node after the
// call; a later read would be a use after free).
use std::sync::Mutex;

struct Node {
    value: i32,
}

static KEPT: Mutex<Option<&'static Node>> = Mutex::new(None);

fn main() {
    let kept = wxthunk::ref_thunk!(unsafe extern "C" fn(depth: u32, node: &Node) -> i32 => {
        *KEPT.lock().unwrap() = Some(node);
        depth as i32 + node.value
    });
    drop(kept);
}
