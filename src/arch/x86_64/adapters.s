// The frame-building adapters of wxthunk's frame path for x86_64, with
// unwind information. ELF only (.type, .size, .hidden): arch/mod.rs selects
// this code on ELF targets alone. Intel syntax. See adapters.rs.

// x86_64 System V: stack arguments start at [rsp + 8] on entry.
.text
.p2align 4
.globl wxthunk_0_1_sysv_frame_adapter
.hidden wxthunk_0_1_sysv_frame_adapter
.type wxthunk_0_1_sysv_frame_adapter, @function
wxthunk_0_1_sysv_frame_adapter:
.cfi_startproc
    endbr64
    push rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    mov rbp, rsp
    .cfi_def_cfa_register rbp
    push r11  // [rbp - 8] = record
    mov r10, qword ptr [r11 + 16]  // r10 = stack_args
    lea r11, [8 * r10 + 8]  // room for the arguments and ctx
    sub rsp, r11
    and rsp, -16  // the call below needs rsp % 16 == 0
    test r10, r10
    jz 3f
2:  // copy argument r10-1
    mov r11, qword ptr [rbp + 8 * r10 + 8]
    mov qword ptr [rsp + 8 * r10 - 8], r11
    dec r10
    jnz 2b
3:
    mov r11, qword ptr [rbp - 8]
    mov r10, qword ptr [r11 + 16]
    mov r11, qword ptr [r11]  // ctx
    mov qword ptr [rsp + 8 * r10], r11  // after the copied arguments
    mov r11, qword ptr [rbp - 8]
    call qword ptr [r11 + 8]  // entry
    leave
    .cfi_def_cfa rsp, 8
    ret
.cfi_endproc
.size wxthunk_0_1_sysv_frame_adapter, . - wxthunk_0_1_sysv_frame_adapter

// x86_64 Windows: a 32-byte shadow space, then stack arguments (positions
// 4..) at [rsp + 40] on entry.
.text
.p2align 4
.globl wxthunk_0_1_win64_frame_adapter
.hidden wxthunk_0_1_win64_frame_adapter
.type wxthunk_0_1_win64_frame_adapter, @function
wxthunk_0_1_win64_frame_adapter:
.cfi_startproc
    endbr64
    push rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    mov rbp, rsp
    .cfi_def_cfa_register rbp
    push r11
    mov r10, qword ptr [r11 + 16]
    lea r11, [8 * r10 + 40]  // shadow space, arguments, ctx
    sub rsp, r11
    and rsp, -16
    test r10, r10
    jz 3f
2:
    mov r11, qword ptr [rbp + 8 * r10 + 40]
    mov qword ptr [rsp + 8 * r10 + 24], r11
    dec r10
    jnz 2b
3:
    mov r11, qword ptr [rbp - 8]
    mov r10, qword ptr [r11 + 16]
    mov r11, qword ptr [r11]
    mov qword ptr [rsp + 8 * r10 + 32], r11
    mov r11, qword ptr [rbp - 8]
    call qword ptr [r11 + 8]
    leave
    .cfi_def_cfa rsp, 8
    ret
.cfi_endproc
.size wxthunk_0_1_win64_frame_adapter, . - wxthunk_0_1_win64_frame_adapter
