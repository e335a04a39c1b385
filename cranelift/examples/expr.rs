//! Compiles an expression over `a` and `b` (integers, `+ - *`, parentheses)
//! with cranelift into an `extern "C" fn(i64, i64) -> i64` and calls it,
//! its code in memory from `WxMemoryProvider`.
//!
//! ```sh
//! cargo run -p wxthunk-cranelift --example expr -- "(a + b) * (a - b)" 7 3
//! cargo run -p wxthunk-cranelift --example expr -- --mdwe "(a + b) * (a - b)" 7 3
//! ```
//!
//! With `--mdwe` the process first turns on Linux `PR_SET_MDWE` (no mapping
//! may become executable after it was writable), under which cranelift's
//! own memory providers fail.

use std::iter::Peekable;
use std::str::Chars;

use cranelift_codegen::ir::{AbiParam, InstBuilder, Value, types};
use cranelift_codegen::settings;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use wxthunk_cranelift::WxMemoryProvider;

/// A recursive-descent parser that emits cranelift instructions as it
/// reads: `expr = term (('+' | '-') term)*`, `term = atom ('*' atom)*`,
/// `atom = number | 'a' | 'b' | '(' expr ')' | '-' atom`.
struct Parser<'s, 'b, 'f> {
    chars: Peekable<Chars<'s>>,
    b: &'b mut FunctionBuilder<'f>,
    a: Value,
    bv: Value,
}

impl Parser<'_, '_, '_> {
    fn peek(&mut self) -> Option<char> {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
        self.chars.peek().copied()
    }

    fn expr(&mut self) -> Result<Value, String> {
        let mut v = self.term()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.chars.next();
            let rhs = self.term()?;
            v = if op == '+' {
                self.b.ins().iadd(v, rhs)
            } else {
                self.b.ins().isub(v, rhs)
            };
        }
        Ok(v)
    }

    fn term(&mut self) -> Result<Value, String> {
        let mut v = self.atom()?;
        while self.peek() == Some('*') {
            self.chars.next();
            let rhs = self.atom()?;
            v = self.b.ins().imul(v, rhs);
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('a') => {
                self.chars.next();
                Ok(self.a)
            }
            Some('b') => {
                self.chars.next();
                Ok(self.bv)
            }
            Some('(') => {
                self.chars.next();
                let v = self.expr()?;
                match self.peek() {
                    Some(')') => {
                        self.chars.next();
                        Ok(v)
                    }
                    other => Err(format!("expected ')', found {other:?}")),
                }
            }
            Some('-') => {
                self.chars.next();
                let v = self.atom()?;
                Ok(self.b.ins().ineg(v))
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n: i64 = 0;
                while let Some(d) = self.chars.peek().and_then(|c| c.to_digit(10)) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(i64::from(d)))
                        .ok_or("number too large")?;
                    self.chars.next();
                }
                Ok(self.b.ins().iconst(types::I64, n))
            }
            other => Err(format!("expected a, b, a number or '(', found {other:?}")),
        }
    }
}

/// `source` compiled into a function of `a` and `b`, in `module`.
fn compile(module: &mut JITModule, source: &str) -> Result<extern "C" fn(i64, i64) -> i64, String> {
    let mut ctx = module.make_context();
    ctx.func.signature.params.push(AbiParam::new(types::I64));
    ctx.func.signature.params.push(AbiParam::new(types::I64));
    ctx.func.signature.returns.push(AbiParam::new(types::I64));
    let id = module
        .declare_function("expr", Linkage::Export, &ctx.func.signature)
        .map_err(|e| e.to_string())?;
    let mut fctx = FunctionBuilderContext::new();
    let config = module.target_config();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let (a, bv) = (b.block_params(entry)[0], b.block_params(entry)[1]);
    let mut parser = Parser {
        chars: source.chars().peekable(),
        b: &mut b,
        a,
        bv,
    };
    let v = parser.expr()?;
    if let Some(rest) = parser.peek() {
        return Err(format!("unexpected {rest:?}"));
    }
    b.ins().return_(&[v]);
    b.finalize(config);
    module
        .define_function(id, &mut ctx)
        .map_err(|e| e.to_string())?;
    module.finalize_definitions().map_err(|e| e.to_string())?;
    // SAFETY: the function was just defined with this signature and
    // finalized; it lives as long as the module.
    Ok(unsafe {
        std::mem::transmute::<*const u8, extern "C" fn(i64, i64) -> i64>(
            module.get_finalized_function(id),
        )
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--mdwe") {
        args.remove(0);
        let (flags, zero) = (libc::PR_MDWE_REFUSE_EXEC_GAIN as libc::c_ulong, 0);
        // SAFETY: PR_SET_MDWE takes flags by value and no pointers.
        if unsafe { libc::prctl(libc::PR_SET_MDWE, flags, zero, zero, zero) } != 0 {
            return Err(format!("PR_SET_MDWE: {}", std::io::Error::last_os_error()).into());
        }
        println!("PR_SET_MDWE is on: no written page may become executable");
    }
    let source = args
        .first()
        .cloned()
        .unwrap_or_else(|| "(a + b) * (a - b)".into());
    let a: i64 = args.get(1).map_or(Ok(7), |s| s.parse())?;
    let b: i64 = args.get(2).map_or(Ok(3), |s| s.parse())?;

    let isa = cranelift_native::builder()?.finish(settings::Flags::new(settings::builder()))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    let provider = WxMemoryProvider::new()?;
    println!("code memory: wxthunk, strategy {}", provider.strategy());
    builder.memory_provider(Box::new(provider));
    let mut module = JITModule::new(builder);
    let f = compile(&mut module, &source)?;
    println!("{source} with a = {a}, b = {b}: {}", f(a, b));
    // SAFETY: `f` is not called after this.
    unsafe { module.free_memory() };
    Ok(())
}
