//! What the MPSC handles share: the view of the ring memory, what keeps it
//! alive and answers "is this peer alive", the consumer role and the
//! producer entries, poisoning.

use core::ops::Deref;

use super::layout::{Control, HeapRing, MAX_PRODUCERS, Record};
use super::{Consumer, Producer};
use crate::AttachError;
use crate::region::PeerId;
use crate::ring::core::View;
use crate::ring::frame::MAX_POSITION;
use crate::sync::shim::{AtomicU64, Ordering};

/// A handle's view of one MPSC ring (see [`View`]), with what the MPSC
/// handles share: the producer records, the consumer role, the producer
/// entries.
#[derive(Debug)]
pub(crate) struct RingView(View<Control>);

impl Deref for RingView {
    type Target = View<Control>;
    #[inline(always)]
    fn deref(&self) -> &View<Control> {
        &self.0
    }
}

impl RingView {
    /// The header word at position or data index `idx` (taken modulo the
    /// capacity and rounded down to 8, so any value is in bounds).
    #[inline(always)]
    pub(crate) fn header(&self, idx: u64) -> &AtomicU64 {
        self.word(idx)
    }

    /// Zeroes `len` bytes (a multiple of 8) from position `pos` (8-aligned),
    /// wrapping at the end of the ring, so that the next lap's headers read
    /// as unwritten. The bytes belong to the caller (the consumer, between
    /// the head and what it releases).
    #[inline]
    pub(crate) fn zero(&self, pos: u64, len: u64) {
        let mut off = 0;
        // Bounded: len <= cap (checked by callers), 8 bytes per step.
        while off < len.min(self.cap) {
            // Relaxed: published to producers by the Release store of the
            // head that follows.
            self.header(pos + off).store(0, Ordering::Relaxed);
            off += 8;
        }
        // The payload bytes go back to the producers: a write for loom's
        // eyes (the real zeroing is the header words above, which cover
        // every 8 bytes).
        let start = pos & self.mask;
        let first = len.min(self.cap - start);
        self.track_write(start, first);
        self.track_write(0, len.min(self.cap) - first);
    }

    /// The record of entry `e` (taken modulo the table length).
    #[inline]
    pub(crate) fn record(&self, e: usize) -> &Record {
        &self.ctrl().records[e % MAX_PRODUCERS]
    }

    /// Whether the consumer is attached and alive, or never attached yet
    /// (producers wait for it). A consumer that came and left is dead.
    pub(crate) fn consumer_alive(&self) -> bool {
        let roles = &self.ctrl().roles;
        // Acquire: pairs with the consumer's claim and release CASes.
        let holder = roles.consumer.load(Ordering::Acquire);
        if holder != 0 {
            return self.alive(holder);
        }
        // Relaxed: only a count; zero with a free role means "not yet".
        roles.epoch.load(Ordering::Relaxed) == 0
    }

    /// The current head, checked against the tail. (head, tail).
    ///
    /// `consumer`: the caller holds the consumer role, so the head cannot
    /// move under it and `tail <= head + capacity` must hold. A producer
    /// reads a head that the consumer may have moved on from since, and
    /// producers may have claimed against the newer head: for it the tail
    /// may be further ahead.
    fn positions(&self, consumer: bool) -> Result<(u64, u64), AttachError> {
        let ctrl = self.ctrl();
        // Acquire (both): pair with the consumer's Release store of the
        // head and the producers' Release CASes of the tail.
        let head = ctrl.head.pos.load(Ordering::Acquire);
        let tail = ctrl.tail.load(Ordering::Acquire);
        // Positions start at 0 and grow by the bytes that went through:
        // 2^62 is decades of traffic, and keeps every sum below 2^64.
        let ok = head % 8 == 0
            && tail % 8 == 0
            && head <= tail
            && (!consumer || tail - head <= self.cap)
            && tail <= MAX_POSITION;
        if !ok || self.shared_poisoned() {
            self.poison_shared();
            return Err(AttachError::Corrupted {
                what: "ring positions",
            });
        }
        Ok((head, tail))
    }

    /// Claims the consumer role for `me` (free, or held by a dead peer).
    /// Returns the view and the head to continue from.
    pub(crate) fn attach_consumer(self, me: u32) -> Result<(Self, u64), AttachError> {
        let roles = &self.ctrl().roles;
        let mut expected = 0;
        let mut won = false;
        // Bounded: a few rounds cover a racing attacher.
        for _ in 0..8 {
            // AcqRel: Acquire pairs with the Release CAS of the previous
            // holder's detach (its head is visible); Release publishes our
            // claim to `consumer_alive`.
            match roles
                .consumer
                .compare_exchange(expected, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Relaxed: a count (see `consumer_alive`).
                    roles.epoch.fetch_add(1, Ordering::Relaxed);
                    won = true;
                    break;
                }
                Err(0) => expected = 0,
                Err(holder) if !self.alive(holder) => expected = holder,
                Err(holder) => {
                    return Err(AttachError::RoleTaken {
                        holder: PeerId::from_raw(holder),
                    });
                }
            }
        }
        if !won {
            // Relaxed: only reported.
            let holder = roles.consumer.load(Ordering::Relaxed);
            return Err(AttachError::RoleTaken {
                holder: PeerId::from_raw(holder),
            });
        }
        match self
            .positions(true)
            .and_then(|(head, tail)| self.finish_release(head, tail))
        {
            Ok(head) => Ok((self, head)),
            Err(e) => {
                self.release_consumer(me);
                Err(e)
            }
        }
    }

    /// Completes the release of what a dead consumer consumed (it stored
    /// `release_end` and was killed before its lazy release, while
    /// zeroing, or before it stored the head): zeroes it again and stores
    /// the head, so that none of it is delivered twice. Called by the new
    /// holder of the consumer role with the checked (head, tail); returns
    /// the head to continue from.
    fn finish_release(&self, head: u64, tail: u64) -> Result<u64, AttachError> {
        let ctrl = self.ctrl();
        // Acquire: pairs with nothing a dead consumer released (it never
        // stored the head); its stores are complete once its death shows,
        // and a consumer that detached finished its releases before its
        // Release CAS of the role word, which our claim of it acquired.
        let end = ctrl.head.release_end.load(Ordering::Acquire);
        if end == head {
            return Ok(head);
        }
        // The consumer releases only what it read, below a tail it read.
        if end % 8 != 0 || end < head || end > tail || end - head > self.cap {
            self.poison_shared();
            return Err(AttachError::Corrupted {
                what: "release end",
            });
        }
        // The bytes [head, end) are still the consumer's: producers write
        // only below the stored head plus a capacity.
        self.zero(head, end - head);
        // Release: the zeroing comes first; pairs with the producers'
        // Acquire loads of the head.
        ctrl.head.pos.store(end, Ordering::Release);
        ctrl.space_bell.ring();
        Ok(end)
    }

    /// Whether this process may act for the handle (see
    /// `Backing::owned_here`): not a copy inherited through `fork`.
    pub(crate) fn owned_here(&self) -> bool {
        self.backing.owned_here()
    }

    /// Frees the consumer role if `me` still holds it (and this process
    /// may: not a copy of the handle inherited through `fork`).
    pub(crate) fn release_consumer(&self, me: u32) {
        if !self.backing.owned_here() {
            return;
        }
        // Release: pairs with the next attacher's Acquire; our last head
        // store is visible to it.
        let _ = self.ctrl().roles.consumer.compare_exchange(
            me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Takes a producer entry for `me`: a free one, or one whose owner is
    /// dead and whose last intent names a claim wholly behind the head (so
    /// the consumer no longer needs the record). Returns the view and the entry.
    pub(crate) fn attach_producer(self, me: u32) -> Result<(Self, usize), AttachError> {
        let (head, _) = self.positions(false)?;
        let mut last = 0;
        for e in 0..MAX_PRODUCERS {
            let rec = self.record(e);
            // Acquire: pairs with the Release store of the owner in
            // `release_producer` (the previous owner is done with it).
            let owner = rec.owner.load(Ordering::Acquire);
            last = owner;
            // Liveness first, then the record: an owner alive at the check
            // may still claim (and die) after it, and a record read before
            // the check could miss that claim's intent, which the takeover
            // would then erase while the consumer still needs it (issue 9,
            // hole 6).
            if owner != 0 && self.alive(owner) {
                continue;
            }
            if owner != 0 {
                // The owner is dead, so the record is frozen. Acquire: pairs
                // with the owner's Release stores of its intent and need (and
                // a dead process's stores are complete once its death shows).
                let intent = rec.intent.load(Ordering::Acquire);
                let need = u64::from(rec.need.load(Ordering::Acquire));
                // The whole claim (padding and frame) must be behind the
                // head: the consumer may need the record until then.
                if intent != 0 && (intent & !7).saturating_add(need) > head {
                    continue;
                }
            }
            // AcqRel: Acquire as above; Release orders our ownership before
            // the intents we publish.
            if rec
                .owner
                .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: no claim of ours exists yet; our first claim's
                // Release stores order it.
                rec.intent.store(0, Ordering::Relaxed);
                return Ok((self, e));
            }
        }
        let _ = last;
        Err(AttachError::NoFreeEntry { max: MAX_PRODUCERS })
    }

    /// Frees producer entry `e` if `me` still holds it (and this process
    /// may: not a copy of the handle inherited through `fork`).
    pub(crate) fn release_producer(&self, e: usize, me: u32) {
        if !self.backing.owned_here() {
            return;
        }
        let rec = self.record(e);
        // Relaxed: ordered before the Release CAS below. Our claims are all
        // finished (the claim guard borrows the handle), so the consumer
        // no longer needs the intent.
        rec.intent.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire load of the next taker.
        let _ = rec
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

impl HeapRing {
    /// Attaches a new producer (with a fresh peer id). Any number, up to
    /// [`MAX_PRODUCERS`] at a time.
    ///
    /// # Errors
    /// [`AttachError::NoFreeEntry`] when every producer entry is held,
    /// [`AttachError::Corrupted`] if the ring is inconsistent or poisoned.
    pub fn producer(&self) -> Result<Producer, AttachError> {
        let me = self.mem.peers.new_id();
        let (view, entry) = RingView(View::heap(&self.mem)).attach_producer(me.to_raw())?;
        Ok(Producer::from_parts(view, entry, me))
    }

    /// Attaches the consumer (with a fresh peer id). One at a time; the role
    /// is taken over when its holder is dead (`mark_dead`, a test hook behind the `testing` feature).
    ///
    /// # Errors
    /// [`AttachError::RoleTaken`] while a live consumer is attached,
    /// [`AttachError::Corrupted`] if the ring is inconsistent or poisoned.
    pub fn consumer(&self) -> Result<Consumer, AttachError> {
        let me = self.mem.peers.new_id();
        let (view, head) = RingView(View::heap(&self.mem)).attach_consumer(me.to_raw())?;
        Ok(Consumer::from_parts(view, head, me))
    }
}

/// Checks section `id` of `region` and makes a view of it.
#[cfg(not(loom))]
fn region_view(
    region: &crate::region::Region,
    id: crate::region::SectionId,
) -> Result<RingView, AttachError> {
    crate::ring::kind::region_view::<super::Mpsc>(region, id).map(RingView)
}

#[cfg(not(loom))]
impl Producer {
    /// Attaches a producer to the MPSC ring in section `id` of `region`
    /// (made with a [`Spec`](super::Spec)), identified by the region's peer
    /// id. Any number of producers, in any processes, up to
    /// [`MAX_PRODUCERS`] at a time. The handle keeps the region mapped.
    ///
    /// ```
    /// use polycephaly::region::{Region, SectionId};
    /// use polycephaly::ring::{Receiver, Sender, mpsc};
    ///
    /// let region = Region::builder().with(mpsc::Spec::new(4096)?).build()?;
    /// let mut a = mpsc::Producer::attach(&region, SectionId(0))?;
    /// let mut b = mpsc::Producer::attach(&region, SectionId(0))?;
    /// let mut rx = mpsc::Consumer::attach(&region, SectionId(0))?;
    /// a.send(b"one")?;
    /// b.send(b"two")?;
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"one");
    /// assert_eq!(rx.producers().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`spsc::Producer::attach`](crate::ring::spsc::Producer::attach),
    /// but [`AttachError::NoFreeEntry`] when every producer entry is held
    /// instead of `RoleTaken`.
    pub fn attach(
        region: &crate::region::Region,
        id: crate::region::SectionId,
    ) -> Result<Self, AttachError> {
        let me = region.peer_id();
        let (view, entry) = region_view(region, id)?.attach_producer(me.to_raw())?;
        Ok(Self::from_parts(view, entry, me))
    }
}

#[cfg(not(loom))]
impl Consumer {
    /// Attaches as the consumer of the MPSC ring in section `id` of
    /// `region`: one consumer at a time; the role is taken over when its
    /// holder is dead (finishing a release it was killed in).
    ///
    /// # Errors
    /// As [`Producer::attach`]; [`AttachError::RoleTaken`] while another
    /// live handle is the consumer.
    pub fn attach(
        region: &crate::region::Region,
        id: crate::region::SectionId,
    ) -> Result<Self, AttachError> {
        let me = region.peer_id();
        let (view, head) = region_view(region, id)?.attach_consumer(me.to_raw())?;
        Ok(Self::from_parts(view, head, me))
    }
}
