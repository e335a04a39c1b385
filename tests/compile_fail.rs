//! What must not compile: thunks outliving their captures or heap, closures
//! that are not thread-safe, signatures the calling scheme cannot place,
//! unlocked heaps crossing threads.

#[test]
fn compile_fail() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
