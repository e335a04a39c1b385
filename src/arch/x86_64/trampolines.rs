//! The static trampoline table for x86_64, and the adapters its records
//! point to.
//!
//! The table is one page (4 KiB) of identical 32-byte entries in this
//! library's own text, page-aligned so that it can be mapped again from the
//! binary's file. Each entry is
//!
//! ```text
//! endbr64
//! lea r11, [rip + 4096 - 11]   ; r11 = this entry's record, one page ahead
//! jmp qword ptr [r11 + 24]     ; the record's target
//! int3 ...                     ; padding up to 32 bytes
//! ```
//!
//! and its record, in the read-write page after the mapped table, is
//! `[ctx, entry, stack_args, target]` (the layout the frame adapters read).
//! `target` is one of the adapters below: a register adapter puts `ctx` in
//! the argument register after the caller's arguments (an `xmm` register
//! for the float-register placement) and jumps to `entry`; a frame adapter
//! builds a new frame. Creating a thunk writes four words,
//! never code. Only r11 and r10 are used, which every convention leaves
//! free at a call.

use std::arch::global_asm;

use super::super::Placement;
use crate::abi::CallConv;

/// The size of the table and the distance from an entry to its record.
pub(crate) const TABLE_SIZE: usize = 4096;
/// The size of one entry, and of one record.
pub(crate) const ENTRY_SIZE: usize = 32;

// The table and the adapters, in `trampolines.s` (ELF assembly).
global_asm!(include_str!("trampolines.s"));

unsafe extern "C" {
    static wxthunk_0_1_trampoline_table: [u8; TABLE_SIZE];
    fn wxthunk_0_1_tramp_rdi();
    fn wxthunk_0_1_tramp_rsi();
    fn wxthunk_0_1_tramp_rdx();
    fn wxthunk_0_1_tramp_rcx();
    fn wxthunk_0_1_tramp_r8();
    fn wxthunk_0_1_tramp_r9();
    fn wxthunk_0_1_tramp_xmm0();
    fn wxthunk_0_1_tramp_xmm1();
    fn wxthunk_0_1_tramp_xmm2();
    fn wxthunk_0_1_tramp_xmm3();
    fn wxthunk_0_1_tramp_xmm4();
    fn wxthunk_0_1_tramp_xmm5();
    fn wxthunk_0_1_tramp_xmm6();
    fn wxthunk_0_1_tramp_xmm7();
    fn wxthunk_0_1_tramp_freed();
}

/// The table as assembled into this binary's text.
pub(crate) fn trampoline_table() -> Option<&'static [u8]> {
    // SAFETY: the symbol is the 4096 bytes of code assembled above, in a
    // readable, never-written text section.
    Some(unsafe { &*std::ptr::addr_of!(wxthunk_0_1_trampoline_table) })
}

/// Where a record's `target` should point for a thunk whose context goes
/// to `placement` under `conv`.
#[inline]
pub(crate) fn trampoline_target(conv: CallConv, placement: Placement) -> usize {
    let f: unsafe extern "C" fn() = match placement {
        Placement::Register(1) => wxthunk_0_1_tramp_rcx,
        Placement::Register(2) => wxthunk_0_1_tramp_rdx,
        Placement::Register(6) => wxthunk_0_1_tramp_rsi,
        Placement::Register(7) => wxthunk_0_1_tramp_rdi,
        Placement::Register(8) => wxthunk_0_1_tramp_r8,
        Placement::Register(9) => wxthunk_0_1_tramp_r9,
        Placement::Register(other) => unreachable!("no argument register {other}"),
        Placement::Float(0) => wxthunk_0_1_tramp_xmm0,
        Placement::Float(1) => wxthunk_0_1_tramp_xmm1,
        Placement::Float(2) => wxthunk_0_1_tramp_xmm2,
        Placement::Float(3) => wxthunk_0_1_tramp_xmm3,
        Placement::Float(4) => wxthunk_0_1_tramp_xmm4,
        Placement::Float(5) => wxthunk_0_1_tramp_xmm5,
        Placement::Float(6) => wxthunk_0_1_tramp_xmm6,
        Placement::Float(7) => wxthunk_0_1_tramp_xmm7,
        Placement::Float(other) => unreachable!("no float argument register {other}"),
        Placement::Stack(n) => return super::adapters::frame_adapter(conv, n),
    };
    f as usize
}

/// The target of a free record: traps.
pub(crate) fn trampoline_freed() -> usize {
    wxthunk_0_1_tramp_freed as *const () as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_reads_its_record_one_table_ahead() {
        let table = trampoline_table().unwrap();
        assert_eq!(table.as_ptr() as usize % TABLE_SIZE, 0);
        for entry in table.chunks(ENTRY_SIZE) {
            assert_eq!(&entry[..4], &[0xf3, 0x0f, 0x1e, 0xfa]); // endbr64
            assert_eq!(&entry[4..7], &[0x4c, 0x8d, 0x1d]); // lea r11, [rip + disp32]
            let disp = i32::from_le_bytes(entry[7..11].try_into().unwrap());
            assert_eq!(11 + disp as usize, TABLE_SIZE);
            assert_eq!(&entry[11..15], &[0x41, 0xff, 0x63, 24]); // jmp [r11 + 24]
            assert!(entry[15..].iter().all(|&b| b == 0xcc));
        }
    }
}
