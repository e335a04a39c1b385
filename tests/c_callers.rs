//! Thunks called by real C code that has no user-data argument: libc's
//! `qsort`, `bsearch`, `nftw`, `scandir`, `sigaction` and `pthread_create`.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use wxthunk_testkit as support;

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use wxthunk::Thunk;

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

use support::thunk_heaps as heaps;

support::rerun_file_with_static_trampolines!();

#[test]
fn qsort_and_bsearch_with_capturing_comparators() {
    for (name, heap) in heaps() {
        // Sort by distance from a captured pivot.
        let pivot = 50i32;
        let calls = AtomicUsize::new(0);
        let by_distance = heap
            .thunk::<Cmp, _>(|a: *const c_void, b: *const c_void| {
                calls.fetch_add(1, Ordering::Relaxed);
                // SAFETY: qsort passes pointers to i32 elements.
                let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
                ((a - pivot).abs(), a).cmp(&((b - pivot).abs(), b)) as c_int
            })
            .unwrap();
        let mut v: Vec<i32> = (0..100).map(|i| (i * 37) % 101).collect();
        // SAFETY: the comparator lives across the call and matches qsort's
        // element type.
        unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(by_distance.as_fn())) };
        let mut expected = v.clone();
        expected.sort_by_key(|&x| ((x - pivot).abs(), x));
        assert_eq!(v, expected, "{name}");
        assert!(calls.load(Ordering::Relaxed) > 100);

        // bsearch in a plainly sorted array, with a captured offset.
        let sorted: Vec<i32> = (0..1000).map(|i| i * 3).collect();
        let offset = 7;
        let cmp = heap
            .thunk::<Cmp, _>(move |key: *const c_void, elem: *const c_void| {
                // SAFETY: bsearch passes the key and an element, both i32.
                let (k, e) = unsafe { (*(key as *const i32) - offset, *(elem as *const i32)) };
                k.cmp(&e) as c_int
            })
            .unwrap();
        let search = |key: i32| {
            // SAFETY: the comparator lives across the call and matches the
            // element type; the key is an i32 like the elements.
            unsafe {
                libc::bsearch(
                    (&key as *const i32).cast(),
                    sorted.as_ptr().cast(),
                    sorted.len(),
                    4,
                    Some(cmp.as_fn()),
                )
            }
        };
        for want in [0, 300, 2997] {
            let found = search(want + offset);
            assert!(!found.is_null(), "{name}: {want} not found");
            // SAFETY: bsearch returned a pointer into `sorted`.
            assert_eq!(unsafe { *(found as *const i32) }, want);
        }
        let missing = search(1 + offset);
        assert!(missing.is_null());
    }
}

/// `struct FTW` from `<ftw.h>`.
#[repr(C)]
struct Ftw {
    base: c_int,
    level: c_int,
}
const FTW_F: c_int = 0;
const FTW_D: c_int = 1;
const FTW_PHYS: c_int = 1;

type NftwFn = unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int;
type Compar = unsafe extern "C" fn(*mut *const libc::dirent, *mut *const libc::dirent) -> c_int;

// glibc functions the `libc` crate does not bind.
unsafe extern "C" {
    fn nftw(dir: *const c_char, f: NftwFn, fds: c_int, flags: c_int) -> c_int;
    fn scandir(
        dir: *const c_char,
        list: *mut *mut *mut libc::dirent,
        filter: Option<ScandirFilter>,
        compar: Option<Compar>,
    ) -> c_int;
    fn alphasort(a: *mut *const libc::dirent, b: *mut *const libc::dirent) -> c_int;
}

#[test]
fn nftw_walk_collects_paths_into_a_vec() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    for f in ["x.txt", "a/y.txt", "a/b/z.txt"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let root = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    for (name, heap) in heaps() {
        let mut found: Vec<(String, c_int)> = Vec::new();
        {
            // nftw has no user-data argument: the FnMut thunk captures the Vec.
            let visit = heap
                .thunk_mut::<NftwFn, _>(
                    |path: *const c_char, _sb: *const libc::stat, kind: c_int, _ftw: *mut Ftw| {
                        // SAFETY: nftw passes a NUL-terminated path.
                        let path = unsafe { CStr::from_ptr(path) }
                            .to_string_lossy()
                            .into_owned();
                        found.push((path, kind));
                        0
                    },
                )
                .unwrap();
            // SAFETY: the thunk lives across the walk; the flags are valid.
            let rc = unsafe { nftw(root.as_ptr(), visit.as_fn(), 8, FTW_PHYS) };
            assert_eq!(rc, 0, "{name}");
        }
        let mut files: Vec<String> = found
            .iter()
            .filter(|(_, k)| *k == FTW_F)
            .map(|(p, _)| p.strip_prefix(dir.to_str().unwrap()).unwrap().to_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["/a/b/z.txt", "/a/y.txt", "/x.txt"], "{name}");
        assert_eq!(
            found.iter().filter(|(_, k)| *k == FTW_D).count(),
            3,
            "{name}"
        );
    }
    tmp.close().unwrap();
}

type ScandirFilter = unsafe extern "C" fn(*const libc::dirent) -> c_int;

#[test]
fn scandir_with_a_capturing_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for f in ["keep-1", "keep-2", "drop-1", "keep-3", "other"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let prefix = String::from("keep-");
    let seen = AtomicUsize::new(0);
    let filter = Thunk::<ScandirFilter>::new(|entry: *const libc::dirent| {
        seen.fetch_add(1, Ordering::Relaxed);
        // SAFETY: scandir passes a valid entry with a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        name.to_bytes().starts_with(prefix.as_bytes()) as c_int
    })
    .unwrap();
    let mut list: *mut *mut libc::dirent = std::ptr::null_mut();
    // SAFETY: the filter lives across the call; `alphasort` is libc's.
    let n = unsafe {
        scandir(
            path.as_ptr(),
            &mut list,
            Some(filter.as_fn()),
            Some(alphasort),
        )
    };
    assert_eq!(n, 3);
    let mut names = Vec::new();
    for i in 0..n as usize {
        // SAFETY: scandir returned `n` malloc'd entries; each is freed once.
        unsafe {
            let e = *list.add(i);
            names.push(
                CStr::from_ptr((*e).d_name.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
            );
            libc::free(e.cast());
        }
    }
    // SAFETY: the array itself was malloc'd by scandir.
    unsafe { libc::free(list.cast()) };
    assert_eq!(names, ["keep-1", "keep-2", "keep-3"]);
    assert!(seen.load(Ordering::Relaxed) >= 5);
    tmp.close().unwrap();
}

#[test]
fn a_sigaction_handler_thunk_counts_signals() {
    // In a child process: signal dispositions are process-wide.
    let Some(out) = support::in_child("a_sigaction_handler_thunk_counts_signals", || {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let weight = 3; // captured: each signal counts 3
        let handler = Thunk::<unsafe extern "C" fn(c_int)>::new(move |sig: c_int| {
            if sig == libc::SIGUSR1 {
                COUNT.fetch_add(weight, Ordering::SeqCst);
            }
        })
        .unwrap();
        // SAFETY: a zeroed sigaction is valid; the handler lives until the
        // disposition is restored below.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler.as_fn() as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
            for _ in 0..10 {
                libc::raise(libc::SIGUSR1);
            }
            libc::signal(libc::SIGUSR1, libc::SIG_DFL);
        }
        println!("SIGNALS={}", COUNT.load(Ordering::SeqCst));
    }) else {
        return;
    };
    assert!(out.contains("SIGNALS=30"), "{out}");
}

/// `as_exact_fn` gives exactly `F`: a safe `extern "C" fn` that
/// `pthread_create` takes as it is, on every heap.
#[test]
fn as_exact_fn_passes_a_safe_fn_pointer_to_pthread_create() {
    type Start = extern "C" fn(*mut c_void) -> *mut c_void;
    for (name, heap) in heaps() {
        let started = AtomicUsize::new(0);
        let start = heap
            .thunk::<Start, _>(|arg: *mut c_void| {
                started.fetch_add(arg as usize, Ordering::Relaxed);
                arg
            })
            .unwrap();
        // SAFETY: every thread that calls it is joined below, while `start`
        // is alive.
        let f: Start = unsafe { start.as_exact_fn() };
        let threads: Vec<libc::pthread_t> = (1..=4usize)
            .map(|k| {
                let mut t: libc::pthread_t = 0;
                // SAFETY: `t` is a valid place for the id; default attributes.
                let rc = unsafe { libc::pthread_create(&mut t, std::ptr::null(), f, k as *mut _) };
                assert_eq!(rc, 0, "{name}");
                t
            })
            .collect();
        for t in threads {
            let mut ret = std::ptr::null_mut();
            // SAFETY: joining a thread made above.
            assert_eq!(unsafe { libc::pthread_join(t, &mut ret) }, 0);
            assert!(!ret.is_null());
        }
        assert_eq!(started.load(Ordering::Relaxed), 10, "{name}");
    }
}
