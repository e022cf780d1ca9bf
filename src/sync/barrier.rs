//! Asymmetric fences: a cheap one for the hot side of a Dekker handshake, a
//! costly one for the side that is about to sleep anyway.
//!
//! The doorbell protocol ([`super::wait`]) needs a full fence on both sides:
//! the publisher between publishing and reading the sleeper count, the
//! waiter between announcing itself and re-checking. The publisher runs on
//! every message; a `fence(SeqCst)` there (an `mfence` or locked
//! instruction) is most of the cost of a commit. Linux's `membarrier`
//! lets the two sides trade: the publisher keeps only a compiler fence, and
//! the waiter, right before it sleeps, makes the system call
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which runs a full memory
//! barrier on every CPU currently running a thread of a process that
//! registered with `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`. Any publisher
//! that is mid-way between its store and its load is either running (and
//! gets the barrier) or not (and its context switch was one).
//!
//! Rules that keep it sound:
//! - A process uses the light fence only once its own registration
//!   succeeded; until then (and where the kernel lacks the command) it uses
//!   `fence(SeqCst)`, which pairs with the waiter's heavy side as well.
//! - Registration is per address space and is not inherited by a `fork`
//!   child, so a `pthread_atfork` child handler clears the flag there.
//! - The heavy side always issues `fence(SeqCst)` too, and calls
//!   `membarrier` whenever the kernel offers the command. If that call ever
//!   fails, a wake-up may be missed, but every sleep is bounded by its slice
//!   ([`super::WaitStrategy::slice`]): the cost is latency, never a hang.
//! - Under loom both sides are `fence(SeqCst)`, which loom models.

#[cfg(not(loom))]
mod real {
    #![allow(clippy::disallowed_types)]

    use core::sync::atomic::{AtomicU8, AtomicU64, Ordering, compiler_fence, fence};

    use rustix::thread::{MembarrierCommand, MembarrierQuery, membarrier, membarrier_query};

    const UNKNOWN: u8 = 0;
    const REGISTERED: u8 = 1;
    const UNAVAILABLE: u8 = 2;

    // Process-local state, never in shared memory: plain std atomics.
    // `LIGHT`: whether this process's publishers may use the light fence.
    static LIGHT: AtomicU8 = AtomicU8::new(UNKNOWN);
    // `HEAVY`: whether the kernel offers GLOBAL_EXPEDITED (for waiters).
    static HEAVY: AtomicU8 = AtomicU8::new(UNKNOWN);
    // How many membarrier(GLOBAL_EXPEDITED) calls this process made.
    static HEAVY_CALLS: AtomicU64 = AtomicU64::new(0);

    extern "C" fn forget_registration_in_child() {
        // Relaxed: the child is single-threaded at this point.
        LIGHT.store(UNKNOWN, Ordering::Relaxed);
    }

    #[cold]
    fn register() -> u8 {
        let offered = membarrier_query().contains(MembarrierQuery::REGISTER_GLOBAL_EXPEDITED);
        let state = if offered
            && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
            // SAFETY: `forget_registration_in_child` is an `extern "C" fn()`
            // that only stores to a static atomic: async-signal-safe, as a
            // fork child handler must be.
            && unsafe { libc::pthread_atfork(None, None, Some(forget_registration_in_child)) } == 0
        {
            REGISTERED
        } else {
            UNAVAILABLE
        };
        // Relaxed: a racing thread registers again, which is harmless.
        LIGHT.store(state, Ordering::Relaxed);
        state
    }

    /// The publisher's fence.
    #[inline(always)]
    pub(crate) fn light() {
        // Relaxed: a process-local flag; what it guards is this thread's own
        // registration, which happened-before in program order (or in the
        // thread that stored it, whose registration covers the whole
        // address space).
        let mut state = LIGHT.load(Ordering::Relaxed);
        if state == UNKNOWN {
            state = register();
        }
        if state == REGISTERED {
            // Keeps the compiler from moving the sleeper load above the
            // publication; the CPU ordering comes from the waiter's
            // membarrier.
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The waiter's fence, before it re-checks and sleeps.
    pub(crate) fn heavy() {
        fence(Ordering::SeqCst);
        // Relaxed: a cache of what the kernel offers.
        let mut state = HEAVY.load(Ordering::Relaxed);
        if state == UNKNOWN {
            state = if membarrier_query().contains(MembarrierQuery::GLOBAL_EXPEDITED) {
                REGISTERED
            } else {
                UNAVAILABLE
            };
            HEAVY.store(state, Ordering::Relaxed);
        }
        if state == REGISTERED {
            // Relaxed: a statistic.
            HEAVY_CALLS.fetch_add(1, Ordering::Relaxed);
            // An error cannot be made up for here; the sleep's slice bounds
            // the damage (see the module docs).
            let _ = membarrier(MembarrierCommand::GlobalExpedited);
        }
    }

    /// Whether this process's publishers use the light fence (for tests and
    /// the bench notes).
    pub fn light_fence_active() -> bool {
        LIGHT.load(Ordering::Relaxed) == REGISTERED
    }

    /// How many `membarrier(GLOBAL_EXPEDITED)` calls the waiters of this
    /// process have made (each is an interrupt to every CPU running a
    /// registered process), for tests and benchmarks.
    pub fn membarrier_calls() -> u64 {
        // Relaxed: a statistic.
        HEAVY_CALLS.load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
pub(crate) use real::{heavy, light};
#[cfg(not(loom))]
pub use real::{light_fence_active, membarrier_calls};

#[cfg(loom)]
pub(crate) fn light() {
    super::shim::fence(super::shim::Ordering::SeqCst);
}

#[cfg(loom)]
pub(crate) fn heavy() {
    super::shim::fence(super::shim::Ordering::SeqCst);
}

/// Whether this process's publishers use the light fence (never under loom).
#[cfg(loom)]
pub fn light_fence_active() -> bool {
    false
}

/// How many membarrier calls this process made (none under loom).
#[cfg(loom)]
pub fn membarrier_calls() -> u64 {
    0
}
