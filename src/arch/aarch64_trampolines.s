// The static-trampoline table of wxthunk for AArch64 (AAPCS64). ELF, GNU
// assembler syntax; assembled into the crate on AArch64 (arch/aarch64.rs),
// and into the signature matrix's C harness (.ci/aarch64), which calls
// through every page of it under qemu-aarch64.
//
// The table is 17 units of code, one per placement kind (the context in
// x0..x7, as a trailing f64 in d0..d7, or on the stack through the frame
// adapter), followed (when mapped) by a unit of records. A unit is 64 KiB,
// the largest page AArch64 Linux uses: a whole number of pages on 4, 16 and
// 64 KiB kernels alike, so the one table maps from the binary's file on
// each of them (the page size is read at run time and checked to divide
// it). Entry i of every unit is slot i, and its record [ctx, entry,
// stack_args, target] is record i, at the same offset of the record unit:
// a fixed distance from each entry, which the entry adds to its own
// address (adr, then add with a 4 KiB-shifted immediate). An entry loads
// the record's target into x17 with acquire ordering (the target is
// published last, with release ordering, so the context loaded after it
// is the one written before it), then the context where its kind says,
// and branches once. Only x16 and x17 are used (the intra-procedure-call
// scratch registers), and `bti c` is the landing pad of every entry; a
// `br` through x16 or x17 may land on it.

.macro wxthunk_a64_page kind, load
    .rept 65536 / 32
    bti c
    adr x16, . - 4
    add x16, x16, #(((17 - \kind) * 65536) >> 12), lsl #12
    add x17, x16, #24
    ldar x17, [x17]
    \load
    br x17
    brk #0
    .endr
.endm

    .pushsection .text.wxthunk_0_1_trampoline_table, "ax", %progbits
    .balign 65536
    .globl wxthunk_0_1_trampoline_table
    .hidden wxthunk_0_1_trampoline_table
    .type wxthunk_0_1_trampoline_table, %object
wxthunk_0_1_trampoline_table:
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    wxthunk_a64_page \n, "ldr x\n, [x16]"
    .endr
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    wxthunk_a64_page (8 + \n), "ldr d\n, [x16]"
    .endr
    wxthunk_a64_page 16, "nop"
    .size wxthunk_0_1_trampoline_table, . - wxthunk_0_1_trampoline_table
    .popsection
