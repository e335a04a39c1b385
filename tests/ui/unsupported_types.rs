// Types the calling scheme cannot place are rejected at compile time.
struct Pair {
    a: u64,
    b: u64,
}

fn main() {
    let wide = wxthunk::Thunk::<unsafe extern "C" fn(i128) -> u8>::new(|x: i128| x as u8);
    let by_value = wxthunk::Thunk::<unsafe extern "C" fn(Pair) -> u64>::new(|p: Pair| p.a + p.b);
    let rust_abi = wxthunk::Thunk::<fn(u32) -> u32>::new(|x: u32| x);
}
