// The frame adapter of wxthunk's AArch64 frame path (AAPCS64), with unwind
// information. ELF, GNU assembler syntax. Assembled into the crate on
// AArch64 (arch/aarch64.rs), and into the signature matrix's C harness
// (.ci/aarch64), which runs under qemu-aarch64.
//
// A thunk's context goes to the stack when the argument registers it could
// take are used up. A Rust entry declares it `f64` when an SIMD/FP register
// is free, so for those the stack is reached only when all sixteen argument
// registers are taken, and with at most sixteen arguments nothing else is on
// the stack then: the context is the callee's first stack slot (adapter 0).
// A C target of a run-time signature (DynThunk) declares it `void *`, so it
// follows the arguments that missed the eight x registers: up to eight
// 8-byte slots on Linux (adapters 1 to 8, one per count, copies unrolled).
//
// On entry x16 points to the thunk's record [ctx, entry, ...] (the frame
// thunk loads it; only x16 and x17 are used, as the intra-procedure-call
// scratch registers). Every argument register is left as the caller set
// it; x8 (the indirect result register) too. The caller's stack arguments
// start at x29 + 16 once the frame record is pushed.
.macro wxthunk_frame_adapter name, n
    .text
    .p2align 2
    .globl \name
    .hidden \name
    .type \name, %function
\name:
    .cfi_startproc
    bti c                       // reached by `br x17` from the thunk
    stp x29, x30, [sp, #-16]!   // frame record
    .cfi_def_cfa_offset 16
    .cfi_offset x29, -16
    .cfi_offset x30, -8
    mov x29, sp
    .cfi_def_cfa_register x29   // the CFA stays x29 + 16 while sp moves
    sub sp, sp, #((8 * \n + 8 + 15) & -16)   // the copies and ctx (sp stays 16-aligned)
    .set wxthunk_slot, 0
    .rept \n
    ldr x17, [x29, #(16 + 8 * wxthunk_slot)]
    str x17, [sp, #(8 * wxthunk_slot)]
    .set wxthunk_slot, wxthunk_slot + 1
    .endr
    ldr x17, [x16]              // ctx, in the slot after the copied arguments
    str x17, [sp, #(8 * \n)]
    ldr x17, [x16, #8]          // entry
    blr x17
    mov sp, x29
    ldp x29, x30, [sp], #16
    .cfi_def_cfa sp, 0
    .cfi_restore x29
    .cfi_restore x30
    ret
    .cfi_endproc
.Lend_\name:
    .size \name, .Lend_\name - \name
// The adapter's size, next in the table of sizes (for perf's map).
    .pushsection .rodata.wxthunk_0_1_aapcs64_frame_adapter_sizes, "a"
    .long .Lend_\name - \name
    .popsection
.endm

// The sizes of the adapters below, in their order (0 to 8 stack arguments),
// as 32-bit counts of bytes.
    .pushsection .rodata.wxthunk_0_1_aapcs64_frame_adapter_sizes, "a"
    .p2align 2
    .globl wxthunk_0_1_aapcs64_frame_adapter_sizes
    .hidden wxthunk_0_1_aapcs64_frame_adapter_sizes
wxthunk_0_1_aapcs64_frame_adapter_sizes:
    .popsection

    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter, 0
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_1, 1
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_2, 2
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_3, 3
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_4, 4
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_5, 5
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_6, 6
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_7, 7
    wxthunk_frame_adapter wxthunk_0_1_aapcs64_frame_adapter_8, 8

// The target of a free record: a call through it stops at once.
    .text
    .p2align 2
    .globl wxthunk_0_1_aapcs64_freed
    .hidden wxthunk_0_1_aapcs64_freed
    .type wxthunk_0_1_aapcs64_freed, %function
wxthunk_0_1_aapcs64_freed:
    bti c
    brk #0
    .size wxthunk_0_1_aapcs64_freed, . - wxthunk_0_1_aapcs64_freed

// The target of a dropped thunk's record in debug mode (`WXTHUNK_DEBUG`):
// a stale call lands here with x16 pointing to the record [ctx, entry,
// report, target], as every record thunk leaves it. The report's first
// word is the function that prints it and aborts; it is called with the
// report and never returns (sp is 16-aligned at every call on AArch64).
    .text
    .p2align 2
    .globl wxthunk_0_1_aapcs64_dropped
    .hidden wxthunk_0_1_aapcs64_dropped
    .type wxthunk_0_1_aapcs64_dropped, %function
wxthunk_0_1_aapcs64_dropped:
    bti c
    ldr x0, [x16, #16]
    ldr x17, [x0]
    blr x17
    brk #0
    .size wxthunk_0_1_aapcs64_dropped, . - wxthunk_0_1_aapcs64_dropped
