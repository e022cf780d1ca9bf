//! What the two SPSC handles share: the view of the ring, attaching to a
//! role (on the heap or in a region section) and releasing it, peer
//! liveness, frame headers.

use super::layout::READY;
use super::layout::{CONSUMER, Control, HeapRing, PRODUCER};
use super::{Consumer, Producer};
use crate::AttachError;
use crate::region::PeerId;
use crate::ring::core::View;
use crate::ring::frame::{PAD_FLAG, decode_header, frame_len, pad_word, positions_ok};
use crate::ring::guard::Loc;
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;

/// A handle's view of one SPSC ring and the role it holds.
#[derive(Debug)]
pub(crate) struct RingRef {
    pub(crate) view: View<Control>,
    /// Our peer id; its raw form is what our role word holds.
    id: PeerId,
    /// `id.to_raw()`.
    me: u32,
    /// Our role (PRODUCER or CONSUMER).
    role: usize,
}

impl core::ops::Deref for RingRef {
    type Target = View<Control>;
    #[inline(always)]
    fn deref(&self) -> &View<Control> {
        &self.view
    }
}

impl RingRef {
    /// Our peer id.
    pub(crate) fn id(&self) -> PeerId {
        self.id
    }

    /// The frame header word at data index `idx` (taken modulo the
    /// capacity and rounded down to 8, so any value is in bounds): read
    /// with Acquire where the consumer polls it, stored with Release where
    /// the producer publishes.
    #[inline(always)]
    pub(crate) fn header(&self, idx: u64) -> &crate::sync::shim::AtomicU64 {
        self.word(idx)
    }

    /// The frame published at position `pos` (8-aligned), if any: reads
    /// its header (Acquire), skips a padding frame before it, and checks
    /// everything against the ring's geometry and `limit` (frames end at
    /// most `limit - 8`: the consumer's last stored head plus the
    /// capacity). `Ok(None)`: nothing published there yet.
    ///
    /// # Errors
    /// `Err(())` for a header no correct producer writes there.
    #[inline]
    pub(crate) fn frame_at(&self, pos: u64, limit: u64) -> Result<Option<Loc>, ()> {
        debug_assert!(pos % 8 == 0);
        let mut pos = pos;
        let mut idx = pos & self.mask;
        // Acquire: pairs with the producer's Release store of the batch's
        // first header in `publish`; the frame's bytes (and the headers
        // after it in the batch) are written.
        let header = self.header(idx).load(Ordering::Acquire);
        if header == 0 {
            return Ok(None);
        }
        let (mut word, mut tag) = decode_header(header);
        if word & READY == 0 {
            return Err(());
        }
        if word & PAD_FLAG != 0 {
            let room = self.cap - idx;
            // A padding frame fills the rest of a lap it does not start.
            if idx == 0 || word != READY | pad_word(room) {
                return Err(());
            }
            pos += room;
            idx = 0;
            // Acquire: as above (a padding frame and the frame after it
            // are published by one store, so this one is written).
            (word, tag) = decode_header(self.header(0).load(Ordering::Acquire));
            // Published together with the padding before it.
            if word & READY == 0 {
                return Err(());
            }
        }
        // A padding flag here makes `len` exceed the maximum.
        let len = u64::from(word & !READY);
        let total = frame_len(len.min(self.cap));
        if len > self.max_payload || idx + total > self.cap || pos + total + 8 > limit {
            return Err(());
        }
        Ok(Some(Loc {
            // idx + 8 <= cap <= 2^31 (checked above).
            idx: (idx + 8) as u32,
            len: len as u32,
            tag,
            entry: 0,
            end: pos + total,
        }))
    }

    /// The end of what was published from `tail` on (the shared tail, a
    /// hint that a producer dying between its two stores leaves behind):
    /// the position of the first zero word, walking the headers.
    /// `head` is the consumer's stored head.
    fn published_end(&self, head: u64, tail: u64) -> Result<u64, ()> {
        // A correct producer leaves the word at its end free: never closer
        // than 8 bytes to the head's next lap.
        if tail + 8 > head + self.cap {
            return Err(());
        }
        let mut pos = tail;
        // Bounded: each frame moves `pos` forward, and `frame_at` refuses
        // one ending past `head + cap - 8`.
        while let Some(loc) = self.frame_at(pos, head + self.cap)? {
            pos = loc.end;
        }
        Ok(pos)
    }

    /// Whether the other side is alive, for the blocking waits: its role
    /// word names a live peer, or nobody ever attached to it yet (we wait
    /// for it). A role freed after an attach means the peer left: dead.
    pub(crate) fn peer_alive(&self) -> bool {
        let peer = 1 - self.role;
        let roles = &self.ctrl().roles;
        // Acquire: pairs with the AcqRel CAS in `claim_role` and the Release
        // CAS in `drop` of the peer.
        let holder = roles.holder[peer].load(Ordering::Acquire);
        if holder != 0 {
            return self.alive(holder);
        }
        // Relaxed: the epoch is only a count; it is bumped after the role
        // word was claimed, so a zero epoch with a free role means "not yet".
        roles.epoch[peer].load(Ordering::Relaxed) == 0
    }

    /// Attaches `view` to `role` for peer `me`: claims the role word and
    /// reads and checks both positions. Returns the handle's view and
    /// (head, tail).
    pub(crate) fn attach(
        view: View<Control>,
        me: PeerId,
        role: usize,
    ) -> Result<(Self, u64, u64), AttachError> {
        let this = Self {
            view,
            id: me,
            me: me.to_raw(),
            role,
        };
        this.claim_role()?;
        let ctrl = this.ctrl();
        // Our own position first: nobody else moves it while we hold the
        // role, so the peer's, read second, is at least as new.
        // Acquire (both): pair with the Release stores of the previous
        // holder of each role; we continue from what they published.
        let (head, tail) = if role == PRODUCER {
            let tail = ctrl.tail.load(Ordering::Acquire);
            (ctrl.head.load(Ordering::Acquire), tail)
        } else {
            let head = ctrl.head.load(Ordering::Acquire);
            (head, ctrl.tail.load(Ordering::Acquire))
        };
        // The tail is a hint (see the layout): a producer that died between
        // its header store and its tail store leaves it behind the published
        // end, and the consumer may have read and released past it. All
        // before the head was published, so a hint behind it counts as the
        // head (found by the chaos soak: such a ring was refused as
        // corrupted, and poisoned).
        let tail = tail.max(head);
        // A producer continues after the last published frame, which may
        // lie past the tail hint.
        let tail = match positions_ok(head, tail, this.cap) {
            true if role == PRODUCER => this.published_end(head, tail).ok(),
            true => Some(tail),
            false => None,
        };
        let Some(tail) = tail.filter(|_| !this.shared_poisoned()) else {
            this.poison_shared();
            // Dropping `this` releases the role.
            return Err(AttachError::Corrupted {
                what: "ring positions",
            });
        };
        Ok((this, head, tail))
    }

    /// Claims our role word: free, or held by a dead peer.
    fn claim_role(&self) -> Result<(), AttachError> {
        let roles = &self.ctrl().roles;
        let slot = &roles.holder[self.role];
        let mut expected = 0;
        // Bounded: each round either wins, or sees a live holder, or sees
        // the word change; a few rounds cover a racing attacher.
        for _ in 0..8 {
            // AcqRel: Acquire pairs with the Release CAS in `drop` of the
            // previous holder; Release publishes our claim to the peer's
            // Acquire load in `peer_alive`.
            match slot.compare_exchange(expected, self.me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // Relaxed: a count read only to tell "never attached"
                    // from "left" (see `peer_alive`).
                    roles.epoch[self.role].fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(0) => expected = 0,
                Err(holder) if holder != self.me && !self.alive(holder) => expected = holder,
                Err(holder) => {
                    return Err(AttachError::RoleTaken {
                        holder: PeerId::from_raw(holder),
                    });
                }
            }
        }
        // Relaxed: only reported.
        Err(AttachError::RoleTaken {
            holder: PeerId::from_raw(slot.load(Ordering::Relaxed)),
        })
    }
}

impl Drop for RingRef {
    /// Releases our role word if it is still ours (a peer may have taken it
    /// over believing us dead), unless this is a copy of a handle that a
    /// child made by `fork` inherited: the role is the parent's.
    fn drop(&mut self) {
        if !self.backing.owned_here() {
            return;
        }
        // Release: pairs with the Acquire of the next `claim_role` and of
        // the peer's `peer_alive`: our last published position is visible.
        let _ = self.ctrl().roles.holder[self.role].compare_exchange(
            self.me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl HeapRing {
    /// Attaches the producer (with a fresh peer id). One producer at a
    /// time; the role is taken over when its holder is dead
    /// (`mark_dead`, a test hook behind the `testing` feature).
    ///
    /// # Errors
    /// [`AttachError::RoleTaken`] while a live producer is attached;
    /// [`AttachError::Corrupted`] if the ring is poisoned.
    pub fn producer(&self) -> Result<Producer, AttachError> {
        let (ring, head, tail) =
            RingRef::attach(View::heap(&self.mem), self.mem.peers.new_id(), PRODUCER)?;
        Ok(Producer::from_parts(ring, head, tail, WaitStrategy::BLOCK))
    }

    /// Attaches the consumer (with a fresh peer id); see
    /// [`producer`](Self::producer).
    ///
    /// # Errors
    /// As [`producer`](Self::producer), for the consumer role.
    pub fn consumer(&self) -> Result<Consumer, AttachError> {
        let (ring, head, _) =
            RingRef::attach(View::heap(&self.mem), self.mem.peers.new_id(), CONSUMER)?;
        Ok(Consumer::from_parts(ring, head, WaitStrategy::BLOCK))
    }
}

/// Checks section `id` of `region` and attaches a ring view to `role`.
#[cfg(not(loom))]
fn region_ring(
    region: &crate::region::Region,
    id: crate::region::SectionId,
    role: usize,
) -> Result<(RingRef, u64, u64), AttachError> {
    let view = crate::ring::kind::region_view::<super::Spsc>(region, id)?;
    RingRef::attach(view, region.peer_id(), role)
}

#[cfg(not(loom))]
impl Producer {
    /// Attaches as the producer of the SPSC ring in section `id` of
    /// `region` (made with a [`Spec`](super::Spec)). The handle keeps the
    /// region mapped.
    ///
    /// ```
    /// use polycephaly::region::{Region, SectionId};
    /// use polycephaly::ring::{Receiver, Sender, spsc};
    ///
    /// let region = Region::builder().with(spsc::Spec::new(4096)?).build()?;
    /// let mut tx = spsc::Producer::attach(&region, SectionId(0))?;
    /// let mut rx = spsc::Consumer::attach(&region, SectionId(0))?;
    /// // A second producer is refused while the first lives.
    /// assert!(spsc::Producer::attach(&region, SectionId(0)).is_err());
    /// tx.send(b"command")?;
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"command");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`AttachError::Section`] if there is no such section (or `region`
    /// is a copy inherited through `fork`), [`AttachError::WrongKind`],
    /// [`AttachError::WrongLength`], [`AttachError::RoleTaken`] while
    /// another live handle is the producer, [`AttachError::Corrupted`] if
    /// the ring is inconsistent or poisoned.
    pub fn attach(
        region: &crate::region::Region,
        id: crate::region::SectionId,
    ) -> Result<Self, AttachError> {
        let (ring, head, tail) = region_ring(region, id, PRODUCER)?;
        Ok(Self::from_parts(ring, head, tail, WaitStrategy::BLOCK))
    }
}

#[cfg(not(loom))]
impl Consumer {
    /// Attaches as the consumer of the SPSC ring in section `id` of
    /// `region`; see [`Producer::attach`]. Taking over from a dead consumer
    /// resumes at the last head it stored (see [`Consumer`]).
    ///
    /// # Errors
    /// As [`Producer::attach`], for the consumer role.
    pub fn attach(
        region: &crate::region::Region,
        id: crate::region::SectionId,
    ) -> Result<Self, AttachError> {
        let (ring, head, _) = region_ring(region, id, CONSUMER)?;
        Ok(Self::from_parts(ring, head, WaitStrategy::BLOCK))
    }
}
