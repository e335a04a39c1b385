//! A signal handler that captures state: `sigaction` takes a bare
//! `fn(c_int)`, the thunk gives it a closure that counts into an atomic it
//! shares with `main`. (A handler may only do async-signal-safe things:
//! an atomic add is one; allocating or locking is not.)
//!
//! `cargo run --example signal_handler`

#[cfg(unix)]
mod posix {

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use wxthunk::Thunk;

    type Handler = unsafe extern "C" fn(libc::c_int);

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        // An `Fn` closure: the handler may run on any thread, at any time.
        // `leak` keeps the thunk for the rest of the process, as a handler
        // that stays installed must be.
        let handler: Handler = Thunk::<Handler>::new(move |signal: libc::c_int| {
            counter.fetch_add(signal as usize, Ordering::Relaxed);
        })?
        .leak();

        // SAFETY: a zeroed sigaction is valid; the handler is an
        // `extern "C" fn(c_int)` that lives forever (leaked), and its closure
        // is sound to call at any time (one atomic add).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as usize;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            for _ in 0..3 {
                libc::raise(libc::SIGUSR1);
            }
        }
        let total = seen.load(Ordering::Relaxed);
        println!(
            "the handler saw SIGUSR1 three times: {total} = 3 x {}",
            libc::SIGUSR1
        );
        assert_eq!(total, 3 * libc::SIGUSR1 as usize);
        Ok(())
    }
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    posix::main()
}

#[cfg(not(unix))]
fn main() {
    println!(
        "SKIPPED: sigaction is a POSIX function; examples/qsort_with_state.rs has a C caller on every platform"
    );
}
