//! Closure parameter types are inferred from the thunk's signature, for
//! reference arguments too (no `|a: &T, b: &mut U|` needed), on every
//! constructor: the compiler learns them before it checks the closure's
//! body, so the body may call methods on them and dereference them. (This
//! file compiling is most of the test; the calls check the values.)
#![cfg(all(
    any(target_os = "linux", windows),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::hint::black_box;

use wxthunk::{Heap, Thunk};

type WithRefs = unsafe extern "C" fn(&i32, &mut i64) -> i32;
type Plain = unsafe extern "C" fn(u32, u64) -> u32;

#[test]
fn thunk_new_infers_reference_and_plain_parameters() {
    let k = black_box(3);
    let refs = Thunk::<WithRefs>::new(move |a, out| {
        *out = i64::from(*a * k);
        a.count_ones() as i32
    })
    .unwrap();
    let mut out = 0;
    // SAFETY: the thunk is alive.
    assert_eq!(unsafe { (refs.as_fn())(&7, &mut out) }, 3);
    assert_eq!(out, 21);

    let plain =
        Thunk::<Plain>::new(move |a, b| a.count_ones() + b.count_zeros() + k as u32).unwrap();
    // SAFETY: the thunk is alive.
    assert_eq!(unsafe { (plain.as_fn())(0b111, u64::MAX) }, 6);
}

#[test]
fn fn_mut_and_fn_once_constructors_infer_too() {
    let mut total = 0i64;
    {
        let add = Thunk::<WithRefs>::new_mut(|a, out| {
            total += i64::from(*a);
            *out = total;
            a.signum()
        })
        .unwrap();
        let mut out = 0;
        // SAFETY: the thunk is alive; the calls do not overlap.
        unsafe {
            assert_eq!((add.as_fn())(&5, &mut out), 1);
            assert_eq!((add.as_fn())(&-2, &mut out), -1);
        }
        assert_eq!(out, 3);
    }
    assert_eq!(total, 3);

    let name = String::from("wxthunk");
    let once =
        Thunk::<unsafe extern "C" fn(&mut usize)>::new_once(move |out| *out = name.len()).unwrap();
    let mut len = 0;
    // SAFETY: the thunk is alive; called once.
    unsafe { (once.as_fn())(&mut len) };
    assert_eq!(len, 7);
}

#[test]
fn heap_and_page_constructors_infer_too() {
    let heap = Heap::new().unwrap();
    let k = black_box(2);
    let t = heap
        .thunk::<WithRefs, _>(move |a, out| {
            *out = i64::from(a.pow(k));
            0
        })
        .unwrap();
    let mut out = 0;
    // SAFETY: the thunk is alive.
    unsafe { (t.as_fn())(&9, &mut out) };
    assert_eq!(out, 81);

    let mut seen = Vec::new();
    {
        let m = heap
            .thunk_mut::<unsafe extern "C" fn(&u8), _>(|b| seen.push(b.to_ascii_uppercase()))
            .unwrap();
        // SAFETY: the thunk is alive.
        unsafe { (m.as_fn())(&b'x') };
    }
    assert_eq!(seen, [b'X']);

    let o = heap
        .thunk_once::<unsafe extern "C" fn(&mut u32), _>(move |v| *v = v.rotate_left(k))
        .unwrap();
    let mut v = 1;
    // SAFETY: the thunk is alive; called once.
    unsafe { (o.as_fn())(&mut v) };
    assert_eq!(v, 4);

    let mut page = heap.thunk_page::<WithRefs>().unwrap();
    let i = page.push(move |a, out| {
        *out = i64::from(a.leading_zeros());
        k as i32
    });
    let j = page.push_mut(|a, out| {
        *out += i64::from(*a);
        0
    });
    let n = String::from("n");
    let l = page.push_once(move |_, out| {
        *out = n.len() as i64;
        1
    });
    let (i, j, l) = (i.unwrap(), j.unwrap(), l.unwrap());
    let page = page.exec().unwrap();
    let mut out = 0;
    // SAFETY: the page is alive; each thunk is called as its kind allows.
    unsafe {
        assert_eq!((page.func(i).unwrap())(&1, &mut out), 2);
        assert_eq!(out, 31);
        (page.func(j).unwrap())(&4, &mut out);
        assert_eq!(out, 35);
        (page.func(l).unwrap())(&0, &mut out);
        assert_eq!(out, 1);
    }
}
