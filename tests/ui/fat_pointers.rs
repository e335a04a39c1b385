// Fat pointers (address plus length or vtable: two registers) are not thunk
// arguments; they must not compile, behind any pointer kind.
use std::ptr::NonNull;

trait Shape {}

fn main() {
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*const [u8]) -> usize>::new(|s: *const [u8]| s.len());
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*mut str) -> usize>::new(|s: *mut str| s.len());
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*const dyn Shape) -> u8>::new(|_: *const dyn Shape| 0u8);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(*mut dyn Shape) -> u8>::new(|_: *mut dyn Shape| 0u8);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(NonNull<[u32]>) -> usize>::new(|s: NonNull<[u32]>| s.len());
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(Option<NonNull<str>>) -> u8>::new(|_: Option<NonNull<str>>| 0u8);
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(&[u8]) -> usize>::new(|s: &[u8]| s.len());
    let _ = wxthunk::Thunk::<unsafe extern "C" fn(Option<&mut dyn Shape>) -> u8>::new(|_: Option<&mut dyn Shape>| 0u8);
}
