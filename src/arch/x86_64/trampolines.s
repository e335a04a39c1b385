// wxthunk's static trampoline table for x86_64, and the register adapters
// its records point to. ELF only (section flags, .type, .size, .hidden):
// arch/mod.rs selects this code on ELF targets alone. Intel syntax, as
// Rust's global_asm! reads it. See trampolines.rs for the layout.

// The table: one page of identical 32-byte entries, page-aligned so that
// it can be mapped again from the binary's file. Entry i reads record i,
// one page ahead of itself, and jumps through its target word.
.pushsection .text.wxthunk_0_1_trampolines,"ax",@progbits
.p2align 12
.globl wxthunk_0_1_trampoline_table
.hidden wxthunk_0_1_trampoline_table
.type wxthunk_0_1_trampoline_table, @function
wxthunk_0_1_trampoline_table:
.rept 128
2:
    endbr64
    lea r11, [rip + 4096 - 11]
    jmp qword ptr [r11 + 24]
    .fill 2b + 32 - ., 1, 0xcc
.endr
.size wxthunk_0_1_trampoline_table, . - wxthunk_0_1_trampoline_table
.popsection

// One register adapter per argument register: the record's ctx into the
// register, then on to the record's entry.
.text
.irp reg, rdi, rsi, rdx, rcx, r8, r9
.p2align 4
.globl wxthunk_0_1_tramp_\reg
.hidden wxthunk_0_1_tramp_\reg
.type wxthunk_0_1_tramp_\reg, @function
wxthunk_0_1_tramp_\reg:
    endbr64
    mov \reg, qword ptr [r11]
    jmp qword ptr [r11 + 8]
.size wxthunk_0_1_tramp_\reg, . - wxthunk_0_1_tramp_\reg
.endr

// One float-register adapter per System V float argument register: the
// record's ctx into xmm<n> (the entry's trailing f64), then on to the
// record's entry.
.irp n, 0, 1, 2, 3, 4, 5, 6, 7
.p2align 4
.globl wxthunk_0_1_tramp_xmm\n
.hidden wxthunk_0_1_tramp_xmm\n
.type wxthunk_0_1_tramp_xmm\n, @function
wxthunk_0_1_tramp_xmm\n:
    endbr64
    movq xmm\n, qword ptr [r11]
    jmp qword ptr [r11 + 8]
.size wxthunk_0_1_tramp_xmm\n, . - wxthunk_0_1_tramp_xmm\n
.endr

// The target of every free record: a call through a freed or never-used
// entry stops at once (SIGILL) instead of running whatever the slot held.
.p2align 4
.globl wxthunk_0_1_tramp_freed
.hidden wxthunk_0_1_tramp_freed
.type wxthunk_0_1_tramp_freed, @function
wxthunk_0_1_tramp_freed:
    endbr64
    ud2
.size wxthunk_0_1_tramp_freed, . - wxthunk_0_1_tramp_freed
