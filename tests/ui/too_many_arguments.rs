// Seventeen arguments: no thunk signature has that many (the message says
// to pass a pointer to a struct instead).
type F17 = unsafe extern "C" fn(
    u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64,
) -> u64;

fn takes_a_signature<F: wxthunk::ThunkSig>() {}

fn main() {
    takes_a_signature::<F17>();
}
