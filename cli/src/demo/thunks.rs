//! The thunk half of the demo: C functions without a user-data argument
//! calling capturing Rust closures: the C runtime's `qsort` everywhere,
//! then the system's own callback API (`nftw` on Unix, `nftw.rs`;
//! `EnumSystemLocalesW` on Windows, `locales.rs`).

#[cfg(windows)]
#[path = "locales.rs"]
mod system;
#[cfg(unix)]
#[path = "nftw.rs"]
mod system;

use std::ffi::{c_int, c_void};

use wxthunk::Thunk;

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

unsafe extern "C" {
    fn qsort(base: *mut c_void, n: usize, size: usize, cmp: Cmp);
}

pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("demo: thunks (closures as bare extern \"C\" fn pointers)");
    if let Err(e) = sort() {
        println!("  qsort skipped: {}", crate::causes(&e));
    }
    system::run()
}

/// qsort with a capturing comparator.
fn sort() -> Result<(), wxthunk::Error> {
    // qsort: sort by distance from a pivot the comparator captures.
    let pivot = 50;
    let mut calls = 0usize;
    let mut v: Vec<i32> = (0..12).map(|i| (i * 37) % 101).collect();
    {
        let by_distance = Thunk::<Cmp>::new_mut(|a: *const c_void, b: *const c_void| {
            calls += 1;
            // SAFETY: qsort passes pointers to elements of `v`.
            let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
            ((a - pivot).abs(), a).cmp(&((b - pivot).abs(), b)) as c_int
        })?;
        println!(
            "  qsort comparator thunk at {:p} ({} bytes of code: {})",
            by_distance.as_fn() as *const (),
            by_distance.code().len(),
            if by_distance.builds_frame() {
                "builds a frame"
            } else {
                "places the context, jumps"
            }
        );
        // SAFETY: the thunk lives across the call; the sizes describe `v`.
        unsafe {
            qsort(
                v.as_mut_ptr().cast(),
                v.len(),
                size_of::<i32>(),
                by_distance.as_fn(),
            )
        };
    }
    println!("    sorted by distance from {pivot}: {v:?} ({calls} comparisons)");
    Ok(())
}
