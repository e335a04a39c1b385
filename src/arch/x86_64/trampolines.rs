//! The static trampoline table for x86_64.
//!
//! The table is [`TABLE_KINDS`] units ([`TABLE_SIZE`] each: 16 KiB, four
//! pages, on ELF) of 32-byte entries in this library's own text,
//! page-aligned so that each unit can be mapped again from the binary's
//! file. Each unit serves one kind of context placement
//! ([`trampoline_kind`]); its entries are identical, and entry `i` of
//! every unit reads record `i` in the record unit that follows the last
//! one. An entry of an argument-register unit or a float-register unit
//! (the `xmm` placement) is
//!
//! ```text
//! endbr64
//! lea r11, [rip + (15 - kind) * 16384 - 11] ; r11 = this entry's record
//! mov r10, qword ptr [r11 + 24]             ; the record's target: the entry
//! mov rdi, qword ptr [r11]                  ; ctx (or rsi, .., r9; movq xmmN)
//! jmp r10                                   ; one indirect jump
//! int3 ...                                  ; padding up to 32 bytes
//! ```
//!
//! and an entry of the frame page jumps through the target to a
//! frame adapter (`adapters.rs`), which reads the record from r11. The
//! record is `[ctx, entry, stack_args, target]`, where `target` is the
//! entry function for a register kind and the adapter for the frame kind.
//! Creating a thunk writes four words, never code. Only r11 and r10 are
//! used, which every convention leaves free at a call.
//!
//! The target is loaded before `ctx`: x86_64 keeps loads in order, so a
//! thread that sees a target published with release ordering sees the
//! `ctx` written before it.

use std::arch::global_asm;

use super::super::Placement;
use crate::abi::CallConv;

/// The size of one unit of the table (one kind's entries, the records,
/// the data slots), and the unit of the distance from an entry to its
/// record: 16 KiB (512 entries) where the table is mapped again from the
/// binary's file, so that each mapping of it serves 512 thunks (the
/// process's mappings are limited: `vm.max_map_count`); a page in the
/// table compiled into a Windows image.
#[cfg(not(windows))]
pub(crate) const TABLE_SIZE: usize = 16384;
/// See above.
#[cfg(windows)]
pub(crate) const TABLE_SIZE: usize = 4096;
/// The size of one entry, and of one record.
pub(crate) const ENTRY_SIZE: usize = 32;
/// Pages in the table: one per kind of placement (the frame path, six
/// argument registers, eight `xmm` registers). The assembly's
/// displacements (`15 - kind`) assume this count.
#[cfg(not(windows))]
pub(crate) const TABLE_KINDS: usize = 15;
/// Kinds in the table compiled into a Windows image: the four argument
/// registers of Windows x64 and the frame path (System V's registers, for
/// `extern "sysv64"`, have none there: such a thunk cannot be a static
/// trampoline on Windows).
#[cfg(windows)]
pub(crate) const TABLE_KINDS: usize = 5;

/// Units of the table compiled into the image with its records (PE/COFF):
/// every kind has this many pages of entries, so a process has
/// `BUILTIN_UNITS * 128` static trampolines, shared by all its heaps.
/// Zero on ELF, where the table is one page per kind, mapped again from the
/// binary's file as often as needed.
#[cfg(windows)]
pub(crate) const BUILTIN_UNITS: usize = 16;
/// See above: ELF maps the table again instead.
#[cfg(not(windows))]
pub(crate) const BUILTIN_UNITS: usize = 0;

// The table and the trap targets: `trampolines.s` (ELF assembly: one page
// per kind, mapped again from the binary's file), or on PE/COFF (Windows)
// `trampolines_coff.s`, where the table is compiled into the image whole,
// with its records in a writable section, so that making a thunk never
// makes code (Arbitrary Code Guard forbids that).
cfg_if::cfg_if! {
    if #[cfg(windows)] {
        global_asm!(include_str!("trampolines_coff.s"));

        unsafe extern "C" {
            static wxthunk_0_1_trampoline_table: [u8; TABLE_KINDS * BUILTIN_UNITS * TABLE_SIZE];
            static wxthunk_0_1_trampoline_records: [u8; 2 * BUILTIN_UNITS * TABLE_SIZE];
        }
    } else {
        global_asm!(include_str!("trampolines.s"));

        unsafe extern "C" {
            static wxthunk_0_1_trampoline_table: [u8; TABLE_KINDS * TABLE_SIZE];
        }
    }
}

unsafe extern "C" {
    fn wxthunk_0_1_tramp_freed();
    fn wxthunk_0_1_tramp_dropped();
}

/// The table as assembled into this binary's text, every kind's page (on
/// PE/COFF every kind's `BUILTIN_UNITS` pages).
pub(crate) fn trampoline_table() -> Option<&'static [u8]> {
    // SAFETY: the symbol is the table's code assembled above, in a
    // readable, never-written text section of the declared size.
    Some(unsafe { &*std::ptr::addr_of!(wxthunk_0_1_trampoline_table) })
}

/// The records of the table compiled into the image (PE/COFF):
/// `BUILTIN_UNITS` pages of records, then as many pages of data slots, in
/// a writable section; `None` where the table is mapped again instead.
pub(crate) fn trampoline_records() -> Option<usize> {
    #[cfg(windows)]
    {
        Some(std::ptr::addr_of!(wxthunk_0_1_trampoline_records) as usize)
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// The page of the table whose entries put the context where `placement`
/// says. A table maps only the pages of the kinds its thunks use, and each
/// splits its reservation (a mapping more) unless it is at an end: the
/// kinds used most are there, `rdx` (two-argument System V callbacks,
/// `qsort`'s comparator, one-argument win64 ones) first and `rsi`
/// (one-argument System V callbacks) last.
#[cfg(not(windows))]
#[inline]
pub(crate) const fn trampoline_kind(placement: Placement) -> usize {
    match placement {
        Placement::Register(2) => 0, // rdx
        Placement::Register(7) => 1, // rdi
        Placement::Register(1) => 2, // rcx
        Placement::Register(8) => 3,
        Placement::Register(9) => 4,
        Placement::Stack(_) => 5,
        Placement::Float(n) if n < 8 => 6 + n as usize,
        Placement::Register(6) => 14, // rsi
        Placement::Register(_) => panic!("no such argument register"),
        Placement::Float(_) => panic!("no such float argument register"),
    }
}

/// The kind of the table compiled into a Windows image whose entries put
/// the context where `placement` says (`trampolines_coff.s`'s order), or
/// `TABLE_KINDS` for a placement only System V makes (`extern "sysv64"`),
/// which has no page there.
#[cfg(windows)]
#[inline]
pub(crate) const fn trampoline_kind(placement: Placement) -> usize {
    match placement {
        Placement::Register(2) => 0, // rdx
        Placement::Register(1) => 1, // rcx
        Placement::Register(8) => 2,
        Placement::Register(9) => 3,
        Placement::Stack(_) => 4,
        Placement::Register(6 | 7) | Placement::Float(_) => TABLE_KINDS,
        Placement::Register(_) => panic!("no such argument register"),
    }
}

/// Where a record's `target` should point for a thunk whose context goes
/// to `placement` under `conv` and whose entry function is `entry`: the
/// entry itself for a register kind, a frame adapter for the frame kind.
#[inline]
pub(crate) fn trampoline_target(conv: CallConv, placement: Placement, entry: usize) -> usize {
    match placement {
        Placement::Stack(n) => super::adapters::frame_adapter(conv, n),
        Placement::Register(_) | Placement::Float(_) => entry,
    }
}

/// The target of a free record: traps.
pub(crate) fn trampoline_freed() -> usize {
    wxthunk_0_1_tramp_freed as *const () as usize
}

/// The target of a dropped thunk's record in debug mode: calls the report
/// that word 2 of the record (r11) points to, whose first word is an
/// `extern "C" fn(report) -> !`.
pub(crate) fn trampoline_dropped() -> usize {
    wxthunk_0_1_tramp_dropped as *const () as usize
}

#[cfg(all(test, windows))]
mod coff_tests {
    use super::*;

    /// Every entry of every kind and unit: `endbr64; lea r11, [rip +
    /// disp32]` reaching its own record (record `i` of unit `u`), then the
    /// kind's load and jump, then traps.
    #[test]
    fn every_entry_reads_its_own_record() {
        let table = trampoline_table().unwrap();
        assert_eq!(table.as_ptr() as usize % TABLE_SIZE, 0);
        let records = trampoline_records().unwrap();
        assert_eq!(records % TABLE_SIZE, 0);
        let loads: [&[u8]; 4] = [
            &[0x4d, 0x8b, 0x53, 24, 0x49, 0x8b, 0x13, 0x41, 0xff, 0xe2], // rdx
            &[0x4d, 0x8b, 0x53, 24, 0x49, 0x8b, 0x0b, 0x41, 0xff, 0xe2], // rcx
            &[0x4d, 0x8b, 0x53, 24, 0x4d, 0x8b, 0x03, 0x41, 0xff, 0xe2], // r8
            &[0x4d, 0x8b, 0x53, 24, 0x4d, 0x8b, 0x0b, 0x41, 0xff, 0xe2], // r9
        ];
        let per_unit = TABLE_SIZE / ENTRY_SIZE;
        for kind in 0..TABLE_KINDS {
            for u in 0..BUILTIN_UNITS {
                for i in 0..per_unit {
                    let at = (kind * BUILTIN_UNITS + u) * TABLE_SIZE + i * ENTRY_SIZE;
                    let entry = &table[at..at + ENTRY_SIZE];
                    assert_eq!(&entry[..4], &[0xf3, 0x0f, 0x1e, 0xfa]); // endbr64
                    assert_eq!(&entry[4..7], &[0x4c, 0x8d, 0x1d]); // lea r11, [rip + disp32]
                    let disp = i32::from_le_bytes(entry[7..11].try_into().unwrap());
                    let reached = (table.as_ptr() as usize + at + 11).wrapping_add(disp as usize);
                    assert_eq!(reached, records + u * TABLE_SIZE + i * ENTRY_SIZE);
                    let rest = &entry[11..];
                    let code: &[u8] = match kind {
                        4 => &[0x41, 0xff, 0x63, 24], // jmp [r11 + 24]
                        k => loads[k],
                    };
                    assert_eq!(&rest[..code.len()], code, "kind {kind}");
                    assert!(rest[code.len()..].iter().all(|&b| b == 0xcc));
                }
            }
        }
        for (placement, kind) in [
            (Placement::Register(2), 0),
            (Placement::Register(1), 1),
            (Placement::Register(8), 2),
            (Placement::Register(9), 3),
            (Placement::Stack(3), 4),
            (Placement::Register(7), TABLE_KINDS),
            (Placement::Float(0), TABLE_KINDS),
        ] {
            assert_eq!(trampoline_kind(placement), kind, "{placement:?}");
        }
    }
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::*;

    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

    /// The bytes after `lea r11, [rip + disp32]` in every entry of the
    /// unit of `kind`, having checked that the lea reaches the record unit.
    fn entries_of(kind: usize) -> impl Iterator<Item = &'static [u8]> {
        let table = trampoline_table().unwrap();
        let page = &table[kind * TABLE_SIZE..][..TABLE_SIZE];
        page.chunks(ENTRY_SIZE).map(move |entry| {
            assert_eq!(&entry[..4], &ENDBR64);
            assert_eq!(&entry[4..7], &[0x4c, 0x8d, 0x1d]); // lea r11, [rip + disp32]
            let disp = i32::from_le_bytes(entry[7..11].try_into().unwrap());
            assert_eq!(11 + disp as usize, (TABLE_KINDS - kind) * TABLE_SIZE);
            &entry[11..]
        })
    }

    #[test]
    fn the_table_is_page_aligned_with_one_unit_per_kind() {
        let table = trampoline_table().unwrap();
        // Each unit is mapped from the file at its own offset: page-aligned
        // (4 KiB; a unit is a whole number of pages).
        assert_eq!(table.as_ptr() as usize % 4096, 0);
        assert_eq!(TABLE_SIZE % 4096, 0);
        assert_eq!(table.len(), TABLE_KINDS * TABLE_SIZE);
    }

    #[test]
    fn frame_entries_jump_through_the_target_to_the_adapter() {
        for rest in entries_of(trampoline_kind(Placement::Stack(0))) {
            assert_eq!(&rest[..4], &[0x41, 0xff, 0x63, 24]); // jmp [r11 + 24]
            assert!(rest[4..].iter().all(|&b| b == 0xcc));
        }
    }

    #[test]
    fn register_entries_load_the_target_then_ctx_and_jump_once() {
        // mov reg, [r11]: REX.W+B (and R for r8/r9), 8b, modrm (reg, [r11]).
        let loads: [(Placement, [u8; 3]); 6] = [
            (Placement::Register(7), [0x49, 0x8b, 0x3b]), // rdi
            (Placement::Register(6), [0x49, 0x8b, 0x33]), // rsi
            (Placement::Register(2), [0x49, 0x8b, 0x13]), // rdx
            (Placement::Register(1), [0x49, 0x8b, 0x0b]), // rcx
            (Placement::Register(8), [0x4d, 0x8b, 0x03]), // r8
            (Placement::Register(9), [0x4d, 0x8b, 0x0b]), // r9
        ];
        for (placement, load) in loads {
            for rest in entries_of(trampoline_kind(placement)) {
                assert_eq!(&rest[..4], &[0x4d, 0x8b, 0x53, 24]); // mov r10, [r11 + 24]
                assert_eq!(&rest[4..7], &load, "{placement:?}");
                assert_eq!(&rest[7..10], &[0x41, 0xff, 0xe2]); // jmp r10
                assert!(rest[10..].iter().all(|&b| b == 0xcc));
            }
        }
    }

    #[test]
    fn float_entries_load_the_target_then_ctx_into_their_xmm_register() {
        for n in 0..8u8 {
            for rest in entries_of(trampoline_kind(Placement::Float(n))) {
                assert_eq!(&rest[..4], &[0x4d, 0x8b, 0x53, 24]); // mov r10, [r11 + 24]
                // movq xmmN, [r11]: f3, REX.B, 0f 7e, modrm (xmmN, [r11]).
                assert_eq!(&rest[4..9], &[0xf3, 0x41, 0x0f, 0x7e, 0x03 | n << 3]);
                assert_eq!(&rest[9..12], &[0x41, 0xff, 0xe2]); // jmp r10
                assert!(rest[12..].iter().all(|&b| b == 0xcc));
            }
        }
    }

    #[test]
    fn every_placement_has_its_own_page() {
        let mut kinds: Vec<usize> = [1, 2, 6, 7, 8, 9]
            .map(Placement::Register)
            .into_iter()
            .chain((0..8).map(Placement::Float))
            .chain([Placement::Stack(0)])
            .map(trampoline_kind)
            .collect();
        kinds.sort_unstable();
        assert_eq!(kinds, (0..TABLE_KINDS).collect::<Vec<_>>());
    }
}
