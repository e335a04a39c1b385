//! `nftw` walks a directory and calls back for every entry, with no
//! user-data argument; the thunk's closure collects the files into a `Vec`.
//!
//! `cargo run --example nftw_collect [DIR]` (the current directory by
//! default)

#[cfg(unix)]
mod posix {

    use std::ffi::{CStr, CString, c_char, c_int, c_void};
    use std::os::unix::ffi::OsStrExt;

    use wxthunk::Thunk;

    type Visit = unsafe extern "C" fn(*const c_char, *const c_void, c_int, *mut c_void) -> c_int;

    const FTW_F: c_int = 0; // a regular file
    const FTW_PHYS: c_int = 1; // do not follow symbolic links

    unsafe extern "C" {
        fn nftw(dir: *const c_char, visit: Visit, fds: c_int, flags: c_int) -> c_int;
    }

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::args_os().nth(1).unwrap_or_else(|| ".".into());
        let mut files = Vec::new();
        let visit = Thunk::<Visit>::new_mut(
            |path: *const c_char, _stat: *const c_void, kind: c_int, _ftw: *mut c_void| {
                if kind == FTW_F {
                    // SAFETY: nftw passes a NUL-terminated path.
                    files.push(unsafe { CStr::from_ptr(path) }.to_bytes().len());
                }
                0 // go on
            },
        )?;
        let c_dir = CString::new(dir.as_bytes())?;
        // SAFETY: the thunk lives across the walk.
        let rc = unsafe { nftw(c_dir.as_ptr(), visit.as_fn(), 16, FTW_PHYS) };
        drop(visit);
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let longest = files.iter().max().copied().unwrap_or(0);
        println!(
            "{} files under {}; the longest path is {longest} bytes",
            files.len(),
            dir.to_string_lossy()
        );
        Ok(())
    }
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    posix::main()
}

#[cfg(not(unix))]
fn main() {
    println!(
        "SKIPPED: nftw is a POSIX function; examples/qsort_with_state.rs has a C caller on every platform"
    );
}
