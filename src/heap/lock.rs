//! The locks a [`Heap`](crate::Heap) can use.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use lock_api::{GuardNoSend, RawMutex};

use crate::sys;

/// The lock of [`Heap::new`](crate::Heap::new) and of the global default
/// heap: `parking_lot`'s small, fast, eventually fair mutex, which switches
/// to a futex mutex in a child of `fork()`.
///
/// parking_lot keeps waiting threads in one process-wide queue, and in a
/// child of `fork()` that queue still links the parent's threads, which do
/// not exist there; glibc even hands their stacks, where the entries live, to
/// the child's new threads, so the queue is corrupted as soon as the child
/// starts threads. So the child fork handler (the one that re-initialises
/// every heap's lock, see `fork.rs`) switches every `DefaultLock` in the
/// child to the futex mutex of Rust's standard library (through the
/// `rustix-futex-sync` crate), whose whole state is one word and whose
/// waiters only the kernel knows. The switch happens while the child has a
/// single thread, so no lock is held or waited for across it; the cost in
/// the parent is one relaxed load per lock and unlock. (A child made
/// without fork handlers, by raw `clone()`, keeps parking_lot: use heaps
/// there from one thread, or from threads that do not contend.)
pub struct DefaultLock {
    parking: parking_lot::RawMutex,
    futex: sys::RawLock,
}

/// Set in a child of libc `fork()` (and inherited by its children): every
/// `DefaultLock` uses its futex mutex from then on.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Switches every `DefaultLock` of this process to its futex mutex.
///
/// # Safety
/// Only from the child fork handler, while the child has one thread and
/// every `DefaultLock` it will use is unlocked or re-initialised (a lock
/// taken through one mutex must be released through the same one).
pub(super) unsafe fn use_futex_locks() {
    FORKED.store(true, Ordering::Relaxed);
}

#[inline]
fn forked() -> bool {
    FORKED.load(Ordering::Relaxed)
}

impl std::fmt::Debug for DefaultLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultLock").finish_non_exhaustive()
    }
}

// SAFETY: every operation is that of one correct `RawMutex`, the same one for
// a lock and its unlock: the choice changes only in the child fork handler,
// when nothing is locked through the old one by a thread that will unlock it
// (see `use_futex_locks`).
unsafe impl RawMutex for DefaultLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: DefaultLock = DefaultLock {
        parking: <parking_lot::RawMutex as RawMutex>::INIT,
        futex: <sys::RawLock as RawMutex>::INIT,
    };

    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock(&self) {
        if forked() {
            self.futex.lock();
        } else {
            self.parking.lock();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        if forked() {
            self.futex.try_lock()
        } else {
            self.parking.try_lock()
        }
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock, taken through the same mutex
        // (the choice did not change in between, see above).
        unsafe {
            if forked() {
                self.futex.unlock();
            } else {
                self.parking.unlock();
            }
        }
    }
}

/// No lock: for a heap used by one thread only.
///
/// `NoLock` is `Send` but not `Sync`, so a `Heap<NoLock>` is not `Sync` and
/// the compiler keeps it (and everything allocated from it) on one thread.
/// It still refuses to be taken twice (it panics instead of handing out a
/// second `&mut`), which wxthunk never does.
///
/// ```compile_fail
/// let heap = wxthunk::Heap::unlocked()?;
/// std::thread::scope(|s| {
///     s.spawn(|| heap.alloc(16)); // error: `NoLock` cannot be shared between threads
/// });
/// # Ok::<(), wxthunk::Error>(())
/// ```
#[derive(Debug)]
pub struct NoLock {
    locked: Cell<bool>,
}

// SAFETY: `NoLock` is not `Sync`, so it is only ever used from one thread;
// the flag makes a second `lock` while held panic rather than succeed, so
// holding it is exclusive.
unsafe impl RawMutex for NoLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: NoLock = NoLock {
        locked: Cell::new(false),
    };

    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            taken_twice();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        !self.locked.replace(true)
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.set(false);
    }
}

/// A lock of your choice, any `Sync` [`lock_api::RawMutex`], for a heap
/// shared between threads: the lock of the heaps
/// [`HeapBuilder::build_with_lock`](crate::HeapBuilder::build_with_lock)
/// makes. It is `L`, and says (through [`SendsClosure`] and
/// [`SharesClosure`]) that the heap's thunks may go to other threads.
#[derive(Debug)]
pub struct SharedLock<L>(L);

// SAFETY: every call is `L`'s, on `L`, which is a `RawMutex`.
unsafe impl<L: RawMutex> RawMutex for SharedLock<L> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: SharedLock<L> = SharedLock(L::INIT);

    type GuardMarker = L::GuardMarker;

    #[inline]
    fn lock(&self) {
        self.0.lock();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.0.try_lock()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller's contract, which is `L`'s.
        unsafe { self.0.unlock() }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

/// A lock of a heap shared between threads: [`DefaultLock`] and
/// [`SharedLock`] (sealed: a heap's lock is one of those or [`NoLock`]).
/// Code generic over such heaps bounds its lock with it, and may then make
/// thunks of any `Send` (and, for `Fn`, `Sync`) closure on them:
///
/// ```
/// use wxthunk::{Heap, ThreadSafeLock};
///
/// fn add_thunk<L: ThreadSafeLock>(heap: &Heap<L>, k: u64) -> wxthunk::Result<u64> {
///     let t = heap.thunk::<unsafe extern "C" fn(u64) -> u64, _>(move |x| x + k)?;
///     // SAFETY: the thunk is alive.
///     Ok(unsafe { (t.as_fn())(1) })
/// }
/// assert_eq!(add_thunk(Heap::global()?, 41)?, 42);
/// # Ok::<(), wxthunk::Error>(())
/// ```
pub trait ThreadSafeLock: RawMutex + Sync + sealed::Lock {}

impl ThreadSafeLock for DefaultLock {}
impl<L: RawMutex + Sync> ThreadSafeLock for SharedLock<L> {}

mod sealed {
    /// Keeps [`ThreadSafeLock`](super::ThreadSafeLock) to this crate's locks.
    pub trait Lock {}
    impl Lock for super::DefaultLock {}
    impl<L> Lock for super::SharedLock<L> {}
}

/// What a heap's lock `Self` asks of the closure `C` of an `FnMut` or
/// `FnOnce` thunk: `Send` on a heap shared between threads
/// ([`ThreadSafeLock`]), whose thunks may be dropped on another thread than
/// the one that made them; nothing on a [`NoLock`] heap
/// ([`Heap::unlocked`](crate::Heap::unlocked),
/// [`Heap::thread_local`](crate::Heap::thread_local)), whose thunks never
/// leave their thread, so an `Rc` or a `RefCell` may be captured there.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// let heap = wxthunk::Heap::thread_local()?;
/// let name = Rc::new(String::from("local"));
/// let t = heap.thunk_mut::<unsafe extern "C" fn() -> usize, _>(move || name.len())?;
/// // SAFETY: the thunk is alive, and called on its heap's thread.
/// assert_eq!(unsafe { (t.as_fn())() }, 5);
/// # Ok::<(), wxthunk::Error>(())
/// ```
pub trait SendsClosure<C> {}

impl<C: Send, L: ThreadSafeLock> SendsClosure<C> for L {}
impl<C> SendsClosure<C> for NoLock {}

/// As [`SendsClosure`], for the closure of an `Fn` thunk, which C may call
/// from many threads at once on a shared heap: `Send + Sync` there, nothing
/// on a [`NoLock`] heap.
pub trait SharesClosure<C> {}

impl<C: Send + Sync, L: ThreadSafeLock> SharesClosure<C> for L {}
impl<C> SharesClosure<C> for NoLock {}

/// The panic of a `NoLock` taken while held, out of line.
#[cold]
#[inline(never)]
fn taken_twice() -> ! {
    panic!("wxthunk: NoLock taken twice on one thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lock_refuses_a_second_lock() {
        let lock = <NoLock as RawMutex>::INIT;
        lock.lock();
        assert!(!lock.try_lock());
        // SAFETY: locked just above on this thread.
        unsafe { lock.unlock() };
        assert!(lock.try_lock());
    }
}
