//! The producer side of an MPSC ring: claim by CAS on the tail, write in
//! place, commit by CAS on the frame header.

use crate::sync::clock::Instant;
use core::fmt;
use core::ops::{Deref, DerefMut};

use super::layout::{ABANDONED, CLAIMED, COMMITTED, Header, PADDING, Record};
use super::view::RingView;
use crate::region::PeerId;
use crate::ring::core::{claim_outcome, retry};
use crate::ring::error::{ClaimError, CommitError, TryClaimError};
use crate::ring::frame::{MAX_POSITION, MPSC_WARM_AHEAD, frame_len, pad_before, warm_lines_after};
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;

/// How many tail CAS attempts a `try_` claim makes before it reports the
/// ring [`Full`](TryClaimError::Full): other producers winning every race for
/// this long is contention a blocking claim waits out.
const CAS_ATTEMPTS: u32 = 1 << 12;

/// Re-reads the consumer's position and then the tail, and checks them
/// against each other and against `cached_head`. (head, tail), or `None`
/// when they are inconsistent or the ring is poisoned.
#[cold]
fn read_positions(v: &RingView, cached_head: u64) -> Option<(u64, u64)> {
    let ctrl = v.ctrl();
    // Acquire: pairs with the consumer's Release store of the head; it
    // zeroed and finished reading the bytes we may now overwrite.
    let head = ctrl.head.pos.load(Ordering::Acquire);
    // Relaxed: read after the head, so at least as new as the tail the
    // consumer had seen when it stored that head (hence `head <= tail`);
    // the CAS that follows checks it. It may be more than a capacity
    // ahead of this head: producers claimed against a newer one since.
    let tail = ctrl.tail.load(Ordering::Relaxed);
    let ok = head % 8 == 0
        && tail % 8 == 0
        && cached_head <= head
        && head <= tail
        && tail <= MAX_POSITION;
    (ok && !v.shared_poisoned()).then_some((head, tail))
}

/// Withdraws the intent of an attempt that lost its tail CAS, before a
/// claim gives up (`lost`), and returns `err`.
///
/// A producer that lost the race for position `t` still names `t` in its
/// record, beside the winner. Were the winner to die before writing its
/// header, the consumer would find a live producer naming `t` and wait for
/// it; if the loser then gave up on a full ring without touching its
/// record, it would name `t` for as long as it lives, the head would never
/// move past the dead reservation, and the room the loser waits for would
/// never come (issue 9, hole 1). So no claim returns with a lost intent
/// standing: the loser's record names `t` only while it runs the few
/// instructions between its failed CAS and its next attempt or this
/// retraction.
#[cold]
fn retract(rec: &Record, lost: bool, err: TryClaimError) -> TryClaimError {
    if lost {
        // Release: pairs with the consumer's Acquire load of the intent in
        // `resolve_unwritten`. (Our last won claim's header, written before
        // this attempt began, is ordered before it too, as a new intent
        // would be.)
        rec.intent.store(0, Ordering::Release);
    }
    err
}

/// One of the writing ends of an MPSC ring.
///
/// `Send` but not `Sync`: one thread writes through a handle at a time
/// (`&mut self`). Any number of producers (up to
/// [`MAX_PRODUCERS`](super::MAX_PRODUCERS) at once), in any processes, may
/// write to one ring; each holds an entry of the ring's producer table,
/// released when the handle drops. The copying and typed forms (`send`,
/// `send_value`, ...) come with the [`Sender`](crate::ring::Sender) trait.
pub struct Producer {
    view: RingView,
    /// Our entry in the record table.
    entry: usize,
    /// Our peer id (the region's, or one handed out by a heap ring).
    id: PeerId,
    /// `id.to_raw()`, as our record's owner word holds it.
    me: u32,
    /// A consumer position seen earlier: possibly stale (older), never
    /// newer.
    cached_head: u64,
    poisoned: bool,
    strategy: WaitStrategy,
}

// SAFETY: the handle holds raw pointers into memory kept alive by its
// backing (an `Arc` or a `Region`, both Send + Sync); its entry moves with
// it.
unsafe impl Send for Producer {}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Producer")
            .field("capacity", &self.view.cap)
            .field("entry", &self.entry)
            .field("id", &self.id)
            .field("cached_head", &self.cached_head)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Room reserved by a claim: plain numbers, no borrow.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    /// Position of the frame (after any padding).
    pos: u64,
    len: u32,
}

impl Producer {
    pub(crate) fn from_parts(view: RingView, entry: usize, id: PeerId) -> Self {
        Self {
            view,
            entry,
            id,
            me: id.to_raw(),
            cached_head: 0,
            poisoned: false,
            strategy: WaitStrategy::BLOCK,
        }
    }

    crate::ring::core::handle_accessors!();

    /// This producer's peer id (what a heap ring's `mark_dead` takes).
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// This producer's entry in the ring's producer table.
    pub fn entry(&self) -> usize {
        self.entry
    }

    /// Whether the consumer is attached and alive (or never attached yet).
    pub fn is_peer_alive(&self) -> bool {
        self.view.consumer_alive()
    }

    /// Claims room for a frame of `len` payload bytes without blocking.
    ///
    /// Write the payload through the returned [`Claim`] (it dereferences to
    /// `&mut [u8]` of exactly `len` bytes, zeroed), then
    /// [`commit`](Claim::commit) it. Dropping it uncommitted turns the frame
    /// into padding.
    ///
    /// ```
    /// let ring = polycephaly::ring::mpsc::HeapRing::new(256)?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let mut claim = tx.try_claim(3)?;
    /// claim.copy_from_slice(b"abc");
    /// claim.set_tag(7);
    /// claim.commit()?;
    /// let frame = rx.try_read()?;
    /// assert_eq!((&frame[..], frame.tag()), (&b"abc"[..], 7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`spsc::Producer::try_claim`](crate::ring::spsc::Producer::try_claim).
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<Claim<'_>, TryClaimError> {
        let r = self.reserve(len)?;
        Ok(self.guard(r))
    }

    /// [`try_claim`](Self::try_claim), waiting for room until `deadline`
    /// (see [`Sender::claim_deadline`](crate::ring::Sender::claim_deadline)).
    ///
    /// # Errors
    /// See [`ClaimError`].
    // Inlined: returned through memory, the claim guard was stored and
    // re-read with overlapping moves the CPU cannot forward, so each claim
    // waited for the store before it (the frame header, a cache miss) to
    // reach the cache (about a third of the message rate, measured).
    #[inline]
    pub fn claim_deadline(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Claim<'_>, ClaimError> {
        let r = retry(
            self,
            deadline,
            ClaimError::TimedOut,
            |p| claim_outcome(p.reserve(len)),
            Self::wait_for_room,
        )?;
        Ok(self.guard(r))
    }

    /// Test hook: reserves room for a frame exactly as a claim does (the
    /// tail CAS and this producer's intent record) and stops before writing
    /// the frame header, as a producer killed at that instant would. The
    /// handle must be neither used nor dropped afterwards (forget it, keep
    /// it until the end, or let the process die: dropping it detaches,
    /// which tells the consumer its claims are finished); for heap rings,
    /// declare its id dead.
    ///
    /// # Errors
    /// As [`try_claim`](Self::try_claim).
    #[cfg(any(feature = "testing", loom))]
    pub fn reserve_and_vanish(&mut self, len: usize) -> Result<(), TryClaimError> {
        self.reserve_space(len).map(|_| ())
    }

    /// Reserves room and writes the headers: the frame's as claimed by us,
    /// then the padding before it (if any).
    #[inline]
    fn reserve(&mut self, len: usize) -> Result<Reservation, TryClaimError> {
        let (start, pos, len) = self.reserve_space(len)?;
        let v = &self.view;
        // Release: pairs with the consumer's Acquire load of the header;
        // also ordered before our next intent (Release), which is how the
        // consumer knows the header is written once our intent moved on.
        v.header(pos).store(
            Header::encode(CLAIMED, self.entry as u32, len, 0),
            Ordering::Release,
        );
        if start != pos {
            let pad = (pos - start) as u32;
            // Release: the consumer that reads this padding (Acquire) then
            // reads the frame header after it, already written above.
            v.header(start).store(
                Header::encode(PADDING, self.entry as u32, pad - 8, 0),
                Ordering::Release,
            );
        }
        // Warm the lines the next claims will write (see
        // `warm_lines_after`); the commit's CAS waits for every store before
        // it, so a miss there would cost a line transfer per message.
        warm_lines_after(
            // SAFETY: index 0 of the data area.
            unsafe { v.data_at(0) },
            v.mask,
            pos + frame_len(u64::from(len)),
            MPSC_WARM_AHEAD,
            self.cached_head + v.cap,
        );
        Ok(Reservation { pos, len })
    }

    /// The claim proper: returns (claim start, frame position, len).
    #[inline]
    fn reserve_space(&mut self, len: usize) -> Result<(u64, u64, u32), TryClaimError> {
        if self.poisoned {
            return Err(TryClaimError::Corrupted);
        }
        let v = &self.view;
        if len as u64 > v.max_payload {
            return Err(TryClaimError::TooLarge {
                len,
                max: v.max_payload as usize,
            });
        }
        let total = frame_len(len as u64);
        let ctrl = v.ctrl();
        let rec = v.record(self.entry);
        // Relaxed: only a guess for the CAS below, which checks it; the
        // bytes we write are ordered by the Acquire load of the head.
        let mut t = ctrl.tail.load(Ordering::Relaxed);
        let mut refreshed = false;
        // Whether our record names an attempt that lost its CAS: it must
        // not outlive this call (see `retract`).
        let mut lost = false;
        for _ in 0..CAS_ATTEMPTS {
            if t % 8 != 0 || t < self.cached_head || t > MAX_POSITION {
                self.poisoned = true;
                v.poison_shared();
                return Err(retract(rec, lost, TryClaimError::Corrupted));
            }
            let need = pad_before(t, total, v.cap) + total;
            // `t - cached_head <= cap` holds for a consistent ring; a stale
            // head cache (or a bad tail) is refreshed and checked first.
            if t - self.cached_head > v.cap - need {
                if refreshed {
                    return Err(retract(rec, lost, TryClaimError::Full));
                }
                let Some((head, tail)) = read_positions(v, self.cached_head) else {
                    self.poisoned = true;
                    v.poison_shared();
                    return Err(retract(rec, lost, TryClaimError::Corrupted));
                };
                self.cached_head = head;
                t = tail;
                refreshed = true;
                continue;
            }
            // Our intent, before the CAS: if the CAS wins and we die before
            // writing the header, the consumer finds the claimer here.
            // Release: a consumer that reads this length while our previous
            // intent still shows (Acquire) sees the header we wrote for
            // that claim.
            rec.need.store(need as u32, Ordering::Release);
            // Release: a consumer that reads a later intent of ours
            // (Acquire) sees the header we wrote for this claim.
            rec.intent.store(t | 1, Ordering::Release);
            // Release on success: pairs with the consumer's Acquire load of
            // the tail (and with that of any producer whose CAS follows in
            // the tail's release sequence): our intent is visible with the
            // new tail. Relaxed on failure: we only retry with the value.
            match ctrl
                .tail
                .compare_exchange(t, t + need, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    let pos = t + need - total;
                    return Ok((t, pos, len as u32));
                }
                Err(actual) => {
                    t = actual;
                    refreshed = false;
                    lost = true;
                }
            }
        }
        Err(retract(rec, lost, TryClaimError::Full))
    }

    #[cold]
    fn poison(&mut self) {
        self.poisoned = true;
        self.view.poison_shared();
    }

    /// Sleeps (per the strategy) until the consumer moves its head.
    #[cold]
    fn wait_for_room(&mut self, deadline: Option<Instant>) -> Result<(), ClaimError> {
        let v = &self.view;
        let ctrl = v.ctrl();
        let seen = self.cached_head;
        let ready = || {
            // Acquire: pairs with the consumer's Release store of the head.
            (v.shared_poisoned() || ctrl.head.pos.load(Ordering::Acquire) != seen).then_some(())
        };
        ctrl.space_bell
            .wait(ready, &self.strategy, deadline, || v.consumer_alive())?;
        if v.shared_poisoned() {
            self.poison();
            return Err(ClaimError::Corrupted);
        }
        Ok(())
    }

    /// Whether our entry is still ours. A consumer that judged us dead
    /// abandoned our claim; once it passed the claim, a new producer may
    /// take the entry over, and a commit CAS could then match the new
    /// owner's claim at the same place a lap later: checking first closes
    /// all but a window of a few instructions against that (which needs a
    /// live producer to have been judged dead to begin with).
    #[inline]
    fn still_owner(&self) -> bool {
        // Acquire: pairs with the AcqRel CAS of a producer taking over.
        self.view.record(self.entry).owner.load(Ordering::Acquire) == self.me
    }

    #[inline]
    fn guard(&mut self, r: Reservation) -> Claim<'_> {
        Claim {
            producer: self,
            r,
            tag: 0,
            done: false,
        }
    }
}

impl Drop for Producer {
    /// Releases the producer entry (no claim can be pending: a claim
    /// borrows the handle).
    fn drop(&mut self) {
        self.view.release_producer(self.entry, self.me);
    }
}

/// Room for one frame, claimed from a [`Producer`]: write the payload
/// in place, then [`commit`](Self::commit). Dropping it uncommitted turns
/// the frame into padding that the consumer skips.
///
/// Dereferences to `&mut [u8]` of exactly the claimed length, zeroed.
#[must_use = "a claim delivers nothing unless committed"]
pub struct Claim<'a> {
    producer: &'a mut Producer,
    r: Reservation,
    tag: u32,
    done: bool,
}

impl fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Claim")
            .field("len", &self.r.len)
            .field("tag", &self.tag)
            .finish()
    }
}

impl Claim<'_> {
    /// Sets the frame's tag (default 0).
    #[inline]
    pub fn set_tag(&mut self, tag: u32) {
        self.tag = tag;
    }

    /// The frame's tag.
    #[inline]
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// The header word we wrote at claim time.
    #[inline]
    fn claimed_word(&self) -> u64 {
        Header::encode(CLAIMED, self.producer.entry as u32, self.r.len, 0)
    }

    /// Commits the frame: one CAS of its header from claimed to committed
    /// (with the tag), then a wake-up only if the consumer sleeps.
    ///
    /// # Errors
    /// [`CommitError::Abandoned`] if the consumer judged this producer
    /// dead and skipped the frame first (nothing is delivered);
    /// [`CommitError::Corrupted`] if the ring is poisoned.
    #[inline]
    pub fn commit(mut self) -> Result<(), CommitError> {
        self.done = true;
        let p = &mut *self.producer;
        if p.poisoned || p.view.shared_poisoned() {
            return Err(CommitError::Corrupted);
        }
        if !p.still_owner() {
            return Err(CommitError::Abandoned);
        }
        let entry = p.entry as u32;
        let claimed = Header::encode(CLAIMED, entry, self.r.len, 0);
        let committed = Header::encode(COMMITTED, entry, self.r.len, self.tag);
        // Release: publishes the payload; pairs with the consumer's Acquire
        // load of the header. Relaxed on failure: any other value means the
        // frame is gone (abandoned, and maybe zeroed and reused since).
        match p.view.header(self.r.pos).compare_exchange(
            claimed,
            committed,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                // Fenced (the consumer waits with `wait_fenced`): a full
                // fence costs little after the CAS, which drained the store
                // buffer already.
                p.view.ctrl().data_bell.ring_fenced();
                Ok(())
            }
            Err(_) => Err(CommitError::Abandoned),
        }
    }
}

impl Drop for Claim<'_> {
    /// An uncommitted claim becomes padding, so the consumer moves on.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let claimed = self.claimed_word();
        let p = &*self.producer;
        if !p.still_owner() {
            return;
        }
        let abandoned = Header::encode(ABANDONED, p.entry as u32, self.r.len, 0);
        // Release: pairs with the consumer's Acquire load of the header.
        // Failure: the consumer abandoned it already (or it was
        // overwritten); either way nothing more to do.
        let _ = p.view.header(self.r.pos).compare_exchange(
            claimed,
            abandoned,
            Ordering::Release,
            Ordering::Relaxed,
        );
        p.view.ctrl().data_bell.ring_fenced();
    }
}

impl Deref for Claim<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let v = &self.producer.view;
        // SAFETY: the reservation owns the frame's bytes, inside the lap
        // (idx + len <= cap by `pad_before`); the consumer does not read the
        // payload before the commit, and `&self` ties the slice to the
        // claim.
        unsafe { v.bytes((self.r.pos & v.mask) + 8, self.r.len as usize) }
    }
}

impl DerefMut for Claim<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let v = &self.producer.view;
        // SAFETY: as in `deref`; `&mut self` makes the slice exclusive.
        unsafe { v.bytes_mut((self.r.pos & v.mask) + 8, self.r.len as usize) }
    }
}
