//! Releasing consumed bytes (lazily and restartably: see `release_to` and
//! `flush`), waking producers that wait for room, and waiting for data.

use crate::sync::clock::Instant;

#[cfg(not(loom))]
use super::POLL_PAUSES;
use super::{Consumer, FLUSH_IDLE, Loc, RECHECK_FLOOR};
use crate::ring::error::{RecvError, TryRecvError};
use crate::ring::mpsc::layout::{CLAIMED, Header};
use crate::sync::shim::Ordering;

impl Consumer {
    /// Releases a consumed frame. (A release that finds the ring corrupted
    /// poisons it; the next call reports it.)
    #[inline]
    pub(super) fn consume(&mut self, loc: Loc) {
        let _ = self.release_to(loc.end);
    }

    /// Gives the bytes before `end` (consumed, skipped or abandoned) back
    /// to the producers, lazily: records `end` as consumed at once (in
    /// `release_end`, so that a consumer taking the role over after we die
    /// neither delivers these frames again nor leaves them unreleased), and
    /// releases everything consumed once a quarter of the ring is (see
    /// [`flush`](Self::flush)); when the consumer has been idle for
    /// `FLUSH_IDLE` (see `settle`), before a strategy that sleeps at once
    /// waits, and on drop.
    ///
    /// Lazily, because a release reads the tail first (see `flush`), and a
    /// consumer keeping up with its producers would otherwise read it for
    /// every frame: the line every claim CASes, which the next claim then
    /// takes back. Measured (`polycephaly bench`, an empty channel request
    /// and its reply, spinning, medians of 5 interleaved runs, 1 Dec 2026):
    /// 568 ns (split) and 579 ns (none) releasing each frame, 469 and
    /// 481 ns releasing lazily.
    #[inline]
    pub(super) fn release_to(&mut self, end: u64) -> Result<(), TryRecvError> {
        debug_assert!(self.head <= end && end <= self.cached_tail);
        self.head = end;
        // Relaxed: read only by a consumer that takes the role over after
        // we died (our stores are complete by then) or detached (ordered
        // by our Release CAS of the role word); the line is ours, producers
        // read only `pos` on it.
        self.view
            .ctrl()
            .head
            .release_end
            .store(end, Ordering::Relaxed);
        if end - self.released >= self.view.cap / 4 {
            self.flush()?;
        }
        Ok(())
    }

    /// Releases everything consumed: checks it against the tail, zeroes
    /// it, and stores the head (one pass and one store for all of it).
    ///
    /// The head never passes the tail: bytes past the last tail read are
    /// released only after a new read of the tail covers them. (The frames
    /// were checked against the lap when walked; a header forged past the
    /// tail would otherwise move the head past it, and producers would
    /// then claim space the consumer has already passed.) One read per
    /// flush that goes past the last one seen.
    ///
    /// Restartable: `release_end` names the head to come before the bytes
    /// are zeroed, so that a consumer killed in between leaves its
    /// successor what it needs to finish the release (see
    /// `RingView::finish_release`); otherwise the zeroed header at the old
    /// head would look like a reservation that nobody made, and poison the
    /// ring for every process (issue 9, hole 2).
    pub(super) fn flush(&mut self) -> Result<(), TryRecvError> {
        if self.head == self.released {
            return Ok(());
        }
        self.zero_consumed()?;
        self.store_head();
        Ok(())
    }

    /// The first half of a flush: checks the consumed bytes against the
    /// tail and zeroes them (`release_end` already names their end).
    #[inline]
    fn zero_consumed(&mut self) -> Result<(), TryRecvError> {
        if self.head > self.tail_seen {
            // Checks `head <= cached_tail <= tail`.
            self.refresh_tail()?;
        }
        self.view.zero(self.released, self.head - self.released);
        Ok(())
    }

    /// The second half: stores the head, rings the producers when due.
    #[inline]
    fn store_head(&mut self) {
        self.released = self.head;
        // Release: the zeroing and our reads of the released bytes come
        // before; pairs with the producers' Acquire load of the head.
        self.view
            .ctrl()
            .head
            .pos
            .store(self.head, Ordering::Release);
        if self.released - self.rung >= self.view.cap / 4 {
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
    #[cfg(any(feature = "testing", loom))]
    pub fn consume_and_vanish(&mut self) -> Result<(u32, Vec<u8>), TryRecvError> {
        let loc = self.next()?;
        // SAFETY: as in `Frame::deref`: checked by `parse`, committed,
        // and not released yet.
        let bytes = unsafe { self.view.bytes(loc.idx(), loc.len as usize) }.to_vec();
        self.head = loc.end;
        // Relaxed: as in `release_to`.
        self.view
            .ctrl()
            .head
            .release_end
            .store(loc.end, Ordering::Relaxed);
        self.zero_consumed()?;
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
    pub(super) fn ring_space(&mut self) {
        self.rung = self.released;
        self.view.ctrl().space_bell.ring();
    }

    /// Sleeps (per the strategy) until the frame at the head is ready or
    /// the claim timeout of a pending frame expires.
    #[cold]
    pub(super) fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        // Whatever blocks the head (a claim, or a 0 header that may be a
        // reservation never written), it is looked at again one claim
        // timeout after the head stopped here, and never sooner than
        // RECHECK_FLOOR from now (a zero timeout must not spin on system
        // calls, nor a head first seen by a caller that gave up early
        // leave the sleep without an end).
        let now = Instant::now();
        let since = self.stuck_since(now);
        // Frames consumed but not released: released now by a strategy
        // that does not spin (it asked to sleep at once), else once idle
        // for FLUSH_IDLE (the wait ends then; the caller's next look
        // releases them, see `settle`).
        let spins = self.strategy.spin_only || !self.strategy.spin.is_zero();
        if self.head != self.released && !spins && self.flush_blocked().is_err() {
            return Err(RecvError::Corrupted);
        }
        let flush_at = (self.head != self.released)
            .then(|| since.checked_add(FLUSH_IDLE))
            .flatten();
        let wake = since
            .checked_add(self.claim_timeout)
            .map(|w| w.max(now + RECHECK_FLOOR));
        let v = &self.view;
        let head = self.head;
        let until = [deadline, wake, flush_at].into_iter().flatten().min();
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
        // Fenced: every producer rings the data bell with `ring_fenced`
        // right after its commit CAS, so sleeping costs no membarrier.
        let _ = v
            .ctrl()
            .data_bell
            .wait_fenced(ready, &self.strategy, until, || true);
        if v.shared_poisoned() {
            self.poison();
            return Err(RecvError::Corrupted);
        }
        Ok(())
    }
}
