//! Memory proportional to what is written: a huge span holding a few bytes
//! of code uses a page or two, the rest of it is not reachable as code, and
//! the reservation limit is a clear error. Its own binary, so that the
//! resident-memory figures are this test's alone. On Windows (under
//! Wine) too: the resident size is the working set there, and the map of
//! mappings a walk with `VirtualQuery`.
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::io::Write;
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;

use support::code;
use wxthunk::{Error, Heap, HeapBuilder, Strategy};

const GIB: usize = 1 << 30;

#[cfg(target_os = "linux")]
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * wxthunk::page_size()
}

/// The working set: the pages of this process in memory.
#[cfg(windows)]
fn rss_bytes() -> usize {
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    // SAFETY: plain data; all zeros is a valid value.
    let mut counters: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
    let size = size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    // SAFETY: `counters` has room for `size` bytes; the pseudo-handle needs
    // no closing.
    let ok = unsafe { K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) };
    assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
    counters.WorkingSetSize
}

/// Whether a child ended by an access violation (SIGSEGV; on Windows
/// `STATUS_ACCESS_VIOLATION`).
fn faulted(status: std::process::ExitStatus) -> bool {
    #[cfg(unix)]
    return status.signal() == Some(libc::SIGSEGV);
    #[cfg(windows)]
    return status.code().map(|c| c as u32) == Some(0xC000_0005);
}

fn configs() -> Vec<(&'static str, HeapBuilder)> {
    support::heap_configs()
}

#[test]
fn a_gigabyte_span_with_six_bytes_of_code_uses_a_page_or_two() {
    if support::emulated() {
        println!("SKIPPED: under an emulator the resident size is the emulator's too");
        return;
    }
    for (name, builder) in configs() {
        let heap = builder.build().unwrap();
        let start = rss_bytes();
        // Once to warm up this thread's allocator and the heap's own state.
        drop(heap.alloc(GIB).unwrap());
        let before = rss_bytes();
        assert!(
            before.saturating_sub(start) < 8 << 20,
            "{name}: a span left its memory"
        );
        let mut span = heap.alloc(GIB).unwrap();
        assert!(span.capacity() >= GIB, "{name}");
        span.write_all(&code::ret_u32(42)).unwrap();
        let x = span.exec().unwrap();
        // SAFETY: offset 0 holds testkit's code returning 42.
        let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
        assert_eq!(f(), 42, "{name}");
        let grown = rss_bytes().saturating_sub(before);
        let stats = heap.stats();
        println!("{name}: 1 GiB span, 6 bytes written: RSS +{grown} B, {stats:?}");
        // The code's page and the span's buffer, plus the bookkeeping the
        // heap reports (a bit per page of the span: 64 KiB for 1 GiB).
        let allowed = 3 * 4096 + stats.metadata_bytes;
        assert!(
            grown <= allowed,
            "{name}: RSS grew by {grown} > {allowed} bytes"
        );
        assert_eq!(stats.pages_committed, 1, "{name}");
        drop(x);
        // A span larger than the largest region has a region of its own,
        // given back when it is freed.
        let stats = heap.stats();
        assert_eq!(
            (stats.regions, stats.bytes_reserved),
            (0, 0),
            "{name}: {stats:?}"
        );
    }
}

#[test]
fn an_untouched_page_of_a_huge_span_is_not_reachable_as_code() {
    let name = "an_untouched_page_of_a_huge_span_is_not_reachable_as_code";
    const VAR: &str = "WXTHUNK_TEST_JUMP";
    if let Ok(which) = std::env::var(VAR) {
        // In the child: jump into the middle of the span, far from the
        // written code. It must fault, not run zeros or stale bytes.
        let (_, builder) = configs().into_iter().find(|(n, _)| *n == which).unwrap();
        let heap = builder.build().unwrap();
        let mut span = heap.alloc(GIB).unwrap();
        span.write_all(&code::ret_u32(1)).unwrap();
        let x = span.exec().unwrap();
        let far = x.as_ptr() as usize + GIB / 2;
        // SAFETY: deliberately not sound: the test expects the call to fault
        // (the page is inaccessible), ending this child with SIGSEGV.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(far) };
        println!("RAN {}", f());
        return;
    }
    for (which, _) in configs() {
        let out = support::self_command()
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(VAR, which)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(faulted(out.status), "{which}: {:?}\n{stdout}", out.status);
        assert!(!stdout.contains("RAN"), "{which}: {stdout}");
    }
}

#[test]
fn the_default_reservation_limit_is_a_clear_error() {
    assert_eq!(HeapBuilder::DEFAULT_MAX_RESERVED, 4 * GIB);
    for (name, builder) in configs() {
        let heap = builder.build().unwrap();
        match heap.alloc(5 * GIB) {
            Err(e @ Error::HeapExhausted { limit, .. }) => {
                assert_eq!(limit, 4 * GIB, "{name}");
                println!("{name}: {e}");
            }
            other => panic!("{name}: {other:?}"),
        }
        // The heap is intact and the limit can be raised.
        let keep = heap.alloc(16).unwrap();
        drop(keep);
        let big = Heap::builder()
            .strategy(heap.strategy())
            .max_reserved(8 * GIB)
            .build()
            .unwrap();
        let span = big.alloc(5 * GIB).unwrap();
        assert!(span.capacity() >= 5 * GIB);
    }
}

/// How many mappings (runs of pages, on Windows) the process has.
fn mappings() -> usize {
    support::maps::read().len()
}

#[test]
fn freeing_every_other_protect_page_keeps_the_mapping_count_bounded() {
    if !wxthunk::probe().allows(Strategy::Protect) {
        println!("SKIPPED: mprotect to exec is refused here");
        return;
    }
    // One page per allocation; free every other one. Page-by-page protection
    // changes would split the region into one mapping per page, up to the
    // kernel's vm.max_map_count, after which freeing failed silently.
    const N: usize = 20_000;
    let heap = Heap::builder().strategy(Strategy::Protect).build().unwrap();
    let before = mappings();
    let mut spans: Vec<_> = (0..N)
        .map(|i| {
            let mut s = heap.alloc(6).unwrap();
            s.write_all(&code::ret_u32(i as u32)).unwrap();
            s.exec().unwrap()
        })
        .collect();
    let freed: Vec<usize> = (0..N)
        .step_by(2)
        .map(|i| spans[i].as_ptr() as usize)
        .collect();
    let mut i = 0;
    spans.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let grown = mappings().saturating_sub(before);
    println!("{N} protect spans, every other freed: {grown} more mappings");
    assert!(
        grown < 200,
        "{grown} mappings for {} regions",
        heap.stats().regions
    );
    // Freed code is traps, not the old code.
    for &addr in freed.iter().step_by(997) {
        // SAFETY: the page is still mapped read+exec (readable) by the heap.
        let first = unsafe { std::ptr::read_volatile(addr as *const u8) };
        assert!(code::is_traps(&[first], addr), "freed code at {addr:#x}");
    }
    for (k, s) in spans.iter().enumerate() {
        // SAFETY: every kept span holds `mov eax, v; ret`.
        let f: extern "C" fn() -> u32 = unsafe { s.func(0).unwrap() };
        assert_eq!(f(), (2 * k + 1) as u32);
    }
    // Compaction gives the free pages' memory back, splitting nothing.
    let released = heap.compact();
    assert!(released >= N / 2 * wxthunk::page_size() / 2, "{released}");
    let grown = mappings().saturating_sub(before);
    assert!(grown < 200, "{grown} mappings after compact");
}

#[cfg(target_os = "linux")]
/// What `/proc/self/maps` says of the mapping holding `addr` and of the
/// pages on either side of it: (the mapping, the permissions around it).
fn page_and_neighbours(
    maps: &[support::maps::Mapping],
    addr: usize,
) -> (&support::maps::Mapping, [&str; 2]) {
    let at = |a: usize| maps.iter().find(|m| m.contains(a)).expect("mapped");
    let page = at(addr);
    (page, [&at(page.start - 1).perms, &at(page.end).perms])
}

#[cfg(target_os = "linux")]
/// A kind's part of a trampoline table: 16 KiB on x86_64, 64 KiB on
/// AArch64 (whole pages on its 4, 16 and 64 KiB kernels).
const TABLE_UNIT: usize = if cfg!(target_arch = "aarch64") {
    65536
} else {
    16384
};

// Linux maps the table again from the image file; Windows has it in the
// image once (tests/windows.rs).
#[cfg(target_os = "linux")]
#[test]
fn static_trampoline_tables_map_only_the_pages_of_kinds_in_use() {
    if !wxthunk::probe().allows(Strategy::StaticTrampolines) {
        println!("SKIPPED: static trampolines do not work here");
        return;
    }
    type F1 = unsafe extern "C" fn(u64) -> u64;
    type F6 = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64;
    let exe = std::env::current_exe().unwrap();
    let heap = Heap::builder()
        .strategy(Strategy::StaticTrampolines)
        .build()
        .unwrap();
    // Three x86_64 tables' worth of thunks whose context goes to rsi (x1 on
    // AArch64): in each table one kind's code, the binary's own, next to no
    // other code.
    let ones: Vec<_> = (0..300u64)
        .map(|v| heap.thunk::<F1, _>(move |a| a + v).unwrap())
        .collect();
    let check = |addr: usize, maps: &[support::maps::Mapping]| {
        let (page, around) = page_and_neighbours(maps, addr);
        assert_eq!(page.perms, "r-xp", "{page:?}");
        assert_eq!(
            page.end - page.start,
            TABLE_UNIT,
            "one kind's part of the table: {page:?}"
        );
        assert_eq!(std::path::Path::new(&page.name), exe, "{page:?}");
        // Below, an unused kind's page; above, another or the records
        // (the page of the rsi kind is the last of the code).
        assert_eq!(around[0], "---p", "{page:?}");
        assert!(
            ["---p", "rw-p"].contains(&around[1]),
            "{page:?} {around:?} {maps:#?}"
        );
    };
    let maps = support::maps::read();
    for t in &ones {
        check(t.as_fn() as usize, &maps);
    }
    // Free every other slot, then make thunks whose context goes to xmm0
    // (x6 on AArch64):
    // they reuse those slots, and their tables map the page of that kind
    // besides.
    let ones: Vec<_> = ones.into_iter().step_by(2).collect();
    let sixes: Vec<_> = (0..150u64)
        .map(|v| {
            heap.thunk::<F6, _>(move |a, b, c, d, e, f| v + a + b + c + d + e + f)
                .unwrap()
        })
        .collect();
    let maps = support::maps::read();
    for t in &sixes {
        check(t.as_fn() as usize, &maps);
    }
    for t in &ones {
        check(t.as_fn() as usize, &maps);
    }
    for (v, t) in (0..).step_by(2).zip(&ones) {
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(1) }, v + 1);
    }
    for (v, t) in (0..).zip(&sixes) {
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (t.as_fn())(1, 2, 3, 4, 5, 6) }, v + 21);
    }
    let tables = heap.stats().trampoline_tables;
    assert!(tables <= 4, "{tables} tables for 300 live thunks");
}
