//! [`CodeDir`]: a directory that code files can be made in where `memfd`s
//! are refused, for the file-backed dual mapping. Its files never have a
//! name for long: `O_TMPFILE` makes them without one, and where the
//! filesystem lacks it a file is made under a fresh name and unlinked at
//! once. An unlinked file is freed by the kernel when its last descriptor
//! and mapping go, however the process ends.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The environment variable naming the directory to use; when it is set,
/// no other directory is tried.
const TMPDIR_VAR: &str = "WXTHUNK_TMPDIR";

/// A directory for code files, kept open (`O_PATH`, close-on-exec) so that
/// files are made in it whatever the working directory or a rename of its
/// path later.
#[derive(Debug)]
pub(crate) struct CodeDir {
    dir: OwnedFd,
    /// As the environment or default spelled it: any bytes, not only
    /// UTF-8.
    path: PathBuf,
    /// Why this directory was tried (`WXTHUNK_TMPDIR`, `TMPDIR`, a default).
    chosen_by: &'static str,
    /// Cleared when the filesystem refuses `O_TMPFILE`: later files are
    /// made under a name and unlinked at once.
    tmpfile: AtomicBool,
}

/// [`CodeDir::candidates`] from the environment `var` reads.
fn candidates_from(var: impl Fn(&str) -> Option<OsString>) -> Vec<(PathBuf, &'static str)> {
    if let Some(dir) = var(TMPDIR_VAR) {
        return vec![(PathBuf::from(dir), TMPDIR_VAR)];
    }
    let mut dirs: Vec<(PathBuf, &'static str)> = Vec::new();
    let mut add = |dir: Option<OsString>, why: &'static str| {
        let dir = dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        if let Some(dir) = dir.filter(|dir| !dirs.iter().any(|(d, _)| d == dir)) {
            dirs.push((dir, why));
        }
    };
    add(Some("/dev/shm".into()), "a default");
    add(var("XDG_RUNTIME_DIR"), "XDG_RUNTIME_DIR");
    add(var("TMPDIR"), "TMPDIR");
    add(Some("/tmp".into()), "a default");
    add(Some("/var/tmp".into()), "a default");
    dirs
}

impl CodeDir {
    /// The directories to try, in order, each with why: the one
    /// `WXTHUNK_TMPDIR` names, alone, when it is set; else memory-backed
    /// ones first (their pages are never written back to a disk), then
    /// `TMPDIR` and the usual temporary directories.
    ///
    /// Paths are kept as the bytes the environment holds (a directory
    /// whose name is not UTF-8 is tried like any other); an empty variable
    /// counts as unset.
    pub(crate) fn candidates() -> Vec<(PathBuf, &'static str)> {
        candidates_from(|name| std::env::var_os(name))
    }

    /// Opens `path` as a directory for code files.
    ///
    /// # Errors
    ///
    /// Why it cannot be one: it cannot be opened, or its filesystem is
    /// mounted `noexec` (no file on it can be mapped executable).
    pub(crate) fn open(path: &Path, chosen_by: &'static str) -> Result<CodeDir, String> {
        let shown = path.display();
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{shown}: contains a NUL byte"))?;
        // SAFETY: `c` is a NUL-terminated path; the flags are valid.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!("{shown}: {}", io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by no one else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `dir` is open; `vfs` is valid for a write of a statvfs.
        if unsafe { libc::fstatvfs(dir.as_raw_fd(), vfs.as_mut_ptr()) } != 0 {
            return Err(format!("{shown}: statvfs: {}", io::Error::last_os_error()));
        }
        // SAFETY: fstatvfs succeeded, so it filled `vfs`.
        let vfs = unsafe { vfs.assume_init() };
        if vfs.f_flag & libc::ST_NOEXEC != 0 {
            return Err(format!("{shown}: mounted noexec"));
        }
        Ok(CodeDir {
            dir,
            path: path.to_owned(),
            chosen_by,
            tmpfile: AtomicBool::new(true),
        })
    }

    /// The directory's path, as it was opened.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Why it was tried: `WXTHUNK_TMPDIR`, `TMPDIR` or a default.
    pub(crate) fn chosen_by(&self) -> &'static str {
        self.chosen_by
    }

    /// Whether its files are made without a name (`O_TMPFILE`), rather
    /// than named and unlinked at once.
    pub(crate) fn unnamed_files(&self) -> bool {
        self.tmpfile.load(Ordering::Relaxed)
    }

    /// A new, empty, read-write file in the directory that has no name:
    /// made with `O_TMPFILE`, or made under a fresh name (`O_EXCL`,
    /// mode 0600) and unlinked before this returns.
    ///
    /// # Errors
    ///
    /// What `openat` or `unlinkat` returned. A file that could not be
    /// unlinked is closed, not returned (nothing is left in the
    /// directory but what the unlink failure itself leaves).
    pub(crate) fn create_file(&self) -> io::Result<OwnedFd> {
        let flags = libc::O_RDWR | libc::O_CLOEXEC;
        if self.tmpfile.load(Ordering::Relaxed) {
            // SAFETY: `dir` is open; "." is NUL-terminated; the flags and
            // mode are valid.
            let fd = unsafe {
                libc::openat(
                    self.dir.as_raw_fd(),
                    c".".as_ptr(),
                    flags | libc::O_TMPFILE,
                    0o600 as libc::c_uint,
                )
            };
            if fd >= 0 {
                // SAFETY: just opened, owned by no one else.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // The filesystem (or kernel) has no unnamed files.
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL) => {
                    self.tmpfile.store(false, Ordering::Relaxed);
                }
                _ => return Err(err),
            }
        }
        self.create_named_then_unlink(flags)
    }

    fn create_named_then_unlink(&self, flags: libc::c_int) -> io::Result<OwnedFd> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!(".wxthunk-{}-{n}-{nanos:08x}", std::process::id());
            let c = CString::new(OsStr::new(&name).as_bytes()).expect("no NUL in the name");
            // SAFETY: `dir` is open; `c` is NUL-terminated; the flags and
            // mode are valid.
            let fd = unsafe {
                libc::openat(
                    self.dir.as_raw_fd(),
                    c.as_ptr(),
                    flags | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600 as libc::c_uint,
                )
            };
            if fd < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EEXIST) {
                    continue;
                }
                return Err(err);
            }
            // SAFETY: just opened, owned by no one else.
            let file = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: `dir` is open; `c` names the file just made.
            if unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".wxthunk-"))
            .collect()
    }

    #[test]
    fn files_are_made_without_a_name_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let code_dir = CodeDir::open(path, "test").unwrap();
        let unnamed = code_dir.create_file().unwrap();
        assert!(names_in(path).is_empty());
        // The fallback: a name, unlinked before the file is handed out.
        code_dir.tmpfile.store(false, Ordering::Relaxed);
        let named = code_dir.create_file().unwrap();
        assert!(names_in(path).is_empty());
        drop((unnamed, named));
        dir.close().unwrap();
    }

    #[test]
    fn a_missing_directory_says_so() {
        let err = CodeDir::open(Path::new("/nonexistent/wxthunk"), "test").unwrap_err();
        assert!(err.starts_with("/nonexistent/wxthunk: "), "{err}");
    }

    /// A directory whose name is not UTF-8 is opened by its bytes (it was
    /// reported missing under a path with U+FFFD), and such variables are
    /// candidates like any other (they were skipped silently).
    #[test]
    fn paths_that_are_not_utf8_are_kept_as_bytes() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join(OsStr::from_bytes(b"code-\xff\xfe"));
        std::fs::create_dir(&dir).unwrap();
        let code_dir = CodeDir::open(&dir, "test").unwrap();
        assert_eq!(code_dir.path(), dir);
        drop(code_dir.create_file().unwrap());

        let env = |name: &str| match name {
            "TMPDIR" => Some(OsString::from(OsStr::from_bytes(b"/tmp/\xff"))),
            "XDG_RUNTIME_DIR" => Some(OsString::new()),
            _ => None,
        };
        let found = candidates_from(env);
        assert!(
            found
                .iter()
                .any(|(d, why)| d.as_os_str().as_bytes() == b"/tmp/\xff" && *why == "TMPDIR"),
            "{found:?}"
        );
        assert!(
            found.iter().all(|(_, why)| *why != "XDG_RUNTIME_DIR"),
            "empty counts as unset"
        );
        let forced = |name: &str| (name == TMPDIR_VAR).then(|| OsString::from(dir.as_os_str()));
        assert_eq!(candidates_from(forced), vec![(dir.clone(), TMPDIR_VAR)]);
    }
}
