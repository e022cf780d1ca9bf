//! Waiting for a peer: spin briefly, then announce, re-check and sleep on a
//! shared futex; waking makes no system call unless somebody sleeps.
//!
//! A [`Doorbell`] sits in shared memory beside the state it guards (a ring's
//! tail, a lock word). The protocol, with `ready()` standing for "the state I
//! wait for is there":
//!
//! ```text
//! waiter                                   publisher
//! ------                                   ---------
//! ready()? -> done                         publish the state (Release)
//! spin a little, ready()? -> done          fence(SeqCst)            (F2)
//! key = seq (Acquire)                      if sleepers != 0:
//! sleepers += 1                               seq += 1 (Release)
//! fence(SeqCst)                  (F1)         FUTEX_WAKE(seq, all)
//! ready()? -> sleepers -= 1, done
//! FUTEX_WAIT(seq, key, slice)
//! sleepers -= 1, loop
//! ```
//!
//! F1 and F2 are full fences, so they are totally ordered (F2 is the light
//! and F1 the heavy side of an asymmetric fence, see [`super::barrier`]): if F1 comes
//! first, the publisher's load of `sleepers` sees the announcement and wakes;
//! if F2 comes first, the waiter's re-check sees the published state. A wake
//! that lands between the re-check and the sleep is not lost either: it bumped
//! `seq` first, so `FUTEX_WAIT(seq, key)` returns at once. The loom model in
//! `tests/loom.rs` checks this.
//!
//! Every sleep is bounded by a *slice*; when a slice ends without progress
//! the waiter asks whether its peer is still alive, so a dead peer gives
//! [`WaitError::PeerDead`] instead of a hang, and a deadline gives
//! [`WaitError::TimedOut`].

use core::time::Duration;
use std::time::Instant;

use super::barrier;
use super::futex::{Futex, WaitOutcome};
#[cfg(not(loom))]
use super::shim::spin_loop;
use super::shim::{AtomicU32, Ordering};

/// A shared wake-up point: a futex sequence word and a count of announced
/// sleepers.
///
/// # Invariants
/// - Any bit pattern is safe: a hostile peer can at worst cause needless
///   `FUTEX_WAKE` calls (a large `sleepers`) or a spurious early wake (a
///   changed `seq`); waiters always re-check their own condition.
/// - `seq` is written by publishers that find a sleeper, read by waiters.
/// - `sleepers` is incremented and decremented by waiters, read by
///   publishers. A waiter that dies while announced leaves it too high, which
///   costs the publishers one system call per `ring` and nothing else.
#[repr(C)]
#[derive(Debug)]
pub struct Doorbell {
    seq: Futex,
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Doorbell>() == 8 && align_of::<Doorbell>() == 4);

/// How a blocking call waits: how long it spins before it sleeps, whether it
/// sleeps at all, and how often a sleeper checks that its peer is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// How long to spin before announcing and sleeping.
    pub spin: Duration,
    /// Never sleep: spin (checking the deadline and the peer every `slice`).
    pub spin_only: bool,
    /// The longest single sleep: the peer's liveness is checked at least this
    /// often while nothing arrives.
    pub slice: Duration,
}

impl WaitStrategy {
    /// Spin for up to 50 us (long enough to catch a reply from an awake
    /// peer), then sleep in slices of 50 ms.
    pub const BLOCK: Self = Self {
        spin: Duration::from_micros(50),
        spin_only: false,
        slice: Duration::from_millis(50),
    };

    /// Never sleep; check the peer every 50 ms. Lowest latency, one busy CPU.
    pub const SPIN: Self = Self {
        spin: Duration::ZERO,
        spin_only: true,
        slice: Duration::from_millis(50),
    };

    /// Sleep at once, without spinning (for tests and for a waiter that
    /// knows its peer is idle).
    pub const SLEEP: Self = Self {
        spin: Duration::ZERO,
        spin_only: false,
        slice: Duration::from_millis(50),
    };
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::BLOCK
    }
}

/// Why a blocking wait gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed while the peer was alive.
    #[error("timed out waiting for the peer")]
    TimedOut,
    /// The peer died (or detached) while we waited.
    #[error("the peer is dead")]
    PeerDead,
}

impl Default for Doorbell {
    fn default() -> Self {
        Self::new()
    }
}

impl Doorbell {
    /// A doorbell with no sleepers. All-zero memory is the same state.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            seq: Futex::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// A doorbell with no sleepers (loom model).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            seq: Futex::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Wakes the waiters, if any. Call after publishing (with a Release store
    /// or stronger) the state they wait for. Makes no system call when
    /// nobody is announced. Returns whether it woke anyone (made the call).
    #[inline]
    pub fn ring(&self) -> bool {
        // F2: pairs with F1 in `wait`. Orders our publication before the load
        // of `sleepers` below, against the waiter's announcement before its
        // re-check. The light side of an asymmetric fence (see
        // `super::barrier`): a compiler fence once this process registered
        // for membarrier, `fence(SeqCst)` otherwise and under loom.
        barrier::light();
        // Relaxed: F2 provides the ordering; a stale non-zero count only
        // costs a needless wake.
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.ring_slow();
        true
    }

    #[cold]
    fn ring_slow(&self) {
        // Release: pairs with the Acquire load of `key` in `wait`; a waiter
        // that reads the new value also sees what we published.
        self.seq.word().fetch_add(1, Ordering::Release);
        self.seq.wake_all();
    }

    /// Waits until `ready` returns `Some`, following `strategy`.
    ///
    /// `deadline`: give up with [`WaitError::TimedOut`] after it (`None`:
    /// never). `alive`: asked when a slice passes without progress and at the
    /// deadline; when it says `false`, `ready` is tried once more (so nothing
    /// the peer published before dying is lost) and then the wait ends with
    /// [`WaitError::PeerDead`].
    ///
    /// `ready` must read the awaited state with Acquire loads (or stronger).
    ///
    /// # Errors
    /// [`WaitError::TimedOut`] or [`WaitError::PeerDead`], as above.
    pub fn wait<T>(
        &self,
        mut ready: impl FnMut() -> Option<T>,
        strategy: &WaitStrategy,
        deadline: Option<Instant>,
        mut alive: impl FnMut() -> bool,
    ) -> Result<T, WaitError> {
        if let Some(v) = ready() {
            return Ok(v);
        }
        #[cfg(not(loom))]
        if let Some(v) = spin_phase(&mut ready, strategy, deadline) {
            return Ok(v);
        }
        #[cfg(not(loom))]
        if strategy.spin_only {
            return spin_forever(ready, strategy, deadline, alive);
        }
        loop {
            // Acquire: pairs with the Release increment in `ring_slow`.
            let key = self.seq.word().load(Ordering::Acquire);
            // Relaxed: F1 below orders it before the re-check.
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // F1: pairs with F2 in `ring` (see the module docs): the heavy
            // side of the asymmetric fence, `fence(SeqCst)` plus
            // membarrier(GLOBAL_EXPEDITED) where the kernel has it.
            barrier::heavy();
            // The re-check after announcing is what makes the protocol
            // correct. `--cfg polycephaly_broken_wait` removes it, so that
            // CI can show the loom test catches the lost wakeup that follows.
            #[cfg(not(polycephaly_broken_wait))]
            if let Some(v) = ready() {
                self.sleepers.fetch_sub(1, Ordering::Relaxed);
                return Ok(v);
            }
            let slice = match deadline {
                Some(d) => strategy
                    .slice
                    .min(d.saturating_duration_since(Instant::now())),
                None => strategy.slice,
            };
            let outcome = self.seq.wait(key, Some(slice));
            // Relaxed: a publisher that reads the count late wakes needlessly.
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if let Some(v) = ready() {
                return Ok(v);
            }
            if outcome == WaitOutcome::TimedOut {
                if let Some(v) = check_peer_and_deadline(&mut ready, deadline, &mut alive)? {
                    return Ok(v);
                }
            }
        }
    }
}

/// Polls `ready` with a pause between polls for `strategy.spin` at most.
///
/// One `spin_loop` hint per poll: the wait is for another process's store,
/// not for a contended lock, so backing off would only add latency (and
/// crossbeam's `Backoff::spin` alone never completes: it stops growing
/// after 64 pauses per poll).
#[cfg(not(loom))]
fn spin_phase<T>(
    ready: &mut impl FnMut() -> Option<T>,
    strategy: &WaitStrategy,
    deadline: Option<Instant>,
) -> Option<T> {
    if strategy.spin.is_zero() {
        return None;
    }
    let start = Instant::now();
    let mut n: u32 = 0;
    loop {
        spin_loop();
        if let Some(v) = ready() {
            return Some(v);
        }
        n = n.wrapping_add(1);
        // Read the clock only every 64 polls: it is the costly part.
        if n % 64 == 0 {
            let now = Instant::now();
            if now.duration_since(start) >= strategy.spin || deadline.is_some_and(|d| now >= d) {
                return None;
            }
        }
    }
}

/// Spin-only waiting: never sleeps, checks the peer every slice.
#[cfg(not(loom))]
fn spin_forever<T>(
    mut ready: impl FnMut() -> Option<T>,
    strategy: &WaitStrategy,
    deadline: Option<Instant>,
    mut alive: impl FnMut() -> bool,
) -> Result<T, WaitError> {
    let mut next_check = Instant::now() + strategy.slice;
    let mut n: u32 = 0;
    loop {
        spin_loop();
        if let Some(v) = ready() {
            return Ok(v);
        }
        n = n.wrapping_add(1);
        if n % 256 == 0 {
            let now = Instant::now();
            if now >= next_check || deadline.is_some_and(|d| now >= d) {
                if let Some(v) = check_peer_and_deadline(&mut ready, deadline, &mut alive)? {
                    return Ok(v);
                }
                next_check = now + strategy.slice;
            }
        }
    }
}

/// After a slice without progress: a dead peer ends the wait (after one last
/// look at the state, returned if it is there), so does a passed deadline.
fn check_peer_and_deadline<T>(
    ready: &mut impl FnMut() -> Option<T>,
    deadline: Option<Instant>,
    alive: &mut impl FnMut() -> bool,
) -> Result<Option<T>, WaitError> {
    if !alive() {
        return ready().map(Some).ok_or(WaitError::PeerDead);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(WaitError::TimedOut);
    }
    Ok(None)
}
