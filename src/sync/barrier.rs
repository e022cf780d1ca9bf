//! Asymmetric fences: a cheap one for the hot side of a Dekker handshake, a
//! costly one for the side that is about to sleep anyway.
//!
//! The doorbell protocol ([`super::wait`]) needs a full fence on both sides:
//! the publisher between publishing and reading the sleeper word, the
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
//! - The waiter's heavy side is `heavy` (the membarrier, which reports
//!   whether it ran) followed by `fence(SeqCst)`. A waiter whose membarrier
//!   did not run (the kernel lacks the command, a seccomp filter refuses it,
//!   or the call failed) cannot pair with a publisher's compiler fence, so
//!   before its fence it sets the doorbell's sticky *fallback* flag. A
//!   publisher that reads the flag issues `fence(SeqCst)` (`fallback`) and
//!   reads the sleeper word again before deciding: the two full fences
//!   pair. A publisher may have read the word just before the flag became
//!   visible; the waiter's first sleep after flagging is therefore short,
//!   and the re-check at its end finds what such a publisher published.
//!   The flag stays set for the life of the segment: the publishers of that
//!   doorbell pay a real fence whenever anyone is announced, or the flag
//!   alone is set (no system call, no wake).
//! - Under loom both sides are `fence(SeqCst)`, which loom models, unless
//!   a model asks otherwise through [`testing`]: a publisher thread whose
//!   process is "registered" then uses no fence at all (loom cannot model
//!   a membarrier, so a model pairs it only with waiters denied one).

#[cfg(not(loom))]
mod real {
    #![allow(clippy::disallowed_types)]

    use core::cell::Cell;
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

    std::thread_local! {
        // The test hook: this thread's waits act as if membarrier were
        // unavailable.
        static DENIED: Cell<bool> = const { Cell::new(false) };
    }

    extern "C" fn forget_registration_in_child() {
        // Relaxed: the child is single-threaded at this point.
        LIGHT.store(UNKNOWN, Ordering::Relaxed);
    }

    /// What the kernel offers: `membarrier_query`, except under Miri, which
    /// runs no membarrier: there both sides take the full-fence fallback
    /// (which the protocol allows anywhere, see the module docs).
    fn query() -> MembarrierQuery {
        if cfg!(miri) {
            MembarrierQuery::empty()
        } else {
            membarrier_query()
        }
    }

    #[cold]
    fn register() -> u8 {
        let offered = query().contains(MembarrierQuery::REGISTER_GLOBAL_EXPEDITED);
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

    /// The publisher's fence for a doorbell flagged by a waiter without
    /// membarrier: a full fence, whatever the registration.
    #[inline]
    pub(crate) fn fallback() {
        fence(Ordering::SeqCst);
    }

    /// The waiter's heavy side, first half: membarrier(GLOBAL_EXPEDITED).
    /// Returns whether it ran; the caller follows with `fence(SeqCst)`
    /// (after setting the fallback flag if it did not).
    pub(crate) fn heavy() -> bool {
        if DENIED.with(Cell::get) {
            return false;
        }
        // Relaxed: a cache of what the kernel offers.
        let mut state = HEAVY.load(Ordering::Relaxed);
        if state == UNKNOWN {
            state = if query().contains(MembarrierQuery::GLOBAL_EXPEDITED) {
                REGISTERED
            } else {
                UNAVAILABLE
            };
            HEAVY.store(state, Ordering::Relaxed);
        }
        if state != REGISTERED {
            return false;
        }
        // Relaxed: a statistic.
        HEAVY_CALLS.fetch_add(1, Ordering::Relaxed);
        membarrier(MembarrierCommand::GlobalExpedited).is_ok()
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

    pub(super) fn deny(deny: bool) {
        DENIED.with(|d| d.set(deny));
    }
}

#[cfg(not(loom))]
pub(crate) use real::{fallback, heavy, light};
#[cfg(not(loom))]
pub use real::{light_fence_active, membarrier_calls};

#[cfg(loom)]
mod model {
    use core::cell::Cell;

    use crate::sync::shim::{Ordering, fence};

    /// What a model thread asked for through [`super::testing`].
    #[derive(Debug, Clone, Copy, Default)]
    pub(super) struct Knobs {
        pub(super) denied: bool,
        pub(super) registered: bool,
        pub(super) ignore_flag: bool,
    }

    loom::thread_local! {
        pub(super) static KNOBS: Cell<Knobs> = Cell::new(Knobs::default());
    }

    pub(super) fn knobs() -> Knobs {
        KNOBS.with(Cell::get)
    }

    /// The publisher's fence: `fence(SeqCst)`, or nothing for a thread
    /// modelling a registered process (whose compiler fence orders no CPU).
    pub(crate) fn light() {
        if !knobs().registered {
            fence(Ordering::SeqCst);
        }
    }

    /// The publisher's fence on a flagged doorbell.
    pub(crate) fn fallback() {
        fence(Ordering::SeqCst);
    }

    /// The membarrier: "ran" unless the thread was denied it. (A model that
    /// uses it pairs it with publishers' `fence(SeqCst)`.)
    pub(crate) fn heavy() -> bool {
        !knobs().denied
    }
}

#[cfg(loom)]
pub(crate) use model::{fallback, heavy, light};

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

/// Switches for tests: force the paths that a machine without membarrier
/// takes. Not part of the supported API.
#[doc(hidden)]
pub mod testing {
    /// Makes this thread's waits act as if `membarrier` were unavailable
    /// (as under a seccomp filter that refuses it), so they take the
    /// fallback path: flag the doorbell, full fence, short first sleep.
    pub fn deny_membarrier_on_this_thread(deny: bool) {
        #[cfg(not(loom))]
        super::real::deny(deny);
        #[cfg(loom)]
        update(|k| k.denied = deny);
    }

    /// Loom only: this model thread publishes as a process registered for
    /// membarrier does, with no CPU fence at all.
    #[cfg(loom)]
    pub fn model_registered_publisher_on_this_thread(on: bool) {
        update(|k| k.registered = on);
    }

    /// Loom only: this model thread's `ring` ignores the fallback flag (the
    /// protocol without it), so a model can show that it needs the flag.
    #[cfg(loom)]
    pub fn ignore_fallback_flag_on_this_thread(on: bool) {
        update(|k| k.ignore_flag = on);
    }

    #[cfg(loom)]
    fn update(f: impl FnOnce(&mut super::model::Knobs)) {
        let mut k = super::model::knobs();
        f(&mut k);
        super::model::KNOBS.with(|c| c.set(k));
    }

    /// Whether this thread's rings ignore the fallback flag (never outside
    /// loom).
    #[inline(always)]
    pub(crate) fn fallback_flag_ignored() -> bool {
        #[cfg(loom)]
        return super::model::knobs().ignore_flag;
        #[cfg(not(loom))]
        false
    }
}
