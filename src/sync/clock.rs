//! The clock the library's deadlines and timeouts read: `std`'s monotonic
//! clock in a normal build, a model clock under loom.
//!
//! In a normal build [`Instant`] *is* `std::time::Instant` (a re-export), so
//! public signatures that take one take the standard type and nothing costs
//! more. Under loom the real clock would make a model depend on how fast the
//! host runs it (a branch taken or not by wall time is a non-deterministic
//! model, which loom rejects), so time is modelled: it starts at zero in
//! every execution and moves forward by `MODEL_TICK` (a second) at each
//! reading. A loop that reads the clock therefore sees time pass as it goes
//! round: a slice or a claim timeout has passed at the next reading, a
//! deadline of *n* seconds after *n* readings, the same in every execution
//! of the same schedule. (The loom futex model never times out a sleep: a
//! protocol must be woken to make progress, which is what the models
//! check.)

#[cfg(not(loom))]
pub use std::time::Instant;

/// CLOCK_MONOTONIC in nanoseconds, as a plain number to store in shared
/// memory (a peer's heartbeat): the same clock in every process.
#[cfg(not(loom))]
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

#[cfg(loom)]
pub use model::{Instant, MODEL_TICK};

#[cfg(loom)]
mod model {
    #![allow(clippy::disallowed_types)]

    use core::time::Duration;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// How far model time moves at each reading of the clock: more than
    /// any sleep slice or claim timeout the models use, so every reading
    /// after the first finds them passed (time is the one thing a model
    /// does not wait for).
    pub const MODEL_TICK: Duration = Duration::from_secs(1);

    loom::lazy_static! {
        // Nanoseconds of model time so far in this execution. A plain std
        // atomic: loom runs one thread at a time, so the readings follow the
        // schedule, and a loom lazy static starts again in each execution.
        static ref NOW: AtomicU64 = AtomicU64::new(0);
    }

    /// A point of model time (see the module docs): the same methods as
    /// `std::time::Instant` that the library uses.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Instant(Duration);

    impl Instant {
        /// The current model time, then one tick later for the next reader.
        pub fn now() -> Instant {
            // Relaxed: see the static; the value is only counted.
            let ns = NOW.fetch_add(MODEL_TICK.as_nanos() as u64, Ordering::Relaxed);
            Instant(Duration::from_nanos(ns))
        }

        /// `self + d`, `None` on overflow.
        pub fn checked_add(&self, d: Duration) -> Option<Instant> {
            self.0.checked_add(d).map(Instant)
        }

        /// How long after `earlier` this is (0 if it is before).
        pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
            self.0.saturating_sub(earlier.0)
        }

        /// How long after `earlier` this is (0 if it is before: unlike std,
        /// never panics).
        pub fn duration_since(&self, earlier: Instant) -> Duration {
            self.saturating_duration_since(earlier)
        }

        /// How long since this instant, reading the clock.
        pub fn elapsed(&self) -> Duration {
            Instant::now().saturating_duration_since(*self)
        }
    }

    impl core::ops::Add<Duration> for Instant {
        type Output = Instant;
        fn add(self, d: Duration) -> Instant {
            Instant(self.0 + d)
        }
    }
}
