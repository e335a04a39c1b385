//! Per-thread heaps are released when their thread ends: nothing is left
//! behind however many threads use them, whatever the order of thread-local
//! destructors. (What a thread leaks on purpose stays: `tests/heap.rs`.)
//! Its own binary, so that the process's file descriptors and memory are
//! this test's.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

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
    if support::emulated() {
        // The emulator's own memory (translated code, per-thread state) is
        // in the resident size; what a leak of per-thread heaps or caches
        // grows is the program's allocations: its allocator's bytes in use
        // (small blocks and mmapped ones).
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let m = unsafe { libc::mallinfo2() };
        return m.uordblks + m.hblkhd;
    }
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

/// The tests count the process's descriptors: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn per_thread_heaps_are_released_when_their_threads_end() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up: the process-wide parts (probe, keys, allocator arenas).
    for _ in 0..4 {
        std::thread::spawn(|| use_the_heap(1)).join().unwrap();
    }
    let (fds, maps, rss) = (open_fds(), heap_mappings(), rss_bytes());
    // Fewer under an emulator, where a thread costs ~100 times more; a leak
    // of a heap a thread (13 KB each, as it once was) still shows.
    let threads: u32 = if support::emulated() { 400 } else { 2000 };
    for i in 0..threads {
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
        "{threads} + 100 threads: fds {fds} -> {}, heap mappings {maps} -> {}, RSS +{grown} B",
        open_fds(),
        heap_mappings()
    );
    assert_eq!(open_fds(), fds, "memfds left behind");
    assert_eq!(heap_mappings(), maps, "mappings left behind");
    // 13 KB a thread was 26 MB here; allow allocator noise.
    assert!(
        grown < 4 << 20,
        "RSS grew by {grown} bytes over {threads} threads"
    );
}

/// A C library's per-thread cleanup (a `pthread_key` destructor, which
/// glibc runs after every `thread_local!` destructor) that makes the
/// thread's first thunks: on the global heap (a thread cache made then)
/// and on `Heap::thread_local()` (a heap made then). Both are released at
/// the thread's exit: no cache, descriptor or mapping is left behind
/// (9bc2f4c kept each such cache on the caches' list, +4.4 KB a thread
/// after `compact`, and each such heap, +1 memfd and +4 mappings a
/// thread). In a child process: the counts are the child's alone.
#[test]
fn thunks_first_made_from_a_pthread_key_destructor_leave_nothing_behind() {
    let name = "thunks_first_made_from_a_pthread_key_destructor_leave_nothing_behind";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(out) = support::in_child(name, || {
        key_destructor_threads(false);
        key_destructor_threads(true);
        println!("KEY-DESTRUCTOR-OK");
    }) {
        assert!(out.contains("KEY-DESTRUCTOR-OK"), "{out}");
    }
}

/// Runs 1,000 threads whose key destructor makes a thunk on the global
/// heap, and with `local` also uses `Heap::thread_local()`; checks what is
/// left afterwards.
fn key_destructor_threads(local: bool) {
    unsafe extern "C" fn global_only(value: *mut libc::c_void) {
        let v = std::hint::black_box(value as usize as u32);
        let global = Thunk::<F>::new(move |x: u32| x + v).unwrap();
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (global.as_fn())(1) }, v + 1);
    }
    unsafe extern "C" fn global_and_local(value: *mut libc::c_void) {
        // SAFETY: passed on from the key's destructor.
        unsafe { global_only(value) };
        use_the_heap(value as usize as u32);
    }
    let mut key = 0;
    let cleanup = if local { global_and_local } else { global_only };
    // SAFETY: a valid place for the key; `cleanup` lives forever.
    let created = unsafe { libc::pthread_key_create(&mut key, Some(cleanup)) };
    assert_eq!(created, 0);
    let run = |i: u32| {
        std::thread::spawn(move || {
            let value = (i as usize + 1) as *mut libc::c_void;
            // SAFETY: the key is live; a non-null value runs `cleanup`.
            let set = unsafe { libc::pthread_setspecific(key, value) };
            assert_eq!(set, 0);
        })
        .join()
        .unwrap();
    };
    let global = Heap::global().unwrap();
    for i in 0..8 {
        run(i);
    }
    global.compact();
    let (fds, maps, rss) = (open_fds(), heap_mappings(), rss_bytes());
    // Fewer under an emulator (see above).
    let threads: u32 = if support::emulated() { 250 } else { 1000 };
    for i in 0..threads {
        run(i);
    }
    global.compact();
    let grown = rss_bytes().saturating_sub(rss);
    println!(
        "{threads} threads making thunks from a key destructor (thread-local heap too: {local}): \
         fds {fds} -> {}, heap mappings {maps} -> {}, RSS +{grown} B",
        open_fds(),
        heap_mappings()
    );
    assert_eq!(open_fds(), fds, "per-thread heaps' memfds left behind");
    assert_eq!(
        heap_mappings(),
        maps,
        "per-thread heaps' mappings left behind"
    );
    assert!(
        grown < 2 << 20,
        "RSS grew by {grown} bytes over {threads} threads (caches left on the list?)"
    );
}
