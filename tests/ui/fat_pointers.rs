// Fat pointers (address plus length or vtable: two registers) are not thunk
// arguments; they must not compile, behind any pointer kind. The closures
// are otherwise fine, so the only errors are the missing `ThunkArg`s.
use std::ptr::NonNull;

trait Shape {}

fn main() {
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*const [u8]) -> usize>::new(|_: *const [u8]| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*mut str) -> usize>::new(|_: *mut str| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*const dyn Shape) -> usize>::new(|_: *const dyn Shape| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*mut dyn Shape) -> usize>::new(|_: *mut dyn Shape| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(NonNull<[u32]>) -> usize>::new(|_: NonNull<[u32]>| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(Option<NonNull<str>>) -> usize>::new(|_: Option<NonNull<str>>| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(&[u8]) -> usize>::new(|_: &[u8]| 0usize);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(Option<&mut dyn Shape>) -> usize>::new(|_: Option<&mut dyn Shape>| 0usize);
}
