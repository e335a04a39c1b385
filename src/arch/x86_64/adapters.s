// The frame-building adapters of wxthunk's frame path for x86_64, with
// unwind information. ELF only (.type, .size, .hidden): arch/mod.rs selects
// this code on ELF targets alone. Intel syntax. See adapters.rs.
//
// On entry r11 points to the thunk's record [ctx, entry, stack_args]. The
// adapter copies the caller's stack_args stack arguments into a new frame,
// puts ctx in the slot after them, calls entry, and returns its result.
// `shadow` is the callee's shadow space below the stack arguments: 0 for
// System V (stack arguments start at [rsp + 8] on entry), 32 for Windows
// x64 (positions 4.. start at [rsp + 40]).
.macro frame_adapter name, shadow
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
    push r11                                    // [rbp - 8] = record
    mov r10, qword ptr [r11 + 16]               // r10 = stack_args
    lea r11, [8 * r10 + 8 + \shadow]            // shadow space, arguments, ctx
    sub rsp, r11
    and rsp, -16                                // the call needs rsp % 16 == 0
    test r10, r10
    jz 3f
2:                                              // copy argument r10-1
    mov r11, qword ptr [rbp + 8 * r10 + 8 + \shadow]
    mov qword ptr [rsp + 8 * r10 - 8 + \shadow], r11
    dec r10
    jnz 2b
3:
    mov r11, qword ptr [rbp - 8]
    mov r10, qword ptr [r11 + 16]
    mov r11, qword ptr [r11]                    // ctx
    mov qword ptr [rsp + 8 * r10 + \shadow], r11  // after the copied arguments
    mov r11, qword ptr [rbp - 8]
    call qword ptr [r11 + 8]                    // entry
    leave
    .cfi_def_cfa rsp, 8
    ret
.cfi_endproc
.size \name, . - \name
.endm

frame_adapter wxthunk_0_1_sysv_frame_adapter, 0
frame_adapter wxthunk_0_1_win64_frame_adapter, 32
