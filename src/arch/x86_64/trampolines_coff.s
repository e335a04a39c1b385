// wxthunk's static trampoline table for x86_64 on PE/COFF (Windows), and
// the targets of free and dropped records. Intel syntax. See
// trampolines.rs.
//
// Unlike ELF's table, which is mapped again from the binary's file next to
// fresh records as often as needed, this one is compiled into the image
// whole, with its records: the image's own text is executable from the
// start, and the records are a writable section, so making a thunk writes
// data only and no executable memory is ever made or changed at run time
// (what Arbitrary Code Guard requires).
//
// Kind-major: each kind (rdx, rcx, r8, r9, the frame path) has UNITS
// pages of 128 entries of 32 bytes; entry i of page u of every kind reads
// record i of unit u, in the records section (UNITS pages of records,
// then UNITS pages of 16-byte data slots). So an entry's record is a
// fixed distance from the same entry of kind 0, whatever its unit: the
// linker fixes that distance (each `lea` is relocated), and trampolines.rs
// reads it from the two symbols.

.set wxthunk_units, 16

// The record's ctx into an integer argument register, the target (the
// entry function) loaded first: a thread that sees a published target
// sees the ctx written before it.
.macro wxthunk_coff_reg_kind reg
.set wxthunk_u, 0
.rept wxthunk_units
.set wxthunk_i, 0
.rept 128
2:
    endbr64
    lea r11, [rip + wxthunk_0_1_trampoline_records + wxthunk_u * 4096 + wxthunk_i * 32]
    mov r10, qword ptr [r11 + 24]
    mov \reg, qword ptr [r11]
    jmp r10
    .fill 2b + 32 - ., 1, 0xcc
.set wxthunk_i, wxthunk_i + 1
.endr
.set wxthunk_u, wxthunk_u + 1
.endr
.endm

// The frame path: jumps through the record's target to a frame adapter
// (adapters_coff.s), which reads the record from r11.
.macro wxthunk_coff_frame_kind
.set wxthunk_u, 0
.rept wxthunk_units
.set wxthunk_i, 0
.rept 128
2:
    endbr64
    lea r11, [rip + wxthunk_0_1_trampoline_records + wxthunk_u * 4096 + wxthunk_i * 32]
    jmp qword ptr [r11 + 24]
    .fill 2b + 32 - ., 1, 0xcc
.set wxthunk_i, wxthunk_i + 1
.endr
.set wxthunk_u, wxthunk_u + 1
.endr
.endm

.section .text$wxthunk_0_1_trampolines,"xr"
.p2align 12
.globl wxthunk_0_1_trampoline_table
wxthunk_0_1_trampoline_table:
    wxthunk_coff_reg_kind rdx
    wxthunk_coff_reg_kind rcx
    wxthunk_coff_reg_kind r8
    wxthunk_coff_reg_kind r9
    wxthunk_coff_frame_kind

// The records and the data slots: zero until a table's unit is taken,
// when every record of the unit is pointed at the trap target.
.section .bss$wxthunk_0_1_trampoline_records,"bw"
.p2align 12
.globl wxthunk_0_1_trampoline_records
wxthunk_0_1_trampoline_records:
    .zero 2 * wxthunk_units * 4096

// The target of every free record: a call through a freed or never-used
// entry stops at once (an illegal-instruction exception) instead of
// running whatever the slot held.
.text
.p2align 4
.globl wxthunk_0_1_tramp_freed
.def wxthunk_0_1_tramp_freed; .scl 2; .type 32; .endef
wxthunk_0_1_tramp_freed:
    endbr64
    ud2

// The target of a dropped thunk's record in debug mode (`WXTHUNK_DEBUG`):
// a stale call lands here with r11 pointing to the record
// [ctx, entry, report, target]. The report's first word is the function
// that prints it and aborts; it is called with the report in rcx (the
// Windows x64 convention of `extern "C"`), on a 16-byte aligned stack
// with the 32-byte shadow space the convention gives every callee.
.text
.p2align 4
.globl wxthunk_0_1_tramp_dropped
.def wxthunk_0_1_tramp_dropped; .scl 2; .type 32; .endef
wxthunk_0_1_tramp_dropped:
    endbr64
    mov rcx, qword ptr [r11 + 16]
    and rsp, -16
    sub rsp, 32
    call qword ptr [rcx]
    ud2
