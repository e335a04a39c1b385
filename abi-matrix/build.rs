//! Generates the signature matrix: for each calling convention of the
//! target (System V and Windows x64 on x86_64, whichever of them is the C
//! convention there; AAPCS64 on AArch64),
//! signatures of 0 to 16 arguments mixing 8/16/32/64-bit
//! integers, pointers, f32, f64 and small `#[repr(C)]` structs by value
//! (of integers, of floats, mixed; 3 to 16 bytes), from a fixed
//! pseudo-random seed. Writes the C callers (compiled with `cc`) and the
//! Rust checkers from the same description, so the two sides cannot
//! disagree.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Signatures per convention; every arity 0..=16 appears several times.
const PER_CONV: usize = 170;

#[derive(Clone, Copy)]
enum Ty {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Ptr,
    /// A struct of [`STRUCTS`], by index.
    S(usize),
}

/// The structs passed by value: name and field types. Their eightbytes
/// cover every System V class pair, and their sizes both Windows x64
/// cases (1, 2, 4, 8 bytes by value; others by reference).
const STRUCTS: [(&str, &[Ty]); 9] = [
    ("SII", &[Ty::I32, Ty::I32]),           // 8: integer
    ("SLL", &[Ty::U64, Ty::I64]),           // 16: integer, integer
    ("SFF", &[Ty::F32, Ty::F32]),           // 8: xmm
    ("SDD", &[Ty::F64, Ty::F64]),           // 16: xmm, xmm
    ("SDL", &[Ty::F64, Ty::U64]),           // 16: xmm, integer
    ("SIF", &[Ty::I32, Ty::F32]),           // 8: integer (mixed eightbyte)
    ("SFFF", &[Ty::F32, Ty::F32, Ty::F32]), // 12: xmm, xmm
    ("SCS", &[Ty::U8, Ty::U16]),            // 4: integer
    ("S3B", &[Ty::U8, Ty::I8, Ty::U8]),     // 3: integer (by reference on win64)
];

/// Field names, in order.
const FIELDS: [&str; 3] = ["a", "b", "c"];

const ALL: [Ty; 11] = [
    Ty::I8,
    Ty::U8,
    Ty::I16,
    Ty::U16,
    Ty::I32,
    Ty::U32,
    Ty::I64,
    Ty::U64,
    Ty::F32,
    Ty::F64,
    Ty::Ptr,
];

impl Ty {
    fn rust(self) -> &'static str {
        match self {
            Ty::S(i) => STRUCTS[i].0,
            Ty::I8 => "i8",
            Ty::U8 => "u8",
            Ty::I16 => "i16",
            Ty::U16 => "u16",
            Ty::I32 => "i32",
            Ty::U32 => "u32",
            Ty::I64 => "i64",
            Ty::U64 => "u64",
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::Ptr => "*const u8",
        }
    }

    /// Windows x64 returns the struct in `rax` (1, 2, 4, 8 bytes).
    fn win64_returnable(self) -> bool {
        match self {
            Ty::S(i) => matches!(STRUCTS[i].0, "SII" | "SFF" | "SIF" | "SCS"),
            _ => true,
        }
    }

    /// Size and alignment in bytes, as C lays the type out.
    fn layout(self) -> (usize, usize) {
        match self {
            Ty::I8 | Ty::U8 => (1, 1),
            Ty::I16 | Ty::U16 => (2, 2),
            Ty::I32 | Ty::U32 | Ty::F32 => (4, 4),
            Ty::I64 | Ty::U64 | Ty::F64 | Ty::Ptr => (8, 8),
            Ty::S(i) => {
                let (mut size, mut align) = (0usize, 1usize);
                for f in STRUCTS[i].1 {
                    let (s, a) = f.layout();
                    size = size.next_multiple_of(a) + s;
                    align = align.max(a);
                }
                (size.next_multiple_of(align), align)
            }
        }
    }

    /// AAPCS64: the members of a homogeneous float aggregate (all `f32`
    /// or all `f64`, at most four), or 0.
    fn hfa_members(self) -> usize {
        match self {
            Ty::S(i) => {
                let fields = STRUCTS[i].1;
                let first = fields[0];
                let same = fields
                    .iter()
                    .all(|f| matches!((f, first), (Ty::F32, Ty::F32) | (Ty::F64, Ty::F64)));
                if same && fields.len() <= 4 {
                    fields.len()
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// The C expression that compares `x` and `y` of this type.
    fn c_eq(self, x: &str, y: &str) -> String {
        match self {
            Ty::S(i) => format!("eq_{}({x}, {y})", STRUCTS[i].0),
            _ => format!("{x} == {y}"),
        }
    }

    fn c(self) -> &'static str {
        match self {
            Ty::S(i) => STRUCTS[i].0,
            Ty::I8 => "int8_t",
            Ty::U8 => "uint8_t",
            Ty::I16 => "int16_t",
            Ty::U16 => "uint16_t",
            Ty::I32 => "int32_t",
            Ty::U32 => "uint32_t",
            Ty::I64 => "int64_t",
            Ty::U64 => "uint64_t",
            Ty::F32 => "float",
            Ty::F64 => "double",
            Ty::Ptr => "const void *",
        }
    }

    /// A value that uses the type's whole width, as (Rust, C) literals.
    fn value(self, seed: u64) -> (String, String) {
        let bits = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ seed;
        match self {
            Ty::S(i) => {
                let (name, fields) = STRUCTS[i];
                let values: Vec<(String, String)> = fields
                    .iter()
                    .enumerate()
                    .map(|(k, t)| t.value(bits.wrapping_add(k as u64 * 0x51)))
                    .collect();
                let rs = values
                    .iter()
                    .zip(FIELDS)
                    .map(|((r, _), f)| format!("{f}: {r}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let c = values
                    .iter()
                    .map(|(_, c)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    format!("({name} {{ {rs} }})"),
                    format!("(({name}){{ {c} }})"),
                )
            }
            Ty::I8 => {
                let v = bits as i8;
                (format!("({v}i8)"), format!("((int8_t){v})"))
            }
            Ty::U8 => {
                let v = bits as u8;
                (format!("{v}u8"), format!("((uint8_t){v}u)"))
            }
            Ty::I16 => {
                let v = bits as i16;
                (format!("({v}i16)"), format!("((int16_t){v})"))
            }
            Ty::U16 => {
                let v = bits as u16;
                (format!("{v}u16"), format!("((uint16_t){v}u)"))
            }
            Ty::I32 => {
                let v = (bits as i32).max(i32::MIN + 1);
                (format!("({v}i32)"), format!("((int32_t){v})"))
            }
            Ty::U32 => {
                let v = bits as u32;
                (format!("{v}u32"), format!("((uint32_t){v}u)"))
            }
            Ty::I64 => {
                let v = (bits as i64).max(i64::MIN + 1);
                (format!("({v}i64)"), format!("((int64_t){v}LL)"))
            }
            Ty::U64 => (format!("{bits}u64"), format!("((uint64_t){bits}ULL)")),
            Ty::F32 => {
                let v = (bits % 100_000) as f32 * 0.25 - 9_999.5;
                (format!("({v:?}f32)"), format!("((float){v:?})"))
            }
            Ty::F64 => {
                let v = (bits % 10_000_000) as f64 * 0.125 - 555_555.5;
                (format!("({v:?}f64)"), format!("((double){v:?})"))
            }
            Ty::Ptr => {
                let v = 0x1000 + (bits % 0xffff_ffff) * 16;
                (
                    format!("({v:#x}usize as *const u8)"),
                    format!("((const void *){v:#x}ULL)"),
                )
            }
        }
    }
}

/// Shapes at the edges of the placements, in every convention besides
/// the random ones: (integer-class, float) argument counts. System V puts
/// the context in a register below six integers, in an `xmm` register
/// from six integers and below eight floats, and on the stack (after 0, 1
/// or 2 spilled arguments) with both files full; Windows x64 goes by
/// position (stack from the fifth).
const EDGES: [(usize, usize); 12] = [
    (5, 0),
    (5, 11),
    (6, 0),
    (6, 7),
    (6, 8),
    (7, 8),
    (6, 9),
    (8, 8),
    (6, 10),
    (0, 4),
    (2, 3),
    (16, 0),
];

/// AArch64's edges: the context in the last `x` register, in the first
/// and the last `v` register, on the stack with both files full (the
/// frame path, in three interleavings), and the files overflowing alone.
const A64_EDGES: [(usize, usize); 12] = [
    (7, 0),
    (8, 0),
    (8, 7),
    (7, 9),
    (8, 8),
    (8, 8),
    (8, 8),
    (0, 8),
    (0, 16),
    (3, 12),
    (16, 0),
    (2, 3),
];

/// AAPCS64 (Linux): whether the context would follow arguments passed on
/// the stack, which the crate refuses at compile time (its one frame
/// adapter serves a context that is the first stack argument). The
/// crate's rule (`arch/aarch64_thunk.rs`), written again: what the crate
/// refuses must not be generated, and what it accepts is checked by C.
fn a64_context_after_stack(args: &[Ty]) -> bool {
    let (mut ngrn, mut nsrn, mut stack) = (0, 0, 0);
    for &t in args {
        match t {
            Ty::F32 | Ty::F64 if nsrn < 8 => nsrn += 1,
            Ty::F32 | Ty::F64 => stack += 1,
            Ty::S(_) => {
                let (hfa, words) = (t.hfa_members(), t.layout().0.div_ceil(8));
                if hfa > 0 && nsrn + hfa <= 8 {
                    nsrn += hfa;
                } else if hfa > 0 {
                    nsrn = 8;
                    stack += words;
                } else if ngrn + words <= 8 {
                    ngrn += words;
                } else {
                    ngrn = 8;
                    stack += words;
                }
            }
            _ if ngrn < 8 => ngrn += 1,
            _ => stack += 1,
        }
    }
    ngrn == 8 && nsrn == 8 && stack > 0
}

/// A signature of `ints` integer-class and `floats` float arguments, in a
/// pseudo-random interleaving.
fn edge_args((ints, floats): (usize, usize), rng: &mut Rng) -> Vec<Ty> {
    let (mut i, mut f) = (ints, floats);
    let mut args = Vec::new();
    while i + f > 0 {
        let take_int = f == 0 || (i > 0 && rng.next() % ((i + f) as u64) < (i as u64));
        if take_int {
            args.push([Ty::I8, Ty::U16, Ty::I32, Ty::U64, Ty::Ptr][(rng.next() % 5) as usize]);
            i -= 1;
        } else {
            args.push([Ty::F32, Ty::F64][(rng.next() % 2) as usize]);
            f -= 1;
        }
    }
    args
}

/// Signatures with structs at the edges of System V's placement (each also
/// run as Windows x64, where a struct is one position): a struct that no
/// longer fits the registers left goes on the stack whole and leaves them
/// to the context or to later arguments; the frame path with structs on
/// the stack, up to the most (18 eightbytes) a signature can put there.
fn struct_edges() -> Vec<Vec<Ty>> {
    let s = |name: &str| Ty::S(STRUCTS.iter().position(|(n, _)| *n == name).unwrap());
    let ints = |n| vec![Ty::I64; n];
    let floats = |n| vec![Ty::F64; n];
    let cat = |parts: &[Vec<Ty>]| parts.concat();
    vec![
        // Five integers, then a two-register struct: on the stack; the
        // context takes the sixth register.
        cat(&[ints(5), vec![s("SLL")]]),
        // ... and an integer after it takes that register instead.
        cat(&[ints(5), vec![s("SLL"), Ty::I32]]),
        // Seven doubles, then two: on the stack; the context in xmm7.
        cat(&[ints(6), floats(7), vec![s("SDD")]]),
        // A mixed struct with one xmm register left and integers full.
        cat(&[ints(6), floats(7), vec![s("SDL")]]),
        // Both files full (a struct takes the last two xmm registers),
        // structs on the stack (1 + 2 + 2 eightbytes).
        cat(&[
            ints(6),
            floats(6),
            vec![s("SDD"), s("S3B"), s("SLL"), s("SFFF")],
        ]),
        // The most: three integer pairs and four double pairs fill both
        // files, nine more pairs put 18 eightbytes on the stack.
        cat(&[vec![s("SLL"); 3], vec![s("SDD"); 4], vec![s("SDL"); 9]]),
        // Every struct in one signature.
        (0..STRUCTS.len()).map(Ty::S).collect(),
        // Structs between scalars, by reference and by value on win64.
        vec![
            s("SCS"),
            Ty::F32,
            s("SFFF"),
            Ty::Ptr,
            s("S3B"),
            s("SIF"),
            Ty::U8,
            s("SFF"),
        ],
    ]
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut c = String::from("#include <stdint.h>\n\n");
    let mut rs = String::from("use std::sync::atomic::{AtomicUsize, Ordering};\n\n");
    // The structs, on both sides, and C's comparison of each.
    rs.push_str("wxthunk::c_struct! {\n");
    for (name, fields) in STRUCTS {
        let c_fields: String = fields
            .iter()
            .zip(FIELDS)
            .map(|(t, f)| format!("{} {f}; ", t.c()))
            .collect();
        writeln!(c, "typedef struct {{ {c_fields}}} {name};").unwrap();
        let eq = fields
            .iter()
            .zip(FIELDS)
            .map(|(_, f)| format!("x.{f} == y.{f}"))
            .collect::<Vec<_>>()
            .join(" && ");
        writeln!(
            c,
            "static int eq_{name}({name} x, {name} y) {{ return {eq}; }}"
        )
        .unwrap();
        let rs_fields: String = fields
            .iter()
            .zip(FIELDS)
            .map(|(t, f)| format!("/// Field `{f}`.\n        pub {f}: {}, ", t.rust()))
            .collect();
        writeln!(
            rs,
            "    /// A struct the matrix passes by value.\n    #[allow(clippy::upper_case_acronyms)]\n    #[derive(Clone, Copy, Debug, PartialEq)]\n    pub struct {name} {{ {rs_fields}}}"
        )
        .unwrap();
    }
    rs.push_str("}\n\n");
    c.push('\n');
    let struct_edges = struct_edges();
    let mut checks = Vec::new();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let aarch64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "aarch64");
    let windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|o| o == "windows");
    // (name, Rust ABI, C attribute) of each convention, and its edges.
    type Conv = (&'static str, &'static str, &'static str);
    let (convs, edges): (&[Conv], &[(usize, usize)]) = if aarch64 {
        (&[("aapcs64", "C", "")], &A64_EDGES)
    } else if windows {
        // Windows x64 is the C convention there (MinGW's gcc calls with it
        // by default); System V is the other one.
        (
            &[
                ("sysv", "sysv64", "__attribute__((sysv_abi)) "),
                ("win64", "C", ""),
            ],
            &EDGES,
        )
    } else {
        (
            &[
                ("sysv", "C", ""),
                ("win64", "win64", "__attribute__((ms_abi)) "),
            ],
            &EDGES,
        )
    };
    for &(conv, abi, attr) in convs {
        for n in 0..PER_CONV + edges.len() + struct_edges.len() {
            let arity = n % 17;
            // A third of the signatures lean to floats, a third to
            // integers, so both register files overflow, alone and together;
            // a third mix in structs.
            let args: Vec<Ty> = match n.checked_sub(PER_CONV) {
                None => (0..arity)
                    .map(|_| match (n % 3, rng.next() % 10) {
                        (1, r) if r < 6 => [Ty::F32, Ty::F64][(rng.next() % 2) as usize],
                        (2, r) if r < 6 => {
                            [Ty::I64, Ty::U32, Ty::Ptr, Ty::I8][(rng.next() % 4) as usize]
                        }
                        (0, r) if r < 4 => Ty::S((rng.next() % STRUCTS.len() as u64) as usize),
                        _ => ALL[(rng.next() % ALL.len() as u64) as usize],
                    })
                    .collect(),
                Some(edge) if edge < edges.len() => edge_args(edges[edge], &mut rng),
                Some(edge) => struct_edges[edge - edges.len()].clone(),
            };
            if aarch64 && a64_context_after_stack(&args) {
                continue;
            }
            let arity = args.len();
            // Any return type, structs too (on Windows x64 those it returns
            // in `rax`).
            let returns: Vec<Ty> = ALL
                .into_iter()
                .chain((0..STRUCTS.len()).map(Ty::S))
                .filter(|t| conv != "win64" || t.win64_returnable())
                .collect();
            let ret = match rng.next() % (returns.len() as u64 + 1) {
                i if i as usize == returns.len() => None,
                i => Some(returns[i as usize]),
            };
            let name = format!("{conv}_{n}");
            let values: Vec<(String, String)> = args.iter().map(|t| t.value(rng.next())).collect();
            let ret_value = ret.map(|t| t.value(rng.next()));

            // C: call the thunk with the values, check the result.
            let c_params = if args.is_empty() {
                "void".to_owned()
            } else {
                args.iter().map(|t| t.c()).collect::<Vec<_>>().join(", ")
            };
            let c_ret = ret.map_or("void", Ty::c);
            let c_args = values
                .iter()
                .map(|(_, c)| c.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(c, "typedef {c_ret} ({attr}*fn_{name})({c_params});").unwrap();
            match (&ret, &ret_value) {
                (Some(t), Some((_, cv))) => writeln!(
                    c,
                    "int wx_call_{name}(fn_{name} f) {{ {ty} r = f({c_args}); return {eq}; }}\n",
                    ty = t.c(),
                    eq = t.c_eq("r", cv),
                )
                .unwrap(),
                _ => writeln!(
                    c,
                    "int wx_call_{name}(fn_{name} f) {{ f({c_args}); return 1; }}\n"
                )
                .unwrap(),
            }

            // Rust: a thunk that checks each argument and returns the value.
            let rs_params = args.iter().map(|t| t.rust()).collect::<Vec<_>>().join(", ");
            let rs_ret = ret.map_or("()".to_owned(), |t| t.rust().to_owned());
            let fn_ty = format!("unsafe extern \"{abi}\" fn({rs_params}) -> {rs_ret}");
            let closure_params = args
                .iter()
                .enumerate()
                .map(|(i, t)| format!("a{i}: {}", t.rust()))
                .collect::<Vec<_>>()
                .join(", ");
            let mut body = String::new();
            for (i, (rv, _)) in values.iter().enumerate() {
                writeln!(
                    body,
                    "            if a{i} != {rv} {{ mismatch.store({i}, Ordering::SeqCst); }}"
                )
                .unwrap();
            }
            let ret_expr = ret_value
                .as_ref()
                .map_or("()".to_owned(), |(rv, _)| rv.clone());
            writeln!(
                rs,
                "unsafe extern \"C\" {{ fn wx_call_{name}(f: {fn_ty}) -> i32; }}"
            )
            .unwrap();
            writeln!(
                rs,
                "#[allow(clippy::too_many_arguments, clippy::unnecessary_cast, clippy::float_cmp, clippy::unused_unit, unused_parens)]
fn check_{name}(heap: &wxthunk::Heap) -> Result<(), String> {{
    let mismatch = AtomicUsize::new(usize::MAX);
    let calls = AtomicUsize::new(0);
    let t = heap
        .thunk::<{fn_ty}, _>(|{closure_params}| -> {rs_ret} {{
            calls.fetch_add(1, Ordering::SeqCst);
{body}            {ret_expr}
        }})
        .map_err(|e| e.to_string())?;
    // SAFETY: the thunk lives across the call; the C side calls it once
    // with the declared signature.
    let ok = unsafe {{ wx_call_{name}(t.as_fn()) }};
    let bad = mismatch.load(Ordering::SeqCst);
    if calls.load(Ordering::SeqCst) != 1 {{ return Err(\"not called exactly once\".into()); }}
    if bad != usize::MAX {{ return Err(format!(\"argument {{bad}} arrived changed\")); }}
    if ok != 1 {{ return Err(\"the C caller got a different result\".into()); }}
    Ok(())
}}
"
            )
            .unwrap();
            let structs = args.iter().filter(|t| matches!(t, Ty::S(_))).count();
            checks.push((name, fn_ty, arity, structs));
        }
    }
    writeln!(
        rs,
        "/// Every generated signature: (name, fn type, arity, check)."
    )
    .unwrap();
    writeln!(rs, "/// Checks one signature on a heap.\npub type Check = fn(&wxthunk::Heap) -> Result<(), String>;").unwrap();
    writeln!(
        rs,
        "/// Every signature: the C caller's name, its Rust type, its arity, how many of its\n/// arguments are structs, and its check.\npub static SIGNATURES: &[(&str, &str, usize, usize, Check)] = &["
    )
    .unwrap();
    for (name, fn_ty, arity, structs) in &checks {
        writeln!(
            rs,
            "    ({name:?}, {fn_ty:?}, {arity}, {structs}, check_{name}),"
        )
        .unwrap();
    }
    writeln!(rs, "];").unwrap();

    std::fs::write(out.join("matrix.c"), c).unwrap();
    std::fs::write(out.join("matrix.rs"), rs).unwrap();
    cc::Build::new()
        .file(out.join("matrix.c"))
        .opt_level(1)
        .warnings(false)
        .compile("wxthunk_abi_matrix");
    println!("cargo::rerun-if-changed=build.rs");
}
