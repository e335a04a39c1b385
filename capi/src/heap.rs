//! `wx_heap`: a code heap (member_thunk's heap) for thunks and spans, its
//! options and stats. A handle is an `Arc`'s pointer: every thunk and
//! span made on the heap holds a reference, so the heap cannot go while
//! they live (`wx_heap_free` refuses; `wx_heap_release` leaves it to the
//! last of them).

use std::ffi::c_int;
use std::sync::Arc;

use wxthunk::{Heap, Strategy};

use crate::status::{Failure, guard, set_out, wx_status};

/// A code heap: thunks (`wx_thunk_new`) and spans (`wx_span_new`) share
/// its pages. Opaque.
#[allow(non_camel_case_types)]
pub struct wx_heap {
    pub(crate) heap: Heap,
}

/// A W^X strategy, for `wx_heap_options.strategy` (`WX_STRATEGY_AUTO`: the
/// one the probe picks, or `WXTHUNK_STRATEGY`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum wx_strategy {
    /// The probe's choice for this process.
    WX_STRATEGY_AUTO = 0,
    /// Writable, then `mprotect`ed to read+execute.
    WX_STRATEGY_PROTECT = 1,
    /// One memory, two views: writable and executable (memfd, or a
    /// section on Windows).
    WX_STRATEGY_DUAL_MAP = 2,
    /// Dual mapping through a file in a directory (no memfd).
    WX_STRATEGY_DUAL_MAP_FILE = 3,
    /// Thunks as data read by code mapped from the binary: no executable
    /// memory is made (thunks only; spans are refused).
    WX_STRATEGY_STATIC_TRAMPOLINES = 4,
}

/// Options for `wx_heap_new_with`. All zeros (`wx_heap_options o = {0};`)
/// is the default heap of `wx_heap_new`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct wx_heap_options {
    /// A `wx_strategy` (`WX_STRATEGY_AUTO` = 0).
    pub strategy: u32,
    /// Nonzero: a strict heap, whose writable view exists only while code
    /// is written (dual mapping).
    pub strict: c_int,
    /// Bytes per region (0: the default, 1 MiB).
    pub region_size: usize,
    /// The most address space the heap reserves, in bytes (0: no limit).
    pub max_reserved: usize,
}

/// What a heap holds, from `wx_heap_stats`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct wx_stats {
    /// The heap's strategy (a `wx_strategy`).
    pub strategy: u32,
    /// Regions reserved.
    pub regions: usize,
    /// Address space reserved, in bytes.
    pub bytes_reserved: usize,
    /// Memory in use by pages of the heap (code, data slots, records), in
    /// bytes.
    pub bytes_committed: usize,
    /// Live allocations: spans, and thunks with generated code.
    pub live_allocations: usize,
    /// Bytes of the live allocations.
    pub bytes_in_use: usize,
    /// Bookkeeping kept outside the code, in bytes.
    pub metadata_bytes: usize,
}

/// The strategy a C number names (`None` for `WX_STRATEGY_AUTO`).
fn strategy_of(n: u32) -> Result<Option<Strategy>, Failure> {
    Ok(Some(match n {
        0 => return Ok(None),
        1 => Strategy::Protect,
        2 => Strategy::DualMap,
        3 => Strategy::DualMapFile,
        4 => Strategy::StaticTrampolines,
        _ => {
            return Err(Failure::new(
                wx_status::WX_ERR_INVALID_ARGUMENT,
                format_args!("{n} is not a wx_strategy (0 to 4)"),
            ));
        }
    }))
}

fn strategy_number(s: Strategy) -> u32 {
    match s {
        Strategy::Protect => 1,
        Strategy::DualMap => 2,
        Strategy::DualMapFile => 3,
        Strategy::StaticTrampolines => 4,
        _ => 0,
    }
}

/// The heap a C handle names (the global heap for NULL), and the reference
/// a thunk or span made on it keeps.
///
/// # Safety
/// `h` is NULL or a live handle from `wx_heap_new*`.
pub(crate) unsafe fn resolve(
    h: *const wx_heap,
) -> Result<(&'static Heap, Option<Arc<wx_heap>>), Failure> {
    if h.is_null() {
        return Ok((Heap::global()?, None));
    }
    // SAFETY: a live handle is `Arc::into_raw` of an `Arc<wx_heap>` (the
    // caller's contract); this adds the reference the new object keeps.
    let arc = unsafe {
        Arc::increment_strong_count(h);
        Arc::from_raw(h)
    };
    // SAFETY: the heap lives inside the `Arc`'s allocation, which does not
    // move and stays while `arc` (kept by the caller beside what borrows
    // it, and dropped after it) holds a reference.
    let heap = unsafe { &*std::ptr::from_ref(&arc.heap) };
    Ok((heap, Some(arc)))
}

/// Makes a heap with the default options.
///
/// Ownership: `*out` is the caller's, freed by `wx_heap_free` (or
/// `wx_heap_release`). `*out` is NULL on failure.
///
/// Thread safety: a heap is thread-safe: thunks and spans may be made and
/// freed on it from any thread at once.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (out), `WX_ERR_DENIED` (no strategy
/// works in this process), `WX_ERR_OS`.
///
/// # Safety
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_heap_new(out: *mut *mut wx_heap) -> wx_status {
    // SAFETY: the caller's contract.
    unsafe { wx_heap_new_with(std::ptr::null(), out) }
}

/// Makes a heap with `options` (NULL: the defaults, as `wx_heap_new`).
///
/// Ownership, thread safety: as `wx_heap_new`.
///
/// Errors: as `wx_heap_new`; `WX_ERR_INVALID_ARGUMENT` for an unknown
/// strategy; `WX_ERR_DENIED` for a strategy this process forbids.
///
/// # Safety
/// `options` is NULL or points to a `wx_heap_options`; `out` is NULL or
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_heap_new_with(
    options: *const wx_heap_options,
    out: *mut *mut wx_heap,
) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { set_out(out, std::ptr::null_mut()) };
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: NULL or a `wx_heap_options` (the caller's contract).
        let o = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let mut b = Heap::builder().strict(o.strict != 0);
        if let Some(s) = strategy_of(o.strategy)? {
            b = b.strategy(s);
        }
        if o.region_size != 0 {
            b = b.region_size(o.region_size);
        }
        if o.max_reserved != 0 {
            b = b.max_reserved(o.max_reserved);
        }
        let heap = Arc::new(wx_heap { heap: b.build()? });
        // SAFETY: `out` is valid (checked above, the caller's contract).
        unsafe { out.write(Arc::into_raw(heap).cast_mut()) };
        Ok(())
    })
}

/// Frees a heap that has no live thunks or spans. NULL: a no-op (the
/// global heap is never freed).
///
/// Errors: `WX_ERR_IN_USE` while thunks or spans of it live: nothing is
/// freed, the handle stays valid.
///
/// Thread safety: not while another thread uses the handle.
///
/// # Safety
/// `h` is NULL or a live handle, not used after `WX_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_heap_free(h: *mut wx_heap) -> wx_status {
    guard(|| {
        if h.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle (the caller's contract): `Arc::into_raw`.
        let arc = unsafe { Arc::from_raw(h.cast_const()) };
        let others = Arc::strong_count(&arc) - 1;
        if others > 0 {
            // Keep the handle's reference.
            let _ = Arc::into_raw(arc);
            return Err(Failure::new(
                wx_status::WX_ERR_IN_USE,
                format_args!(
                    "the heap still has {others} live thunks or spans; free them first, or \
                     wx_heap_release it to free it with the last of them"
                ),
            ));
        }
        drop(arc);
        Ok(())
    })
}

/// Gives up the handle: the heap is freed now if nothing of it lives, or
/// else when its last thunk or span is freed (they stay valid meanwhile).
/// NULL: a no-op. What `wx::heap`'s destructor calls.
///
/// Thread safety: not while another thread uses the handle.
///
/// # Safety
/// `h` is NULL or a live handle, not used after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_heap_release(h: *mut wx_heap) {
    let _ = guard(|| {
        if !h.is_null() {
            // SAFETY: a live handle; its own reference, given up once.
            drop(unsafe { Arc::from_raw(h.cast_const()) });
        }
        Ok(())
    });
}

/// Gives back to the system the memory of freed thunks and spans: empty
/// regions are released, and the pages of freed code in the others.
/// `h` NULL: the global heap (and this process's thread caches of it).
/// `*released` (if `released` is not NULL): the bytes given back.
///
/// Thread safety: any thread, while others make and free thunks.
///
/// Errors: `WX_ERR_DENIED`/`WX_ERR_OS` only if the global heap cannot be
/// made (its first use).
///
/// # Safety
/// `h` is NULL or a live handle; `released` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_heap_compact(h: *mut wx_heap, released: *mut usize) -> wx_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { set_out(released, 0) };
        // SAFETY: the caller's contract.
        let (heap, _keep) = unsafe { resolve(h) }?;
        let n = heap.compact();
        // SAFETY: the caller's contract.
        unsafe { set_out(released, n) };
        Ok(())
    })
}

/// Fills `*out` with what the heap holds (`h` NULL: the global heap).
///
/// Thread safety: any thread.
///
/// Errors: `WX_ERR_NULL_ARGUMENT` (out).
///
/// # Safety
/// `h` is NULL or a live handle; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wx_heap_stats(h: *const wx_heap, out: *mut wx_stats) -> wx_status {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: the caller's contract.
        let (heap, _keep) = unsafe { resolve(h) }?;
        let s = heap.stats();
        let stats = wx_stats {
            strategy: strategy_number(s.strategy),
            regions: s.regions,
            bytes_reserved: s.bytes_reserved,
            bytes_committed: s.bytes_committed,
            live_allocations: s.live_allocations,
            bytes_in_use: s.bytes_in_use,
            metadata_bytes: s.metadata_bytes,
        };
        // SAFETY: checked not NULL; valid (the caller's contract).
        unsafe { out.write(stats) };
        Ok(())
    })
}
