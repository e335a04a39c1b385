//! The thunk half of the demo: C functions without a user-data argument
//! calling capturing Rust closures.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use wxthunk::Thunk;

type Cmp = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;
type Visit = unsafe extern "C" fn(*const c_char, *const c_void, c_int, *mut c_void) -> c_int;

unsafe extern "C" {
    fn qsort(base: *mut c_void, n: usize, size: usize, cmp: Cmp);
    fn nftw(dir: *const c_char, visit: Visit, fds: c_int, flags: c_int) -> c_int;
}

/// `FTW_PHYS` and `FTW_F` from glibc's `<ftw.h>`.
const FTW_PHYS: c_int = 1;
const FTW_F: c_int = 0;

pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("demo: thunks (closures as bare extern \"C\" fn pointers)");
    if let Err(e) = sort() {
        println!("  qsort skipped: {}", crate::causes(&e));
    }
    walk()
}

/// qsort with a capturing comparator.
fn sort() -> Result<(), wxthunk::Error> {
    // qsort: sort by distance from a pivot the comparator captures.
    let pivot = 50;
    let mut calls = 0usize;
    let mut v: Vec<i32> = (0..12).map(|i| (i * 37) % 101).collect();
    {
        let by_distance = Thunk::<Cmp>::new_mut(|a: *const c_void, b: *const c_void| {
            calls += 1;
            // SAFETY: qsort passes pointers to elements of `v`.
            let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
            ((a - pivot).abs(), a).cmp(&((b - pivot).abs(), b)) as c_int
        })?;
        println!(
            "  qsort comparator thunk at {:p} ({} bytes of code: {})",
            by_distance.as_fn() as *const (),
            by_distance.code().len(),
            if by_distance.builds_frame() {
                "builds a frame"
            } else {
                "places the context, jumps"
            }
        );
        // SAFETY: the thunk lives across the call; the sizes describe `v`.
        unsafe {
            qsort(
                v.as_mut_ptr().cast(),
                v.len(),
                size_of::<i32>(),
                by_distance.as_fn(),
            )
        };
    }
    println!("    sorted by distance from {pivot}: {v:?} ({calls} comparisons)");
    Ok(())
}

/// nftw collecting paths into a Vec; only a failure to make the files it
/// walks is an error of the tool.
fn walk() -> Result<(), Box<dyn std::error::Error>> {
    // nftw: collect the files under a directory into a Vec. The directory
    // is made exclusively (a random name, mode 0700, never one that
    // exists), and each file in it is new (`create_new`: O_EXCL, which
    // follows no link), so nothing planted in the shared temporary
    // directory is written through.
    let tmp = tempfile::Builder::new().prefix("wxthunk-demo-").tempdir()?;
    let root = tmp.path().to_owned();
    // (Names unlike this repository's, so the walk is not mistaken for
    // one of the checkout.)
    for dir in ["photos", "photos/2026"] {
        std::fs::create_dir(root.join(dir))?;
    }
    for f in ["photos/2026/beach.jpg", "photos/cat.png", "notes.txt"] {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(root.join(f))?
            .write_all(f.as_bytes())?;
    }
    let mut files = Vec::new();
    let rc = (|| {
        let visit = Thunk::<Visit>::new_mut(
            |path: *const c_char, _: *const c_void, kind: c_int, _: *mut c_void| {
                if kind == FTW_F {
                    // SAFETY: nftw passes a NUL-terminated path.
                    files.push(
                        unsafe { CStr::from_ptr(path) }
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
                0
            },
        )?;
        let dir = CString::new(root.as_os_str().as_bytes()).expect("a temporary path has no NUL");
        // SAFETY: the thunk lives across the walk.
        Ok::<_, wxthunk::Error>(unsafe { nftw(dir.as_ptr(), visit.as_fn(), 8, FTW_PHYS) })
    })();
    tmp.close()?;
    let rc = match rc {
        Ok(rc) => rc,
        Err(e) => {
            println!("  nftw skipped: {}", crate::causes(&e));
            return Ok(());
        }
    };
    files.sort();
    println!(
        "  nftw walk of {} (returned {rc}) collected {} files into a Vec:",
        root.display(),
        files.len()
    );
    for f in &files {
        println!("    {f}");
    }
    Ok(())
}
