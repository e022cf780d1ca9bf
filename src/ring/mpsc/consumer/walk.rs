//! Walking the headers from the head: what lies at a position, waiting on
//! a blocked head, and resolving the claims of dead producers (see the
//! protocol in the [module docs of `mpsc`](super::super)).

use crate::sync::clock::Instant;

use super::{Consumer, FLUSH_IDLE, Loc, Parsed, Stuck};
use crate::ring::error::TryRecvError;
use crate::ring::frame::{MAX_POSITION, frame_len};
use crate::ring::mpsc::layout::{ABANDONED, CLAIMED, COMMITTED, Header, MAX_PRODUCERS, PADDING};
use crate::sync::shim::Ordering;

impl Consumer {
    /// The next committed frame at the head, releasing padding, abandoned
    /// frames and dead claims before it.
    pub(super) fn next(&mut self) -> Result<Loc, TryRecvError> {
        if self.poisoned {
            return Err(TryRecvError::Corrupted);
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
                        break;
                    }
                }
            }
        }
        // Nothing to read: this thread waits (see `waits_begun`).
        crate::sync::shim::note_wait();
        Err(TryRecvError::Empty)
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
    pub(super) fn settle(&mut self, word: u64) -> Result<bool, TryRecvError> {
        // Blocked: give the producers whatever was released since the
        // last ring (see `ring_space`).
        if self.released != self.rung {
            self.ring_space();
        }
        if word != 0 || self.head < self.cached_tail {
            return self.resolve(word);
        }
        let now = Instant::now();
        let since = self.stuck_since(now);
        self.flush_when_idle(now, since)?;
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

    /// Releases what was consumed once the head has been blocked for
    /// `FLUSH_IDLE` since `since` (see `release_to`), or at once when a
    /// producer sleeps for room, and rings the producers.
    #[inline]
    pub(super) fn flush_when_idle(
        &mut self,
        now: Instant,
        since: Instant,
    ) -> Result<(), TryRecvError> {
        // Relaxed: a hint (a producer asleep for room); a stale value costs
        // one early release or 20 us.
        let asleep = || self.view.ctrl().space_bell.announced().count != 0;
        if self.head != self.released && (now.duration_since(since) >= FLUSH_IDLE || asleep()) {
            self.flush_blocked()?;
        }
        Ok(())
    }

    /// Releases what was consumed while the head is blocked, and rings the
    /// producers (one may wait for exactly this room).
    pub(super) fn flush_blocked(&mut self) -> Result<(), TryRecvError> {
        self.flush()?;
        self.ring_space();
        Ok(())
    }

    /// Since when the head has been blocked where it is now (`now` if this
    /// is the first sight).
    pub(super) fn stuck_since(&mut self, now: Instant) -> Instant {
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
    pub(super) fn parse(&mut self, pos: u64) -> Result<Parsed, TryRecvError> {
        let v = &self.view;
        // Producers claim up to one capacity past the head they see.
        let window = self.released + v.cap;
        if pos >= window {
            // A batch read a full ring: nothing lies past one capacity from
            // the released head, and the word there is one we read but
            // have not zeroed yet.
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
                // idx + 8 <= cap <= 2^31 (checked above).
                idx: (idx + 8) as u32,
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
    pub(super) fn resolve(&mut self, word: u64) -> Result<bool, TryRecvError> {
        // One clock read per call while a claim blocks the head, so that a
        // caller polling `try_read` rarely still sees a dead claim skipped
        // at its first call after the timeout.
        let now = Instant::now();
        let since = self.stuck_since(now);
        self.flush_when_idle(now, since)?;
        if now.duration_since(since) < self.claim_timeout {
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
    pub(super) fn resolve_unwritten(&mut self) -> Result<bool, TryRecvError> {
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
    pub(super) fn refresh_tail(&mut self) -> Result<(), TryRecvError> {
        // Acquire: pairs with the producers' Release CASes of the tail;
        // their intents are visible.
        let tail = self.view.ctrl().tail.load(Ordering::Acquire);
        // `cached_tail <= tail`: the tail is past every frame seen.
        let ok = tail % 8 == 0
            && self.head <= self.cached_tail
            && self.cached_tail <= tail
            && tail - self.released <= self.view.cap
            && tail <= MAX_POSITION;
        if !ok || self.view.shared_poisoned() {
            return Err(self.poison());
        }
        self.cached_tail = tail;
        self.tail_seen = tail;
        Ok(())
    }

    #[cold]
    pub(super) fn poison(&mut self) -> TryRecvError {
        self.poisoned = true;
        self.view.poison_shared();
        TryRecvError::Corrupted
    }
}
