// The frame-building adapters of wxthunk's frame path for x86_64, for
// PE/COFF (Windows): the same adapters as adapters.s, with Windows x64
// unwind information (.seh_*: the assembler puts it in .xdata and .pdata,
// so the system's unwinder and a Rust panic cross these frames). Intel
// syntax. See adapters.rs.
//
// On entry r11 points to the thunk's record [ctx, entry, stack_args]. The
// adapter for a count `n` of stack arguments copies the caller's n stack
// arguments into a new frame, puts ctx in the slot after them, calls
// entry, and returns its result. `shadow` is the callee's shadow space
// below the stack arguments: 0 for System V, 32 for Windows x64.
//
// The prologue (push rbp; mov rbp, rsp) is all the unwind information
// describes: rbp is the frame register, so the frame allocated after the
// prologue is unwound through it (as for alloca). The epilogue is one of
// the forms Windows recognizes (lea rsp, [rbp]; pop rbp; ret).
.macro frame_adapter_n name, shadow, n
.text
.p2align 4
.globl \name
.def \name; .scl 2; .type 32; .endef
.seh_proc \name
\name:
    endbr64
    push rbp
    .seh_pushreg rbp
    mov rbp, rsp
    .seh_setframe rbp, 0
    .seh_endprologue
    sub rsp, (8 * \n + 8 + \shadow + 15) & -16  // shadow space, arguments, ctx
    .set wxthunk_arg, 0
    .rept \n
    mov r10, qword ptr [rbp + 16 + \shadow + 8 * wxthunk_arg]
    mov qword ptr [rsp + \shadow + 8 * wxthunk_arg], r10
    .set wxthunk_arg, wxthunk_arg + 1
    .endr
    mov r10, qword ptr [r11]                    // ctx
    mov qword ptr [rsp + \shadow + 8 * \n], r10  // after the copied arguments
    call qword ptr [r11 + 8]                    // entry
    nop                                         // the return address is not the epilogue's
    lea rsp, [rbp]
    pop rbp
    ret
.seh_endproc
.Lend_\name:
// The adapter's size, next in the table of sizes (for perf's map).
.section .rdata$wxthunk_0_1_frame_adapter_sizes,"dr"
.long .Lend_\name - \name
.text
.endm

// The sizes of the adapters below, in their order (System V 0-18, then
// Windows x64 0-12), as 32-bit counts of bytes.
.section .rdata$wxthunk_0_1_frame_adapter_sizes,"dr"
.p2align 2
.globl wxthunk_0_1_frame_adapter_sizes
wxthunk_0_1_frame_adapter_sizes:
.text

// Every count a signature of up to 16 arguments can have (adapters.rs
// checks it), as in adapters.s.
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
frame_adapter_n wxthunk_0_1_sysv_frame_adapter_\n, 0, \n
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
frame_adapter_n wxthunk_0_1_win64_frame_adapter_\n, 32, \n
.endr
