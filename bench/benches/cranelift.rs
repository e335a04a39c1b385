//! cranelift-jit memory providers side by side: wxthunk's
//! `WxMemoryProvider` (each strategy this process allows) against
//! cranelift's own `SystemMemoryProvider` and `ArenaMemoryProvider`.
//!
//! Two groups:
//! - **provider**: the provider alone, driven as `JITModule` drives it for
//!   a module of 300 small functions (an executable allocation each, 16
//!   read-only and 16 writable data objects), one `finalize`, then
//!   `free_memory`;
//! - **module**: a whole `JITModule` of 300 small functions, compiled,
//!   finalized, one called, freed (the provider's share of this is small:
//!   compilation dominates).
//!
//! Run: `cargo bench -p wxthunk-bench --bench cranelift`
// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;

use cranelift_codegen::ir::{AbiParam, InstBuilder, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{
    ArenaMemoryProvider, BranchProtection, JITBuilder, JITMemoryKind, JITMemoryProvider, JITModule,
    SystemMemoryProvider,
};
use cranelift_module::{Linkage, Module};
use criterion::{Criterion, criterion_group, criterion_main};
use wxthunk::{CodeStrategy, Strategy};
use wxthunk_cranelift::WxMemoryProvider;

const FUNCTIONS: usize = 300;

type MakeProvider = Box<dyn Fn() -> Box<dyn JITMemoryProvider + Send>>;

/// Every provider this process can run, by name.
fn providers() -> Vec<(String, MakeProvider)> {
    let mut v: Vec<(String, MakeProvider)> = vec![
        (
            "cranelift System".into(),
            Box::new(|| Box::new(SystemMemoryProvider::new())),
        ),
        (
            "cranelift Arena 16 MiB".into(),
            Box::new(|| Box::new(ArenaMemoryProvider::new_with_size(16 << 20).unwrap())),
        ),
    ];
    for s in [
        CodeStrategy::Protect,
        CodeStrategy::DualMap,
        CodeStrategy::DualMapFile,
    ] {
        if wxthunk::probe().allows(Strategy::from(s)) {
            v.push((
                format!("wxthunk {s}"),
                Box::new(move || Box::new(WxMemoryProvider::with_strategy(s).unwrap())),
            ));
        }
    }
    v
}

fn provider_alone(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!(
        "cranelift/provider: {FUNCTIONS} code + 32 data, finalize, free"
    ));
    for (name, make) in providers() {
        g.bench_function(&name, |b| {
            b.iter(|| {
                let mut p = make();
                for i in 0..FUNCTIONS {
                    let at = p
                        .allocate(48 + i % 64, 16, JITMemoryKind::Executable)
                        .unwrap();
                    // SAFETY: the provider handed out at least 48 writable bytes.
                    unsafe { at.write_bytes(0xc3, 48) };
                }
                for i in 0..16 {
                    let ro = p.allocate(24 + i, 8, JITMemoryKind::ReadOnly).unwrap();
                    let rw = p.allocate(16, 8, JITMemoryKind::Writable).unwrap();
                    // SAFETY: as above, for the data objects.
                    unsafe {
                        ro.write_bytes(1, 24);
                        rw.write_bytes(2, 16);
                    }
                }
                p.finalize(BranchProtection::None).unwrap();
                black_box(&p);
                // SAFETY: nothing allocated is used after this.
                unsafe { p.free_memory() };
            })
        });
    }
    g.finish();
}

/// A module of `FUNCTIONS` functions `f_i(x) = x * 3 + i`, compiled and
/// finalized on `provider`; calls one, then frees the module.
fn whole_module(provider: Box<dyn JITMemoryProvider + Send>) -> i64 {
    let mut flags = settings::builder();
    flags.set("use_colocated_libcalls", "false").unwrap();
    flags.set("is_pic", "false").unwrap();
    let isa = cranelift_native::builder()
        .unwrap()
        .finish(settings::Flags::new(flags))
        .unwrap();
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    builder.memory_provider(provider);
    let mut module = JITModule::new(builder);
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut last = None;
    for i in 0..FUNCTIONS {
        ctx.func.signature.params.push(AbiParam::new(types::I64));
        ctx.func.signature.returns.push(AbiParam::new(types::I64));
        let id = module
            .declare_function(&format!("f{i}"), Linkage::Export, &ctx.func.signature)
            .unwrap();
        let config = module.target_config();
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let x = b.block_params(entry)[0];
        let v = b.ins().imul_imm_s(x, 3);
        let v = b.ins().iadd_imm_s(v, i as i64);
        b.ins().return_(&[v]);
        b.finalize(config);
        module.define_function(id, &mut ctx).unwrap();
        module.clear_context(&mut ctx);
        last = Some(id);
    }
    module.finalize_definitions().unwrap();
    // SAFETY: a finalized function of this signature.
    let f: extern "C" fn(i64) -> i64 =
        unsafe { std::mem::transmute(module.get_finalized_function(last.unwrap())) };
    let got = f(black_box(2));
    // SAFETY: `f` is not called after this.
    unsafe { module.free_memory() };
    got
}

fn module(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("cranelift/module of {FUNCTIONS} functions"));
    g.sample_size(20);
    for (name, make) in providers() {
        g.bench_function(&name, |b| {
            b.iter(|| assert_eq!(whole_module(make()), 6 + FUNCTIONS as i64 - 1))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = wxthunk_bench::config();
    targets = provider_alone, module
}
criterion_main!(benches);
