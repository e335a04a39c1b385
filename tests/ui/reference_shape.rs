// References in the first two of up to four arguments are thunk
// signatures as written; a reference elsewhere is not (the message names
// `ref_thunk!`, which covers every shape), nor is one of another ABI than
// "C" and "C-unwind".
fn takes_a_signature<F: wxthunk::ThunkSig>() {}

fn main() {
    takes_a_signature::<unsafe extern "C" fn(&i32) -> i32>();
    takes_a_signature::<unsafe extern "C" fn(u64, &mut u64, u8, u16) -> i32>();
    takes_a_signature::<unsafe extern "C" fn(u64, u64, &u64) -> u64>();
    takes_a_signature::<unsafe extern "system" fn(&u64) -> u64>();
}
