//! Block lifecycle: map, write 64 bytes, make executable, call, unmap;
//! wxthunk's `Block` (each strategy) side by side with memmap2 and region,
//! and the floor: the three system calls (`mmap`, `mprotect`, `munmap`)
//! made directly.
//!
//! Run: `cargo bench -p wxthunk-bench --bench block`
// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, criterion_group, criterion_main};
use wxthunk::{Block, Strategy};
use wxthunk_testkit::code;

/// `ret`s of this machine: offset 0 is called.
static CODE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| code::rets(64));

fn call(ptr: *const u8) {
    if code::RUNS_HERE {
        // SAFETY: `ptr` is executable and starts with `ret` (where the
        // snippets run).
        let f: extern "C" fn() = unsafe { std::mem::transmute(ptr) };
        f();
    }
}

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("block/new+write 64B+exec+call+drop");
    g.bench_function("floor: mmap+mprotect+munmap (libc)", |b| {
        b.iter(|| {
            // SAFETY: a fresh private mapping, written, sealed, called and
            // unmapped here; nothing else refers to it.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                std::ptr::copy_nonoverlapping(CODE.as_ptr(), p.cast(), CODE.len());
                assert_eq!(
                    libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC),
                    0
                );
                call(p.cast());
                libc::munmap(p, 4096);
            }
        })
    });
    for s in [Strategy::Protect, Strategy::DualMap, Strategy::DualMapFile] {
        if Block::with_strategy(0, s).is_err() {
            continue;
        }
        g.bench_function(format!("wxthunk Block ({s})"), |b| {
            b.iter(|| {
                let mut blk = Block::with_strategy(64, s).unwrap();
                blk.write_all(black_box(&CODE)).unwrap();
                let x = blk.exec().unwrap();
                call(x.as_ptr());
            })
        });
        let code = s.code().expect("a strategy for written code");
        g.bench_function(format!("wxthunk Block::in_place ({s})"), |b| {
            b.iter(|| {
                let mut blk = Block::in_place_with_code_strategy(64, code).unwrap();
                blk.write_all(black_box(&CODE)).unwrap();
                let x = blk.exec().unwrap();
                call(x.as_ptr());
            })
        });
    }
    g.bench_function("memmap2 0.9 (map_anon, make_exec)", |b| {
        b.iter(|| {
            let mut m = memmap2::MmapMut::map_anon(64).unwrap();
            m[..64].copy_from_slice(black_box(&CODE));
            let x = m.make_exec().unwrap();
            call(x.as_ptr());
        })
    });
    g.bench_function("region 3 (alloc, protect)", |b| {
        b.iter(|| {
            let mut a = region::alloc(64, region::Protection::READ_WRITE).unwrap();
            let p = a.as_mut_ptr::<u8>();
            // SAFETY: `a` is a fresh read-write allocation of at least 64
            // bytes; it is sealed before the call and freed on drop.
            unsafe {
                std::ptr::copy_nonoverlapping(black_box(CODE.as_ptr()), p, CODE.len());
                region::protect(p, 64, region::Protection::READ_EXECUTE).unwrap();
            }
            call(p);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = wxthunk_bench::config();
    targets = lifecycle
}
criterion_main!(benches);
