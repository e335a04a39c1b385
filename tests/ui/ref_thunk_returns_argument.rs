// `ref_thunk!` hands its body references that live for the call only: the
// body cannot return one as a longer-lived reference.
struct Node {
    value: i32,
}

fn main() {
    let returned = wxthunk::ref_thunk!(
        unsafe extern "C" fn(depth: u32, node: &Node) -> &'static i32 => {
            let _ = depth;
            &node.value
        }
    );
    drop(returned);
}
