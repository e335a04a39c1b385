//! Where code regions go: just below this library's text, so that thunks
//! reach their entry functions (and the frame adapters) with a direct
//! `jmp rel32` instead of an indirect jump.
//!
//! These are only hints to `mmap` (never `MAP_FIXED`): when a range is taken
//! the kernel picks another address, and the code generator falls back to
//! an absolute jump for targets out of reach.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How far a `rel32` displacement reaches.
const REACH: usize = 1 << 31;
/// Room left below the anchor for the rest of the program's text.
const TEXT_ROOM: usize = 256 << 20;
/// Do not hint below this address.
const FLOOR: usize = 1 << 24;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn anchor() -> usize {
    anchor as *const () as usize
}

/// The top of the hint window, and its bottom (still within reach of the
/// anchor).
fn window() -> Option<(usize, usize)> {
    let a = anchor();
    let top = a.checked_sub(TEXT_ROOM)? & !((2 << 20) - 1);
    let bottom = a.checked_sub(REACH - (64 << 20))?.max(FLOOR);
    (top > bottom).then_some((top, bottom))
}

/// An address to ask for a region of `size` bytes at; 0 for "anywhere".
pub(crate) fn hint(size: usize) -> usize {
    let Some((top, bottom)) = window() else {
        return 0;
    };
    let mut next = NEXT.load(Ordering::Relaxed);
    loop {
        let from = if next == 0 || next < bottom + size {
            top
        } else {
            next
        };
        let Some(at) = from.checked_sub(size).filter(|&at| at >= bottom) else {
            return 0;
        };
        match NEXT.compare_exchange_weak(next, at, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return at,
            Err(seen) => next = seen,
        }
    }
}
