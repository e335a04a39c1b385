//! [`CodeFile`]: a file without a name that code is kept in and mapped
//! from, several times: the backing of dual mapping. A `memfd`, or where
//! those are refused an unlinked file in a [`CodeDir`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use super::code_dir::CodeDir;
use super::{Place, mmap};
use crate::sys::{Mapping, Prot};

/// A file without a name that holds code and can be mapped several times:
/// the backing of the dual-mapping strategies (a `memfd`, or an unlinked
/// file in a directory).
#[derive(Debug)]
pub(crate) struct CodeFile {
    fd: OwnedFd,
    noexec_sealed: bool,
    /// The directory the file was made in; `None` for a memfd.
    dir: Option<Arc<CodeDir>>,
}

impl CodeFile {
    /// Creates a file of `len` bytes, all zero.
    ///
    /// The file is created with `MFD_NOEXEC_SEAL` where the kernel has it
    /// (Linux 6.3+): it can never be `execve`d, which is the only kind of
    /// memfd `vm.memfd_noexec=2` allows, and mapping it `PROT_EXEC` still
    /// works. Older kernels reject the flag with `EINVAL`; then it is created
    /// without it.
    pub(crate) fn create(len: usize) -> io::Result<Self> {
        let name = c"wxthunk";
        let mut noexec_sealed = true;
        // SAFETY: `name` is a NUL-terminated string; the flags are valid.
        let mut fd =
            unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_NOEXEC_SEAL) };
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            noexec_sealed = false;
            // SAFETY: as above.
            fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by no
        // one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::sized(fd, noexec_sealed, None, len)
    }

    /// Creates a file of `len` bytes, all zero, in `dir`, with no name (see
    /// [`CodeDir::create_file`]).
    pub(crate) fn create_in(dir: &Arc<CodeDir>, len: usize) -> io::Result<Self> {
        Self::sized(dir.create_file()?, false, Some(Arc::clone(dir)), len)
    }

    /// Creates a file of `len` bytes, all zero, of the same kind as this
    /// one: a memfd, or a file in the same directory.
    pub(crate) fn create_like(&self, len: usize) -> io::Result<Self> {
        match &self.dir {
            None => Self::create(len),
            Some(dir) => Self::create_in(dir, len),
        }
    }

    fn sized(
        fd: OwnedFd,
        noexec_sealed: bool,
        dir: Option<Arc<CodeDir>>,
        len: usize,
    ) -> io::Result<Self> {
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file size too large"))?;
        // Past the limit, `ftruncate` raises SIGXFSZ, which kills the
        // process unless it is handled: an error instead.
        within_size_limit(len)?;
        // SAFETY: `fd` is a valid, open file descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CodeFile {
            fd,
            noexec_sealed,
            dir,
        })
    }

    /// The directory the file is in; `None` for a memfd.
    pub(crate) fn dir(&self) -> Option<&CodeDir> {
        self.dir.as_deref()
    }

    /// Whether the file was created with `MFD_NOEXEC_SEAL` (always
    /// `Some` here: the question is Linux's).
    pub(crate) fn noexec_sealed(&self) -> Option<bool> {
        Some(self.noexec_sealed)
    }

    /// Maps `len` bytes of the file from offset 0 at an address the kernel
    /// chooses. Every mapping of a code file is `MAP_SHARED`: its views
    /// must see the same bytes.
    pub(crate) fn map(&self, len: usize, prot: Prot) -> io::Result<Mapping> {
        self.map_near(len, prot, 0)
    }

    /// As [`map`](Self::map), asking for address `hint` if that range is
    /// free.
    pub(crate) fn map_near(&self, len: usize, prot: Prot, hint: usize) -> io::Result<Mapping> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: a hint replaces nothing; `fd` is open.
        let ptr = unsafe { mmap(Place::Near(hint), len, prot, libc::MAP_SHARED, fd, 0) }?;
        // SAFETY: `len` bytes at `ptr` were just mapped, by us, for us.
        Ok(unsafe { Mapping::from_raw(ptr, len) })
    }

    /// The range where this file's code will run: an inaccessible
    /// reservation of `len` bytes (at `hint` if free) that
    /// [`map_over`](Self::map_over) maps the file's pages over, at the same
    /// offsets, when code is first written on them. Pages never mapped use
    /// no memory and cannot run.
    pub(crate) fn reserve_exec_view(&self, len: usize, hint: usize) -> io::Result<Mapping> {
        Mapping::anon_near(len, Prot::None, hint)
    }

    /// Maps `len` bytes of the file from `offset` (a multiple of the page
    /// size) exactly at `at`, replacing whatever was mapped there in one step
    /// (`MAP_FIXED`), so that no other thread can see the range unmapped.
    ///
    /// # Safety
    /// - `at..at+len` is a range of whole pages mapped by this module and owned
    ///   by the caller;
    /// - nothing relies on the old contents of that range (code that runs
    ///   there must find the same instructions in the file).
    pub(crate) unsafe fn map_over(
        &self,
        at: NonNull<u8>,
        offset: usize,
        len: usize,
        prot: Prot,
    ) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: the caller owns the range it asks us to replace, and
        // nothing relies on its old contents; `fd` is open.
        unsafe { mmap(Place::Over(at), len, prot, libc::MAP_SHARED, fd, offset) }.map(drop)
    }

    /// Gives the memory behind `offset..offset+len` back to the system; the
    /// range reads as zeros afterwards, in every mapping of the file.
    pub(crate) fn punch_hole(&self, offset: usize, len: usize) -> io::Result<()> {
        let (off, len) = file_range(offset, len)?;
        // SAFETY: `fd` is open; the flags are valid together.
        let ret = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Gives `offset..offset+len` of the file its memory now (`fallocate`),
    /// before the first store to those pages through a mapping: on a full
    /// or size-limited filesystem (a tmpfs mounted with `size=`, Docker's
    /// 64 MiB `/dev/shm`) that store would fault with SIGBUS; this returns
    /// `ENOSPC` instead. A filesystem without `fallocate` is taken at its
    /// word (nothing to reserve).
    ///
    /// # Errors
    ///
    /// `ENOSPC` (no room), or another error of `fallocate`.
    pub(crate) fn reserve(&self, offset: usize, len: usize) -> io::Result<()> {
        let (off, len) = file_range(offset, len)?;
        loop {
            // SAFETY: `fd` is open; the mode allocates the range and keeps
            // the file's size (so no size limit applies).
            let ret = unsafe {
                libc::fallocate(self.fd.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len)
            };
            if ret == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP | libc::ENOSYS) => return Ok(()),
                Some(libc::ENOSPC) => {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        format!(
                            "no space left for {len} bytes of code in the {} (a full or \
                             size-limited filesystem)",
                            self.what()
                        ),
                    ));
                }
                _ => return Err(err),
            }
        }
    }

    /// What the file is, for messages: a memfd or a file in a directory.
    fn what(&self) -> String {
        match &self.dir {
            None => "memfd".to_owned(),
            Some(dir) => format!("file in {}", dir.path().display()),
        }
    }

    /// Writes all of `bytes` at `offset` of the file (`pwrite`).
    pub(crate) fn write_at(&self, mut offset: usize, mut bytes: &[u8]) -> io::Result<()> {
        // Past the limit, `pwrite` raises SIGXFSZ: an error instead.
        within_size_limit(offset.saturating_add(bytes.len()))?;
        while !bytes.is_empty() {
            let off = libc::off_t::try_from(offset).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "file offset too large")
            })?;
            // SAFETY: `bytes` is a valid slice for reads of its length; `fd`
            // is open.
            let n = unsafe {
                libc::pwrite(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), off)
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let n = n as usize;
            bytes = &bytes[n..];
            offset += n;
        }
        Ok(())
    }
}

/// An error unless a file of `len` bytes fits the process's file size
/// limit (`RLIMIT_FSIZE`, `ulimit -f`): growing or writing a file past it
/// raises SIGXFSZ, which kills the process unless it is handled.
fn within_size_limit(len: usize) -> io::Result<()> {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: `limit` is valid for a write of an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, limit.as_mut_ptr()) } != 0 {
        return Ok(()); // cannot be read: nothing to check against
    }
    // SAFETY: getrlimit succeeded, so it filled `limit`.
    let cur = unsafe { limit.assume_init() }.rlim_cur;
    if cur != libc::RLIM_INFINITY && len as u64 > cur {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "a code file of {len} bytes would pass the process's file size limit \
                 (RLIMIT_FSIZE, ulimit -f: {cur} bytes), which raises SIGXFSZ"
            ),
        ));
    }
    Ok(())
}

/// `offset..offset+len` as `off_t`s, for `fallocate`.
fn file_range(offset: usize, len: usize) -> io::Result<(libc::off_t, libc::off_t)> {
    match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
        (Ok(o), Ok(l)) => Ok((o, l)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range too large",
        )),
    }
}
