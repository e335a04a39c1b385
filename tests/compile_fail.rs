//! What must not compile: thunks outliving their captures or heap, closures
//! that are not thread-safe, signatures the calling scheme cannot place,
//! unlocked heaps crossing threads.

#[test]
fn compile_fail() {
    if cfg!(windows) {
        // Under Wine (CI's only Windows run) trybuild would start the
        // Linux host's cargo from inside Wine; the messages it pins are the
        // host compiler's anyway.
        println!("SKIPPED: trybuild would run the host's cargo inside Wine");
        return;
    }
    if wxthunk_testkit::emulated() {
        // Built for another architecture and run under its emulator, this
        // test would have trybuild start the host's cargo from inside the
        // emulator; the messages it pins are the host compiler's anyway.
        println!("SKIPPED: trybuild runs the host's cargo, which cannot run under the emulator");
        return;
    }
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
