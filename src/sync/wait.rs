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
//! loop:                                    if sleepers != 0:
//!   key = seq (Acquire)                       seq += 1 (Release)
//!   first round: sleepers += 1                FUTEX_WAKE(seq, all)
//!                fence(SeqCst)     (F1)
//!   ready()? -> sleepers -= 1, done
//!   FUTEX_WAIT(seq, key, slice)
//!   ready()? -> sleepers -= 1, done
//!   deadline passed, or a slice since the
//!     last look: alive()? deadline? -> end
//! ```
//!
//! F1 and F2 are full fences, so they are totally ordered (F2 is the light
//! and F1 the heavy side of an asymmetric fence, see [`super::barrier`]): if F1 comes
//! first, the publisher's load of `sleepers` sees the announcement and wakes;
//! if F2 comes first, the waiter's re-check sees the published state. A wake
//! that lands between the re-check and the sleep is not lost either: it bumped
//! `seq` first, so `FUTEX_WAIT(seq, key)` returns at once. A waiter stays
//! announced from its announcement until it returns, and loads a new `key`
//! each round: once it is counted, every later publisher rings, and the
//! argument above holds for each round without another F1. The loom model
//! in `tests/loom_wait.rs` checks this.
//!
//! **Deadlines and liveness.** Every sleep is bounded by a *slice*; after
//! every round of the loop, whatever the futex returned, the deadline is
//! checked, and once a slice of time has passed since the last look the
//! waiter asks whether its peer is still alive. So a peer that keeps
//! changing `seq` (ringing in a loop) can neither hold a wait past its
//! deadline nor hide its death: a dead peer gives [`WaitError::PeerDead`],
//! a deadline [`WaitError::TimedOut`]. Nor can it make the waiter issue a
//! membarrier per round: the waiter pays F1 once per wait.

use core::time::Duration;
use std::time::Instant;

use super::barrier;
use super::futex::Futex;
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
        // F2: pairs with F1 in `announce`. Orders our publication before the
        // load of `sleepers` below, against the waiter's announcement before
        // its re-check. The light side of an asymmetric fence (see
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

    /// Counts the caller as a sleeper, then F1.
    fn announce(&self) -> Announcement<'_> {
        // Relaxed: F1 below orders it before the re-check.
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // F1: pairs with F2 in `ring` (see the module docs): the heavy
        // side of the asymmetric fence, `fence(SeqCst)` plus
        // membarrier(GLOBAL_EXPEDITED) where the kernel has it.
        barrier::heavy();
        Announcement { bell: self }
    }

    /// Waits until `ready` returns `Some`, following `strategy`.
    ///
    /// `deadline`: give up with [`WaitError::TimedOut`] after it (`None`:
    /// never). It is checked after every round of the wait, whatever woke
    /// it, so a peer that keeps ringing cannot hold the wait past it.
    /// `alive`: asked once per `strategy.slice` of waiting without progress
    /// and at the deadline; when it says `false`, `ready` is tried once more
    /// (so nothing the peer published before dying is lost) and then the
    /// wait ends with [`WaitError::PeerDead`].
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
        let mut clock = Clock::start(strategy);
        // Dropping it retracts the announcement.
        let mut me: Option<Announcement<'_>> = None;
        loop {
            // Acquire: pairs with the Release increment in `ring_slow`.
            let key = self.seq.word().load(Ordering::Acquire);
            if me.is_none() {
                me = Some(self.announce());
            }
            // The re-check after announcing is what makes the protocol
            // correct. `--cfg polycephaly_broken_wait` removes it, so that
            // CI can show the loom test catches the lost wakeup that follows.
            #[cfg(not(polycephaly_broken_wait))]
            if let Some(v) = ready() {
                return Ok(v);
            }
            let _ = self.seq.wait(key, Some(clock.slice(deadline)));
            if let Some(v) = ready() {
                return Ok(v);
            }
            if let Some(end) = clock.after_round(&mut ready, deadline, &mut alive) {
                return end;
            }
        }
    }
}

/// A waiter counted in `bell`'s `sleepers`; dropping it retracts the count.
#[derive(Debug)]
struct Announcement<'a> {
    bell: &'a Doorbell,
}

impl Drop for Announcement<'_> {
    fn drop(&mut self) {
        // A loom model that failed (a deadlock) unwinds through here; loom's
        // atomics cannot be used any more.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        // Relaxed: a publisher that reads the count late wakes needlessly.
        self.bell.sleepers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sleeping phase's sense of time: when to ask `alive`, how long to
/// sleep. One clock read per round, after
/// the futex call; none under loom, which takes no timeout (and must stay
/// deterministic).
#[derive(Debug)]
struct Clock {
    slice: Duration,
    #[cfg(not(loom))]
    now: Instant,
    /// When to ask `alive` next (`None`: beyond the clock's range).
    #[cfg(not(loom))]
    next_alive: Option<Instant>,
}

#[cfg(not(loom))]
impl Clock {
    fn start(strategy: &WaitStrategy) -> Self {
        let now = Instant::now();
        Self {
            slice: strategy.slice,
            now,
            next_alive: now.checked_add(strategy.slice),
        }
    }

    /// How long the next sleep may last: until the next liveness check or
    /// the deadline.
    fn slice(&self, deadline: Option<Instant>) -> Duration {
        let until = match (self.next_alive, deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        };
        until.map_or(self.slice, |u| u.saturating_duration_since(self.now))
    }

    /// After a round of the wait, whatever the futex returned: the
    /// deadline, and liveness once a slice has passed since the last look.
    /// `Some` ends the wait.
    fn after_round<T>(
        &mut self,
        ready: &mut impl FnMut() -> Option<T>,
        deadline: Option<Instant>,
        alive: &mut impl FnMut() -> bool,
    ) -> Option<Result<T, WaitError>> {
        self.now = Instant::now();
        let late = deadline.is_some_and(|d| self.now >= d);
        if late || self.next_alive.is_some_and(|t| self.now >= t) {
            self.next_alive = self.now.checked_add(self.slice);
            return check_peer_and_deadline(ready, deadline, alive).transpose();
        }
        None
    }
}

#[cfg(loom)]
impl Clock {
    fn start(strategy: &WaitStrategy) -> Self {
        Self {
            slice: strategy.slice,
        }
    }

    fn slice(&self, _deadline: Option<Instant>) -> Duration {
        self.slice
    }

    fn after_round<T>(
        &mut self,
        _ready: &mut impl FnMut() -> Option<T>,
        _deadline: Option<Instant>,
        _alive: &mut impl FnMut() -> bool,
    ) -> Option<Result<T, WaitError>> {
        None
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

#[cfg(not(loom))]
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
