//! Waiting for a peer: spin briefly, then announce, re-check and sleep on a
//! shared futex; waking makes no system call unless somebody sleeps.
//!
//! A [`Doorbell`] sits in shared memory beside the state it guards (a ring's
//! tail, a lock word). It holds two words: `seq`, the futex word, and
//! `sleepers`, packed as a count of announced waiters (bits 0..16), an
//! epoch (bits 16..31) and a sticky *fallback* flag (bit 31). The protocol,
//! with `ready()` standing for "the state I wait for is there":
//!
//! ```text
//! waiter                                         publisher (ring)
//! ------                                         ----------------
//! ready()? -> done                               publish the state (Release)
//! spin a little, ready()? -> done                F2: light fence
//! loop:                                          w = sleepers (Relaxed)
//!   key = seq (Acquire)                    (K)   w & (count | flag) == 0 -> done   fast path
//!   still counted (same epoch, count > 0;          flag? F2': fence(SeqCst), reload w,
//!     loaded after K)? else announce:                     count == 0 -> done
//!     [pace: one membarrier per 250 us]          seq += 1 (Release)                 (B)
//!     e = epoch of (sleepers += 1) (Release) (A) n = FUTEX_WAKE(seq, all)
//!     membarrier ran? no: sleepers |= flag       n == 0 for the 64th time in a row
//!     F1: fence(SeqCst)                            on this thread: repair
//!   ready()? -> retract, done
//!   FUTEX_WAIT(seq, key, slice)                  repair:
//!     (at most 1 ms after a flagged announce)      w = sleepers; count == 0 -> done
//!   ready()? -> retract, done                      CAS w -> (flag, epoch + 1, count 0)
//!   deadline passed, or a slice since the           (Acquire)                        (C)
//!     last look: alive()? deadline? -> end         seq += 1 (Release), FUTEX_WAKE(all)
//! retract: CAS sleepers -= 1 if the epoch is
//!   still e and the count is not 0 (Relaxed)
//! ```
//!
//! **No lost wake-up.** F1 and F2 are full fences, so they are totally
//! ordered (F2 is the light and F1 the heavy side of an asymmetric fence,
//! see [`super::barrier`]): if F1 comes first, the publisher's load of
//! `sleepers` sees the announcement and wakes; if F2 comes first, the
//! waiter's re-check sees the published state. A wake that lands between
//! the re-check and the sleep is not lost either: it bumped `seq` first, so
//! `FUTEX_WAIT(seq, key)` returns at once. A waiter stays announced from
//! its announcement until it returns (unless a repair clears the count) and
//! loads a new `key` each round: once it is counted, every later publisher
//! rings, and the argument above holds for each round without another F1.
//! A waiter whose membarrier did not run flags the word before F1; a
//! publisher that sees the flag fences for real (F2'), so the pair is two
//! full fences (the rules, and why the first sleep after is short, are in
//! [`super::barrier`]). The loom models in `tests/loom_wait.rs` check this.
//!
//! **Dead waiters heal.** A waiter that dies announced leaves the count too
//! high, which would make every `ring` a system call for the life of the
//! segment. A publisher thread whose `FUTEX_WAKE`s found nobody asleep 64
//! times in a row (on any doorbells; 2 under loom) repairs the word: count
//! to 0, epoch + 1, keeping the flag, then `seq` + 1 and a wake. A live
//! waiter counted in the old epoch is not lost: its `key` was loaded before
//! its announcement A, A (Release) heads a release sequence of
//! read-modify-writes that C (Acquire) reads from, so K happens before B and
//! its `FUTEX_WAIT(key)` returns at once or is woken by the repair's wake.
//! It then loads a new key and finds the epoch changed: if that key came
//! from B or later, C happens before the epoch load, which cannot miss it.
//! It announces again in the new epoch; a dead one never does, so the count
//! heals. Its retraction, being for an old epoch, changes nothing.
//!
//! **Deadlines and liveness.** Every sleep is bounded by a *slice*; after
//! every round of the loop, whatever the futex returned, the deadline is
//! checked, and once a slice of time has passed since the last look the
//! waiter asks whether its peer is still alive. So a peer that keeps
//! changing `seq` (ringing in a loop) can neither hold a wait past its
//! deadline nor hide its death: a dead peer gives [`WaitError::PeerDead`],
//! a deadline [`WaitError::TimedOut`]. Such a peer cannot make the waiter
//! issue membarriers at its own pace either: a waiter pays F1 only when it
//! (re)announces, which after the first time needs a repair (64 wakes that
//! found nobody) or a corrupted word, and then at most once per 250 us
//! (before announcing again sooner it spins, polling `ready`).

use crate::sync::clock::Instant;
use core::cell::Cell;
use core::time::Duration;

use super::barrier;
use super::futex::Futex;
#[cfg(not(loom))]
use super::shim::spin_loop;
use super::shim::{AtomicU32, Ordering, fence};

/// `sleepers`: the count of announced waiters.
const COUNT_MASK: u32 = 0x0000_FFFF;
/// `sleepers`: one step of the epoch, which a repair bumps.
const EPOCH_ONE: u32 = 1 << 16;
/// `sleepers`: the epoch (15 bits, wrapping).
const EPOCH_MASK: u32 = 0x7FFF_0000;
/// `sleepers`: a waiter without membarrier announced here; publishers fence
/// for real (sticky).
const FALLBACK: u32 = 1 << 31;
/// The bits a publisher must act on: the fast path is `w & ATTENTION == 0`.
const ATTENTION: u32 = COUNT_MASK | FALLBACK;

/// A publisher repairs the count after this many `FUTEX_WAKE`s in a row
/// (on one thread) found nobody asleep.
#[cfg(not(loom))]
const REPAIR_AFTER: u32 = 64;
#[cfg(loom)]
const REPAIR_AFTER: u32 = 2;

/// The longest first sleep of a waiter that flagged the doorbell: a
/// publisher may have read the word just before the flag became visible.
#[cfg(not(loom))]
const FALLBACK_FIRST_SLICE: Duration = Duration::from_millis(1);

/// The shortest time between two announcements (two membarriers) of one
/// wait.
#[cfg(not(loom))]
const REANNOUNCE_GAP: Duration = Duration::from_micros(250);

#[cfg(not(loom))]
std::thread_local! {
    /// `FUTEX_WAKE`s in a row on this thread that found nobody asleep.
    static EMPTY_WAKES: Cell<u32> = const { Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    static EMPTY_WAKES: Cell<u32> = Cell::new(0);
}

/// Records a wake that woke `woke` sleepers; true when it completes a run
/// of [`REPAIR_AFTER`] that woke nobody (the run starts over).
fn empty_run_complete(woke: usize) -> bool {
    EMPTY_WAKES.with(|n| {
        if woke > 0 {
            n.set(0);
            return false;
        }
        let run = n.get() + 1;
        let complete = run >= REPAIR_AFTER;
        n.set(if complete { 0 } else { run });
        complete
    })
}

/// A shared wake-up point: a futex sequence word and the waiters' word (see
/// the module docs for the protocol).
///
/// # Invariants
/// - Any bit pattern is safe: a hostile peer can at worst cause needless
///   `FUTEX_WAKE` calls or fences (a large count, the fallback flag), a
///   spurious early wake (a changed `seq`), or a wake-up delayed to the end
///   of a slice (a count cleared under a sleeper); waiters always re-check
///   their own condition and never sleep longer than a slice.
/// - `seq` (offset 0) is written by publishers that find a sleeper (and by
///   repairs), read by waiters; it only ever grows (wrapping).
/// - `sleepers` (offset 4): count (bits 0..16) of waiters announced in the
///   epoch (bits 16..31); the fallback flag (bit 31), once set, is never
///   cleared. Waiters add themselves and remove themselves (only in the
///   epoch they announced in); a publisher's repair sets the count to 0 and
///   bumps the epoch. A waiter that died announced makes it too high until
///   a publisher repairs it, after 64 wakes that found nobody.
#[repr(C)]
#[derive(Debug)]
pub struct Doorbell {
    seq: Futex,
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Doorbell>() == 8 && align_of::<Doorbell>() == 4);

/// A snapshot of a doorbell's waiters' word, for tests and diagnostics
/// (stale as soon as it is taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// How many waiters are announced (0 to 65535).
    pub count: u32,
    /// The epoch: how many times publishers repaired the count (wrapping at
    /// 2^15).
    pub epoch: u32,
    /// Whether a waiter without membarrier announced here, so publishers
    /// of this doorbell use a full fence when the word is not zero.
    pub fallback: bool,
}

impl Announced {
    /// What a doorbell's waiters' word says (any bits decode).
    pub fn from_word(w: u32) -> Self {
        Announced {
            count: w & COUNT_MASK,
            epoch: (w & EPOCH_MASK) >> EPOCH_MASK.trailing_zeros(),
            fallback: w & FALLBACK != 0,
        }
    }
}

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

    /// Who is announced now (a snapshot).
    pub fn announced(&self) -> Announced {
        // Relaxed: a diagnostic snapshot, nothing is read through it.
        Announced::from_word(self.sleepers.load(Ordering::Relaxed))
    }

    /// Byte offset of the waiters' word in a doorbell (for read-only
    /// observers, which load it from a mapping: see `region::Observer`).
    #[cfg(not(loom))]
    pub(crate) const SLEEPERS_OFFSET: usize = core::mem::offset_of!(Doorbell, sleepers);

    /// Wakes the waiters, if any. Call after publishing (with a Release store
    /// or stronger) the state they wait for. Makes no system call when
    /// nobody is announced. Returns whether it made a `FUTEX_WAKE` call.
    #[inline]
    pub fn ring(&self) -> bool {
        // F2: pairs with F1 in `announce`. Orders our publication before the
        // load of `sleepers` below, against the waiter's announcement before
        // its re-check. The light side of an asymmetric fence (see
        // `super::barrier`): a compiler fence once this process registered
        // for membarrier, `fence(SeqCst)` otherwise and under loom.
        barrier::light();
        // Relaxed: F2 provides the ordering; a stale non-zero word only
        // costs the slow path.
        let w = self.sleepers.load(Ordering::Relaxed);
        if w & ATTENTION == 0 {
            return false;
        }
        self.ring_slow(w)
    }

    /// As [`ring`](Self::ring), with a full fence (`fence(SeqCst)`) before
    /// the look at the waiters instead of the light side of the asymmetric
    /// fence. Waiters of a doorbell whose every publisher rings it this way
    /// may wait with [`wait_fenced`](Self::wait_fenced), which costs them no
    /// `membarrier`. Cheap right after a locked read-modify-write (an MPSC
    /// commit CAS), which has already drained the store buffer.
    #[inline]
    pub fn ring_fenced(&self) -> bool {
        // F2 (full): pairs with F1 in `announce`, a full fence on both
        // sides (Dekker): either our load below sees the announcement, or
        // the waiter's re-check sees our publication.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence.
        let w = self.sleepers.load(Ordering::Relaxed);
        if w & ATTENTION == 0 {
            return false;
        }
        self.ring_slow(w)
    }

    #[cold]
    fn ring_slow(&self, mut w: u32) -> bool {
        if w & FALLBACK != 0 && !barrier::testing::fallback_flag_ignored() {
            // F2': pairs with F1 of a waiter whose membarrier did not run
            // (it set the flag before F1): two full fences, so if its F1
            // came first the reload sees its announcement, else its re-check
            // sees our publication.
            barrier::fallback();
            // Relaxed: ordered by F2'.
            w = self.sleepers.load(Ordering::Relaxed);
        }
        if w & COUNT_MASK == 0 {
            return false;
        }
        // Release: pairs with the Acquire load of `key` in `wait`; a waiter
        // that reads the new value also sees what we published.
        self.seq.word().fetch_add(1, Ordering::Release);
        if empty_run_complete(self.seq.wake_all()) {
            self.repair();
        }
        true
    }

    /// After a run of wakes that found nobody asleep: the count holds
    /// waiters that are gone (or awake, and about to notice). Clears it in
    /// a new epoch and wakes everyone counted in the old one, so that the
    /// live ones announce themselves again (see the module docs).
    #[cold]
    fn repair(&self) {
        // Relaxed: the CAS below checks the value.
        let w = self.sleepers.load(Ordering::Relaxed);
        if w & COUNT_MASK == 0 {
            return;
        }
        let healed = (w & FALLBACK) | (w.wrapping_add(EPOCH_ONE) & EPOCH_MASK);
        // Acquire (C): reads from the release sequence headed by each
        // counted waiter's Release announcement (every write to `sleepers`
        // is a read-modify-write), so their `key` loads happen before our
        // bump of `seq` below. Relaxed failure: someone just announced or
        // retracted, i.e. is awake; a later run repairs if still needed.
        if self
            .sleepers
            .compare_exchange(w, healed, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // Release (B): as in `ring_slow`; a waiter whose key comes from
        // here or later also sees C, hence the new epoch.
        self.seq.word().fetch_add(1, Ordering::Release);
        self.seq.wake_all();
    }

    /// Counts the caller as a sleeper: the announcement (A), the heavy side
    /// of the fence and, without membarrier, the fallback flag; then F1.
    /// Counts us among the waiters. `fenced`: every publisher rings with
    /// [`ring_fenced`](Self::ring_fenced), so F1 alone pairs with its full
    /// fence and no membarrier is needed.
    fn announce(&self, fenced: bool) -> Announcement<'_> {
        // Release (A): heads the release sequence that a repair's Acquire
        // CAS reads from (see `repair`); the `key` loaded before happens
        // before the repair's `seq` bump. The ordering against publishers
        // is F1's.
        let prev = self.sleepers.fetch_add(1, Ordering::Release);
        // The epoch of the value we wrote (a count of 65535, which only a
        // corrupted word reaches, carries into it).
        let epoch = prev.wrapping_add(1) & EPOCH_MASK;
        if fenced {
            // F1: pairs with the full fence F2 of `ring_fenced`.
            fence(Ordering::SeqCst);
            return Announcement {
                bell: self,
                epoch,
                fallback: false,
            };
        }
        let paired = barrier::heavy();
        if !paired && prev & FALLBACK == 0 {
            // Relaxed: F1 below orders it before our re-check; a publisher
            // that reads it fences (F2') before deciding. One that read the
            // word before it was visible is covered by our short first sleep.
            self.sleepers.fetch_or(FALLBACK, Ordering::Relaxed);
        }
        // F1: pairs with F2 in `ring` (and F2' in `ring_slow`): the heavy
        // side of the asymmetric fence, after the membarrier (if it ran).
        fence(Ordering::SeqCst);
        Announcement {
            bell: self,
            epoch,
            fallback: !paired,
        }
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
        ready: impl FnMut() -> Option<T>,
        strategy: &WaitStrategy,
        deadline: Option<Instant>,
        alive: impl FnMut() -> bool,
    ) -> Result<T, WaitError> {
        self.wait_inner(ready, strategy, deadline, alive, false)
    }

    /// As [`wait`](Self::wait), for a doorbell whose every publisher rings
    /// it with [`ring_fenced`](Self::ring_fenced): announcing costs a fence
    /// instead of a `membarrier` (an interrupt to every CPU that runs a
    /// registered process). A publisher that rings with plain
    /// [`ring`](Self::ring) may then leave a waiter asleep until its slice
    /// ends.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_fenced<T>(
        &self,
        ready: impl FnMut() -> Option<T>,
        strategy: &WaitStrategy,
        deadline: Option<Instant>,
        alive: impl FnMut() -> bool,
    ) -> Result<T, WaitError> {
        self.wait_inner(ready, strategy, deadline, alive, true)
    }

    #[inline]
    fn wait_inner<T>(
        &self,
        mut ready: impl FnMut() -> Option<T>,
        strategy: &WaitStrategy,
        deadline: Option<Instant>,
        mut alive: impl FnMut() -> bool,
        fenced: bool,
    ) -> Result<T, WaitError> {
        if let Some(v) = ready() {
            return Ok(v);
        }
        // This thread stops to wait: the line a producer of ours left for
        // later goes to the shared cache now (see `demote_before_waiting`),
        // and where it waits is noted for its next demotes (`note_cpu`).
        super::shim::demote_pending();
        super::shim::note_cpu();
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
            // Acquire (K): pairs with the Release increments of `seq` in
            // `ring_slow` and `repair`.
            let key = self.seq.word().load(Ordering::Acquire);
            // Loaded after K: see the module docs (a repair).
            if me.as_ref().is_some_and(|a| !a.still_counted()) {
                me = None;
            }
            let mut short = false;
            if me.is_none() {
                if let Some(v) = clock.pace(&mut ready, deadline) {
                    return Ok(v);
                }
                let a = self.announce(fenced);
                short = a.fallback;
                me = Some(a);
            }
            // The re-check after announcing is what makes the protocol
            // correct. `--cfg polycephaly_broken_wait` removes it, so that
            // CI can show the loom test catches the lost wakeup that follows.
            #[cfg(not(polycephaly_broken_wait))]
            if let Some(v) = ready() {
                return Ok(v);
            }
            let _ = self.seq.wait(key, Some(clock.slice(deadline, short)));
            if let Some(v) = ready() {
                return Ok(v);
            }
            if let Some(end) = clock.after_round(&mut ready, deadline, &mut alive) {
                return end;
            }
        }
    }
}

/// A waiter counted in `bell`'s word, in `epoch`; dropping it retracts the
/// count (only in that epoch: a repair already cleared it otherwise).
#[derive(Debug)]
struct Announcement<'a> {
    bell: &'a Doorbell,
    epoch: u32,
    /// Announced without membarrier (the doorbell is flagged).
    fallback: bool,
}

impl Announcement<'_> {
    /// Whether the count still includes us: same epoch (no repair since),
    /// count not zero (not cleared by a corrupting peer).
    fn still_counted(&self) -> bool {
        // Relaxed: loaded after K (Acquire); if K read a repair's bump, the
        // repair's CAS happens before this load, which sees its epoch.
        let w = self.bell.sleepers.load(Ordering::Relaxed);
        w & EPOCH_MASK == self.epoch && w & COUNT_MASK != 0
    }
}

impl Drop for Announcement<'_> {
    fn drop(&mut self) {
        // A loom model that failed (a deadlock) unwinds through here; loom's
        // atomics cannot be used any more, and nothing is left to count.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        let word = &self.bell.sleepers;
        // Relaxed (load and CAS): retracting publishes nothing; a publisher
        // that reads the count late wakes needlessly. The CAS still extends
        // the release sequences a repair reads from.
        let mut w = word.load(Ordering::Relaxed);
        // Bounded against a peer that keeps changing the word: giving up
        // leaves the count high, which a repair heals.
        for _ in 0..64 {
            if w & EPOCH_MASK != self.epoch || w & COUNT_MASK == 0 {
                return;
            }
            match word.compare_exchange(w, w - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
    }
}

/// The sleeping phase's sense of time: when to ask `alive`, how long to
/// sleep, when a new membarrier is allowed. One clock read per round, after
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
    /// When the last announcement of this wait paid its membarrier.
    #[cfg(not(loom))]
    last_heavy: Option<Instant>,
}

#[cfg(not(loom))]
impl Clock {
    fn start(strategy: &WaitStrategy) -> Self {
        let now = Instant::now();
        Self {
            slice: strategy.slice,
            now,
            next_alive: now.checked_add(strategy.slice),
            last_heavy: None,
        }
    }

    /// How long the next sleep may last: until the next liveness check or
    /// the deadline, and at most [`FALLBACK_FIRST_SLICE`] if `short`.
    fn slice(&self, deadline: Option<Instant>, short: bool) -> Duration {
        let until = match (self.next_alive, deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        };
        let slice = until.map_or(self.slice, |u| u.saturating_duration_since(self.now));
        if short {
            slice.min(FALLBACK_FIRST_SLICE)
        } else {
            slice
        }
    }

    /// Before an announcement: if the last one was less than
    /// [`REANNOUNCE_GAP`] ago, polls `ready` until the gap has passed (or
    /// the deadline), so a wait pays at most one membarrier per gap.
    fn pace<T>(
        &mut self,
        ready: &mut impl FnMut() -> Option<T>,
        deadline: Option<Instant>,
    ) -> Option<T> {
        if let Some(last) = self.last_heavy {
            let until = last + REANNOUNCE_GAP;
            let until = deadline.map_or(until, |d| d.min(until));
            let mut n: u32 = 0;
            while self.now < until {
                spin_loop();
                if let Some(v) = ready() {
                    return Some(v);
                }
                n = n.wrapping_add(1);
                // Read the clock only every 64 polls: it is the costly part.
                if n % 64 == 0 {
                    self.now = Instant::now();
                }
            }
        }
        self.last_heavy = Some(self.now);
        None
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

    fn slice(&self, _deadline: Option<Instant>, _short: bool) -> Duration {
        self.slice
    }

    fn pace<T>(
        &mut self,
        _ready: &mut impl FnMut() -> Option<T>,
        _deadline: Option<Instant>,
    ) -> Option<T> {
        None
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
    // The clock is first read after 64 polls: most waits for a busy peer
    // end sooner, and a clock read costs tens of ns in a VM.
    let mut start = None;
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
            let spun = now.duration_since(*start.get_or_insert(now));
            if spun >= strategy.spin || deadline.is_some_and(|d| now >= d) {
                return None;
            }
            if spun >= YIELD_AFTER && !yield_to_a_peer(now) {
                // Our CPU is shared with a busy task: sleep instead (see
                // `yield_to_a_peer`).
                return None;
            }
        }
    }
}

/// A `sched_yield` that took this long gave the CPU to a task that used a
/// good part of a time slice: not a peer that answers in microseconds, but
/// another busy process.
#[cfg(not(loom))]
const HOG_YIELD: Duration = Duration::from_micros(500);

/// After a yield that found a busy task on our CPU, the spin phases of this
/// thread's waits go to sleep instead of yielding for this long.
#[cfg(not(loom))]
const HOG_MEMORY: Duration = Duration::from_secs(1);

#[cfg(not(loom))]
std::thread_local! {
    /// Until when this thread's CPU is known shared with a busy task.
    static HOGGED_UNTIL: core::cell::Cell<Option<Instant>> = const { core::cell::Cell::new(None) };
}

/// Gives the CPU away once, for a spin phase that has spun past
/// [`YIELD_AFTER`]: a peer that shares our CPU (more processes than CPUs)
/// then runs at once instead of after our time slice. Returns false, without
/// yielding, when the waiter had better sleep: this yield (or one in the
/// last [`HOG_MEMORY`]) handed the CPU to a task that kept it for
/// [`HOG_YIELD`] or more. A yield only puts us behind such a task until the
/// next tick (4 ms at 250 Hz), while a sleeper is woken with preemption:
/// measured with a busy process on each of two CPUs, a blocking round trip
/// took 4 ms with yields against 38 us for a pipe.
#[cfg(not(loom))]
fn yield_to_a_peer(now: Instant) -> bool {
    if HOGGED_UNTIL.with(|h| h.get().is_some_and(|until| now < until)) {
        return false;
    }
    std::thread::yield_now();
    let back = Instant::now();
    if back.duration_since(now) >= HOG_YIELD {
        HOGGED_UNTIL.with(|h| h.set(back.checked_add(HOG_MEMORY)));
        return false;
    }
    true
}

/// Spinning longer than this gives the CPU away every 64 polls: a peer
/// that shares our CPU (more processes than CPUs) runs at once instead of
/// after our time slice; a peer on another CPU costs a `sched_yield` that
/// returns at once (about 0.3 us) per 64 polls.
#[cfg(not(loom))]
const YIELD_AFTER: Duration = Duration::from_micros(2);

#[cfg(not(loom))]
#[inline]
fn yield_if_long(spun: Duration) {
    if spun >= YIELD_AFTER {
        std::thread::yield_now();
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
    // As in `spin_phase`, the clock is first read after 64 polls: a
    // streaming consumer that caught up with its producer enters this wait
    // once every few frames, and the wait usually ends sooner.
    let mut start = None;
    let mut next_check = None;
    let mut n: u32 = 0;
    loop {
        spin_loop();
        if let Some(v) = ready() {
            return Ok(v);
        }
        n = n.wrapping_add(1);
        if n % 64 == 0 {
            let now = Instant::now();
            yield_if_long(now.duration_since(*start.get_or_insert(now)));
            // `None` inside: beyond the clock's range (an endless slice).
            let check = *next_check.get_or_insert(now.checked_add(strategy.slice));
            if check.is_some_and(|c| now >= c) || deadline.is_some_and(|d| now >= d) {
                if let Some(v) = check_peer_and_deadline(&mut ready, deadline, &mut alive)? {
                    return Ok(v);
                }
                next_check = Some(now.checked_add(strategy.slice));
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
