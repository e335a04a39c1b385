//! `DynThunk`: thunks whose signature is given at run time, for C-convention
//! targets that take the arguments followed by a context pointer. Every
//! arity from 0 to 16 of integers, of doubles, of floats and of mixes that
//! fill one register file before the other (so the context goes to a
//! register, or to the stack after 1 to 10 stack arguments), on every heap
//! this process allows; and the bad signatures, each an error.

use std::ffi::c_void;
use std::hint::black_box;

use wxthunk::ArgClass::{self, Float, Integer};
use wxthunk::{DynThunk, Error, Heap};
use wxthunk_testkit::heaps::thunk_heaps;

/// Each argument's value: distinct, and with high bits set, so that a
/// truncated or shifted argument shows.
fn int_arg(i: usize) -> i64 {
    (i as i64 + 1) * 0x0101_0101_0001 - 7
}

fn float_arg(i: usize) -> f64 {
    i as f64 * 1.5 + 0.25
}

/// What a target returns for its arguments and context.
fn weigh_ints(args: &[i64], ctx: *mut c_void) -> i64 {
    let mut h = ctx as i64;
    for (i, a) in args.iter().enumerate() {
        h = h.wrapping_mul(31).wrapping_add(a ^ (i as i64 * 977));
    }
    h
}

fn weigh_floats(args: &[f64], ctx: *mut c_void) -> f64 {
    let mut h = (ctx as usize % 1000) as f64;
    for (i, a) in args.iter().enumerate() {
        h += a * (i as f64 + 2.0);
    }
    h
}

macro_rules! int_case {
    ($ty:ty; $($a:ident)*) => {{
        extern "C" fn target($($a: $ty,)* ctx: *mut c_void) -> i64 {
            weigh_ints(&[$($a as i64),*], ctx)
        }
        fn call(p: *const c_void) -> i64 {
            // SAFETY: the thunk was made for these arguments.
            let f: extern "C" fn($(int_case!(@ty $a $ty)),*) -> i64 = unsafe { std::mem::transmute(p) };
            #[allow(unused_mut, unused_variables)]
            let mut i = 0..;
            $(let $a = int_arg(i.next().unwrap()) as $ty;)*
            f($($a),*)
        }
        fn expected(ctx: *mut c_void) -> i64 {
            #[allow(unused_mut, unused_variables)]
            let mut i = 0..;
            $(let $a = int_arg(i.next().unwrap()) as $ty as i64;)*
            weigh_ints(&[$($a),*], ctx)
        }
        let n = <[&str]>::len(&[$(stringify!($a)),*]);
        (vec![Integer; n], target as *const c_void, call as fn(*const c_void) -> i64, expected as fn(*mut c_void) -> i64)
    }};
    (@ty $a:ident $ty:ty) => { $ty };
}

macro_rules! float_case {
    ($ty:ty; $($a:ident)*) => {{
        extern "C" fn target($($a: $ty,)* ctx: *mut c_void) -> f64 {
            weigh_floats(&[$($a as f64),*], ctx)
        }
        fn call(p: *const c_void) -> f64 {
            // SAFETY: the thunk was made for these arguments.
            let f: extern "C" fn($(float_case!(@ty $a $ty)),*) -> f64 = unsafe { std::mem::transmute(p) };
            #[allow(unused_mut, unused_variables)]
            let mut i = 0..;
            $(let $a = float_arg(i.next().unwrap()) as $ty;)*
            f($($a),*)
        }
        fn expected(ctx: *mut c_void) -> f64 {
            #[allow(unused_mut, unused_variables)]
            let mut i = 0..;
            $(let $a = float_arg(i.next().unwrap()) as $ty as f64;)*
            weigh_floats(&[$($a),*], ctx)
        }
        let n = <[&str]>::len(&[$(stringify!($a)),*]);
        (vec![Float; n], target as *const c_void, call as fn(*const c_void) -> f64, expected as fn(*mut c_void) -> f64)
    }};
    (@ty $a:ident $ty:ty) => { $ty };
}

/// One case per arity, 0 to 16, of the macro `$case` with type `$ty`.
macro_rules! arities {
    ($case:ident, $ty:ty) => {
        vec![
            $case!($ty;),
            $case!($ty; a),
            $case!($ty; a b),
            $case!($ty; a b c),
            $case!($ty; a b c d),
            $case!($ty; a b c d e),
            $case!($ty; a b c d e f),
            $case!($ty; a b c d e f g),
            $case!($ty; a b c d e f g h),
            $case!($ty; a b c d e f g h i),
            $case!($ty; a b c d e f g h i j),
            $case!($ty; a b c d e f g h i j k),
            $case!($ty; a b c d e f g h i j k l),
            $case!($ty; a b c d e f g h i j k l m),
            $case!($ty; a b c d e f g h i j k l m n),
            $case!($ty; a b c d e f g h i j k l m n o),
            $case!($ty; a b c d e f g h i j k l m n o p),
        ]
    };
}

/// Contexts: null, a small number, a real pointer with high bits.
fn contexts() -> [*mut c_void; 3] {
    let boxed = Box::leak(Box::new(black_box(5_u64)));
    [
        std::ptr::null_mut(),
        black_box(12_345) as *mut c_void,
        std::ptr::from_mut(boxed).cast(),
    ]
}

#[test]
fn every_arity_of_integers_and_floats_reaches_the_target_with_its_context() {
    let int_cases = [
        arities!(int_case, i64),
        arities!(int_case, i32),
        arities!(int_case, u8),
    ];
    let float_cases = [arities!(float_case, f64), arities!(float_case, f32)];
    for (name, heap) in thunk_heaps() {
        for ctx in contexts() {
            for (args, target, call, expected) in int_cases.iter().flatten() {
                let t = heap.dyn_thunk(args, *target, ctx).unwrap();
                assert_eq!(
                    call(t.as_ptr()),
                    expected(ctx),
                    "{name}: {} integers",
                    args.len()
                );
            }
            for (args, target, call, expected) in float_cases.iter().flatten() {
                let t = heap.dyn_thunk(args, *target, ctx).unwrap();
                assert_eq!(
                    call(t.as_ptr()),
                    expected(ctx),
                    "{name}: {} floats",
                    args.len()
                );
            }
        }
    }
}

/// Mixes: integers filling their registers with floats after them (System
/// V's frame path with free `xmm` registers, which a Rust entry never
/// takes), floats first, alternating, and the longest of each.
#[test]
fn mixed_signatures_put_the_context_after_the_stack_arguments() {
    extern "C" fn seven_ints_a_double(
        a: i64,
        b: i64,
        c: i64,
        d: i64,
        e: i64,
        f: i64,
        g: i64,
        x: f64,
        ctx: *mut c_void,
    ) -> f64 {
        (a + b + c + d + e + f + g * 1000) as f64 + x + ctx as usize as f64
    }
    type SevenInts = extern "C" fn(i64, i64, i64, i64, i64, i64, i64, f64) -> f64;
    extern "C" fn nine_ints(
        a: i32,
        b: i32,
        c: i32,
        d: i32,
        e: i32,
        f: i32,
        g: i32,
        h: i32,
        i: i32,
        ctx: *mut c_void,
    ) -> i64 {
        weigh_ints(&[a, b, c, d, e, f, g, h, i].map(i64::from), ctx)
    }
    type NineInts = extern "C" fn(i32, i32, i32, i32, i32, i32, i32, i32, i32) -> i64;
    #[allow(clippy::too_many_arguments)]
    extern "C" fn alternating(
        a: f64,
        b: i64,
        c: f32,
        d: i64,
        e: f64,
        f: i64,
        g: f32,
        h: i64,
        ctx: *mut c_void,
    ) -> f64 {
        a + b as f64 * 2.0
            + f64::from(c) * 3.0
            + d as f64 * 4.0
            + e * 5.0
            + f as f64 * 6.0
            + f64::from(g) * 7.0
            + h as f64 * 8.0
            + ctx as usize as f64
    }
    type Alternating = extern "C" fn(f64, i64, f32, i64, f64, i64, f32, i64) -> f64;

    for (name, heap) in thunk_heaps() {
        let ctx = black_box(77) as *mut c_void;
        let args = [[Integer; 7].as_slice(), &[Float]].concat();
        let t = heap
            .dyn_thunk(&args, seven_ints_a_double as *const c_void, ctx)
            .unwrap();
        // SAFETY: the signature the thunk was made for.
        let f: SevenInts = unsafe { std::mem::transmute(t.as_ptr()) };
        assert_eq!(
            f(1, 2, 3, 4, 5, 6, 7, 0.5),
            7000.0 + 21.0 + 0.5 + 77.0,
            "{name}"
        );

        let t = heap
            .dyn_thunk(&[Integer; 9], nine_ints as *const c_void, ctx)
            .unwrap();
        // SAFETY: as above.
        let f: NineInts = unsafe { std::mem::transmute(t.as_ptr()) };
        let want = weigh_ints(&[-1, 2, -3, 4, -5, 6, -7, 8, -9], ctx);
        assert_eq!(f(-1, 2, -3, 4, -5, 6, -7, 8, -9), want, "{name}");

        let args = [
            Float, Integer, Float, Integer, Float, Integer, Float, Integer,
        ];
        let t = heap
            .dyn_thunk(&args, alternating as *const c_void, ctx)
            .unwrap();
        // SAFETY: as above.
        let f: Alternating = unsafe { std::mem::transmute(t.as_ptr()) };
        let want = 1.0 + 4.0 + 9.0 + 16.0 + 25.0 + 36.0 + 49.0 + 64.0 + 77.0;
        assert_eq!(f(1.0, 2, 3.0, 4, 5.0, 6, 7.0, 8), want, "{name}");
    }
}

#[test]
fn bad_signatures_are_errors_and_leave_the_heap_working() {
    extern "C" fn target(ctx: *mut c_void) -> usize {
        ctx as usize
    }
    let heap = Heap::new().unwrap();
    let seventeen = [Integer; 17];
    let strukt = ArgClass::of_struct::<(u64, u64)>();
    let null = std::ptr::null();
    let cases: [(&[ArgClass], *const c_void); 3] = [
        (&seventeen, target as *const c_void),
        (&[Integer, strukt], target as *const c_void),
        (&[], null),
    ];
    for (args, target) in cases {
        let err = heap
            .dyn_thunk(args, target, std::ptr::null_mut())
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidSignature { .. }),
            "{args:?}: {err}"
        );
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            err.to_string().starts_with("invalid thunk signature"),
            "{err}"
        );
    }
    // The heap is intact.
    let t = heap
        .dyn_thunk(&[], target as *const c_void, black_box(9) as *mut c_void)
        .unwrap();
    // SAFETY: no arguments, the target's result.
    let f: extern "C" fn() -> usize = unsafe { std::mem::transmute(t.as_ptr()) };
    assert_eq!(f(), 9);
}

/// Many thunks at once on the global heap, each reaching its own context,
/// then all dropped and made again: the heap reuses what was freed.
#[test]
fn many_live_thunks_keep_their_own_contexts() {
    extern "C" fn target(x: u32, ctx: *mut c_void) -> usize {
        x as usize + ctx as usize
    }
    for round in 0..2 {
        let thunks: Vec<DynThunk> = (0..20_000_usize)
            .map(|i| {
                DynThunk::new(
                    &[Integer],
                    target as *const c_void,
                    black_box(i * 16) as *mut c_void,
                )
                .unwrap()
            })
            .collect();
        for (i, t) in thunks.iter().enumerate() {
            // SAFETY: one integer argument, the target's result.
            let f: extern "C" fn(u32) -> usize = unsafe { std::mem::transmute(t.as_ptr()) };
            assert_eq!(f(3), i * 16 + 3, "round {round}");
        }
    }
}
