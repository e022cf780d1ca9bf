//! What the two SPSC handles share: the view of the ring, attaching to a
//! role (on the heap or in a region section) and releasing it, peer
//! liveness, frame headers.

use super::layout::{CONSUMER, Control, HeapRing, PRODUCER};
use super::{Consumer, Producer};
use crate::AttachError;
use crate::region::PeerId;
use crate::ring::core::View;
use crate::ring::frame::positions_ok;
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

    /// Reads the frame header at data index `idx` (volatile: the bytes are
    /// shared, and are read exactly once before being checked).
    ///
    /// # Safety
    /// `idx` is a multiple of 8 and `idx + 8 <= cap`.
    #[inline(always)]
    pub(crate) unsafe fn read_header(&self, idx: u64) -> u64 {
        debug_assert!(idx % 8 == 0 && idx + 8 <= self.cap);
        self.track_read(idx, 8);
        // SAFETY: in bounds per the caller; 8-aligned since the data area
        // is 64-aligned and `idx` a multiple of 8; any bits are a valid u64.
        unsafe { self.data_at(idx).cast::<u64>().read_volatile() }
    }

    /// Writes the frame header at data index `idx`.
    ///
    /// # Safety
    /// As [`read_header`](Self::read_header), and the bytes belong to the
    /// producer (between the published tail and head + cap).
    #[inline(always)]
    pub(crate) unsafe fn write_header(&self, idx: u64, header: u64) {
        debug_assert!(idx % 8 == 0 && idx + 8 <= self.cap);
        self.track_write(idx, 8);
        // SAFETY: as in `read_header`; the caller owns the bytes.
        unsafe { self.data_at(idx).cast::<u64>().write(header) }
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
        if this.shared_poisoned() || !positions_ok(head, tail, this.cap) {
            this.poison_shared();
            // Dropping `this` releases the role.
            return Err(AttachError::Corrupted {
                what: "ring positions",
            });
        }
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
        let (ring, head, tail) =
            RingRef::attach(View::heap(&self.mem), self.mem.peers.new_id(), CONSUMER)?;
        Ok(Consumer::from_parts(ring, head, tail, WaitStrategy::BLOCK))
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
        let (ring, head, tail) = region_ring(region, id, CONSUMER)?;
        Ok(Self::from_parts(ring, head, tail, WaitStrategy::BLOCK))
    }
}
