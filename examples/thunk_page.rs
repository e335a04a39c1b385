//! Many thunks through one thunk page (member_thunk's page workflow): push
//! closures onto a page, seal it once (one transition for all of them),
//! call each, and free the page as a unit. Each closure captures its own
//! state.
//!
//! `cargo run --example thunk_page`

use wxthunk::Heap;

type Scale = unsafe extern "C" fn(u32) -> u32;

fn main() -> Result<(), wxthunk::Error> {
    let heap = Heap::new()?;
    let mut page = heap.thunk_page::<Scale>()?;
    println!("a page holds {} thunks of this signature", page.capacity());
    for factor in 1..=8u32 {
        page.push(move |x: u32| x * factor)?;
    }
    let page = page.exec()?;
    let total: u32 = (0..page.len())
        .map(|i| {
            let f = page.func(i).expect("pushed above");
            // SAFETY: the page is alive.
            unsafe { f(10) }
        })
        .sum();
    println!("10 x (1 + 2 + ... + 8) = {total}");
    assert_eq!(total, 360);
    drop(page); // every thunk of the page goes at once
    assert_eq!(heap.stats().live_allocations, 0);
    Ok(())
}
