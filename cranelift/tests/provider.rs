//! cranelift-jit modules on `WxMemoryProvider`, run plainly and under each
//! lockdown in a child process: functions doing arithmetic, calling back
//! into Rust through a symbol, reading a read-only data object and bumping
//! a writable one; a second `finalize` with new functions that call the
//! first ones. In the same child, cranelift's own providers are tried:
//! under every lockdown that refuses `mprotect` to exec they fail, which is
//! the difference this crate makes.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]
// The helpers pass cranelift's own error type through.
#![allow(clippy::result_large_err)]

use wxthunk_testkit as support;

use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Signature, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{ArenaMemoryProvider, JITBuilder, JITMemoryProvider, JITModule};
use cranelift_module::{DataDescription, FuncId, Linkage, Module, ModuleResult};
use support::{Lockdown, maps};
use wxthunk::CodeStrategy;
use wxthunk_cranelift::WxMemoryProvider;

extern "C" fn rust_square(x: i64) -> i64 {
    x * x
}

/// A module whose code and data go to `provider` (cranelift's own
/// `SystemMemoryProvider` when `None`).
fn module(provider: Option<Box<dyn JITMemoryProvider + Send>>) -> JITModule {
    let mut flags = settings::builder();
    flags.set("use_colocated_libcalls", "false").unwrap();
    flags.set("is_pic", "false").unwrap();
    let isa = cranelift_native::builder()
        .unwrap()
        .finish(settings::Flags::new(flags))
        .unwrap();
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    builder.symbol("rust_square", rust_square as *const u8);
    if let Some(provider) = provider {
        builder.memory_provider(provider);
    }
    JITModule::new(builder)
}

fn sig(module: &JITModule, params: usize) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..params {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

/// Defines `name` with `params` i64 parameters, its body built by `body`
/// from the parameters.
fn define(
    module: &mut JITModule,
    name: &str,
    params: usize,
    body: impl FnOnce(
        &mut JITModule,
        &mut FunctionBuilder<'_>,
        &[cranelift_codegen::ir::Value],
    ) -> cranelift_codegen::ir::Value,
) -> ModuleResult<FuncId> {
    let mut ctx = module.make_context();
    ctx.func.signature = sig(module, params);
    let id = module.declare_function(name, Linkage::Export, &ctx.func.signature)?;
    let mut fctx = FunctionBuilderContext::new();
    let config = module.target_config();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let args = b.block_params(entry).to_vec();
        let result = body(module, &mut b, &args);
        b.ins().return_(&[result]);
        b.finalize(config);
    }
    module.define_function(id, &mut ctx)?;
    module.clear_context(&mut ctx);
    Ok(id)
}

/// Builds, finalizes and runs the module's functions, twice over (a second
/// batch after the first `finalize`), checking results and the protection
/// of each kind of memory.
fn run_module(mut m: JITModule) -> ModuleResult<()> {
    let ro = m.declare_data("table", Linkage::Local, false, false)?;
    let mut desc = DataDescription::new();
    desc.define(Box::new(1234i64.to_le_bytes()));
    m.define_data(ro, &desc)?;
    let counter = m.declare_data("counter", Linkage::Local, true, false)?;
    let mut desc = DataDescription::new();
    desc.define_zeroinit(8);
    m.define_data(counter, &desc)?;

    let add_mul = define(&mut m, "add_mul", 2, |_, b, a| {
        let s = b.ins().iadd(a[0], a[1]);
        b.ins().imul_imm_s(s, 3)
    })?;
    let square_plus_one = define(&mut m, "square_plus_one", 1, |m, b, a| {
        let callee = m
            .declare_function("rust_square", Linkage::Import, &sig(m, 1))
            .unwrap();
        let callee = m.declare_func_in_func(callee, b.func);
        let call = b.ins().call(callee, &[a[0]]);
        let r = b.inst_results(call)[0];
        b.ins().iadd_imm_s(r, 1)
    })?;
    let read_table = define(&mut m, "read_table", 1, |m, b, a| {
        let gv = m.declare_data_in_func(ro, b.func);
        let at = b.ins().symbol_value(types::I64, gv);
        let v = b.ins().load(types::I64, MemFlagsData::trusted(), at, 0);
        b.ins().iadd(v, a[0])
    })?;
    let bump = define(&mut m, "bump", 1, |m, b, a| {
        let gv = m.declare_data_in_func(counter, b.func);
        let at = b.ins().symbol_value(types::I64, gv);
        let v = b.ins().load(types::I64, MemFlagsData::trusted(), at, 0);
        let v = b.ins().iadd(v, a[0]);
        b.ins().store(MemFlagsData::trusted(), v, at, 0);
        v
    })?;
    m.finalize_definitions()?;

    let f2 = |m: &JITModule, id| -> extern "C" fn(i64, i64) -> i64 {
        // SAFETY: a finalized function of this signature.
        unsafe { std::mem::transmute(m.get_finalized_function(id)) }
    };
    let f1 = |m: &JITModule, id| -> extern "C" fn(i64) -> i64 {
        // SAFETY: a finalized function of this signature.
        unsafe { std::mem::transmute(m.get_finalized_function(id)) }
    };
    assert_eq!(f2(&m, add_mul)(4, 10), 42);
    assert_eq!(f1(&m, square_plus_one)(7), 50);
    assert_eq!(f1(&m, read_table)(1), 1235);
    assert_eq!(f1(&m, bump)(5), 5);
    assert_eq!(f1(&m, bump)(5), 10);
    let code = maps::mapping_at(m.get_finalized_function(add_mul) as usize).unwrap();
    assert!(code.perms.starts_with("r-x"), "{code:?}");
    let (table, _) = m.get_finalized_data(ro);
    let table = maps::mapping_at(table as usize).unwrap();
    assert!(table.perms.starts_with("r--"), "{table:?}");
    let (count, _) = m.get_finalized_data(counter);
    let count = maps::mapping_at(count as usize).unwrap();
    assert!(count.perms.starts_with("rw-"), "{count:?}");

    // The module grows: new functions calling the first ones, finalized
    // again; the old ones still run, and their code never became writable.
    let twice = define(&mut m, "twice", 1, |m, b, a| {
        let callee = m.declare_func_in_func(add_mul, b.func);
        let call = b.ins().call(callee, &[a[0], a[0]]);
        b.inst_results(call)[0]
    })?;
    let bump_twice = define(&mut m, "bump_twice", 1, |m, b, a| {
        let callee = m.declare_func_in_func(bump, b.func);
        let first = b.ins().call(callee, &[a[0]]);
        let first = b.inst_results(first)[0];
        let second = b.ins().call(callee, &[first]);
        b.inst_results(second)[0]
    })?;
    m.finalize_definitions()?;
    assert_eq!(f1(&m, twice)(5), 30);
    assert_eq!(f1(&m, bump_twice)(1), 22); // 10 + 1 = 11, then 11 + 11
    assert_eq!(f2(&m, add_mul)(1, 1), 6);
    assert!(maps::wx_mappings().is_empty(), "{:?}", maps::wx_mappings());
    let code_at = m.get_finalized_function(twice) as usize;
    let data_at = m.get_finalized_data(counter).0 as usize;
    // SAFETY: nothing of the module is used after this.
    unsafe { m.free_memory() };
    // Everything is released: the code and the data are unmapped.
    assert!(
        maps::mapping_at(code_at).is_none(),
        "{:?}",
        maps::mapping_at(code_at)
    );
    assert!(
        maps::mapping_at(data_at).is_none(),
        "{:?}",
        maps::mapping_at(data_at)
    );
    Ok(())
}

/// The module on `WxMemoryProvider` runs; then cranelift's own providers
/// are tried on the same module: whether each worked.
fn provider_and_peers() -> (bool, bool) {
    let provider = WxMemoryProvider::new().unwrap();
    println!("WxMemoryProvider strategy: {}", provider.strategy());
    run_module(module(Some(Box::new(provider)))).unwrap();
    println!("WX-OK");
    let system = run_module(module(None));
    println!("SystemMemoryProvider: {system:?}");
    // The arena provider panics where it cannot protect its memory.
    let arena = std::panic::catch_unwind(|| {
        let arena = ArenaMemoryProvider::new_with_size(1 << 20).unwrap();
        run_module(module(Some(Box::new(arena)))).map_err(|e| e.to_string())
    });
    println!("ArenaMemoryProvider: {arena:?}");
    (system.is_ok(), matches!(arena, Ok(Ok(()))))
}

#[test]
fn plain_process_every_provider_works() {
    if let Some(out) = support::in_child("plain_process_every_provider_works", || {
        assert_eq!(provider_and_peers(), (true, true));
        // Every strategy for written code works too, when forced.
        for s in [
            CodeStrategy::Protect,
            CodeStrategy::DualMap,
            CodeStrategy::DualMapFile,
        ] {
            if wxthunk::probe().allows(s.into()) {
                let p = WxMemoryProvider::with_strategy(s).unwrap();
                run_module(module(Some(Box::new(p)))).unwrap();
                println!("FORCED-OK {s}");
            }
        }
    }) {
        assert!(out.contains("WX-OK"), "{out}");
        assert!(out.contains("FORCED-OK dual-map-file"), "{out}");
    }
}

fn locked(name: &str, lockdown: Lockdown, strategy: CodeStrategy) {
    let out = support::run_locked(name, lockdown, || {
        let (system, arena) = provider_and_peers();
        assert!(
            !system,
            "cranelift's SystemMemoryProvider worked under the lockdown"
        );
        assert!(
            !arena,
            "cranelift's ArenaMemoryProvider worked under the lockdown"
        );
        assert_eq!(WxMemoryProvider::new().unwrap().strategy(), strategy);
    });
    if let Some(out) = out {
        assert!(out.contains("WX-OK"), "{out}");
    }
}

#[test]
fn mdwe_only_wx_works() {
    locked("mdwe_only_wx_works", Lockdown::Mdwe, CodeStrategy::DualMap);
}

#[test]
fn mdwe_without_memfd_only_wx_works() {
    locked(
        "mdwe_without_memfd_only_wx_works",
        Lockdown::NoMemfdMdwe,
        CodeStrategy::DualMapFile,
    );
}

#[test]
fn systemd_rule_set_only_wx_works() {
    locked(
        "systemd_rule_set_only_wx_works",
        Lockdown::SystemdWx,
        CodeStrategy::DualMap,
    );
}

#[test]
fn a_strategy_the_process_refuses_is_a_clear_error() {
    let out = support::run_locked(
        "a_strategy_the_process_refuses_is_a_clear_error",
        Lockdown::Mdwe,
        || {
            let err = WxMemoryProvider::with_strategy(CodeStrategy::Protect).unwrap_err();
            assert!(
                matches!(err, wxthunk::Error::StrategyUnavailable { .. }),
                "{err:?}"
            );
            println!("REFUSED {err}");
        },
    );
    if let Some(out) = out {
        assert!(out.contains("REFUSED"), "{out}");
    }
}

/// cranelift's contract: a finalized function's pointer stays valid until
/// `free_memory`, also when the module is dropped without it (what
/// cranelift's examples do). Compile a function returning 40 plus its
/// argument, finalize, drop the module, call: 42 with cranelift's provider,
/// and with ours (9bc2f4c unmapped its arenas on drop: SIGSEGV). Ours also
/// keeps a finalized writable data object the code reads (cranelift's
/// `SystemMemoryProvider` crashes there: its current data chunk is freed
/// on drop). In a child process, where a crash is a failed test, not a
/// dead test runner.
#[test]
fn finalized_code_outlives_a_module_dropped_without_free_memory() {
    let name = "finalized_code_outlives_a_module_dropped_without_free_memory";
    let out = support::in_child(name, || {
        let build = |provider: Option<Box<dyn JITMemoryProvider + Send>>, data: bool| {
            let mut m = module(provider);
            let seen = m.declare_data("seen", Linkage::Local, true, false).unwrap();
            let mut desc = DataDescription::new();
            desc.define(Box::new(40i64.to_le_bytes()));
            m.define_data(seen, &desc).unwrap();
            let id = define(&mut m, "forty_two", 1, |m, b, a| {
                let v = if data {
                    let gv = m.declare_data_in_func(seen, b.func);
                    let at = b.ins().symbol_value(types::I64, gv);
                    b.ins().load(types::I64, MemFlagsData::trusted(), at, 0)
                } else {
                    b.ins().iconst(types::I64, 40)
                };
                b.ins().iadd(v, a[0])
            })
            .unwrap();
            m.finalize_definitions().unwrap();
            let code = m.get_finalized_function(id);
            drop(m); // without free_memory
            // SAFETY: a finalized function of this signature, valid until
            // free_memory, which nobody called.
            unsafe { std::mem::transmute::<*const u8, extern "C" fn(i64) -> i64>(code) }
        };
        let theirs = build(None, false);
        assert_eq!(theirs(std::hint::black_box(2)), 42);
        for data in [false, true] {
            let ours = build(Some(Box::new(WxMemoryProvider::new().unwrap())), data);
            assert_eq!(ours(std::hint::black_box(2)), 42, "data: {data}");
        }
        println!("OUTLIVES-OK");
    });
    if let Some(out) = out {
        assert!(out.contains("OUTLIVES-OK"), "{out}");
    }
}
