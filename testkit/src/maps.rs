//! Which mappings exist, and whether any is writable and executable at
//! once: `/proc/self/maps` on Linux, a walk of the address space with
//! `VirtualQuery` on Windows (one entry per run of pages that share an
//! allocation, a state and a protection).

/// One line of `/proc/self/maps` (on Windows: one run of pages, its
/// protection spelled the same way).
#[derive(Debug, Clone)]
pub struct Mapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// The permission field (`r-xp` and the like).
    pub perms: String,
    /// The file or pseudo-name (`[heap]`, `/memfd:wxthunk (deleted)`), or
    /// empty.
    pub name: String,
}

impl Mapping {
    /// Readable, writable and executable.
    pub fn is_rwx(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() >= 3 && p[0] == b'r' && p[1] == b'w' && p[2] == b'x'
    }

    /// Writable and executable (whether or not readable).
    pub fn writable_and_executable(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() >= 3 && p[1] == b'w' && p[2] == b'x'
    }

    /// Whether `addr` is inside.
    pub fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// Whether this maps one of wxthunk's code files: a memfd it made, or
    /// a file without a name in the directory the probe chose for
    /// `Strategy::DualMapFile`.
    pub fn is_code_file(&self) -> bool {
        self.name.contains("memfd:wxthunk")
            || code_file_dir().is_some_and(|dir| self.is_unnamed_file_in(&dir))
    }

    /// Whether this maps a file in `dir` that has no name there: one made
    /// with `O_TMPFILE` (the kernel shows it as `dir/#inode`) or unlinked
    /// (`... (deleted)`), and in either case not found by its path.
    pub fn is_unnamed_file_in(&self, dir: &str) -> bool {
        let path = self.name.strip_suffix(" (deleted)").unwrap_or(&self.name);
        path.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|file| !file.contains('/'))
            && !std::path::Path::new(path).exists()
    }
}

/// The directory the probe chose for code files, as `/proc/self/maps`
/// spells paths in it (resolved), if one works.
pub fn code_file_dir() -> Option<String> {
    let dir = wxthunk::probe().code_file_dir.as_ref()?;
    let resolved = std::fs::canonicalize(&dir.path).ok()?;
    Some(resolved.to_string_lossy().trim_end_matches('/').to_owned())
}

/// Every mapping of wxthunk's code files ([`Mapping::is_code_file`]).
pub fn code_file_mappings() -> Vec<Mapping> {
    read().into_iter().filter(Mapping::is_code_file).collect()
}

/// Every mapping of this process, in address order (a path that is not
/// UTF-8 is spelled with U+FFFD, as [`code_file_dir`] spells it too).
#[cfg(not(windows))]
pub fn read() -> Vec<Mapping> {
    let bytes = std::fs::read("/proc/self/maps").expect("read /proc/self/maps");
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next().unwrap();
            let perms = fields.next().unwrap().to_owned();
            let name = fields.nth(3).unwrap_or("").to_owned();
            let (a, b) = range.split_once('-').unwrap();
            Mapping {
                start: usize::from_str_radix(a, 16).unwrap(),
                end: usize::from_str_radix(b, 16).unwrap(),
                perms,
                name,
            }
        })
        .collect()
}

/// Every committed or reserved run of pages of this process, in address
/// order, its protection spelled as `/proc/self/maps` would (`rw-p`,
/// `r-xp`, `---p` for reserved or inaccessible pages) and named `image`,
/// `section` or nothing by its type.
#[cfg(windows)]
pub fn read() -> Vec<Mapping> {
    use windows_sys::Win32::System::Memory::{
        MEM_COMMIT, MEM_FREE, MEM_IMAGE, MEM_MAPPED, MEMORY_BASIC_INFORMATION, PAGE_EXECUTE,
        PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY, PAGE_READONLY,
        PAGE_READWRITE, PAGE_WRITECOPY, VirtualQuery,
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        // SAFETY: plain data; all zeros is a valid value.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid place for one record; any address may
        // be queried.
        let n = unsafe {
            VirtualQuery(
                at as *const _,
                &mut info,
                size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if n == 0 || info.RegionSize == 0 {
            break;
        }
        let start = info.BaseAddress as usize;
        let end = start + info.RegionSize;
        if info.State != MEM_FREE {
            let p = if info.State == MEM_COMMIT {
                info.Protect & 0xff
            } else {
                0
            };
            let perms = match p {
                PAGE_READONLY => "r--p",
                PAGE_READWRITE | PAGE_WRITECOPY => "rw-p",
                PAGE_EXECUTE => "--xp",
                PAGE_EXECUTE_READ => "r-xp",
                PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY => "rwxp",
                _ => "---p",
            };
            let name = match info.Type {
                MEM_IMAGE => "image",
                MEM_MAPPED => "section",
                _ => "",
            };
            out.push(Mapping {
                start,
                end,
                perms: perms.to_owned(),
                name: name.to_owned(),
            });
        }
        if end <= at {
            break;
        }
        at = end;
    }
    out
}

/// Every mapping that is writable and executable at once.
pub fn wx_mappings() -> Vec<Mapping> {
    read()
        .into_iter()
        .filter(Mapping::writable_and_executable)
        .collect()
}

/// The mapping containing `addr`, if any.
pub fn mapping_at(addr: usize) -> Option<Mapping> {
    read().into_iter().find(|m| m.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_function_is_in_an_executable_mapping_and_none_is_wx() {
        let m = mapping_at(
            this_function_is_in_an_executable_mapping_and_none_is_wx as *const () as usize,
        )
        .expect("our own code is mapped");
        assert_eq!(m.perms.as_bytes()[2], b'x', "{m:?}");
        assert!(wx_mappings().is_empty());
    }
}
