//! The consumer side of an MPSC ring: read committed frames in claim
//! order, skip padding and abandoned frames, zero what was consumed,
//! abandon the claims of dead producers.

use core::fmt;
use core::ops::Deref;
use core::time::Duration;
use std::time::Instant;

use super::layout::{ABANDONED, CLAIMED, COMMITTED, Header, MAX_PRODUCERS, PADDING};
use super::view::{MAX_POSITION, RingView};
use crate::ring::RecvError;
use crate::ring::frame::frame_len;
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;

/// The default claim timeout: how long a frame may stay claimed (or
/// reserved and unwritten) at the head before the consumer checks whether
/// its claimer is alive.
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_millis(100);

/// The reading end of an MPSC ring (one per ring).
///
/// `Send` but not `Sync`. Every position, header and record it reads from
/// shared memory is checked before use (a header's place against the tail
/// when the tail is next read, at the latest before the head passes it);
/// an inconsistency gives [`RecvError::Corrupted`] from then on.
pub struct MpscConsumer {
    view: RingView,
    me: u32,
    /// Start of the next unconsumed frame; the last value stored to the
    /// shared head.
    head: u64,
    /// A position the tail is known to have reached: the last tail read
    /// (checked), or the end of a written frame seen since (a producer
    /// writes a header only after its claim moved the tail past it).
    /// `head <= cached_tail <= head + cap`; checked against the real tail
    /// each time that is read.
    cached_tail: u64,
    /// The last value read from the shared tail (checked).
    tail_seen: u64,
    /// The head when the producers' doorbell was last rung.
    rung: u64,
    poisoned: bool,
    strategy: WaitStrategy,
    claim_timeout: Duration,
    /// The pending frame at the head, and since when.
    stuck: Option<Stuck>,
}

// SAFETY: raw pointers into memory kept alive by the backing, and an
// exclusive role that moves with the handle.
unsafe impl Send for MpscConsumer {}

impl fmt::Debug for MpscConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscConsumer")
            .field("capacity", &self.view.cap)
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("poisoned", &self.poisoned)
            .field("claim_timeout", &self.claim_timeout)
            .finish()
    }
}

/// A claim found blocking the head (see `MpscConsumer::resolve`): where,
/// and since when (the last liveness check of its claimer, or the first
/// sight of it).
#[derive(Debug, Clone, Copy)]
struct Stuck {
    pos: u64,
    since: Instant,
}

/// Pauses (`spin_loop`, about 25 ns each on the reference machine)
/// before each poll of the header at the head while waiting.
#[cfg(not(loom))]
const POLL_PAUSES: u32 = 32;

/// The shortest sleep of a consumer waiting on a blocked head before it
/// looks at the blocker again (see `wait_for_data`).
const RECHECK_FLOOR: Duration = Duration::from_millis(1);

/// One attached producer, as listed by [`MpscConsumer::producers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Its entry in the ring's producer table.
    pub entry: usize,
    /// Its raw peer id (a region [`PeerId`](crate::region::PeerId) in raw
    /// form, for rings in a region).
    pub id: u32,
    /// Whether its process runs.
    pub alive: bool,
}

/// A checked committed frame: plain numbers, no borrow.
#[derive(Debug, Clone, Copy)]
struct Loc {
    /// Data index of the payload.
    idx: u64,
    len: u32,
    tag: u32,
    entry: u32,
    /// Position just after the frame.
    end: u64,
}

/// What lies at a position.
#[derive(Debug, Clone, Copy)]
enum Parsed {
    /// A committed frame.
    Frame(Loc),
    /// Padding or an abandoned frame of this many bytes.
    Skip(u64),
    /// A claim in progress: the header word (claimed), or 0 (reserved,
    /// header not written yet).
    Pending(u64),
}

impl MpscConsumer {
    pub(crate) fn from_parts(view: RingView, head: u64, me: u32) -> Self {
        Self {
            view,
            me,
            head,
            cached_tail: head,
            tail_seen: head,
            rung: head,
            poisoned: false,
            strategy: WaitStrategy::BLOCK,
            claim_timeout: DEFAULT_CLAIM_TIMEOUT,
            stuck: None,
        }
    }

    /// The ring's data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.view.cap as usize
    }

    /// The largest payload a frame may have: `capacity / 2 - 8`.
    pub fn max_payload(&self) -> usize {
        self.view.max_payload as usize
    }

    /// How the blocking forms wait (default [`WaitStrategy::BLOCK`]).
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Sets how the blocking forms wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// How long a claim may block the head before its claimer's liveness
    /// is checked (default [`DEFAULT_CLAIM_TIMEOUT`]).
    pub fn claim_timeout(&self) -> Duration {
        self.claim_timeout
    }

    /// Sets the claim timeout. A claimer found alive is waited for again,
    /// one timeout at a time, for as long as it lives.
    pub fn set_claim_timeout(&mut self, timeout: Duration) {
        self.claim_timeout = timeout;
    }

    /// Whether this handle found the ring corrupted (every call now fails).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// This consumer's raw peer id (what a heap ring's
    /// [`mark_dead`](super::HeapMpsc::mark_dead) takes).
    pub fn id(&self) -> u32 {
        self.me
    }

    /// The producers attached now, by entry.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        (0..MAX_PRODUCERS)
            .filter_map(|entry| {
                // Acquire: pairs with the producer's AcqRel claim of its
                // entry.
                let id = self.view.record(entry).owner.load(Ordering::Acquire);
                (id != 0).then(|| ProducerInfo {
                    entry,
                    id,
                    alive: self.view.alive(id),
                })
            })
            .collect()
    }

    /// Reads the next committed frame in place, without blocking. Padding,
    /// abandoned frames and the claims of dead producers (after the claim
    /// timeout) are skipped on the way. Dropping the returned [`MpscFrame`]
    /// releases it.
    ///
    /// # Errors
    /// [`RecvError::Empty`] if no frame is ready (the ring is empty, or the
    /// frame at the head is still being written),
    /// [`RecvError::Corrupted`] if the ring is inconsistent.
    #[inline]
    pub fn try_read(&mut self) -> Result<MpscFrame<'_>, RecvError> {
        let loc = self.next()?;
        Ok(MpscFrame {
            consumer: self,
            loc,
        })
    }

    /// Reads the next frame, waiting for it with the handle's
    /// [`WaitStrategy`] (and waking at claim timeouts to check claimers).
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read) but never `Empty`. Producers come
    /// and go, so this never reports `PeerDead`: use a deadline.
    #[inline]
    pub fn read(&mut self) -> Result<MpscFrame<'_>, RecvError> {
        self.read_until(None)
    }

    /// As [`read`](Self::read), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`RecvError::TimedOut`].
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<MpscFrame<'_>, RecvError> {
        self.read_until(Instant::now().checked_add(timeout))
    }

    /// As [`read`](Self::read), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// As [`read_timeout`](Self::read_timeout).
    pub fn read_until(&mut self, deadline: Option<Instant>) -> Result<MpscFrame<'_>, RecvError> {
        let loc = loop {
            match self.next() {
                Ok(loc) => break loc,
                Err(RecvError::Empty) => {}
                Err(e) => return Err(e),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::TimedOut);
            }
            self.wait_for_data(deadline)?;
        };
        Ok(MpscFrame {
            consumer: self,
            loc,
        })
    }

    /// Reads up to `max` committed frames that are ready now, calling
    /// `f(tag, payload)` for each in order, then releases them all with one
    /// store of the head. Returns how many were read.
    ///
    /// # Errors
    /// [`RecvError::Corrupted`] if the ring is inconsistent (frames passed
    /// to `f` before the bad one stay read).
    pub fn try_read_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(u32, &[u8]),
    ) -> Result<usize, RecvError> {
        if self.poisoned {
            return Err(RecvError::Corrupted);
        }
        let mut pos = self.head;
        let mut n = 0;
        // Bounded: every step but a re-parse moves `pos` forward by at
        // least 8 bytes, within one capacity of the head; a re-parse
        // follows a release, a tail read or a resolution.
        let mut steps = self.view.cap / 8 + 8;
        while n < max && steps > 0 {
            steps -= 1;
            match self.parse(pos)? {
                Parsed::Frame(loc) => {
                    // SAFETY: `parse` checked that the payload lies inside
                    // the lap, within one capacity of the head; it is
                    // committed, so no producer writes it until we release
                    // it.
                    let bytes = unsafe {
                        core::slice::from_raw_parts(self.view.data_at(loc.idx), loc.len as usize)
                    };
                    f(loc.tag, bytes);
                    pos = loc.end;
                    n += 1;
                }
                Parsed::Skip(span) => pos += span,
                Parsed::Pending(_) if pos != self.head => {
                    // Release what we read, then look again from the new
                    // head (whose window reaches further).
                    self.release_to(pos)?;
                }
                Parsed::Pending(word) => {
                    if !self.settle(word)? {
                        break;
                    }
                    pos = self.head;
                }
            }
        }
        if pos != self.head {
            self.release_to(pos)?;
        }
        Ok(n)
    }

    /// As [`try_read_batch`](Self::try_read_batch), first waiting (with the
    /// handle's strategy, until `deadline`) for at least one frame.
    ///
    /// # Errors
    /// As [`read_until`](Self::read_until).
    pub fn read_batch_until(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        mut f: impl FnMut(u32, &[u8]),
    ) -> Result<usize, RecvError> {
        loop {
            let n = self.try_read_batch(max, &mut f)?;
            if n > 0 || max == 0 {
                return Ok(n);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::TimedOut);
            }
            self.wait_for_data(deadline)?;
        }
    }

    /// The next committed frame at the head, releasing padding, abandoned
    /// frames and dead claims before it.
    fn next(&mut self) -> Result<Loc, RecvError> {
        if self.poisoned {
            return Err(RecvError::Corrupted);
        }
        // Bounded: each skip moves the head by at least 8 bytes; a re-parse
        // follows a tail read or a resolution, at most twice per frame;
        // cap / 8 + 4 rounds cover a full ring.
        for _ in 0..(self.view.cap / 8 + 4) {
            match self.parse(self.head)? {
                Parsed::Frame(loc) => return Ok(loc),
                Parsed::Skip(span) => self.release_to(self.head + span)?,
                Parsed::Pending(word) => {
                    if !self.settle(word)? {
                        return Err(RecvError::Empty);
                    }
                }
            }
        }
        Err(RecvError::Empty)
    }

    /// The frame at the head is not ready (`word` is its header: 0 or
    /// claimed). Returns whether to parse the head again.
    ///
    /// A 0 header at or past every claim we know of is most likely an
    /// empty ring, but may be a claim whose header is not written yet (or
    /// never will be: its producer died). Telling them apart takes a read
    /// of the tail, whose line every claim CASes: a consumer reading it on
    /// each poll would slow every producer down. So the tail is read only
    /// when the head has not moved for the claim timeout, which is when a
    /// dead claim would be resolved anyway.
    fn settle(&mut self, word: u64) -> Result<bool, RecvError> {
        // Blocked: give the producers whatever was released since the
        // last ring (see `ring_space`).
        if self.head != self.rung {
            self.ring_space();
        }
        if word != 0 || self.head < self.cached_tail {
            return self.resolve(word);
        }
        let now = Instant::now();
        let since = self.stuck_since(now);
        if now.duration_since(since) < self.claim_timeout {
            return Ok(false);
        }
        self.refresh_tail()?;
        if self.head == self.cached_tail {
            // Empty: look again one timeout from now.
            self.stuck = Some(Stuck {
                pos: self.head,
                since: now,
            });
            return Ok(false);
        }
        // A claim below the tail: the caller re-parses, then resolves it
        // (its timeout counts from the first sight of this head).
        Ok(true)
    }

    /// Since when the head has been blocked where it is now (`now` if this
    /// is the first sight).
    fn stuck_since(&mut self, now: Instant) -> Instant {
        let head = self.head;
        match self.stuck {
            Some(st) if st.pos == head => st.since,
            _ => {
                self.stuck = Some(Stuck {
                    pos: head,
                    since: now,
                });
                now
            }
        }
    }

    /// Reads and checks the header at `pos` (`head <= pos <= head + cap`).
    ///
    /// The bounds of a frame are checked against the lap and the head (it
    /// must lie within one capacity of it), not against the tail: reading
    /// the tail for every frame would pull its line from the producers, who
    /// CAS it on every claim. A written header lies below the tail (the
    /// producer wrote it after its claim moved the tail), so `cached_tail`
    /// moves up to the frame's end; a forged header beyond the real tail is
    /// caught at the next read of the tail, which must be at or past
    /// everything seen.
    #[inline]
    fn parse(&mut self, pos: u64) -> Result<Parsed, RecvError> {
        let v = &self.view;
        let window = self.head + v.cap;
        if pos >= window {
            // A batch read a full ring: nothing lies past one capacity from
            // the head, and the word there is one we read but have not
            // zeroed yet.
            return Ok(Parsed::Pending(0));
        }
        let idx = pos & v.mask;
        // Acquire: pairs with the producer's Release store of the claimed
        // or padding header and its Release CAS to committed; the payload
        // and the header after a padding are visible.
        let word = v.header(idx).load(Ordering::Acquire);
        if word == 0 {
            return Ok(Parsed::Pending(0));
        }
        let h = Header::decode(word);
        if h.kind == PADDING {
            let room = v.cap - idx;
            // Padding fills the rest of a lap it does not start, and is
            // claimed together with the frame (header included) after it.
            if idx == 0 || u64::from(h.len) != room - 8 || pos + room + 8 > window {
                return Err(self.poison());
            }
            self.cached_tail = self.cached_tail.max(pos + room + 8);
            return Ok(Parsed::Skip(room));
        }
        let len = u64::from(h.len);
        let total = frame_len(len);
        let ok = len <= v.max_payload
            && idx + total <= v.cap
            && pos + total <= window
            && (h.entry as usize) < MAX_PRODUCERS;
        if !ok {
            return Err(self.poison());
        }
        self.cached_tail = self.cached_tail.max(pos + total);
        match h.kind {
            COMMITTED => Ok(Parsed::Frame(Loc {
                idx: idx + 8,
                len: h.len,
                tag: h.tag,
                entry: h.entry,
                end: pos + total,
            })),
            ABANDONED => Ok(Parsed::Skip(total)),
            CLAIMED if h.tag == 0 => Ok(Parsed::Pending(word)),
            _ => Err(self.poison()),
        }
    }

    /// A claim blocks the head. Once it has done so for the claim timeout,
    /// checks its claimer: a dead one's frame is abandoned (and skipped by
    /// the caller's next round). Returns whether the caller should parse
    /// the head again.
    fn resolve(&mut self, word: u64) -> Result<bool, RecvError> {
        // One clock read per call while a claim blocks the head, so that a
        // caller polling `try_read` rarely still sees a dead claim skipped
        // at its first call after the timeout.
        let now = Instant::now();
        if now.duration_since(self.stuck_since(now)) < self.claim_timeout {
            return Ok(false);
        }
        // Timed out: the next check is one timeout from now (and the
        // sleeper's wake-up always has an end, see `wait_for_data`).
        self.stuck = Some(Stuck {
            pos: self.head,
            since: now,
        });
        // The claim has blocked the head for a timeout: a good moment to
        // check what we walked against the tail (a claim forged past it
        // would otherwise be waited for as long as the entry's owner lives).
        self.refresh_tail()?;
        if word == 0 {
            return self.resolve_unwritten();
        }
        let h = Header::decode(word);
        // Acquire: pairs with the producer's AcqRel claim of its entry.
        let owner = self
            .view
            .record(h.entry as usize)
            .owner
            .load(Ordering::Acquire);
        if owner != 0 && self.view.alive(owner) {
            return Ok(false);
        }
        let abandoned = Header::encode(ABANDONED, h.entry, h.len, 0);
        // AcqRel: exactly one of this CAS and the producer's commit CAS
        // wins. Release: the producer that loses reads ABANDONED. Whether we
        // win or lose, the caller re-parses the header (Acquire).
        let _ = self.view.header(self.head).compare_exchange(
            word,
            abandoned,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        Ok(true)
    }

    /// The header at the head is still 0 below the tail: a producer won
    /// the tail CAS and has not written the header. Its intent record names
    /// the position; if every record naming it belongs to a dead producer,
    /// the reservation is skipped whole.
    fn resolve_unwritten(&mut self) -> Result<bool, RecvError> {
        let pos = self.head;
        let mut need = None;
        let mut conflict = false;
        for e in 0..MAX_PRODUCERS {
            let rec = self.view.record(e);
            // Acquire: pairs with the producer's Release store of its
            // intent; a later intent means its header for `pos` is written.
            if rec.intent.load(Ordering::Acquire) != pos | 1 {
                continue;
            }
            // Acquire: pairs with the producer's Release store of `need`.
            // It may be the length of the producer's next attempt (stored
            // before the next intent); that attempt began after the header
            // for `pos` was written, which the re-read below then sees.
            let n = u64::from(rec.need.load(Ordering::Acquire));
            // Acquire: pairs with the Release CAS of a detaching producer,
            // so that its last header (written before it) is seen by the
            // re-read below.
            let owner = rec.owner.load(Ordering::Acquire);
            if owner == 0 {
                // A producer that detached: its claims were all finished
                // (a claim borrows the handle), we read a stale intent.
                continue;
            }
            if self.view.alive(owner) {
                // The claimer (or a producer about to retry) is alive.
                return Ok(false);
            }
            match need {
                None => need = Some(n),
                Some(m) if m != n => conflict = true,
                Some(_) => {}
            }
        }
        // Acquire: a claimer that wrote its header and moved on is seen
        // here (see above).
        if self.view.header(pos).load(Ordering::Acquire) != 0 {
            return Ok(true);
        }
        let Some(need) = need else {
            // Reserved, never written, and nobody's intent: not a state the
            // protocol reaches.
            return Err(self.poison());
        };
        // Two dead producers named this position with different lengths
        // (one of them lost the CAS and died before retrying): we cannot
        // tell which length the tail moved by.
        let ok = !conflict && need % 8 == 0 && need >= 8 && pos + need <= self.cached_tail;
        if !ok {
            return Err(self.poison());
        }
        self.release_to(pos + need)?;
        Ok(true)
    }

    /// Re-reads the tail and checks it.
    #[cold]
    fn refresh_tail(&mut self) -> Result<(), RecvError> {
        // Acquire: pairs with the producers' Release CASes of the tail;
        // their intents are visible.
        let tail = self.view.ctrl().tail.load(Ordering::Acquire);
        // `cached_tail <= tail`: the tail is past every frame seen.
        let ok = tail % 8 == 0
            && self.head <= self.cached_tail
            && self.cached_tail <= tail
            && tail - self.head <= self.view.cap
            && tail <= MAX_POSITION;
        if !ok || self.view.shared_poisoned() {
            return Err(self.poison());
        }
        self.cached_tail = tail;
        self.tail_seen = tail;
        Ok(())
    }

    #[cold]
    fn poison(&mut self) -> RecvError {
        self.poisoned = true;
        self.view.poison_shared();
        RecvError::Corrupted
    }

    /// Releases a consumed frame. (A release that finds the ring corrupted
    /// poisons it; the next call reports it.)
    #[inline]
    fn consume(&mut self, loc: Loc) {
        let _ = self.release_to(loc.end);
    }

    /// Zeroes the bytes before `end` (consumed, skipped or abandoned) and
    /// gives them back to the producers: one pass and one store of the
    /// head for everything released at once.
    ///
    /// The head never passes the tail: bytes past the last tail read are
    /// released only after a new read of the tail covers them. (The frames
    /// were checked against the lap when walked; a header forged past the
    /// tail would otherwise move the head past it, and producers would
    /// then claim space the consumer has already passed.) One read per
    /// release that goes past the last one seen: per batch when behind.
    ///
    /// Restartable: `release_end` names the head to come before the bytes
    /// are zeroed, so that a consumer killed in between leaves its
    /// successor what it needs to finish the release (see
    /// `RingView::finish_release`); otherwise the zeroed header at the old
    /// head would look like a reservation that nobody made, and poison the
    /// ring for every process (issue 9, hole 2).
    #[inline]
    fn release_to(&mut self, end: u64) -> Result<(), RecvError> {
        self.begin_release(end)?;
        self.finish_release(end);
        Ok(())
    }

    /// The first half of a release: checks `end` against the tail, records
    /// it in `release_end`, zeroes the bytes.
    #[inline]
    fn begin_release(&mut self, end: u64) -> Result<(), RecvError> {
        debug_assert!(self.head <= end && end <= self.cached_tail);
        if end > self.tail_seen {
            // Checks `cached_tail <= tail`, and `end <= cached_tail`.
            self.refresh_tail()?;
        }
        // Relaxed: read only by a consumer that takes the role over after
        // we died (our stores are complete by then) or detached (ordered
        // by our Release CAS of the role word); the line is ours, producers
        // read only `pos` on it.
        self.view
            .ctrl()
            .head
            .release_end
            .store(end, Ordering::Relaxed);
        self.view.zero(self.head, end - self.head);
        Ok(())
    }

    /// The second half: stores the head, rings the producers when due.
    #[inline]
    fn finish_release(&mut self, end: u64) {
        self.head = end;
        // Release: the zeroing and our reads of the released bytes come
        // before; pairs with the producers' Acquire load of the head.
        self.view.ctrl().head.pos.store(end, Ordering::Release);
        if end - self.rung >= self.view.cap / 4 {
            self.ring_space();
        }
    }

    /// Test hook: reads the next committed frame (copied out) and releases
    /// it only halfway, as a consumer killed between zeroing its bytes and
    /// storing the head would. The handle must be neither used nor dropped
    /// afterwards (forget it, or let the process die); for heap rings,
    /// declare its [`id`](Self::id) dead.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read).
    #[doc(hidden)]
    pub fn consume_and_vanish(&mut self) -> Result<(u32, Vec<u8>), RecvError> {
        let loc = self.next()?;
        // SAFETY: as in `MpscFrame::deref`: checked by `parse`, committed,
        // and not released yet.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.view.data_at(loc.idx), loc.len as usize) }
                .to_vec();
        self.begin_release(loc.end)?;
        Ok((loc.tag, bytes))
    }

    /// Wakes producers asleep on a full ring, if any (a fence and a load
    /// otherwise). Rung once a quarter of the ring was released since the
    /// last time, and whenever the head is blocked (empty, or a claim
    /// pending: see `settle`), not per frame: a consumer reading frame by
    /// frame from a full ring would otherwise wake the producers for every
    /// frame, each to claim one and sleep again. A producer sleeping
    /// through a smaller release still sees it at the end of its sleep
    /// slice.
    #[inline]
    fn ring_space(&mut self) {
        self.rung = self.head;
        self.view.ctrl().space_bell.ring();
    }

    /// Sleeps (per the strategy) until the frame at the head is ready or
    /// the claim timeout of a pending frame expires.
    #[cold]
    fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        // Whatever blocks the head (a claim, or a 0 header that may be a
        // reservation never written), it is looked at again one claim
        // timeout after the head stopped here, and never sooner than
        // RECHECK_FLOOR from now (a zero timeout must not spin on system
        // calls, nor a head first seen by a caller that gave up early
        // leave the sleep without an end).
        let now = Instant::now();
        let since = self.stuck_since(now);
        let wake = since
            .checked_add(self.claim_timeout)
            .map(|w| w.max(now + RECHECK_FLOOR));
        let v = &self.view;
        let head = self.head;
        let until = match (deadline, wake) {
            (Some(d), Some(w)) => Some(d.min(w)),
            (d, w) => d.or(w),
        };
        let ready = || {
            if v.shared_poisoned() {
                return Some(());
            }
            // Poll gently: when the consumer has caught up, a producer is
            // writing this very frame, and each poll pulls the line away
            // from it (measured: ~1.5x the rate of polling at full speed,
            // for up to ~0.8 us more latency to see a frame while
            // spinning).
            #[cfg(not(loom))]
            for _ in 0..POLL_PAUSES {
                crate::sync::shim::spin_loop();
            }
            // Acquire: pairs with the producers' Release header stores.
            let word = v.header(head).load(Ordering::Acquire);
            (word != 0 && Header::decode(word).kind != CLAIMED).then_some(())
        };
        // Timing out only means "check the claimer / the deadline": the
        // callers loop.
        let _ = v
            .ctrl()
            .data_bell
            .wait(ready, &self.strategy, until, || true);
        if v.shared_poisoned() {
            return Err(self.poison());
        }
        Ok(())
    }
}

impl Drop for MpscConsumer {
    fn drop(&mut self) {
        self.view.release_consumer(self.me);
    }
}

/// A committed frame read in place from an [`MpscConsumer`].
/// Dereferences to its payload; dropping it (or
/// [`release`](Self::release)) zeroes and releases its bytes.
///
/// The payload is a live view of the ring's memory, which a buggy or
/// hostile producer can still write while you read it: its bounds are
/// checked, its contents are not frozen. Copy before you validate (see
/// [`Frame`](crate::ring::Frame#a-live-view)).
pub struct MpscFrame<'a> {
    consumer: &'a mut MpscConsumer,
    loc: Loc,
}

impl fmt::Debug for MpscFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscFrame")
            .field("len", &self.loc.len)
            .field("tag", &self.loc.tag)
            .field("entry", &self.loc.entry)
            .finish()
    }
}

impl MpscFrame<'_> {
    /// The tag the producer set.
    #[inline]
    pub fn tag(&self) -> u32 {
        self.loc.tag
    }

    /// The producer-table entry of the producer that sent it.
    #[inline]
    pub fn entry(&self) -> usize {
        self.loc.entry as usize
    }

    /// Releases the frame (the same as dropping it).
    #[inline]
    pub fn release(self) {}
}

impl Deref for MpscFrame<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let v = &self.consumer.view;
        // SAFETY: `parse` checked that the payload lies inside the lap,
        // within one capacity of the head; it is committed, so no producer
        // touches it until we release it, which happens when this frame
        // drops.
        unsafe { core::slice::from_raw_parts(v.data_at(self.loc.idx), self.loc.len as usize) }
    }
}

impl Drop for MpscFrame<'_> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.consume(self.loc);
    }
}
