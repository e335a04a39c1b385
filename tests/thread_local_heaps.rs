//! Per-thread heaps are released when their thread ends: nothing is left
//! behind however many threads use them, whatever the order of thread-local
//! destructors. (What a thread leaks on purpose stays: `tests/heap.rs`.)
//! Its own binary, so that the process's file descriptors and memory are
//! this test's.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use wxthunk_testkit as support;

use std::cell::RefCell;
use std::io::Write;

use support::code;
use wxthunk::{Heap, NoLock, Thunk};

type F = unsafe extern "C" fn(u32) -> u32;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn heap_mappings() -> usize {
    support::maps::code_file_mappings().len()
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * wxthunk::page_size()
}

fn use_the_heap(v: u32) {
    let heap = Heap::thread_local().unwrap();
    let t = heap.thunk::<F, _>(move |x: u32| x + v).unwrap();
    // SAFETY: `t` is alive.
    assert_eq!(unsafe { (t.as_fn())(1) }, v + 1);
    let mut s = heap.alloc(6).unwrap();
    s.write_all(&code::ret_u32(v)).unwrap();
    let x = s.exec().unwrap();
    // SAFETY: `x` holds `mov eax, v; ret`.
    let f: extern "C" fn() -> u32 = unsafe { x.func(0).unwrap() };
    assert_eq!(f(), v);
}

thread_local! {
    // Declared, and first touched, before the thread's heap: destroyed
    // after the heap's own slot.
    static HELD: RefCell<Option<Thunk<'static, F, NoLock>>> = const { RefCell::new(None) };
}

#[test]
fn per_thread_heaps_are_released_when_their_threads_end() {
    // Warm up: the process-wide parts (probe, keys, allocator arenas).
    for _ in 0..4 {
        std::thread::spawn(|| use_the_heap(1)).join().unwrap();
    }
    let (fds, maps, rss) = (open_fds(), heap_mappings(), rss_bytes());
    const THREADS: u32 = 2000;
    for i in 0..THREADS {
        std::thread::spawn(move || use_the_heap(i)).join().unwrap();
    }
    // A thread whose thunk is dropped by a thread-local destructor that runs
    // after its heap's slot was torn down.
    for i in 0..100u32 {
        std::thread::spawn(move || {
            HELD.with(|_| {}); // register HELD's destructor first
            let heap = Heap::thread_local().unwrap();
            let t = heap.thunk::<F, _>(move |x: u32| x * i).unwrap();
            HELD.with(|h| *h.borrow_mut() = Some(t));
        })
        .join()
        .unwrap();
    }
    let grown = rss_bytes().saturating_sub(rss);
    println!(
        "{THREADS} + 100 threads: fds {fds} -> {}, heap mappings {maps} -> {}, RSS +{grown} B",
        open_fds(),
        heap_mappings()
    );
    assert_eq!(open_fds(), fds, "memfds left behind");
    assert_eq!(heap_mappings(), maps, "mappings left behind");
    // 13 KB a thread was 26 MB here; allow allocator noise.
    assert!(
        grown < 4 << 20,
        "RSS grew by {grown} bytes over {THREADS} threads"
    );
}
