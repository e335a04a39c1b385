//! A shared library that makes thunks with static trampolines, for a C
//! program to load with `dlopen`: the trampoline table must be found in
//! this library's file, not in the program's.

use std::ffi::c_char;
use std::sync::OnceLock;

use wxthunk::{Heap, Strategy};

/// The fn-pointer type of the thunks this library hands out.
pub type Adder = unsafe extern "C" fn(i32) -> i32;

fn heap() -> Option<&'static Heap> {
    static HEAP: OnceLock<Option<Heap>> = OnceLock::new();
    HEAP.get_or_init(|| {
        match Heap::builder()
            .strategy(Strategy::StaticTrampolines)
            .build()
        {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("wxthunk-dlopen-check: {e}");
                None
            }
        }
    })
    .as_ref()
}

/// A thunk that adds `k`, on a static-trampoline heap, kept for the life
/// of the process; null if static trampolines do not work.
#[unsafe(no_mangle)]
pub extern "C" fn wxthunk_dlopen_make_adder(k: i32) -> Option<Adder> {
    let thunk = heap()?.thunk::<Adder, _>(move |x: i32| x + k).ok()?;
    Some(thunk.leak())
}

/// Copies the probe's description of where the trampoline table is mapped
/// from into `buf` (up to `len` bytes, not NUL-terminated) and returns the
/// full length.
///
/// # Safety
///
/// `buf` must be valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wxthunk_dlopen_table_source(buf: *mut c_char, len: usize) -> usize {
    let source = wxthunk::probe()
        .trampoline_source
        .clone()
        .unwrap_or_default();
    let n = source.len().min(len);
    // SAFETY: the caller gives `len` writable bytes; `n <= len`.
    unsafe { std::ptr::copy_nonoverlapping(source.as_ptr().cast(), buf, n) };
    source.len()
}
