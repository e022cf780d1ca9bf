//! What the two SPSC handles share: the view of the ring memory, what keeps
//! it alive, attaching to a role and releasing it, poisoning, peer liveness.

use core::ptr::NonNull;
use std::sync::Arc;

use super::error::{AttachError, RingError};
use super::frame::{max_payload, positions_ok};
use super::layout::{CONSUMER, Control, HeapRing, PRODUCER};
use super::{SpscConsumer, SpscProducer};
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;

/// The raw peer id a heap ring's producer attaches with.
pub(crate) const HEAP_PRODUCER_ID: u32 = 1;
/// The raw peer id a heap ring's consumer attaches with.
pub(crate) const HEAP_CONSUMER_ID: u32 = 2;

/// What keeps a ring's memory mapped while a handle uses it.
#[derive(Debug, Clone)]
pub(crate) enum Backing {
    /// A ring on the heap (one process). Held only to keep the memory
    /// alive.
    Heap(#[allow(dead_code)] Arc<HeapRing>),
    /// A ring section of a shared region.
    #[cfg(not(loom))]
    Region(crate::region::Region),
}

impl Backing {
    /// Whether the peer with raw id `raw` is alive.
    fn peer_alive(&self, raw: u32) -> bool {
        match self {
            // A heap ring is shared by the threads of one process: its two
            // ids are alive as long as the memory is; any other value in a
            // role word was written over the ring and names nobody.
            Self::Heap(_) => raw == HEAP_PRODUCER_ID || raw == HEAP_CONSUMER_ID,
            #[cfg(not(loom))]
            Self::Region(region) => {
                crate::region::PeerId::from_raw(raw).is_some_and(|id| region.peer_alive(id))
            }
        }
    }
}

/// A handle's view of one ring: raw pointers into memory kept alive by the
/// handle's [`Backing`], and the geometry derived once at attach.
#[derive(Debug)]
pub(crate) struct RingRef {
    ctrl: NonNull<Control>,
    data: NonNull<u8>,
    /// Data bytes, a power of two in MIN_CAPACITY..=MAX_CAPACITY.
    pub(crate) cap: u64,
    /// `cap - 1`.
    pub(crate) mask: u64,
    /// `max_payload(cap)`.
    pub(crate) max_payload: u64,
    /// Our raw peer id, written into our role word.
    me: u32,
    /// Our role (PRODUCER or CONSUMER).
    role: usize,
    /// Keeps `ctrl` and `data` valid; dropped after the role is released.
    backing: Backing,
}

impl RingRef {
    /// The shared control block.
    #[inline(always)]
    pub(crate) fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a 64-aligned control block (all-zero or
        // any bit pattern is a valid `Control`: atomics and doorbells) that
        // `backing` keeps alive as long as `self`.
        unsafe { self.ctrl.as_ref() }
    }

    /// A pointer to data byte `idx`.
    ///
    /// # Safety
    /// `idx <= cap`.
    #[inline(always)]
    pub(crate) unsafe fn data_at(&self, idx: u64) -> *mut u8 {
        debug_assert!(idx <= self.cap);
        // SAFETY: the data area holds `cap` bytes and the caller keeps
        // `idx <= cap`; `cap` fits usize (at most 2^31).
        unsafe { self.data.as_ptr().add(idx as usize) }
    }

    /// Reads the frame header at data index `idx` (volatile: the bytes are
    /// shared, and are read exactly once before being checked).
    ///
    /// # Safety
    /// `idx` is a multiple of 8 and `idx + 8 <= cap`.
    #[inline(always)]
    pub(crate) unsafe fn read_header(&self, idx: u64) -> u64 {
        debug_assert!(idx % 8 == 0 && idx + 8 <= self.cap);
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
        // SAFETY: as in `read_header`; the caller owns the bytes.
        unsafe { self.data_at(idx).cast::<u64>().write(header) }
    }

    /// Marks the ring poisoned for both sides and wakes any sleeper so that
    /// it notices.
    #[cold]
    pub(crate) fn poison_shared(&self) {
        let ctrl = self.ctrl();
        // Relaxed: the flag carries no data; readers only stop using the
        // ring. The doorbells' SeqCst fences order it before their checks.
        ctrl.roles.poisoned.store(1, Ordering::Relaxed);
        ctrl.data_bell.ring();
        ctrl.space_bell.ring();
    }

    /// Whether a peer poisoned the ring.
    #[inline]
    pub(crate) fn shared_poisoned(&self) -> bool {
        // Relaxed: see `poison_shared`.
        self.ctrl().roles.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Whether the other side is alive, for the blocking waits: its role
    /// word names a live peer, or nobody ever attached to it yet (we wait
    /// for it). A role freed after an attach means the peer left: dead.
    pub(crate) fn peer_alive(&self) -> bool {
        let peer = 1 - self.role;
        let roles = &self.ctrl().roles;
        // Acquire: pairs with the AcqRel CAS in `claim_role` and the Release
        // CAS in `release_role` of the peer.
        let holder = roles.holder[peer].load(Ordering::Acquire);
        if holder != 0 {
            return self.backing.peer_alive(holder);
        }
        // Relaxed: the epoch is only a count; it is bumped after the role
        // word was claimed, so a zero epoch with a free role means "not yet".
        roles.epoch[peer].load(Ordering::Relaxed) == 0
    }

    /// Attaches to `role` of the ring at (`ctrl`, `data`, `capacity`):
    /// claims the role word and reads and checks both positions. Returns
    /// the view and (head, tail).
    pub(crate) fn attach(
        backing: Backing,
        ctrl: NonNull<Control>,
        data: NonNull<u8>,
        capacity: usize,
        me: u32,
        role: usize,
    ) -> Result<(Self, u64, u64), AttachError> {
        let cap = capacity as u64;
        let this = Self {
            ctrl,
            data,
            cap,
            mask: cap - 1,
            max_payload: max_payload(capacity) as u64,
            me,
            role,
            backing,
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
        if this.shared_poisoned() || !positions_ok(head, tail, cap) {
            this.poison_shared();
            // Dropping `this` releases the role.
            return Err(AttachError::Corrupted);
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
            // AcqRel: Acquire pairs with the Release CAS in `release_role`
            // of the previous holder; Release publishes our claim to the
            // peer's Acquire load in `peer_alive`.
            match slot.compare_exchange(expected, self.me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // Relaxed: a count read only to tell "never attached"
                    // from "left" (see `peer_alive`).
                    roles.epoch[self.role].fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(0) => expected = 0,
                Err(holder) if holder != self.me && !self.backing.peer_alive(holder) => {
                    expected = holder;
                }
                Err(holder) => return Err(AttachError::RoleTaken { holder }),
            }
        }
        // Relaxed: only reported.
        Err(AttachError::RoleTaken {
            holder: slot.load(Ordering::Relaxed),
        })
    }
}

impl Drop for RingRef {
    /// Releases our role word if it is still ours (a peer may have taken it
    /// over believing us dead).
    fn drop(&mut self) {
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

/// Creates a ring of `capacity` bytes on the heap, for use between threads
/// of one process (and by loom models and property tests: the same code as
/// a ring in a region section).
///
/// ```
/// let (mut tx, mut rx) = polycephaly::ring::heap_pair(1024).unwrap();
/// tx.try_send(b"hello").unwrap();
/// let mut buf = Vec::new();
/// rx.try_recv(&mut buf).unwrap();
/// assert_eq!(buf, b"hello");
/// ```
///
/// # Errors
/// [`RingError`] when `capacity` is not a power of two within
/// [`MIN_CAPACITY`](super::MIN_CAPACITY)..=[`MAX_CAPACITY`](super::MAX_CAPACITY).
pub fn heap_pair(capacity: usize) -> Result<(SpscProducer, SpscConsumer), RingError> {
    let heap = Arc::new(HeapRing::new(capacity)?);
    heap_attach_pair(&heap).ok_or(RingError::TooSmall {
        capacity,
        min: super::MIN_CAPACITY,
    })
}

/// Attaches a producer and a consumer to a heap ring (`None` if either
/// refuses, which a fresh ring never does).
pub(crate) fn heap_attach_pair(heap: &Arc<HeapRing>) -> Option<(SpscProducer, SpscConsumer)> {
    let p = heap_producer(heap).ok()?;
    let c = heap_consumer(heap).ok()?;
    Some((p, c))
}

/// Attaches a ring view to one role of a heap ring.
fn heap_ring(
    heap: &Arc<HeapRing>,
    role: usize,
    me: u32,
) -> Result<(RingRef, u64, u64), AttachError> {
    RingRef::attach(
        Backing::Heap(Arc::clone(heap)),
        heap.ctrl(),
        heap.data(),
        heap.capacity(),
        me,
        role,
    )
}

/// Attaches the producer of a heap ring.
pub(crate) fn heap_producer(heap: &Arc<HeapRing>) -> Result<SpscProducer, AttachError> {
    let (ring, head, tail) = heap_ring(heap, PRODUCER, HEAP_PRODUCER_ID)?;
    Ok(SpscProducer::from_parts(
        ring,
        head,
        tail,
        WaitStrategy::BLOCK,
    ))
}

/// Attaches the consumer of a heap ring.
pub(crate) fn heap_consumer(heap: &Arc<HeapRing>) -> Result<SpscConsumer, AttachError> {
    let (ring, head, tail) = heap_ring(heap, CONSUMER, HEAP_CONSUMER_ID)?;
    Ok(SpscConsumer::from_parts(
        ring,
        head,
        tail,
        WaitStrategy::BLOCK,
    ))
}
