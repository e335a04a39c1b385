// The frame adapter of wxthunk's AArch64 frame path (AAPCS64), with unwind
// information. ELF, GNU assembler syntax. Assembled into the crate on
// AArch64 (arch/aarch64.rs), and into the signature matrix's C harness
// (.ci/aarch64), which runs under qemu-aarch64.
//
// A thunk's context goes to the stack only when all eight integer and all
// eight SIMD/FP argument registers are taken: with at most sixteen
// arguments, nothing else is on the stack then (on Linux, one 8-byte slot
// per argument; on Apple arm64, packed, but there are none either), so the
// context is the callee's first stack slot and one adapter serves every
// such signature.
//
// On entry x16 points to the thunk's record [ctx, entry, ...] (the frame
// thunk loads it; only x16 and x17 are used, as the intra-procedure-call
// scratch registers). Every argument register is left as the caller set
// it; x8 (the indirect result register) too.
    .text
    .p2align 2
    .globl wxthunk_0_1_aapcs64_frame_adapter
    .hidden wxthunk_0_1_aapcs64_frame_adapter
    .type wxthunk_0_1_aapcs64_frame_adapter, %function
wxthunk_0_1_aapcs64_frame_adapter:
    .cfi_startproc
    bti c                       // reached by `br x17` from the thunk
    stp x29, x30, [sp, #-16]!   // frame record
    .cfi_def_cfa_offset 16
    .cfi_offset x29, -16
    .cfi_offset x30, -8
    mov x29, sp
    .cfi_def_cfa_register x29   // the CFA stays x29 + 16 while sp moves
    ldr x17, [x16]              // ctx
    str x17, [sp, #-16]!        // the callee's first stack slot (sp stays 16-aligned)
    ldr x17, [x16, #8]          // entry
    blr x17
    add sp, sp, #16
    ldp x29, x30, [sp], #16
    .cfi_def_cfa sp, 0
    .cfi_restore x29
    .cfi_restore x30
    ret
    .cfi_endproc
.Lwxthunk_aapcs64_frame_adapter_end:
    .size wxthunk_0_1_aapcs64_frame_adapter, . - wxthunk_0_1_aapcs64_frame_adapter

// The adapter's size in bytes (for perf's map of code).
    .pushsection .rodata.wxthunk_0_1_aapcs64_frame_adapter_size, "a"
    .p2align 2
    .globl wxthunk_0_1_aapcs64_frame_adapter_size
    .hidden wxthunk_0_1_aapcs64_frame_adapter_size
wxthunk_0_1_aapcs64_frame_adapter_size:
    .long .Lwxthunk_aapcs64_frame_adapter_end - wxthunk_0_1_aapcs64_frame_adapter
    .popsection

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
