//! perf's map of JIT code: with `WXTHUNK_PERF_MAP=1` in the environment
//! (read once, at the first piece of code made) or after
//! [`enable_perf_map`], every thunk, span, block and static-trampoline
//! page gets a line `START SIZE name` (hexadecimal, perf's format) in
//! `/tmp/perf-<pid>.map` when it is made, so `perf report` names it.
//!
//! Off, the cost on each creation path is one relaxed load. On, it is one
//! formatted `write` to the file, opened in append mode, so lines from
//! threads writing at once never interleave, and no lock is held that a
//! `fork()` could leave taken; no heap lock is held while it is written
//! (a new static-trampoline page is entered after its shard's lock is
//! released). A forked child writes to its own file
//! (`perf-<child pid>.map`) from its first entry on, starting it with a
//! copy of the parent's lines (the child's memory holds the parent's
//! code), read through the descriptor it inherited, not the parent's path.
//!
//! The path is one any local user can guess, in a directory any user can
//! write, so the file is opened for this process alone: never through a
//! symbolic link, never a FIFO or device (the open cannot block), never
//! another user's file, created mode 0600, and emptied first (a stale map
//! left by an earlier process with the same pid). Anything else there is
//! refused: the map is off, and [`enable_perf_map`] says why.
//!
//! perf's format has no way to remove an entry. A freed thunk's line stays,
//! and a slot or span reused later gets a second line at the same address.
//! perf then names the address by one of them. Which one is perf's choice,
//! so a profile that outlives many reuses of the same memory can name code
//! by an earlier owner. The names say what kind of code it was
//! (`wxthunk thunk <closure type>`, `wxthunk span`, or the name given to
//! [`ExecSpan`](crate::ExecSpan)'s `exec_named`).
//!
//! The file starts with a line for each frame adapter (the code that
//! builds a stack frame for thunks whose context goes on the stack).
//!
//! perf reads this file only for code in *anonymous* memory (perf 6.1,
//! tried here): [`Block`](crate::Block)s, which use the protect strategy
//! by default, and every span and thunk when the process runs with
//! `WXTHUNK_STRATEGY=protect`. Code heaps otherwise dual-map a memfd
//! (`memfd:wxthunk` in perf's report, by offset, not by this file's names)
//! or a file, because that writes small pieces of code without a system
//! call; to profile them by name, run with `WXTHUNK_STRATEGY=protect`
//! where `mprotect` to read+exec is allowed (the probe says whether it
//! is): its thunks are entries of sealed trampoline tables (a page of a
//! table per 128 thunks on Linux), each named by its closure.
//!
//! The static-trampoline pages and the frame adapters are mapped from this
//! library's own file, so perf names them from the binary's symbols
//! (`wxthunk_0_1_trampoline_table`, `wxthunk_0_1_*_frame_adapter_*`) while
//! they are not stripped. Their lines here serve other tools that read the
//! file.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The environment variable that turns the map on (`1`).
pub const PERF_MAP_VAR: &str = "WXTHUNK_PERF_MAP";

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The open file of one process (a forked child opens its own).
struct Sink {
    pid: u32,
    file: File,
}

/// The current process's sink: published by compare-and-swap (fork-safe),
/// and kept for the rest of the process (one per process, plus one per
/// forked child that writes).
static SINK: AtomicPtr<Sink> = AtomicPtr::new(std::ptr::null_mut());

fn path_for(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// The file of this process, opened (and published) on first use.
///
/// Opened by `sys::open_private_file`: never through a symbolic link,
/// never a FIFO or device, never another user's file, mode 0600, emptied
/// first (a stale map of an earlier process with this pid). A refusal
/// turns the map off for the process.
fn sink() -> io::Result<&'static Sink> {
    let pid = std::process::id();
    let current = SINK.load(Ordering::Acquire);
    // SAFETY: a non-null `SINK` is a leaked `Box<Sink>`, never freed.
    if let Some(sink) = unsafe { current.as_ref() }.filter(|sink| sink.pid == pid) {
        return Ok(sink);
    }
    let file = match crate::sys::open_private_file(&path_for(pid)) {
        Ok(file) => file,
        Err(e) => {
            turn_off();
            return Err(e);
        }
    };
    // SAFETY: as above.
    if let Some(parent) = unsafe { current.as_ref() } {
        // A forked child: its memory holds the parent's code, so its map
        // starts with the parent's lines, read through the descriptor the
        // child inherited (the parent's path may name another file now).
        inherit(&parent.file, &file);
    } else {
        write_lines(&file, crate::arch::frame_adapters());
    }
    let new = Box::into_raw(Box::new(Sink { pid, file }));
    match SINK.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published; never freed.
        Ok(_) => Ok(unsafe { &*new }),
        Err(theirs) => {
            // SAFETY: `new` was never published; we own it.
            drop(unsafe { Box::from_raw(new) });
            // SAFETY: as above, a published sink is never freed.
            match unsafe { theirs.as_ref() } {
                Some(sink) if sink.pid == pid => Ok(sink),
                _ => Err(io::Error::other(
                    "perf map opened by another process's fork",
                )),
            }
        }
    }
}

/// The map is off from now on (its file was refused).
#[cold]
fn turn_off() {
    STATE.store(OFF, Ordering::Relaxed);
    crate::creation_hooks::clear(crate::creation_hooks::PERF_MAP);
}

/// Turns the map on for this process, now, whatever `WXTHUNK_PERF_MAP`
/// says; code made from now on gets a line. Returns the file's path.
///
/// # Errors
///
/// Why the file cannot be opened, or was refused (the map is then off):
/// a symbolic link, a FIFO, a device or another user's file at
/// `/tmp/perf-<pid>.map` is never written through; the error names what
/// was found.
///
/// # Examples
///
/// ```no_run
/// let path = wxthunk::enable_perf_map()?;
/// println!("perf reads {}", path.display());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn enable_perf_map() -> io::Result<PathBuf> {
    sink()?;
    STATE.store(ON, Ordering::Relaxed);
    crate::creation_hooks::set(crate::creation_hooks::PERF_MAP);
    Ok(path_for(std::process::id()))
}

/// Whether the map is on (reads `WXTHUNK_PERF_MAP` the first time).
pub(crate) fn is_on() -> bool {
    match STATE.load(Ordering::Relaxed) {
        OFF => false,
        ON => true,
        _ => read_setting(),
    }
}

#[cold]
fn read_setting() -> bool {
    let on = std::env::var_os(PERF_MAP_VAR).is_some_and(|v| v == "1");
    let _ = STATE.compare_exchange(
        UNKNOWN,
        if on { ON } else { OFF },
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let on = STATE.load(Ordering::Relaxed) == ON;
    if !on {
        crate::creation_hooks::clear(crate::creation_hooks::PERF_MAP);
    }
    on
}

/// Whether the map may be on: the one relaxed load on every creation path
/// (false once the map is known to be off; [`record`] then decides).
#[inline(always)]
pub(crate) fn may_be_on() -> bool {
    STATE.load(Ordering::Relaxed) != OFF
}

/// Records the code `entry` describes (`(start, len, name)`), if the map
/// is on: the one relaxed load on every creation path (`entry` runs only
/// when it is on).
#[inline(always)]
pub(crate) fn record(entry: impl FnOnce() -> (usize, usize, String)) {
    if may_be_on() {
        record_cold(entry);
    }
}

#[cold]
#[inline(never)]
fn record_cold(entry: impl FnOnce() -> (usize, usize, String)) {
    if !is_on() {
        return;
    }
    let (start, len, name) = entry();
    if len == 0 {
        return;
    }
    // Errors are dropped: a profiler map must never break the program.
    if let Ok(sink) = sink() {
        write_lines(&sink.file, [(start, len, name)]);
    }
}

/// Appends perf's line for each `(start, len, name)`, one `write` per
/// line; errors are dropped (a profiler map must never break the program).
fn write_lines(mut file: &File, entries: impl IntoIterator<Item = (usize, usize, String)>) {
    for (start, len, name) in entries {
        let line = format!("{start:x} {len:x} {name}\n");
        let _ = file.write_all(line.as_bytes());
    }
}

/// Copies the lines of the parent's map into a forked child's, read
/// through the parent's descriptor, which the child inherited. Lines the
/// parent writes after the fork may be copied too: they name code the
/// child does not have, at addresses where the child's own later lines
/// then also appear (see the module's note on reuse).
#[cold]
fn inherit(parent: &File, mut file: &File) {
    if let Ok(lines) = crate::sys::read_private_file(parent) {
        // Whole lines only: the parent may be mid-way through one.
        let end = lines.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let _ = file.write_all(&lines[..end]);
    }
}
