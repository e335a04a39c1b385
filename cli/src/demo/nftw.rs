//! `nftw` collecting the paths it visits into a `Vec`.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use wxthunk::Thunk;

type Visit = unsafe extern "C" fn(*const c_char, *const c_void, c_int, *mut c_void) -> c_int;

unsafe extern "C" {
    fn nftw(dir: *const c_char, visit: Visit, fds: c_int, flags: c_int) -> c_int;
}

/// `FTW_PHYS` and `FTW_F` from glibc's `<ftw.h>`.
const FTW_PHYS: c_int = 1;
const FTW_F: c_int = 0;

/// nftw collecting paths into a Vec; only a failure to make the files it
/// walks is an error of the tool.
pub fn run() -> Result<(), Box<dyn std::error::Error>> {
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
