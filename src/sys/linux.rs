//! Linux: `mmap`, `mprotect`, `memfd_create` and `prctl` through the `libc`
//! crate, plus the read-only look-ups (`/proc`, `/sys`) the policy probe uses.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_void};

use super::{ChildRwx, Prot};

/// The mutex [`DefaultLock`](crate::DefaultLock) uses in a child of
/// `fork()`: std's futex mutex, whose state is one word.
pub(crate) type RawLock = rustix_futex_sync::RawMutex;

/// The operating system's name as reported by the probe.
pub(crate) const OS: &str = "linux";

/// The size of a page, asked of the kernel once and then cached.
#[inline]
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            // A kernel that does not answer gets the smallest page any Linux
            // architecture uses; every size we compute is a multiple of it.
            let size = usize::try_from(raw)
                .ok()
                .filter(|s| s.is_power_of_two())
                .unwrap_or(4096);
            PAGE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}

fn prot_bits(prot: Prot) -> c_int {
    match prot {
        Prot::None => libc::PROT_NONE,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Prot::ReadExec => libc::PROT_READ | libc::PROT_EXEC,
    }
}

/// Whether the `READ_IMPLIES_EXEC` personality is set (by `setarch -X`, by
/// `personality(2)`, inherited, or by the kernel for a binary without a
/// `PT_GNU_STACK` header): then the kernel adds `PROT_EXEC` to every
/// `mmap`/`mprotect` asking for `PROT_READ`, so a read-write mapping would be
/// writable and executable. Asked of the kernel each time (one cheap system
/// call): the personality can change at any moment.
pub(crate) fn read_implies_exec() -> bool {
    // SAFETY: 0xffffffff only queries the personality; nothing changes.
    let persona = unsafe { libc::personality(0xffff_ffff) };
    persona != -1 && persona & libc::READ_IMPLIES_EXEC != 0
}

/// Why wxthunk refuses writable mappings under `READ_IMPLIES_EXEC`.
pub(crate) const READ_IMPLIES_EXEC_REASON: &str = "the READ_IMPLIES_EXEC personality is set (setarch -X or personality(2)): the kernel makes \
     every readable mapping executable, so a writable mapping would be writable and executable, \
     which wxthunk never makes; clear it with personality(persona & !READ_IMPLIES_EXEC)";

/// Refuses a mapping or protection change with `prot` if the kernel would
/// make it writable and executable at once.
fn refuse_writable_exec(prot: Prot) -> io::Result<()> {
    if prot == Prot::ReadWrite && read_implies_exec() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            READ_IMPLIES_EXEC_REASON,
        ));
    }
    Ok(())
}

fn mapped(ret: *mut c_void) -> io::Result<NonNull<u8>> {
    if ret == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ret.cast()).ok_or_else(|| io::Error::other("mmap returned address zero"))
}

/// Maps `len` bytes of private, zero-filled memory with `prot`.
pub(crate) fn map_anon(len: usize, prot: Prot) -> io::Result<NonNull<u8>> {
    map_anon_near(len, prot, 0)
}

/// As [`map_anon`], asking for address `hint` if that range is free (the
/// kernel picks another address otherwise; nothing is ever replaced).
pub(crate) fn map_anon_near(len: usize, prot: Prot, hint: usize) -> io::Result<NonNull<u8>> {
    refuse_writable_exec(prot)?;
    // SAFETY: without MAP_FIXED the hint is only a hint: the kernel never
    // replaces an existing mapping; the flags ask for nothing else.
    let ret = unsafe {
        libc::mmap(
            hint as *mut c_void,
            len,
            prot_bits(prot),
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    mapped(ret)
}

/// Unmaps `len` bytes at `ptr`.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages mapped by this module and owned
///   by the caller;
/// - nothing reads, writes or runs that range any more.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and nothing uses it (see above).
    if unsafe { libc::munmap(ptr.as_ptr().cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Changes the protection of `len` bytes at `ptr` to `prot`.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages mapped by this module and owned
///   by the caller;
/// - no live Rust reference or running code relies on the access being
///   removed.
pub(crate) unsafe fn protect(ptr: NonNull<u8>, len: usize, prot: Prot) -> io::Result<()> {
    refuse_writable_exec(prot)?;
    // SAFETY: the caller owns the range and nothing relies on the old access.
    if unsafe { libc::mprotect(ptr.as_ptr().cast(), len, prot_bits(prot)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops the contents of `len` bytes of private memory at `ptr`
/// (`MADV_DONTNEED`): they read as zeros afterwards. Changes no mapping, so
/// it works at the kernel's mapping limit.
///
/// # Safety
/// - `ptr..ptr+len` is a range of whole pages of private anonymous memory
///   mapped by this module and owned by the caller;
/// - nothing relies on its contents.
pub(crate) unsafe fn discard(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and nothing relies on its contents.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A destructor run at the exit of each thread that set a value for it
/// (`pthread_key_create`). glibc runs these after every `thread_local!`
/// destructor of the thread (`__call_tls_dtors`, then the key destructors).
#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
pub(crate) struct ThreadExitKey(libc::pthread_key_t);

#[cfg_attr(not(feature = "default-heap"), allow(dead_code))]
impl ThreadExitKey {
    /// Creates a key whose destructor is `dtor`.
    pub(crate) fn new(dtor: unsafe extern "C" fn(*mut c_void)) -> io::Result<Self> {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid place to write; `dtor` lives as long as
        // the program.
        let ret = unsafe { libc::pthread_key_create(&mut key, Some(dtor)) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(ThreadExitKey(key))
    }

    /// The key as an integer (to keep it in an atomic).
    pub(crate) fn into_raw(self) -> usize {
        self.0 as usize
    }

    /// The key [`into_raw`](Self::into_raw) gave.
    pub(crate) fn from_raw(raw: usize) -> Self {
        ThreadExitKey(raw as libc::pthread_key_t)
    }

    /// Sets this thread's value (non-null: the destructor runs for it).
    pub(crate) fn set(&self, value: *mut c_void) -> io::Result<()> {
        // SAFETY: the key was created by `new`; any pointer may be stored.
        let ret = unsafe { libc::pthread_setspecific(self.0, value) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(())
    }

    /// Deletes a key no thread has set a value for.
    pub(crate) fn delete(self) {
        // SAFETY: the key was created by `new` and is not used again.
        unsafe { libc::pthread_key_delete(self.0) };
    }
}

/// Registers fork handlers (`pthread_atfork`): `prepare` runs in the parent
/// before `fork()`, `parent` and `child` after it in each process.
pub(crate) fn register_at_fork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: the handlers are plain functions that live as long as the
    // program; registration has no other preconditions.
    let ret = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Maps one private page that the kernel zero-fills in every process made
/// by copying this one (`MADV_WIPEONFORK`, Linux 4.14+): libc `fork()`, raw
/// `clone()` without `CLONE_VM`, `SYS_fork`. What is written there reads as
/// zero in any such child, whatever path made it and whether or not any
/// fork handler ran.
pub(crate) fn map_wipe_on_fork_page() -> io::Result<NonNull<u8>> {
    let page = page_size();
    let p = map_anon(page, Prot::ReadWrite)?;
    // SAFETY: `p` is the page just mapped, ours alone.
    if unsafe { libc::madvise(p.as_ptr().cast(), page, libc::MADV_WIPEONFORK) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: as above; nothing refers to it yet.
        let _ = unsafe { unmap(p, page) };
        return Err(err);
    }
    Ok(p)
}

/// Keeps `ptr..ptr+len` out of every process made by copying this one
/// (`MADV_DONTFORK`): in a child the range is simply not mapped, so a
/// writable alias of shared code can never be written by a child, on any
/// fork path.
///
/// # Safety
/// `ptr..ptr+len` is a range of whole pages mapped by this module and owned
/// by the caller.
pub(crate) unsafe fn dont_fork(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range; the advice changes only what a
    // child inherits.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTFORK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's id: the fallback fork detector where `MADV_WIPEONFORK` is
/// missing (a system call each time).
pub(crate) fn process_id() -> u64 {
    // SAFETY: getpid has no preconditions.
    u64::from(unsafe { libc::getpid() }.unsigned_abs())
}

/// Makes instruction fetches from `ptr..ptr+len` see what was written there.
pub(crate) fn flush_icache(ptr: *const u8, len: usize) {
    crate::arch::flush_icache(ptr, len);
}

/// An anonymous in-memory file (`memfd`) that holds code and can be mapped
/// several times: the backing of the dual-mapping strategy.
#[derive(Debug)]
pub(crate) struct CodeFile {
    fd: OwnedFd,
    noexec_sealed: bool,
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
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file size too large"))?;
        // SAFETY: `fd` is a valid, open file descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CodeFile { fd, noexec_sealed })
    }

    /// Whether the file was created with `MFD_NOEXEC_SEAL`.
    pub(crate) fn noexec_sealed(&self) -> bool {
        self.noexec_sealed
    }

    /// Maps `len` bytes of the file from offset 0 at an address the kernel
    /// chooses. Every mapping of a code file is `MAP_SHARED`: its views
    /// must see the same bytes.
    pub(crate) fn map(&self, len: usize, prot: Prot) -> io::Result<NonNull<u8>> {
        self.map_near(len, prot, 0)
    }

    /// As [`map`](Self::map), asking for address `hint` if that range is
    /// free.
    pub(crate) fn map_near(&self, len: usize, prot: Prot, hint: usize) -> io::Result<NonNull<u8>> {
        refuse_writable_exec(prot)?;
        // SAFETY: without MAP_FIXED the kernel never replaces an existing
        // mapping; `fd` is open.
        let ret = unsafe {
            libc::mmap(
                hint as *mut c_void,
                len,
                prot_bits(prot),
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        mapped(ret)
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
        refuse_writable_exec(prot)?;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: the caller owns the range it asks us to replace.
        let ret = unsafe {
            libc::mmap(
                at.as_ptr().cast(),
                len,
                prot_bits(prot),
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.fd.as_raw_fd(),
                offset,
            )
        };
        let got = mapped(ret)?;
        debug_assert_eq!(got, at);
        Ok(())
    }

    /// Gives the memory behind `offset..offset+len` back to the system; the
    /// range reads as zeros afterwards, in every mapping of the file.
    pub(crate) fn punch_hole(&self, offset: usize, len: usize) -> io::Result<()> {
        let (off, len) = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
            (Ok(o), Ok(l)) => (o, l),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "range too large",
                ));
            }
        };
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

    /// Writes all of `bytes` at `offset` of the file (`pwrite`).
    pub(crate) fn write_at(&self, mut offset: usize, mut bytes: &[u8]) -> io::Result<()> {
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

// ---------------------------------------------------------------------------
// Probe helpers: facts about what this process may do.
// ---------------------------------------------------------------------------

/// `prctl(PR_GET_MDWE)`: the memory-deny-write-execute flags of this process
/// (`PR_MDWE_REFUSE_EXEC_GAIN`, `PR_MDWE_NO_INHERIT`), or `None` when the
/// kernel has no MDWE (it answers `EINVAL` before Linux 6.3).
pub(crate) fn mdwe_flags() -> io::Result<Option<u32>> {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_GET_MDWE takes no pointers; the unused arguments must be 0.
    let ret = unsafe { libc::prctl(libc::PR_GET_MDWE, zero, zero, zero, zero) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(None);
        }
        return Err(err);
    }
    Ok(Some(ret as u32))
}

/// The `vm.memfd_noexec` sysctl (0, 1 or 2), if the kernel has it.
pub(crate) fn memfd_noexec_sysctl() -> Option<u8> {
    fs::read_to_string("/proc/sys/vm/memfd_noexec")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SELinux: `None` when it is absent, else whether it enforces and the
/// `deny_execmem` boolean (when readable).
pub(crate) fn selinux() -> Option<(bool, Option<bool>)> {
    let enforce = fs::read_to_string("/sys/fs/selinux/enforce").ok()?;
    let enforcing = enforce.trim() == "1";
    let deny_execmem = fs::read_to_string("/sys/fs/selinux/booleans/deny_execmem")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(|v| v == "1"));
    Some((enforcing, deny_execmem))
}

fn status_field(name: &str) -> Option<String> {
    // This thread's view: seccomp filters are per thread (a filter installed
    // on a thread other than the main one does not show in /proc/self).
    let status = fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| fs::read_to_string("/proc/self/status"))
        .ok()?;
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// The seccomp mode of this thread (0 off, 1 strict, 2 filter) and the number
/// of filters installed, from `/proc/thread-self/status`.
pub(crate) fn seccomp() -> Option<(u8, Option<u32>)> {
    let mode = status_field("Seccomp")?.parse().ok()?;
    let filters = status_field("Seccomp_filters").and_then(|f| f.parse().ok());
    Some((mode, filters))
}

/// The PaX flags of this process, on kernels patched with PaX.
pub(crate) fn pax_flags() -> Option<String> {
    status_field("PaX")
}

/// Asks a short-lived child process to map one page readable, writable and
/// executable at once, and reports what happened.
///
/// The child shares this process's restrictions (MDWE, seccomp filters and
/// the SELinux domain are inherited), so its answer is ours, yet the RWX
/// mapping never exists in this process.
pub(crate) fn rwx_mapping_in_child() -> ChildRwx {
    let page = page_size();
    // SAFETY: `clone` without CLONE_VM gives the child a copy of the address
    // space, like fork(). It skips pthread_atfork handlers, so the child must
    // not use locks that another thread may have held: it only makes raw
    // system calls (mmap, _exit) before it exits.
    let pid = unsafe {
        let zero: libc::c_long = 0;
        libc::syscall(
            libc::SYS_clone,
            libc::c_long::from(libc::SIGCHLD),
            zero,
            zero,
            zero,
            zero,
        )
    };
    if pid < 0 {
        return ChildRwx::NotTried(io::Error::last_os_error());
    }
    if pid == 0 {
        // In the child: only system calls from here.
        // SAFETY: a fresh anonymous mapping touches nothing that exists.
        let ret = unsafe {
            libc::mmap(
                ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let code = if ret == libc::MAP_FAILED {
            // Reading errno allocates nothing.
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(255)
                .clamp(1, 255)
        } else {
            0
        };
        // SAFETY: _exit ends the child at once, running nothing else.
        unsafe { libc::_exit(code) }
    }
    let pid = pid as libc::pid_t;
    let mut status: c_int = 0;
    loop {
        // SAFETY: `status` is a valid place for waitpid to write; `pid` is
        // our child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return ChildRwx::NotTried(err);
        }
    }
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => ChildRwx::Allowed,
            errno => ChildRwx::Refused(io::Error::from_raw_os_error(errno)),
        }
    } else if libc::WIFSIGNALED(status) {
        ChildRwx::Killed(libc::WTERMSIG(status))
    } else {
        ChildRwx::NotTried(io::Error::other(
            "the probe child neither exited nor was killed",
        ))
    }
}
