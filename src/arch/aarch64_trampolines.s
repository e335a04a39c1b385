// The static-trampoline tables of wxthunk for AArch64 (AAPCS64), one per
// page size (4, 16 and 64 KiB): the page size is the table's unit, so a
// table maps from the binary's file on any of them. ELF, GNU assembler
// syntax. Not yet assembled into the crate; the signature matrix
// (.ci/aarch64) assembles this file into its C harness and calls through
// every kind of page under qemu-aarch64.
//
// A table is 17 pages of code, one per placement kind (the context in x0..x7,
// as a trailing f64 in d0..d7, or on the stack through the frame adapter),
// followed (when mapped) by one page of records. Entry i of every page is
// slot i, and its record [ctx, entry, report, target] is record i, at the
// same offset of the record page: a fixed distance from each entry, which
// the entry adds to its own address (adr, then add with a 4 KiB-shifted
// immediate, which reaches 16 MiB). An entry loads the record's target into
// x17 and the context where its kind says, and branches once; only x16 and
// x17 are scratch, and `bti c` is the landing pad of every entry.

.macro wxthunk_a64_page size, kind, load
    .rept \size / 32
    bti c
    adr x16, . - 4
    add x16, x16, #(((17 - \kind) * \size) >> 12), lsl #12
    ldr x17, [x16, #24]
    \load
    br x17
    brk #0
    brk #0
    .endr
.endm

.macro wxthunk_a64_table size
    .pushsection .text.wxthunk_0_1_a64_table_\size, "ax", %progbits
    .balign \size
    .globl wxthunk_0_1_a64_table_\size
    .hidden wxthunk_0_1_a64_table_\size
    .type wxthunk_0_1_a64_table_\size, %object
wxthunk_0_1_a64_table_\size:
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    wxthunk_a64_page \size, \n, "ldr x\n, [x16]"
    .endr
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    wxthunk_a64_page \size, (8 + \n), "ldr d\n, [x16]"
    .endr
    wxthunk_a64_page \size, 16, "nop"
    .size wxthunk_0_1_a64_table_\size, . - wxthunk_0_1_a64_table_\size
    .popsection
.endm

wxthunk_a64_table 4096
wxthunk_a64_table 16384
wxthunk_a64_table 65536
