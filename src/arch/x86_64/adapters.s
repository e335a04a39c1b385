// The frame-building adapters of wxthunk's frame path for x86_64, with
// unwind information. ELF only (.type, .size, .hidden): arch/mod.rs selects
// this code on ELF targets alone. Intel syntax. See adapters.rs.
//
// On entry r11 points to the thunk's record [ctx, entry, stack_args]. The
// adapter for a count `n` of stack arguments copies the caller's n stack
// arguments into a new frame of constant size, puts ctx in the slot after
// them, calls entry, and returns its result. `shadow` is the callee's
// shadow space below the stack arguments: 0 for System V (stack arguments
// start at [rsp + 8] on entry), 32 for Windows x64 (positions 4.. start at
// [rsp + 40]).
//
// The frame's size is a constant, the copies are unrolled, and the record
// is read for ctx and entry only (r11 keeps pointing at it: nothing here writes r11). At entry
// rsp + 8 is 16-aligned; after `push rbp`, rsp is, and the frame is a
// multiple of 16, so the call sees rsp % 16 == 0.
.macro frame_adapter_n name, shadow, n
.text
.p2align 4
.globl \name
.hidden \name
.type \name, @function
\name:
.cfi_startproc
    endbr64
    push rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    mov rbp, rsp
    .cfi_def_cfa_register rbp
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
    leave
    .cfi_def_cfa rsp, 8
    ret
.cfi_endproc
.Lend_\name:
.size \name, .Lend_\name - \name
// The adapter's size, next in the table of sizes (for perf's map).
.pushsection .rodata.wxthunk_0_1_frame_adapter_sizes, "a"
.long .Lend_\name - \name
.popsection
.endm

// The sizes of the adapters below, in their order (System V 0-18, then
// Windows x64 0-12), as 32-bit counts of bytes.
.pushsection .rodata.wxthunk_0_1_frame_adapter_sizes, "a"
.p2align 2
.globl wxthunk_0_1_frame_adapter_sizes
.hidden wxthunk_0_1_frame_adapter_sizes
wxthunk_0_1_frame_adapter_sizes:
.popsection

// Every count a signature of up to 16 arguments can have (adapters.rs
// checks it): System V puts the context on the stack only when both
// register files are full, which takes at least seven arguments (a struct
// fills two registers), so the other nine put at most 18 eightbytes there
// (0-18 are assembled); Windows x64 up to twelve.
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
frame_adapter_n wxthunk_0_1_sysv_frame_adapter_\n, 0, \n
.endr
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
frame_adapter_n wxthunk_0_1_win64_frame_adapter_\n, 32, \n
.endr
