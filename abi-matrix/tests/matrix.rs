//! Runs the generated signature matrix (scalars and small structs by
//! value, called by gcc-compiled C) under every heap strategy this
//! process allows, in this process and inside each lockdown (in a child
//! process that locks itself down first).
#![cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    any(target_os = "linux", windows)
))]

use wxthunk::Strategy;
use wxthunk_abi_matrix::SIGNATURES;
#[cfg(target_os = "linux")]
use wxthunk_testkit::{Lockdown, run_locked};

#[test]
fn c_callers_pass_every_argument_and_get_every_result() {
    every_signature_on_every_heap();
}

/// One test per lockdown: the child that runs it locks itself down first.
#[cfg(target_os = "linux")]
macro_rules! under_lockdown {
    ($($name:ident: $lockdown:expr;)*) => {$(
        #[test]
        fn $name() {
            if let Some(out) = run_locked(stringify!($name), $lockdown, every_signature_on_every_heap) {
                assert!(out.contains(" signatures ("), "{out}");
            }
        }
    )*};
}

#[cfg(target_os = "linux")]
under_lockdown! {
    under_mdwe: Lockdown::Mdwe;
    under_mdwe_without_memfd: Lockdown::NoMemfdMdwe;
    under_systemd_memory_deny_write_execute: Lockdown::SystemdWx;
    without_memfd: Lockdown::NoMemfd;
}

/// Calls every generated signature through a thunk on every heap this
/// process allows, checking every argument and result in C.
fn every_signature_on_every_heap() {
    let policy = wxthunk::probe();
    let heaps: Vec<_> = wxthunk_testkit::thunk_heap_configs()
        .into_iter()
        .map(|(name, builder)| (name, builder.build().unwrap()))
        .collect();
    for (name, s) in [
        ("dual-map", Strategy::DualMap),
        ("protect", Strategy::Protect),
        ("static-trampolines", Strategy::StaticTrampolines),
    ] {
        if !policy.allows(s) {
            println!(
                "SKIPPED: {name}: not available here ({}); not checked",
                policy.check(s)
            );
        }
    }
    assert!(!heaps.is_empty(), "no heap strategy works:\n{policy}");
    let mut failures = Vec::new();
    let mut refused = 0;
    for (heap_name, heap) in &heaps {
        for (name, ty, _, _, check) in SIGNATURES {
            match check(heap) {
                Ok(()) => {}
                // Windows' static trampolines are the table compiled into
                // the image, which has pages for Windows x64's placements
                // only: a System V thunk there is refused, clearly.
                Err(e)
                    if cfg!(windows)
                        && heap.strategy() == Strategy::StaticTrampolines
                        && name.starts_with("sysv")
                        && e.contains("no page for this calling convention") =>
                {
                    refused += 1
                }
                Err(e) => failures.push(format!("{heap_name} {name} `{ty}`: {e}")),
            }
        }
    }
    if refused > 0 {
        println!(
            "SKIPPED: {refused} System V signatures on static trampolines, whose context goes to \
             rdi, rsi or an xmm register: the table compiled into a Windows image has pages for \
             Windows x64's placements only (each was refused with that reason)"
        );
    }
    coverage(heaps.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The float-class parameters of a signature's Rust type (not its return).
fn float_params(ty: &str) -> usize {
    let params = ty.split_once("fn(").map_or("", |(_, rest)| rest);
    let params = params.split_once(')').map_or("", |(params, _)| params);
    params.matches("f32").count() + params.matches("f64").count()
}

/// Checks that the matrix reaches every placement of System V and Windows
/// x64, and prints its counts.
#[cfg(target_arch = "x86_64")]
fn coverage(heaps: usize) {
    let by_arity = |a: usize| SIGNATURES.iter().filter(|s| s.2 == a).count();
    let with_structs = SIGNATURES.iter().filter(|s| s.3 > 0).count();
    // The counts below read scalar signatures' types (a struct is neither
    // an integer nor a float there); the struct edges are in build.rs.
    let scalar = || SIGNATURES.iter().filter(|s| s.3 == 0);
    let stack = SIGNATURES.iter().filter(|s| s.2 >= 6).count();
    // System V signatures whose thunk passes the context in a float
    // register: six integer-class arguments or more, fewer than 8 floats
    // (counted among the parameters, not the return type).
    let float_spill = scalar().filter(|s| float_params(s.1) > 8).count();
    let float_context = scalar()
        .filter(|s| {
            s.0.starts_with("sysv") && s.2 >= 6 + float_params(s.1) && float_params(s.1) < 8
        })
        .count();
    // Every frame adapter (one per convention and stack-argument count) is
    // reached: System V puts 0-2 arguments on the stack when both register
    // files are full, Windows x64 0-12 (from the fifth position).
    let stack_counts = |conv: &str| -> std::collections::BTreeSet<usize> {
        scalar()
            .filter(|s| s.0.starts_with(conv))
            .filter_map(|s| {
                let (floats, args) = (float_params(s.1), s.2);
                let ints = args - floats;
                match conv {
                    "sysv" => (ints >= 6 && floats >= 8).then(|| (ints - 6) + (floats - 8)),
                    _ => args.checked_sub(4),
                }
            })
            .collect()
    };
    assert!(
        (0..=2).all(|n| stack_counts("sysv").contains(&n)),
        "System V frame counts covered: {:?}",
        stack_counts("sysv")
    );
    assert!(
        (0..=12).all(|n| stack_counts("win64").contains(&n)),
        "win64 frame counts covered: {:?}",
        stack_counts("win64")
    );
    assert!(
        with_structs >= 100,
        "the matrix passes structs in {with_structs} signatures only"
    );
    assert!(
        float_context >= 20,
        "the matrix covers the float-register context with {float_context} signatures only"
    );
    println!(
        "{} signatures ({} System V, {} win64; arity 0: {}, 16: {}; {} with 6+ arguments, {} with 9+ floats, {} with the context in an xmm register, {} with structs by value) x {} heaps",
        SIGNATURES.len(),
        SIGNATURES
            .iter()
            .filter(|s| s.0.starts_with("sysv"))
            .count(),
        SIGNATURES
            .iter()
            .filter(|s| s.0.starts_with("win64"))
            .count(),
        by_arity(0),
        by_arity(16),
        stack,
        float_spill,
        float_context,
        with_structs,
        heaps
    );
}

/// Checks that the matrix reaches every placement of AAPCS64 (the context
/// in an `x` register, in a `v` register, on the stack through the frame
/// adapter) and structs by value, and prints its counts.
#[cfg(target_arch = "aarch64")]
fn coverage(heaps: usize) {
    let scalar = || SIGNATURES.iter().filter(|s| s.3 == 0);
    let (mut in_x, mut in_v, mut frame) = (0, 0, 0);
    for s in scalar() {
        let floats = float_params(s.1);
        let ints = s.2 - floats;
        match (ints >= 8, floats >= 8) {
            (false, _) => in_x += 1,
            (true, false) => in_v += 1,
            (true, true) => frame += 1,
        }
    }
    let with_structs = SIGNATURES.iter().filter(|s| s.3 > 0).count();
    assert!(
        in_x >= 50 && in_v >= 10 && frame >= 2,
        "x {in_x}, v {in_v}, frame {frame}"
    );
    assert!(
        with_structs >= 50,
        "the matrix passes structs in {with_structs} signatures only"
    );
    println!(
        "{} signatures (AAPCS64; arity 0: {}, 16: {}; scalar ones with the context in an x register: \
         {in_x}, in a v register: {in_v}, on the stack: {frame}; {with_structs} with structs by value) \
         x {heaps} heaps",
        SIGNATURES.len(),
        SIGNATURES.iter().filter(|s| s.2 == 0).count(),
        SIGNATURES.iter().filter(|s| s.2 == 16).count(),
    );
}
