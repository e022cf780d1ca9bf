//! A 32-bit word that processes sleep on and wake each other through.
//!
//! The futex calls go through rustix with empty flags: a *shared* futex,
//! keyed by the physical page, so a waker in one process reaches a sleeper in
//! another that mapped the same memory. `FUTEX_PRIVATE_FLAG` (used by the
//! `atomic-wait` crate) keys the futex by address space and would never wake
//! a sleeper in another process.
//!
//! Under loom the system call is replaced by a model: a mutex and condition
//! variable beside the word. `wait` checks the word and sleeps under the
//! mutex, `wake` notifies under it, so a wakeup lost by a protocol shows up as
//! a loom deadlock. The mutex also guards a count of the threads asleep in
//! the model, so that `wake` reports how many it woke, as the system call
//! does. Under loom a timeout is never taken: a protocol that needs a
//! timeout to make progress deadlocks the model.

use core::time::Duration;

use super::shim::AtomicU32;
#[cfg(loom)]
use super::shim::Ordering;

/// A 32-bit word that can be waited on across processes.
///
/// In a normal build this is `#[repr(transparent)]` over an `AtomicU32`: any
/// four 4-aligned bytes of a shared mapping are a valid `Futex`, whatever
/// they hold. The word's meaning is up to its user; the futex only compares
/// it in [`wait`](Self::wait).
#[cfg_attr(not(loom), repr(transparent))]
#[derive(Debug)]
pub struct Futex {
    word: AtomicU32,
    #[cfg(loom)]
    model: LoomModel,
}

#[cfg(loom)]
#[derive(Debug, Default)]
struct LoomModel {
    /// How many threads sleep in `cond` (not yet taken out by a wake).
    lock: loom::sync::Mutex<usize>,
    cond: loom::sync::Condvar,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Futex>() == 4 && align_of::<Futex>() == 4);

/// How a [`Futex::wait`] ended. None of these says why the caller should go
/// on: callers re-check their condition after every outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The word did not hold the expected value: nothing to wait for.
    Changed,
    /// Woken by a wake, or spuriously (a signal, or a wake meant for an
    /// earlier sleeper).
    Woken,
    /// The timeout expired.
    TimedOut,
}

impl Futex {
    /// A futex word holding `value`.
    #[cfg(not(loom))]
    pub const fn new(value: u32) -> Self {
        Self {
            word: AtomicU32::new(value),
        }
    }

    /// A futex word holding `value` (loom model).
    #[cfg(loom)]
    pub fn new(value: u32) -> Self {
        Self {
            word: AtomicU32::new(value),
            model: LoomModel::default(),
        }
    }

    /// The word itself, for loads, stores and read-modify-writes.
    #[inline]
    pub fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sleeps while the word holds `expected`, for at most `timeout` (`None`:
    /// no limit).
    ///
    /// The comparison and the sleep are atomic with respect to
    /// [`wake_one`](Self::wake_one) and [`wake_all`](Self::wake_all): a wake
    /// issued after the word changed is not missed. The kernel's comparison
    /// acts as a full barrier, so a waker's store that the comparison sees
    /// happens before the return.
    #[cfg(not(loom))]
    pub fn wait(&self, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
        use rustix::io::Errno;
        use rustix::thread::futex;
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        counters::WAIT_CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        // Empty flags: a shared futex (see the module docs).
        match futex::wait(&self.word, futex::Flags::empty(), expected, ts.as_ref()) {
            Ok(()) => WaitOutcome::Woken,
            Err(Errno::AGAIN) => WaitOutcome::Changed,
            Err(Errno::TIMEDOUT) => WaitOutcome::TimedOut,
            // EINTR is a spurious wake-up. EFAULT and EINVAL cannot happen
            // for a valid aligned reference; the caller re-checks either way.
            Err(_) => WaitOutcome::Woken,
        }
    }

    /// Loom model of [`wait`](Self::wait): the timeout is never taken.
    #[cfg(loom)]
    pub fn wait(&self, expected: u32, _timeout: Option<Duration>) -> WaitOutcome {
        let mut asleep = self.model.lock.lock().unwrap();
        // SeqCst stands for the kernel's barrier around its comparison.
        if self.word.load(Ordering::SeqCst) != expected {
            return WaitOutcome::Changed;
        }
        // The waker takes us out of the count (loom's condvar has no
        // spurious wake-ups, so every return from `wait` is a wake).
        *asleep += 1;
        let _asleep = self.model.cond.wait(asleep).unwrap();
        WaitOutcome::Woken
    }

    /// Wakes at most one process or thread sleeping on this word; returns how
    /// many were woken.
    pub fn wake_one(&self) -> usize {
        self.wake(1)
    }

    /// Wakes every sleeper on this word; returns how many were woken.
    pub fn wake_all(&self) -> usize {
        self.wake(u32::MAX)
    }

    #[cfg(not(loom))]
    fn wake(&self, n: u32) -> usize {
        use rustix::thread::futex;
        // Cap at i32::MAX: the kernel takes the count as a signed int.
        let n = n.min(i32::MAX as u32);
        counters::WAKE_CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        // Empty flags: a shared futex. An error (only EFAULT/EINVAL, which a
        // valid reference rules out) wakes nobody.
        futex::wake(&self.word, futex::Flags::empty(), n).unwrap_or(0)
    }

    #[cfg(loom)]
    fn wake(&self, n: u32) -> usize {
        let mut asleep = self.model.lock.lock().unwrap();
        let woken = (*asleep).min(n as usize);
        *asleep -= woken;
        if n == 1 {
            self.model.cond.notify_one();
        } else {
            self.model.cond.notify_all();
        }
        woken
    }
}

/// Process-local counts of futex system calls, for tests and benchmarks
/// that check the fast paths make none.
#[cfg(not(loom))]
mod counters {
    #![allow(clippy::disallowed_types)]
    // Plain std atomics: process-local statistics, never in shared memory
    // and never part of a protocol, so loom has nothing to model here.
    pub(super) static WAKE_CALLS: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);
    pub(super) static WAIT_CALLS: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);
}

/// How many futex system calls this process has made through [`Futex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FutexCalls {
    /// `FUTEX_WAKE` calls.
    pub wakes: u64,
    /// `FUTEX_WAIT` calls.
    pub waits: u64,
}

/// The futex system calls made by this process so far (all zero under loom).
pub fn futex_calls() -> FutexCalls {
    #[cfg(not(loom))]
    {
        use core::sync::atomic::Ordering::Relaxed;
        FutexCalls {
            wakes: counters::WAKE_CALLS.load(Relaxed),
            waits: counters::WAIT_CALLS.load(Relaxed),
        }
    }
    #[cfg(loom)]
    FutexCalls::default()
}
