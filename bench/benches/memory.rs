//! Memory per live thunk at 10^6 live thunks: resident memory (`VmRSS`),
//! mapped address space (`VmSize`) added per thunk, and the mappings
//! (`/proc/self/maps` lines, against the kernel's `vm.max_map_count`) added
//! per 1,000 thunks, for wxthunk (each
//! strategy) and the peers, each measured in a fresh child process. The
//! figures include everything the library allocates per thunk (the boxed
//! closure, the code or record, the allocator's bookkeeping) but not the
//! handle itself, which lives wherever the user keeps it (its size is
//! printed apart).
//!
//! Run: `cargo bench -p wxthunk-bench --bench memory`
// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::Command;

use closure_ffi::BareFn;
use libffi::high::Closure1;
use wxthunk::{Heap, Strategy};

const N: usize = 1_000_000;
const PEER_VAR: &str = "WXTHUNK_MEMORY_PEER";
const PEERS: &[&str] = &[
    "wxthunk dual-map",
    "wxthunk static-trampolines",
    "wxthunk protect",
    "closure-ffi 4.1.0",
    "libffi 5 closure",
];

type F1 = unsafe extern "C" fn(u64) -> u64;

fn status_kib(key: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn measure<T>(mut make: impl FnMut(u64) -> T) -> (f64, f64, f64) {
    let mut keep: Vec<T> = Vec::with_capacity(N);
    // Touch the vector's pages first, so that the handles themselves (which
    // live wherever the user keeps them) count in "before".
    // (Not zeros: the compiler may turn an allocation followed by zeroing
    // into `calloc`, which touches nothing.)
    // SAFETY: writing bytes into the vector's spare capacity; no `T` is
    // created from them (the length stays 0).
    unsafe { std::ptr::write_bytes(keep.as_mut_ptr(), 0xa5, N) };
    black_box(keep.as_ptr());
    let (rss, size, maps) = (status_kib("VmRSS:"), status_kib("VmSize:"), mappings());
    for i in 0..N {
        keep.push(make(i as u64));
    }
    black_box(&keep);
    let per = |after: usize, before: usize| (after as f64 - before as f64) * 1024.0 / N as f64;
    (
        per(status_kib("VmRSS:"), rss),
        per(status_kib("VmSize:"), size),
        (mappings() as f64 - maps as f64) * 1000.0 / N as f64,
    )
}

fn child(peer: &str) {
    let handle = match peer {
        "closure-ffi 4.1.0" => size_of::<BareFn<'static, F1>>(),
        "libffi 5 closure" => size_of::<Closure1<'static, u64, u64>>(),
        _ => size_of::<wxthunk::Thunk<'static, F1>>(),
    };
    let (rss, size, maps) = match peer {
        "wxthunk dual-map" | "wxthunk static-trampolines" | "wxthunk protect" => {
            let s: Strategy = peer["wxthunk ".len()..].parse().unwrap();
            let Ok(heap) = Heap::builder().strategy(s).build() else {
                println!("{peer}: not available here");
                return;
            };
            measure(|i| heap.thunk::<F1, _>(move |x: u64| x + i).unwrap())
        }
        "closure-ffi 4.1.0" => measure(|i| BareFn::new_c(move |x: u64| x + i)),
        "libffi 5 closure" => {
            // libffi closures borrow their Rust closure: those live in a
            // vector made before the measurement (8 bytes each, not
            // counted).
            let closures: Vec<_> = (0..N as u64).map(|i| move |x: u64| x + i).collect();
            measure(|i| Closure1::new(&closures[i as usize]))
        }
        other => panic!("unknown peer {other}"),
    };
    println!("RESULT|{peer}|{rss:.1}|{size:.1}|{maps:.1}|{handle}");
}

fn main() {
    if let Ok(peer) = std::env::var(PEER_VAR) {
        child(&peer);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!("memory per live thunk at {N} live thunks (each in a fresh process)");
    println!(
        "| implementation | resident bytes per thunk | mapped bytes per thunk | mappings per \
         1,000 thunks | handle bytes |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for peer in PEERS {
        let out = Command::new(&exe).env(PEER_VAR, peer).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("RESULT|")) {
            Some(r) => {
                let f: Vec<&str> = r.split('|').collect();
                println!("| {} | {} | {} | {} | {} |", f[0], f[1], f[2], f[3], f[4]);
            }
            None => println!(
                "| {peer} | not measured: {} {} |",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}
