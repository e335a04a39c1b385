// wxthunk's static trampoline table for x86_64. ELF only (section flags,
// .type, .size, .hidden): arch/mod.rs selects this code on ELF targets
// alone. Intel syntax, as Rust's global_asm! reads it. See trampolines.rs
// for the layout.

// One unit (16 KiB: four pages) of identical 32-byte entries per kind of
// context placement, the units in a row and page-aligned, so that each
// can be mapped again from the binary's file in one mapping. Entry i of
// every unit reads record i, in the unit after the last one (15 - kind
// units ahead of itself). The
// order is trampolines.rs's `trampoline_kind`: the kinds used most (rdx
// for two-argument callbacks, rsi for one-argument ones) at the two ends,
// where a table that maps only them splits its reservation least.

// The frame path: jumps through the record's target to a frame adapter
// (adapters.s), which reads the record from r11.
.macro wxthunk_frame_page kind
.rept 512
2:
    endbr64
    lea r11, [rip + (15 - \kind) * 16384 - 11]
    jmp qword ptr [r11 + 24]
    .fill 2b + 32 - ., 1, 0xcc
.endr
.endm

// The record's ctx into an integer argument register. The
// target (the entry function itself) is loaded first: a thread that sees
// a published target sees the ctx written before it.
.macro wxthunk_reg_page kind, reg
.rept 512
2:
    endbr64
    lea r11, [rip + (15 - \kind) * 16384 - 11]
    mov r10, qword ptr [r11 + 24]
    mov \reg, qword ptr [r11]
    jmp r10
    .fill 2b + 32 - ., 1, 0xcc
.endr
.endm

// The record's ctx into xmm<n>, the entry's trailing f64.
.macro wxthunk_xmm_page kind, n
.rept 512
2:
    endbr64
    lea r11, [rip + (15 - \kind) * 16384 - 11]
    mov r10, qword ptr [r11 + 24]
    movq xmm\n, qword ptr [r11]
    jmp r10
    .fill 2b + 32 - ., 1, 0xcc
.endr
.endm

.pushsection .text.wxthunk_0_1_trampolines,"ax",@progbits
.p2align 12
.globl wxthunk_0_1_trampoline_table
.hidden wxthunk_0_1_trampoline_table
.type wxthunk_0_1_trampoline_table, @function
wxthunk_0_1_trampoline_table:
    wxthunk_reg_page 0, rdx
    wxthunk_reg_page 1, rdi
    wxthunk_reg_page 2, rcx
    wxthunk_reg_page 3, r8
    wxthunk_reg_page 4, r9
    wxthunk_frame_page 5
    wxthunk_xmm_page 6, 0
    wxthunk_xmm_page 7, 1
    wxthunk_xmm_page 8, 2
    wxthunk_xmm_page 9, 3
    wxthunk_xmm_page 10, 4
    wxthunk_xmm_page 11, 5
    wxthunk_xmm_page 12, 6
    wxthunk_xmm_page 13, 7
    wxthunk_reg_page 14, rsi
.size wxthunk_0_1_trampoline_table, . - wxthunk_0_1_trampoline_table
.popsection

// The target of every free record: a call through a freed or never-used
// entry stops at once (SIGILL) instead of running whatever the slot held.
.text
.p2align 4
.globl wxthunk_0_1_tramp_freed
.hidden wxthunk_0_1_tramp_freed
.type wxthunk_0_1_tramp_freed, @function
wxthunk_0_1_tramp_freed:
    endbr64
    ud2
.size wxthunk_0_1_tramp_freed, . - wxthunk_0_1_tramp_freed

// The target of a dropped thunk's record in debug mode (`WXTHUNK_DEBUG`):
// a stale call lands here with r11 pointing to the record
// [ctx, entry, report, target], as every entry and debug thunk leaves it.
// The report's first word is the function that prints it and aborts; it
// is called with the report (never returns), on a 16-byte aligned stack.
.text
.p2align 4
.globl wxthunk_0_1_tramp_dropped
.hidden wxthunk_0_1_tramp_dropped
.type wxthunk_0_1_tramp_dropped, @function
wxthunk_0_1_tramp_dropped:
    endbr64
    mov rdi, qword ptr [r11 + 16]
    and rsp, -16
    call qword ptr [rdi]
    ud2
.size wxthunk_0_1_tramp_dropped, . - wxthunk_0_1_tramp_dropped
