//! The signature matrix run under `qemu-aarch64` by `.ci/aarch64`: C
//! source that places this module's thunk bytes, their literals patched
//! with real addresses, in a dual-mapped memfd (written through its
//! read-write view, run through its read+exec one, with the cache
//! maintenance between the two views' addresses), calls each thunk and the
//! same signature through every trampoline table through a function
//! pointer of its signature, and checks every argument, the context and
//! the return value. Written to the directory
//! `WXTHUNK_AARCH64_MATRIX_DIR` names (the test always generates it).

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
        include_str!("../aarch64_adapters.s"),
        include_str!("../aarch64_trampolines.s"),
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
    c += "extern char wxthunk_0_1_aapcs64_frame_adapter[], wxthunk_0_1_trampoline_table[];\n\
          #define UNIT 65536L\n\
          static char *table;\n\
          /* The table copied into fresh memory aligned to its 64 KiB unit (17 units of\n\
             code made read+exec, then the record unit), as the crate maps it. */\n\
          static int map_table(void) {\n\
            char *m = mmap(0, 19 * UNIT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);\n\
            if (m == MAP_FAILED) { perror(\"mmap\"); return 0; }\n\
            char *base = (char *)(((uintptr_t)m + UNIT - 1) & ~(uintptr_t)(UNIT - 1));\n\
            memcpy(base, wxthunk_0_1_trampoline_table, 17 * UNIT);\n\
            __builtin___clear_cache(base, base + 17 * UNIT);\n\
            if (seal(base, 17 * UNIT)) return 0;\n\
            table = base;\n\
            return 1; }\n\
          /* Entry i of unit `kind` of the table, its record filled. */\n\
          static void *via_table(int kind, long i, void *ctx, void *entry, void *target) {\n\
            uint64_t *rec = (uint64_t *)(table + 17 * UNIT + 32 * i);\n\
            rec[0] = (uint64_t)ctx; rec[1] = (uint64_t)entry; rec[3] = (uint64_t)target;\n\
            return table + kind * UNIT + 32 * i; }\n";
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
    let mut main = String::from("int main(void) {\n  if (!map_table()) return 2;\n");
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
            format!("  uint64_t bits; memcpy(&bits, &ctx, 8); check(bits == (uint64_t)&ctx{n});\n")
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
        // The same call through a slot of the table's unit for this
        // placement (the frame page's target is the adapter).
        let target = if kind == "frame" {
            "(void *)wxthunk_0_1_aapcs64_frame_adapter".to_owned()
        } else {
            format!("(void *)entry{n}")
        };
        main += &format!(
            "  {{ long entries = UNIT / 32, i = {n} % 2 ? entries - 1 - {n} % entries : ({n} * 37) % entries;\n\
             void *t = via_table({page}, i, &ctx{n}, (void *)entry{n}, {target});\n\
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
