//! Linux: finding the file that holds a piece of this process's own code,
//! so that it can be mapped again (the static trampoline table).
//!
//! Two ways are tried, in this order:
//! 1. `/proc/self/maps`: the mapping that contains the address names the
//!    file, the offset, the device and the inode; the file is opened by its
//!    path and must still be that device and inode (not replaced, not
//!    deleted).
//! 2. The dynamic loader (`dl_iterate_phdr`), for a process without `/proc`:
//!    the loaded object that contains the address names its file (the main
//!    program's comes from `AT_EXECFN`) and its program headers give the
//!    offset.
//!
//! Either way the caller maps the bytes and compares them with the code in
//! memory before trusting them.

use std::ffi::{CStr, CString, c_void};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use libc::c_int;

use super::{Place, mmap};
use crate::sys::Prot;

/// A file holding part of this process's code, open for mapping.
#[derive(Debug)]
pub(crate) struct ImageFile {
    fd: OwnedFd,
    /// The file offset of the located address.
    offset: u64,
    path: String,
    found_by: &'static str,
}

impl ImageFile {
    /// Finds and opens the file whose bytes are mapped at `addr` in this
    /// process. On failure, says what each way tried found.
    pub(crate) fn locate(addr: usize) -> Result<ImageFile, String> {
        let maps = match from_proc_maps(addr) {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        match from_loader(addr) {
            Ok(found) => Ok(found),
            Err(loader) => Err(format!("{maps}; {loader}")),
        }
    }

    /// The path the file was opened by.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// How it was found: `"/proc/self/maps"` or `"dl_iterate_phdr"`.
    pub(crate) fn found_by(&self) -> &'static str {
        self.found_by
    }

    /// The file offset of the located address.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Maps `len` bytes of the file, from `skip` bytes past the located
    /// offset, read+exec and private, exactly at `at` (`MAP_FIXED`),
    /// replacing what was there.
    ///
    /// # Safety
    /// - `at..at+len` is a range of whole pages mapped by this crate and
    ///   owned by the caller;
    /// - nothing relies on its old contents.
    pub(crate) unsafe fn map_exec_over(
        &self,
        at: NonNull<u8>,
        len: usize,
        skip: usize,
    ) -> io::Result<()> {
        let offset = usize::try_from(self.offset)
            .ok()
            .and_then(|offset| offset.checked_add(skip))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let fd = self.fd.as_raw_fd();
        // SAFETY: the caller owns the range it asks us to replace, and
        // nothing relies on its old contents; the new mapping is read+exec,
        // never writable, and private.
        unsafe {
            mmap(
                Place::Over(at),
                len,
                // Every entry of the table starts with a landing pad.
                Prot::ReadExecGuarded,
                libc::MAP_PRIVATE,
                fd,
                offset,
            )
        }
        .map(drop)
    }
}

fn open(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated path; the flags are valid.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One line of `/proc/self/maps`.
#[derive(Debug, PartialEq, Eq)]
struct MapsLine<'a> {
    start: usize,
    end: usize,
    offset: u64,
    major: u32,
    minor: u32,
    inode: u64,
    path: &'a str,
}

fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let mut rest = line;
    let mut field = || {
        let s = rest.trim_start();
        let (tok, tail) = s.split_once(' ').unwrap_or((s, ""));
        rest = tail;
        tok
    };
    let (start, end) = field().split_once('-')?;
    let _perms = field();
    let offset = field();
    let (major, minor) = field().split_once(':')?;
    let inode = field();
    Some(MapsLine {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        major: u32::from_str_radix(major, 16).ok()?,
        minor: u32::from_str_radix(minor, 16).ok()?,
        inode: inode.parse().ok()?,
        path: rest.trim_start(),
    })
}

fn from_proc_maps(addr: usize) -> Result<ImageFile, String> {
    let maps = fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("/proc/self/maps could not be read ({e})"))?;
    let line = maps
        .lines()
        .filter_map(parse_maps_line)
        .find(|l| l.start <= addr && addr < l.end)
        .ok_or("/proc/self/maps has no mapping of the trampoline table")?;
    if line.inode == 0 || !line.path.starts_with('/') {
        return Err(format!(
            "/proc/self/maps shows the trampoline table in `{}`, which is not a file",
            line.path
        ));
    }
    if line.path.ends_with(" (deleted)") {
        return Err(format!(
            "/proc/self/maps shows the file holding the trampoline table, {}, as deleted",
            line.path
        ));
    }
    let fd = open(line.path).map_err(|e| format!("{} could not be opened ({e})", line.path))?;
    // SAFETY: an all-zero `stat` is a valid value to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open; `st` is a valid `stat` to fill.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(format!("fstat of {} failed ({e})", line.path));
    }
    if libc::major(st.st_dev) != line.major
        || libc::minor(st.st_dev) != line.minor
        || st.st_ino != line.inode
    {
        return Err(format!(
            "{} was replaced since it was loaded (another device or inode)",
            line.path
        ));
    }
    Ok(ImageFile {
        fd,
        offset: line.offset + (addr - line.start) as u64,
        path: line.path.to_owned(),
        found_by: "/proc/self/maps",
    })
}

struct LoaderSearch {
    addr: usize,
    found: Option<(Option<CString>, u64)>,
}

unsafe extern "C" fn search_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `info` for this call, and
    // `data` is the `LoaderSearch` that `from_loader` handed it.
    let (info, search) = unsafe { (&*info, &mut *data.cast::<LoaderSearch>()) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the loader describes `dlpi_phnum` program headers at
    // `dlpi_phdr`.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD) {
        let start = (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize);
        if start <= search.addr && search.addr < start.wrapping_add(h.p_memsz as usize) {
            let name = (!info.dlpi_name.is_null())
                // SAFETY: a non-null `dlpi_name` is a NUL-terminated string.
                .then(|| unsafe { CStr::from_ptr(info.dlpi_name) })
                .filter(|n| !n.is_empty())
                .map(CStr::to_owned);
            search.found = Some((name, h.p_offset + (search.addr - start) as u64));
            return 1;
        }
    }
    0
}

fn from_loader(addr: usize) -> Result<ImageFile, String> {
    let mut search = LoaderSearch { addr, found: None };
    // SAFETY: `search_object` only reads what the loader passes and writes
    // `search`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(search_object), std::ptr::from_mut(&mut search).cast()) };
    let (name, offset) = search
        .found
        .ok_or("the dynamic loader knows no object holding the trampoline table")?;
    let path = match name {
        Some(name) => name,
        None => {
            // The main program: the loader names it "", the kernel's
            // auxiliary vector has the path it was started by.
            // SAFETY: getauxval has no preconditions.
            let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
            if execfn.is_null() {
                return Err("the main program's path is unknown (no AT_EXECFN)".into());
            }
            // SAFETY: AT_EXECFN points to the NUL-terminated path on the
            // initial stack, which lives as long as the process.
            unsafe { CStr::from_ptr(execfn) }.to_owned()
        }
    };
    let path = path.to_string_lossy().into_owned();
    let fd = open(&path).map_err(|e| format!("{path} could not be opened ({e})"))?;
    Ok(ImageFile {
        fd,
        offset,
        path,
        found_by: "dl_iterate_phdr",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_with_spaces_in_paths() {
        let l = parse_maps_line(
            "7f00a000-7f00b000 r-xp 00012000 fd:01 1234567                    /tmp/a b/lib.so",
        )
        .unwrap();
        assert_eq!(
            l,
            MapsLine {
                start: 0x7f00a000,
                end: 0x7f00b000,
                offset: 0x12000,
                major: 0xfd,
                minor: 1,
                inode: 1234567,
                path: "/tmp/a b/lib.so",
            }
        );
        let anon = parse_maps_line("7f00a000-7f00b000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!((anon.inode, anon.path), (0, ""));
    }

    #[test]
    fn both_ways_find_the_same_file_and_offset() {
        let addr = both_ways_find_the_same_file_and_offset as *const () as usize;
        let maps = from_proc_maps(addr).unwrap();
        let loader = from_loader(addr).unwrap();
        assert_eq!(maps.offset, loader.offset);
        // SAFETY: zeroed `stat`s are valid values to overwrite.
        let (mut a, mut b): (libc::stat, libc::stat) = unsafe { std::mem::zeroed() };
        // SAFETY: both descriptors are open; the stats are valid to fill.
        unsafe {
            assert_eq!(libc::fstat(maps.fd.as_raw_fd(), &mut a), 0);
            assert_eq!(libc::fstat(loader.fd.as_raw_fd(), &mut b), 0);
        }
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    }
}
