// The closure traits are sealed: a type of the user's cannot claim to be a
// closure a thunk can call (its `entry` would be what the thunk jumps to).
struct NotAClosure;

unsafe impl wxthunk::ThunkFn<unsafe extern "C" fn() -> u32> for NotAClosure {
    fn entry() -> *const () {
        std::ptr::null()
    }

    fn bare() -> *const () {
        std::ptr::null()
    }
}

fn main() {}
