// The targets of free and dropped static-trampoline records for x86_64 on
// PE/COFF (Windows), as in trampolines.s. Intel syntax. See trampolines.rs.

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
