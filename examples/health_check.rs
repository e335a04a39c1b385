//! The probe as a health check for a deployment: what this process may do
//! with executable memory, which strategy wxthunk picked and why. Exits
//! with status 1 when thunks cannot be made here (run it under the same
//! hardening as the service: systemd's `MemoryDenyWriteExecute=`, a
//! seccomp filter, `PR_SET_MDWE`).
//!
//! `cargo run --example health_check`

use wxthunk::Thunk;

fn main() {
    let policy = wxthunk::probe();
    println!("{policy}");
    let Some(strategy) = policy.thunk_strategy else {
        eprintln!("wxthunk cannot make thunks in this process");
        std::process::exit(1);
    };
    // Prove it: a thunk with a runtime capture (heap code, not a compiled
    // function), called once.
    let k = std::hint::black_box(41u32);
    match Thunk::<unsafe extern "C" fn(u32) -> u32>::new(move |x: u32| x + k) {
        // SAFETY: the thunk is alive.
        Ok(t) if unsafe { (t.as_fn())(1) } == 42 => println!("ok: thunks work ({strategy})"),
        Ok(_) => {
            eprintln!("a thunk returned a wrong result");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("a thunk could not be made: {e}");
            std::process::exit(1);
        }
    }
}
