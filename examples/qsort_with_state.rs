//! A C callback without a user-data argument, given state anyway: libc's
//! `qsort` sorts by distance from a pivot chosen at run time, and counts
//! its comparisons in the closure.
//!
//! `cargo run --example qsort_with_state`

use std::ffi::{c_int, c_void};

use wxthunk::Thunk;

/// `qsort`'s comparator type: two pointers, no room for a context.
type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

unsafe extern "C" {
    fn qsort(base: *mut c_void, n: usize, size: usize, cmp: Cmp);
}

fn main() -> Result<(), wxthunk::Error> {
    let pivot: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let mut values = vec![90, 10, 55, 49, 3, 77, 51, 20];
    let mut comparisons = 0u32;

    // The closure captures `pivot` and `comparisons`: `new_mut` because it
    // changes its state (its calls are guarded against overlapping).
    let by_distance = Thunk::<Cmp>::new_mut(|a: *const c_void, b: *const c_void| {
        comparisons += 1;
        // SAFETY: qsort passes pointers to two elements of `values`.
        let (a, b) = unsafe { (*a.cast::<i32>(), *b.cast::<i32>()) };
        (a - pivot).abs().cmp(&(b - pivot).abs()) as c_int
    })?;

    // SAFETY: the thunk lives across the call; the arguments describe
    // `values`.
    unsafe {
        qsort(
            values.as_mut_ptr().cast(),
            values.len(),
            size_of::<i32>(),
            by_distance.as_fn(),
        )
    };
    drop(by_distance); // ends the closure's borrow of `comparisons`
    println!("sorted by distance from {pivot}: {values:?} ({comparisons} comparisons)");
    assert!(
        values
            .windows(2)
            .all(|w| (w[0] - pivot).abs() <= (w[1] - pivot).abs())
    );
    Ok(())
}
