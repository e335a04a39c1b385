//! A file of this process's own at a name others can guess (perf's
//! `/tmp/perf-<pid>.map`), opened so that nobody else's file, link or
//! device is ever written through that name.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for this process alone, empty: created with mode 0600
/// where it is missing, and refused unless what is there is a regular file
/// owned by the effective user. A symbolic link is not followed
/// (`O_NOFOLLOW`), a FIFO or device never blocks the open (`O_NONBLOCK`),
/// the descriptor is not inherited by `exec` (`O_CLOEXEC`, as std always
/// sets). Writes append (`O_APPEND`), so lines written by threads at once
/// never interleave. A file left by an earlier process with the same pid
/// is emptied.
///
/// # Errors
///
/// The open's error, or `PermissionDenied` naming what the file is when
/// it is not a regular file of this user's.
pub(crate) fn open_private_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} is a symbolic link; refused", path.display()),
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a regular file; refused", path.display()),
        ));
    }
    if meta.uid() != euid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to this process's user (uid {euid}); refused",
                path.display(),
                meta.uid()
            ),
        ));
    }
    // Our own regular file now: empty it (a stale map of an earlier
    // process with this pid) and make it ours alone, whatever mode it had.
    file.set_len(0)?;
    if meta.mode() & 0o7777 != 0o600 {
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    Ok(file)
}

/// The whole contents of `file`, read through the descriptor (not its
/// path, which may name another file by now).
///
/// # Errors
///
/// The read's error.
pub(crate) fn read_private_file(file: &File) -> io::Result<Vec<u8>> {
    let mut out = vec![0; usize::try_from(file.metadata()?.len()).unwrap_or(0)];
    let mut at = 0;
    while at < out.len() {
        match file.read_at(&mut out[at..], at as u64)? {
            0 => break,
            n => at += n,
        }
    }
    out.truncate(at);
    Ok(out)
}
