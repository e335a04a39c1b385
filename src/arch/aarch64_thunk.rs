//! AArch64 thunk code: where the context goes (AAPCS64) and the bytes that
//! put it there. Plain functions that return bytes, compiled and unit-tested
//! on every host (the exact encodings below were checked against `llvm-mc
//! -triple=aarch64 -mattr=+bti`); not yet used by the crate on AArch64,
//! where `Unsupported` stays the answer until a build there proves the
//! Rust glue.
//!
//! # Placement (AAPCS64, Linux)
//!
//! Integer-class arguments take `x0..x7` in order, floats `v0..v7`; what
//! does not fit goes to the stack, each argument in an 8-byte slot. The
//! context is one more argument after the others:
//! - a trailing pointer in the next free `x` register, when fewer than
//!   eight integer-class arguments are passed;
//! - otherwise, when a SIMD/FP register is free, a trailing `f64` in the
//!   next free `v` register (as `d<k>`), the same sound trick as on System
//!   V: the entry function declares that parameter and reads the pointer
//!   from its bits;
//! - otherwise on the stack, after the caller's stack arguments: a frame
//!   adapter copies them and stores the context after them.
//!
//! **Apple arm64** differs in one rule that matters here: stack arguments
//! are packed at their natural size and alignment (a `u8` takes one byte),
//! not one 8-byte slot each, and the context's slot is then at the next
//! 8-aligned offset after them. The registers are the same, so the
//! register and float placements are the same; only the frame path's
//! count becomes a byte size, computed from the argument sizes in order
//! (`stack_bytes` below, for the design; Linux is what is verified).
//!
//! # Code
//!
//! Every thunk is one 32-byte granule, position-independent (the context
//! and target are literals the code loads PC-relative, so the bytes can be
//! made on one machine and placed anywhere), with `bti c` at its entry and
//! only `x16`/`x17` (the intra-procedure-call scratch registers) as
//! scratch:
//!
//! ```text
//!  0  bti c
//!  4  ldr x<n>, ctx        (float path: ldr d<k>, ctx; frame path: ldr x16, record)
//!  8  ldr x16, target      (frame path: ldr x17, adapter)
//! 12  br x16               (frame path: br x17; BTI lets `br` through x16/x17 land on `bti c`)
//! 16  ctx (8 bytes)        (frame path: record)
//! 24  target (8 bytes)     (frame path: adapter)
//! ```
//!
//! Unused and freed code is `brk #0`.
//!
//! The frame adapter (`aarch64_adapters.s`) and the static-trampoline
//! tables, one per page size (`aarch64_trampolines.s`), are assembly, the
//! form the crate will use; the signature matrix below assembles both into
//! its harness. Instruction-cache maintenance (`aarch64.rs`: clean by
//! address to the point of unification, `dsb ish`, invalidate, `dsb ish;
//! isb`, line sizes from `CTR_EL0`) is reviewed, not proven: qemu does not
//! model caches.

use super::Placement;
use crate::abi::ArgClass;

/// Integer-class argument registers (`x0..x7`).
const INT_REGS: usize = 8;
/// SIMD/FP argument registers (`v0..v7`).
const FLOAT_REGS: usize = 8;

/// `bti c`: the landing pad of every entry.
pub(crate) const BTI_C: u32 = 0xd503_245f;
/// `brk #0`: fills unused and freed code.
pub(crate) const BRK_0: u32 = 0xd420_0000;
/// The intra-procedure-call scratch registers, the only ones thunks use.
const X16: u8 = 16;
const X17: u8 = 17;

/// The size of every thunk.
pub(crate) const THUNK_SIZE: usize = 32;

/// Where the context goes after `classes` (Linux AAPCS64).
pub(crate) const fn placement(classes: &[ArgClass]) -> Placement {
    let (ints, floats) = ArgClass::counts(classes);
    if ints < INT_REGS {
        Placement::Register(ints as u8)
    } else if floats < FLOAT_REGS {
        Placement::Float(floats as u8)
    } else {
        // Every argument that missed its registers takes one 8-byte slot.
        Placement::Stack((ints - INT_REGS) + (floats - FLOAT_REGS))
    }
}

/// Apple arm64's frame path (the design; not verified here): the bytes of
/// stack arguments before the context's 8-byte slot, for arguments of
/// `classes` with sizes `sizes` (each packed at its natural size and
/// alignment once its register file is full).
pub(crate) const fn stack_bytes(classes: &[ArgClass], sizes: &[usize]) -> usize {
    let (mut ints, mut floats, mut bytes) = (0, 0, 0usize);
    let mut i = 0;
    while i < classes.len() {
        let in_register = match classes[i] {
            ArgClass::Integer => {
                ints += 1;
                ints <= INT_REGS
            }
            ArgClass::Float => {
                floats += 1;
                floats <= FLOAT_REGS
            }
        };
        if !in_register {
            let size = sizes[i];
            bytes = bytes.next_multiple_of(size) + size;
        }
        i += 1;
    }
    bytes.next_multiple_of(8)
}

/// `ldr x<rt>, label` (64-bit literal), `offset` bytes ahead.
const fn ldr_x_literal(rt: u8, offset: u32) -> u32 {
    0x5800_0000 | ((offset / 4) << 5) | rt as u32
}

/// `ldr d<rt>, label` (64-bit SIMD/FP literal), `offset` bytes ahead.
const fn ldr_d_literal(rt: u8, offset: u32) -> u32 {
    0x5c00_0000 | ((offset / 4) << 5) | rt as u32
}

/// `br x<rn>`.
const fn br(rn: u8) -> u32 {
    0xd61f_0000 | ((rn as u32) << 5)
}

/// The four instructions and two literals of a thunk, little-endian.
fn granule(insns: [u32; 4], literals: [u64; 2]) -> [u8; THUNK_SIZE] {
    let mut b = [0; THUNK_SIZE];
    for (i, insn) in insns.into_iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&insn.to_le_bytes());
    }
    b[16..24].copy_from_slice(&literals[0].to_le_bytes());
    b[24..32].copy_from_slice(&literals[1].to_le_bytes());
    b
}

/// The register-path thunk: `ctx` into `x<reg>`, then on to `entry`.
pub(crate) fn register_thunk(reg: u8, ctx: usize, entry: usize) -> [u8; THUNK_SIZE] {
    assert!(
        (reg as usize) < INT_REGS,
        "x{reg} is not an argument register"
    );
    granule(
        [
            BTI_C,
            ldr_x_literal(reg, 12),
            ldr_x_literal(X16, 16),
            br(X16),
        ],
        [ctx as u64, entry as u64],
    )
}

/// The float-register-path thunk: `ctx`'s bits into `d<reg>` (the entry's
/// trailing `f64`), then on to `entry`.
pub(crate) fn float_thunk(reg: u8, ctx: usize, entry: usize) -> [u8; THUNK_SIZE] {
    assert!(
        (reg as usize) < FLOAT_REGS,
        "v{reg} is not an argument register"
    );
    granule(
        [
            BTI_C,
            ldr_d_literal(reg, 12),
            ldr_x_literal(X16, 16),
            br(X16),
        ],
        [ctx as u64, entry as u64],
    )
}

/// The frame-path thunk: the record (`[ctx, entry, ..]`) in `x16` for the
/// frame adapter at `adapter`, which copies the stack arguments, stores
/// the context after them and calls the entry.
pub(crate) fn frame_thunk(record: usize, adapter: usize) -> [u8; THUNK_SIZE] {
    granule(
        [
            BTI_C,
            ldr_x_literal(X16, 12),
            ldr_x_literal(X17, 16),
            br(X17),
        ],
        [record as u64, adapter as u64],
    )
}

/// A granule of `brk #0`.
pub(crate) fn trap_granule() -> [u8; THUNK_SIZE] {
    granule([BRK_0; 4], [u64::from(BRK_0) | u64::from(BRK_0) << 32; 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArgClass::{Float as F, Integer as I};

    fn words(b: &[u8; THUNK_SIZE]) -> Vec<u32> {
        b.chunks(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }

    /// The encodings llvm-mc gives (`-triple=aarch64 -mattr=+bti
    /// -show-encoding`).
    #[test]
    fn instructions_are_the_assemblers() {
        assert_eq!(BTI_C.to_le_bytes(), [0x5f, 0x24, 0x03, 0xd5]);
        assert_eq!(BRK_0.to_le_bytes(), [0x00, 0x00, 0x20, 0xd4]);
        assert_eq!(ldr_x_literal(0, 16).to_le_bytes(), [0x80, 0x00, 0x00, 0x58]); // ldr x0, #16
        assert_eq!(ldr_x_literal(7, 16).to_le_bytes(), [0x87, 0x00, 0x00, 0x58]); // ldr x7, #16
        assert_eq!(
            ldr_x_literal(16, 20).to_le_bytes(),
            [0xb0, 0x00, 0x00, 0x58]
        ); // ldr x16, #20
        assert_eq!(ldr_d_literal(0, 16).to_le_bytes(), [0x80, 0x00, 0x00, 0x5c]); // ldr d0, #16
        assert_eq!(ldr_d_literal(7, 12).to_le_bytes(), [0x67, 0x00, 0x00, 0x5c]); // ldr d7, #12
        assert_eq!(br(16).to_le_bytes(), [0x00, 0x02, 0x1f, 0xd6]); // br x16
    }

    #[test]
    fn register_thunk_bytes() {
        let code = register_thunk(3, 0x1122_3344_5566_7788, 0x0000_7f00_1234_5678);
        // bti c; ldr x3, #12 (-> 16); ldr x16, #16 (-> 24); br x16
        assert_eq!(
            code[..16],
            [
                0x5f, 0x24, 0x03, 0xd5, 0x63, 0x00, 0x00, 0x58, 0x90, 0x00, 0x00, 0x58, 0x00, 0x02,
                0x1f, 0xd6
            ]
        );
        assert_eq!(code[16..24], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(code[24..], 0x0000_7f00_1234_5678u64.to_le_bytes());
    }

    #[test]
    fn float_and_frame_thunk_bytes() {
        let code = float_thunk(5, 1, 2);
        // ldr d5, #12
        assert_eq!(words(&code)[1], 0x5c00_0065);
        assert_eq!(words(&code)[2..4], [ldr_x_literal(X16, 16), br(X16)]);
        let code = frame_thunk(3, 4);
        // ldr x16, #12; ldr x17, #16; br x17
        assert_eq!(words(&code)[1..4], [0x5800_0070, 0x5800_0091, 0xd61f_0220]);
        assert_eq!(code[16..24], 3u64.to_le_bytes());
        assert_eq!(code[24..], 4u64.to_le_bytes());
    }

    /// Every entry starts with `bti c`; every instruction writes only the
    /// context's register or x16/x17 and branches only through x16/x17;
    /// each literal load reaches its literal.
    #[test]
    fn landing_pads_scratch_registers_and_literals() {
        let cases = (0..8)
            .map(|r| (register_thunk(r, 0xaaaa, 0xbbbb), Some(r), false))
            .chain((0..8).map(|r| (float_thunk(r, 0xaaaa, 0xbbbb), Some(r), true)))
            .chain([(frame_thunk(0xaaaa, 0xbbbb), None, false)]);
        for (code, ctx_reg, float) in cases {
            let w = words(&code);
            assert_eq!(w[0], BTI_C);
            for (i, &insn) in w[1..3].iter().enumerate() {
                let pc = 4 * (i + 1);
                let is_d = insn & 0xff00_0000 == 0x5c00_0000;
                assert!(insn & 0xff00_0000 == 0x5800_0000 || is_d, "{insn:#x}");
                let rt = (insn & 0x1f) as u8;
                let target = pc + 4 * ((insn >> 5) & 0x7ffff) as usize;
                assert_eq!(target, 16 + 8 * i, "literal {i}");
                match (i, ctx_reg) {
                    (0, Some(r)) => assert!(rt == r && is_d == float),
                    _ => assert!(!is_d && (rt == X16 || rt == X17), "x{rt}"),
                }
            }
            assert!(w[3] == br(X16) || w[3] == br(X17));
            assert_eq!(u64::from_le_bytes(code[16..24].try_into().unwrap()), 0xaaaa);
            assert_eq!(u64::from_le_bytes(code[24..].try_into().unwrap()), 0xbbbb);
        }
        assert!(words(&trap_granule()).iter().all(|&w| w == BRK_0));
    }

    #[test]
    fn placement_follows_aapcs64() {
        assert_eq!(placement(&[]), Placement::Register(0));
        assert_eq!(placement(&[I, F, I]), Placement::Register(2));
        assert_eq!(placement(&[I; 7]), Placement::Register(7));
        assert_eq!(placement(&[I; 8]), Placement::Float(0));
        assert_eq!(
            placement(&[I, I, I, I, I, I, I, I, F, F, F]),
            Placement::Float(3)
        );
        assert_eq!(placement(&[I; 16]), Placement::Float(0));
        assert_eq!(
            placement(&[[I; 8].as_slice(), &[F; 8]].concat()),
            Placement::Stack(0)
        );
        assert_eq!(
            placement(&[[I; 9].as_slice(), &[F; 7]].concat()),
            Placement::Float(7)
        );
        assert_eq!(
            placement(&[[I; 10].as_slice(), &[F; 9]].concat()),
            Placement::Stack(3)
        );
    }

    /// Apple's packing (the design): a `u8` and a `u32` past the
    /// registers take 1 + 3 (padding) + 4 bytes, rounded to 8 for the
    /// context; Linux would give them a slot each (16).
    #[test]
    fn apple_stack_bytes() {
        let classes = [[I; 8].as_slice(), &[I, I], &[F; 8]].concat();
        let mut sizes = vec![8; 8];
        sizes.extend([1, 4]);
        sizes.extend([8; 8]);
        assert_eq!(stack_bytes(&classes, &sizes), 8);
        sizes[9] = 8;
        assert_eq!(stack_bytes(&classes, &sizes), 16);
        assert_eq!(stack_bytes(&[I; 4], &[8; 4]), 0);
    }
}

/// The signature matrix run under `qemu-aarch64` by `.ci/aarch64`: C
/// source that places this module's thunk bytes, their literals patched
/// with real addresses, in a dual-mapped memfd (written through its
/// read-write view, run through its read+exec one, with the cache
/// maintenance between the two views' addresses), calls each thunk and the
/// same signature through every trampoline table through a function
/// pointer of its signature, and checks every argument, the context and
/// the return value. Written to the directory
/// `WXTHUNK_AARCH64_MATRIX_DIR` names (the test always generates it).
#[cfg(test)]
mod matrix {
    use super::*;

    /// C type, argument class, and how a test value is written.
    const TYPES: [(&str, ArgClass); 11] = [
        ("uint8_t", ArgClass::Integer),
        ("int8_t", ArgClass::Integer),
        ("uint16_t", ArgClass::Integer),
        ("int16_t", ArgClass::Integer),
        ("uint32_t", ArgClass::Integer),
        ("int32_t", ArgClass::Integer),
        ("uint64_t", ArgClass::Integer),
        ("int64_t", ArgClass::Integer),
        ("void *", ArgClass::Integer),
        ("float", ArgClass::Float),
        ("double", ArgClass::Float),
    ];
    const RETS: [&str; 5] = ["uint64_t", "int32_t", "double", "float", "void"];

    fn value(ty: &str, seed: u64) -> String {
        let v = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8;
        match ty {
            "float" => format!("{}.5f", v % 1000),
            "double" => format!("{}.25", v % 100_000),
            "void *" => format!("(void *){:#x}", v & 0xffff_ffff_fff0),
            "int8_t" | "int16_t" | "int32_t" | "int64_t" => format!("({ty})-{}", v % 100 + 1),
            _ => format!("({ty}){v:#x}"),
        }
    }

    /// The signatures: every arity 0-16, each with argument types from a
    /// fixed pseudo-random walk, plus the spills (eight integers with
    /// floats after them, all-integer and all-float runs).
    fn signatures() -> Vec<Vec<usize>> {
        let mut sigs = Vec::new();
        let mut seed = 7u64;
        for arity in 0..=16 {
            for _ in 0..6 {
                sigs.push(
                    (0..arity)
                        .map(|_| {
                            seed = seed
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            (seed >> 33) as usize % TYPES.len()
                        })
                        .collect(),
                );
            }
            sigs.push(vec![6; arity]); // all uint64_t
            sigs.push(vec![10; arity]); // all double
        }
        for floats in 0..8 {
            let mut s = vec![6; 8];
            s.extend(std::iter::repeat_n(9 + floats % 2, floats));
            sigs.push(s);
        }
        // The frame path: eight integer-class and eight float arguments,
        // of mixed widths, interleaved differently each time.
        for k in 0..12 {
            let mut s: Vec<usize> = (0..8).map(|i| (i + k) % 9).collect();
            let floats: Vec<usize> = (0..8).map(|i| 9 + (i + k) % 2).collect();
            for (i, f) in floats.into_iter().enumerate() {
                s.insert((i * (k + 1) + k) % (s.len() + 1), f);
            }
            sigs.push(s);
        }
        sigs
    }

    /// The C source of the matrix, the number of signatures it runs and
    /// how many of them take the frame path.
    fn source() -> (String, usize, usize) {
        let mut c = String::from(
            "#define _GNU_SOURCE\n#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n\
             #include <sys/mman.h>\n#include <unistd.h>\n\
             static long calls, checks, mismatches;\n\
             static void check(int ok) { checks++; if (!ok) mismatches++; }\n",
        );
        let templates = [
            ("register", register_thunk(0, 0, 0)),
            ("float", float_thunk(0, 0, 0)),
            ("frame", frame_thunk(0, 0)),
        ];
        // The frame adapter and the trampoline tables, as the crate's own
        // assembly.
        for asm in [
            include_str!("aarch64_adapters.s"),
            include_str!("aarch64_trampolines.s"),
        ] {
            let lines: Vec<String> = asm
                .lines()
                .map(|l| l.split("//").next().unwrap_or("").trim_end())
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    format!(
                        "    \"{}\\n\"",
                        l.replace('\\', "\\\\").replace('"', "\\\"")
                    )
                })
                .collect();
            c += &format!("__asm__(\n{}\n);\n", lines.join("\n"));
        }
        // Code pages are sealed read+exec with PROT_BTI where the kernel (or
        // qemu's `-cpu max`) offers it, so every branch into them must land
        // on `bti c`.
        c += "#ifndef PROT_BTI\n#define PROT_BTI 0x10\n#endif\n\
              static int bti = 1;\n\
              static int seal(void *p, long len) {\n\
                if (bti && mprotect(p, len, PROT_READ | PROT_EXEC | PROT_BTI) == 0) return 0;\n\
                bti = 0;\n\
                if (mprotect(p, len, PROT_READ | PROT_EXEC) == 0) return 0;\n\
                perror(\"mprotect\"); return 1; }\n";
        c += "extern char wxthunk_0_1_aapcs64_frame_adapter[];\n\
              extern char wxthunk_0_1_a64_table_4096[], wxthunk_0_1_a64_table_16384[], \
              wxthunk_0_1_a64_table_65536[];\n\
              static char *table_src[3] = {wxthunk_0_1_a64_table_4096, wxthunk_0_1_a64_table_16384, \
              wxthunk_0_1_a64_table_65536};\n\
              static const long table_page[3] = {4096, 16384, 65536};\n\
              static char *tables[3];\n\
              /* Each table copied into fresh memory aligned to its page size (17 pages of\n\
                 code made read+exec, then the record page), as the crate maps it. */\n\
              static int map_tables(void) {\n\
                for (int v = 0; v < 3; v++) {\n\
                  long t = table_page[v];\n\
                  char *m = mmap(0, 19 * t, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);\n\
                  if (m == MAP_FAILED) { perror(\"mmap\"); return 0; }\n\
                  char *base = (char *)(((uintptr_t)m + t - 1) & ~(uintptr_t)(t - 1));\n\
                  memcpy(base, table_src[v], 17 * t);\n\
                  __builtin___clear_cache(base, base + 17 * t);\n\
                  if (seal(base, 17 * t)) return 0;\n\
                  tables[v] = base;\n\
                }\n\
                return 1; }\n\
              /* Entry i of page `kind` of table v, its record filled. */\n\
              static void *via_table(int v, int kind, long i, void *ctx, void *entry, void *target) {\n\
                long t = table_page[v];\n\
                uint64_t *rec = (uint64_t *)(tables[v] + 17 * t + 32 * i);\n\
                rec[0] = (uint64_t)ctx; rec[1] = (uint64_t)entry; rec[3] = (uint64_t)target;\n\
                return tables[v] + kind * t + 32 * i; }\n";
        for (name, bytes) in templates {
            let list: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
            c += &format!(
                "static const uint8_t tmpl_{name}[32] = {{{}}};\n",
                list.join(",")
            );
        }
        // The cache maintenance for code written through one view and run
        // through another (Arm ARM, self-modifying code): clean the data
        // cache to the point of unification by the written view's address,
        // invalidate the instruction cache by the running view's, with the
        // line sizes from CTR_EL0. qemu does not model caches: this runs
        // the instructions (they are allowed at EL0), it proves nothing
        // about coherence.
        c += "static void sync_views(char *rw, char *rx, long len) {\n\
              uint64_t ctr; __asm__ volatile(\"mrs %0, ctr_el0\" : \"=r\"(ctr));\n\
              uintptr_t dline = 4u << ((ctr >> 16) & 0xf), iline = 4u << (ctr & 0xf);\n\
              for (uintptr_t a = (uintptr_t)rw & ~(dline - 1); a < (uintptr_t)rw + len; a += dline)\n\
                __asm__ volatile(\"dc cvau, %0\" :: \"r\"(a) : \"memory\");\n\
              __asm__ volatile(\"dsb ish\" ::: \"memory\");\n\
              for (uintptr_t a = (uintptr_t)rx & ~(iline - 1); a < (uintptr_t)rx + len; a += iline)\n\
                __asm__ volatile(\"ic ivau, %0\" :: \"r\"(a) : \"memory\");\n\
              __asm__ volatile(\"dsb ish\\n\\tisb\" ::: \"memory\"); }\n";
        c += "static void *place(const uint8_t *tmpl, int reg, void *ctx, void *entry) {\n\
              uint8_t code[32]; uint32_t ldr; uint64_t c = (uint64_t)ctx, e = (uint64_t)entry;\n\
              memcpy(code, tmpl, 32); memcpy(&ldr, code + 4, 4);\n\
              if (reg >= 0) { ldr = (ldr & ~0x1fu) | (uint32_t)reg; memcpy(code + 4, &ldr, 4); }\n\
              memcpy(code + 16, &c, 8); memcpy(code + 24, &e, 8);\n\
              /* Dual-mapped, as the crate's default heaps: a memfd seen read-write to\n\
                 write through and read+exec (never writable) to run. */\n\
              int fd = memfd_create(\"wxthunk-matrix\", MFD_CLOEXEC);\n\
              if (fd < 0 || ftruncate(fd, 4096)) { perror(\"memfd\"); return 0; }\n\
              char *rw = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);\n\
              char *rx = mmap(0, 4096, PROT_READ | PROT_EXEC | (bti ? PROT_BTI : 0), MAP_SHARED, fd, 0);\n\
              if (rx == MAP_FAILED && bti) { bti = 0; rx = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0); }\n\
              close(fd);\n\
              if (rw == MAP_FAILED || rx == MAP_FAILED) { perror(\"mmap\"); return 0; }\n\
              memcpy(rw, code, 32); sync_views(rw, rx, 32);\n\
              return rx; }\n";
        let mut main = String::from("int main(void) {\n  if (!map_tables()) return 2;\n");
        let (mut run, mut frame) = (0, 0);
        for (n, sig) in signatures().iter().enumerate() {
            let classes: Vec<ArgClass> = sig.iter().map(|&t| TYPES[t].1).collect();
            let (kind, reg, ctx_ty, page) = match placement(&classes) {
                Placement::Register(r) => ("register", i32::from(r), "void *ctx", r as usize),
                Placement::Float(r) => ("float", i32::from(r), "double ctx", 8 + r as usize),
                Placement::Stack(0) => {
                    frame += 1;
                    ("frame", -1, "void *ctx", 16)
                }
                Placement::Stack(n) => {
                    panic!("{n} stack arguments: no AAPCS64 signature of 16 has any")
                }
            };
            run += 1;
            let ret = RETS[n % RETS.len()];
            let params: Vec<String> = sig
                .iter()
                .enumerate()
                .map(|(i, &t)| format!("{} a{i}", TYPES[t].0))
                .collect();
            let values: Vec<String> = sig
                .iter()
                .enumerate()
                .map(|(i, &t)| value(TYPES[t].0, (n * 31 + i) as u64))
                .collect();
            let mut all = params.clone();
            all.push(ctx_ty.into());
            c += &format!(
                "static int ctx{n};\nstatic {ret} entry{n}({}) {{\n",
                all.join(", ")
            );
            for (i, v) in values.iter().enumerate() {
                c += &format!("  check(a{i} == {v});\n");
            }
            c += &if kind == "float" {
                format!(
                    "  uint64_t bits; memcpy(&bits, &ctx, 8); check(bits == (uint64_t)&ctx{n});\n"
                )
            } else {
                format!("  check(ctx == &ctx{n});\n")
            };
            let retval = (ret != "void").then(|| value(ret, n as u64 + 1000));
            c += &match &retval {
                Some(v) => format!("  return {v};\n}}\n"),
                None => "}\n".into(),
            };
            let fnty = format!(
                "{ret} (*)({})",
                if sig.is_empty() {
                    "void".into()
                } else {
                    sig.iter()
                        .map(|&t| TYPES[t].0)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            main += &if kind == "frame" {
                format!(
                    "  {{ static uint64_t rec[3]; rec[0] = (uint64_t)&ctx{n}; rec[1] = (uint64_t)entry{n};\n\
                     void *t = place(tmpl_frame, -1, rec, (void *)wxthunk_0_1_aapcs64_frame_adapter);\n\
                     if (!t) return 2;\n    calls++;\n"
                )
            } else {
                format!(
                    "  {{ void *t = place(tmpl_{kind}, {reg}, &ctx{n}, (void *)entry{n}); if (!t) return 2;\n    calls++;\n"
                )
            };
            let call = match &retval {
                Some(v) => format!("check((({fnty})t)({}) == {v});", values.join(", ")),
                None => format!("(({fnty})t)({});", values.join(", ")),
            };
            main += &format!("    {call} }}\n");
            // The same call through slot i of every table's page for this
            // placement (the frame page's target is the adapter).
            let target = if kind == "frame" {
                "(void *)wxthunk_0_1_aapcs64_frame_adapter".to_owned()
            } else {
                format!("(void *)entry{n}")
            };
            main += &format!(
                "  for (int v = 0; v < 3; v++) {{\n\
                 long entries = table_page[v] / 32, i = {n} % 2 ? entries - 1 - {n} % entries : ({n} * 37) % entries;\n\
                 void *t = via_table(v, {page}, i, &ctx{n}, (void *)entry{n}, {target});\n\
                 calls++;\n    {call} }}\n"
            );
        }
        main += &format!(
            "  printf(\"%ld checks of arguments, contexts and results; code pages %s\\n\", checks,\n\
                    bti ? \"guarded (PROT_BTI)\" : \"not guarded (no PROT_BTI here)\");\n\
             printf(\"aarch64 matrix: {run} signatures, %ld calls, %ld mismatches\\n\", calls, mismatches);\n\
             return mismatches != 0;\n}}\n"
        );
        c += &main;
        (c, run, frame)
    }

    #[test]
    fn the_aarch64_matrix_source() {
        let (c, run, frame) = source();
        assert!(
            run > 100 && frame >= 12,
            "{run} signatures, {frame} on the frame path"
        );
        assert!(c.contains("int main(void)"));
        if let Some(dir) = std::env::var_os("WXTHUNK_AARCH64_MATRIX_DIR") {
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("matrix.c"), &c).unwrap();
            println!(
                "wrote {} ({run} signatures, {frame} on the frame path)",
                dir.join("matrix.c").display()
            );
        }
    }
}
