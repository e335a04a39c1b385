//! Signatures with reference arguments (`&T`, `&mut T`: higher-ranked fn
//! types): `extern "C"` ones with references in the first two of up to
//! four arguments as written, every other shape through `ref_thunk!`;
//! thunks of every closure kind, on every heap, called by C (`qsort`,
//! `bsearch`, `nftw`) and through their own pointer types.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::ffi::c_void;

use wxthunk_testkit as support;

use wxthunk::Thunk;

type Cmp = unsafe extern "C" fn(&i32, &i32) -> i32;
type Bump = unsafe extern "C" fn(&mut u64, u64) -> u64;
type Second = unsafe extern "C" fn(u64, &u64) -> u64;
type Four = unsafe extern "C" fn(&mut [u8; 4], &u32, u8, u16) -> u32;
type One = extern "C" fn(&u64) -> u64;
/// Another ABI than "C": Windows x64's where Rust can call it (x86_64), the
/// unwinding C ABI elsewhere.
#[cfg(target_arch = "x86_64")]
type Win = unsafe extern "win64" fn(&u64, &mut u64) -> u64;
#[cfg(not(target_arch = "x86_64"))]
type Win = unsafe extern "C-unwind" fn(&u64, &mut u64) -> u64;

/// The C comparator type: the same ABI, with `*const c_void` arguments.
type CCmp = unsafe extern "C" fn(*const c_void, *const c_void) -> i32;

#[test]
fn qsort_and_bsearch_call_a_comparator_taking_references() {
    for (config, builder) in support::thunk_heap_configs() {
        let heap = builder.build().unwrap();
        let pivot = std::hint::black_box(50);
        // Sorts by distance from `pivot`, then by value.
        let by_distance = heap
            .thunk::<Cmp, _>(move |a: &i32, b: &i32| {
                ((a - pivot).abs(), *a).cmp(&((b - pivot).abs(), *b)) as i32
            })
            .unwrap();
        // SAFETY: the same ABI and argument registers; qsort passes
        // pointers to live `i32` elements, which are valid `&i32`s.
        let compar: CCmp = unsafe { std::mem::transmute::<Cmp, CCmp>(by_distance.as_fn()) };
        let mut v: Vec<i32> = (0..100).rev().collect();
        // SAFETY: `v` holds `v.len()` elements of 4 bytes.
        unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(compar)) };
        let mut expected: Vec<i32> = (0..100).collect();
        expected.sort_by_key(|&x| ((x - pivot).abs(), x));
        assert_eq!(v, expected, "{config}");
        let key = 47;
        // SAFETY: as for qsort; `v` is sorted by the same comparator.
        let found = unsafe {
            libc::bsearch(
                std::ptr::from_ref(&key).cast(),
                v.as_ptr().cast(),
                v.len(),
                4,
                Some(compar),
            )
        };
        assert!(!found.is_null(), "{config}");
        // SAFETY: bsearch returns a pointer into `v`.
        assert_eq!(unsafe { *found.cast::<i32>() }, 47, "{config}");
    }
}

#[test]
fn every_closure_kind_takes_references() {
    for (config, builder) in support::thunk_heap_configs() {
        let heap = builder.build().unwrap();
        let k = std::hint::black_box(3u64);

        let bump = heap
            .thunk::<Bump, _>(move |x: &mut u64, by: u64| {
                *x += by * k;
                *x
            })
            .unwrap();
        let mut x = 1;
        // SAFETY: the thunk is alive.
        assert_eq!(unsafe { (bump.as_fn())(&mut x, 2) }, 7, "{config}");
        assert_eq!(x, 7);

        let second = heap
            .thunk::<Second, _>(move |a: u64, b: &u64| a * *b + k)
            .unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { (second.as_fn())(6, &7) }, 45, "{config}");

        let mut calls = 0u32;
        let four = heap
            .thunk_mut::<Four, _>(move |bytes: &mut [u8; 4], add: &u32, shift: u8, or: u16| {
                calls += 1;
                let v = (u32::from_le_bytes(*bytes) + *add) << shift | u32::from(or);
                *bytes = v.to_le_bytes();
                v + calls
            })
            .unwrap();
        let mut bytes = [1, 0, 0, 0];
        // SAFETY: as above.
        let first = unsafe { (four.as_fn())(&mut bytes, &1, 4, 1) };
        assert_eq!(first, 0x21 + 1, "{config}");
        assert_eq!(bytes, [0x21, 0, 0, 0]);
        // SAFETY: as above.
        let again = unsafe { (four.as_fn())(&mut bytes, &0, 0, 0) };
        assert_eq!(again, 0x21 + 2, "{config}");

        let owned = String::from("four");
        let once = heap
            .thunk_once::<One, _>(move |x: &u64| *x + owned.len() as u64)
            .unwrap();
        // SAFETY: as above; called once.
        assert_eq!(unsafe { (once.as_fn())(&10) }, 14, "{config}");
        // The safe form of `One` is exactly `One` from `as_exact_fn`.
        let safe = heap.thunk::<One, _>(move |x: &u64| *x * k).unwrap();
        // SAFETY: the thunk outlives every call through `f`.
        let f: One = unsafe { safe.as_exact_fn() };
        assert_eq!(f(&5), 15, "{config}");

        // Other ABIs take references through `ref_thunk!`.
        #[cfg(target_arch = "x86_64")]
        let win = wxthunk::ref_thunk!(in &heap,
            unsafe extern "win64" fn(a: &u64, out: &mut u64) -> u64 => {
                *out = *a + k;
                *out * 2
            }
        )
        .unwrap();
        #[cfg(not(target_arch = "x86_64"))]
        let win = wxthunk::ref_thunk!(in &heap,
            unsafe extern "C-unwind" fn(a: &u64, out: &mut u64) -> u64 => {
                *out = *a + k;
                *out * 2
            }
        )
        .unwrap();
        let win: Win = win.as_fn();
        let mut out = 0;
        // SAFETY: as above (Rust calls win64 code on Linux too).
        assert_eq!(unsafe { win(&4, &mut out) }, 14, "{config}");
        assert_eq!(out, 7);
    }
}

/// A zero-sized closure taking a reference is a compiled function too.
#[test]
fn a_capture_free_closure_taking_a_reference_is_compiled() {
    let t = Thunk::<One>::new(|x: &u64| *x + 1).unwrap();
    assert!(t.code().is_empty());
    // SAFETY: the thunk is alive.
    assert_eq!(unsafe { (t.as_fn())(&41) }, 42);
}

/// `struct FTW` from `<ftw.h>`.
#[repr(C)]
struct Ftw {
    base: libc::c_int,
    level: libc::c_int,
}
const FTW_F: libc::c_int = 0;
const FTW_PHYS: libc::c_int = 1;

type CVisit = unsafe extern "C" fn(
    *const libc::c_char,
    *const libc::stat,
    libc::c_int,
    *mut Ftw,
) -> libc::c_int;

// glibc's `nftw`, which the `libc` crate does not bind.
unsafe extern "C" {
    fn nftw(
        dir: *const libc::c_char,
        f: CVisit,
        fds: libc::c_int,
        flags: libc::c_int,
    ) -> libc::c_int;
}

/// `ref_thunk!`: references in any position, here through `nftw`, which
/// passes `&stat` second and `&mut FTW` fourth (a shape the traits do not
/// cover: a reference in the fourth position).
#[test]
fn nftw_calls_a_ref_thunk() {
    type Visit = unsafe extern "C" fn(
        *const libc::c_char,
        &libc::stat,
        libc::c_int,
        &mut Ftw,
    ) -> libc::c_int;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a"), b"12345").unwrap();
    std::fs::write(dir.join("sub/b"), b"123").unwrap();
    for (config, builder) in support::thunk_heap_configs() {
        let heap = builder.build().unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let files = &seen;
        let visit = wxthunk::ref_thunk!(in &heap,
            unsafe extern "C" fn(
                _path: *const libc::c_char,
                sb: &libc::stat,
                flag: libc::c_int,
                ftw: &mut Ftw,
            ) -> libc::c_int => {
                if flag == FTW_F {
                    files.lock().unwrap().push((sb.st_size, ftw.level));
                }
                0
            }
        )
        .unwrap();
        let f: Visit = visit.as_fn();
        // SAFETY: the same ABI; nftw passes valid `stat` and `FTW`
        // pointers for the duration of each call.
        let c: CVisit = unsafe { std::mem::transmute::<Visit, CVisit>(f) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path and callback; the thunk outlives the walk.
        assert_eq!(unsafe { nftw(path.as_ptr(), c, 8, FTW_PHYS) }, 0);
        let mut seen = std::mem::take(&mut *seen.lock().unwrap());
        seen.sort();
        assert_eq!(seen, [(3, 2), (5, 1)], "{config}");
    }
    tmp.close().unwrap();
}

/// Sixteen arguments with references among them, on the global heap (all
/// integer-class, so System V passes the context in `xmm0`).
#[test]
fn a_ref_thunk_of_sixteen_arguments() {
    #[rustfmt::skip]
    type Many = unsafe extern "C" fn(
        u64, &u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, &mut u64, u64,
    ) -> u64;
    let k = std::hint::black_box(1u64);
    let t = wxthunk::ref_thunk!(
        unsafe extern "C" fn(
            a: u64, b: &u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64,
            i: u64, j: u64, l: u64, m: u64, n: u64, o: u64, out: &mut u64, p: u64,
        ) -> u64 => {
            *out = a + *b + c + d + e + f + g + h + i + j + l + m + n + o + p + k;
            *out * 2
        }
    )
    .unwrap();
    assert!(!t.thunk().builds_frame());
    let f: Many = t.as_fn();
    let mut out = 0;
    // SAFETY: the thunk is alive.
    let r = unsafe { f(1, &2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, &mut out, 16) };
    assert_eq!(
        out,
        1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 16 + 1
    );
    assert_eq!(r, out * 2);
}
