//! What the MPSC handles share: the view of the ring memory, what keeps it
//! alive and answers "is this peer alive", the consumer role and the
//! producer entries, poisoning.

use core::ptr::NonNull;
use std::sync::Arc;

use super::layout::{Control, HeapMem, MAX_PRODUCERS, Record};
use crate::ring::AttachError;
use crate::ring::frame::max_payload;
use crate::sync::shim::{AtomicU64, Ordering};

/// The largest position a consistent ring reaches (see `positions`).
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// A ring on the heap, for one process: loom models, property tests, the
/// fuzzer, and rings between threads. The same code as a ring in a region
/// section, with peer ids handed out here and a test switch to declare a
/// producer dead (a thread cannot be killed like a process).
///
/// ```
/// use polycephaly::ring::mpsc::HeapMpsc;
/// let ring = HeapMpsc::new(1024).unwrap();
/// let mut a = ring.producer().unwrap();
/// let mut b = ring.producer().unwrap();
/// let mut rx = ring.consumer().unwrap();
/// a.try_send(b"from a").unwrap();
/// b.try_send(b"from b").unwrap();
/// let mut buf = Vec::new();
/// rx.try_recv(&mut buf).unwrap();
/// assert_eq!(buf, b"from a");
/// rx.try_recv(&mut buf).unwrap();
/// assert_eq!(buf, b"from b");
/// ```
#[derive(Debug)]
pub struct HeapMpsc {
    mem: HeapMem,
    /// The next peer id to hand out (ids start at 1).
    next_id: AtomicU64,
    /// Bit `id % 64` of word `id / 64` set: the peer with that id is dead
    /// (ids below 256 only).
    dead: [AtomicU64; 4],
}

impl HeapMpsc {
    /// A zeroed ring of `capacity` bytes on the heap.
    ///
    /// # Errors
    /// [`RingError`](crate::ring::RingError) when `capacity` is not a power
    /// of two within the MIN_CAPACITY..=[`MAX_CAPACITY`](super::MAX_CAPACITY) range.
    pub fn new(capacity: usize) -> Result<Arc<Self>, crate::ring::RingError> {
        Ok(Arc::new(Self {
            mem: HeapMem::new(capacity)?,
            next_id: AtomicU64::new(1),
            dead: core::array::from_fn(|_| AtomicU64::new(0)),
        }))
    }

    /// Declares the peer with raw id `id` dead, as if its process had been
    /// killed: the consumer may then abandon its pending claim. Ids of 256
    /// and above cannot be declared dead.
    pub fn mark_dead(&self, id: u32) {
        if let Some(word) = self.dead.get(id as usize / 64) {
            // Release: pairs with the Acquire load in `alive`. A process's
            // stores are complete once its death can be observed; a thread
            // declared dead models that by publishing its stores with the
            // declaration.
            word.fetch_or(1 << (id % 64), Ordering::Release);
        }
    }

    fn new_id(&self) -> u32 {
        // Relaxed: a unique counter.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        u32::try_from(id).unwrap_or(u32::MAX)
    }

    fn alive(&self, id: u32) -> bool {
        // Relaxed: ids are only counted.
        let next = self.next_id.load(Ordering::Relaxed);
        // Acquire: pairs with the Release in `mark_dead`.
        let dead = self
            .dead
            .get(id as usize / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (id % 64)) != 0);
        id != 0 && u64::from(id) < next && !dead
    }

    /// Attaches a new producer (with a fresh peer id).
    ///
    /// # Errors
    /// As [`MpscProducer::attach`](super::MpscProducer::attach).
    pub fn producer(self: &Arc<Self>) -> Result<super::MpscProducer, AttachError> {
        let me = self.new_id();
        let (view, entry) = RingView::heap(self).attach_producer(me)?;
        Ok(super::MpscProducer::from_parts(view, entry, me))
    }

    /// Attaches the consumer (with a fresh peer id).
    ///
    /// # Errors
    /// As [`MpscConsumer::attach`](super::MpscConsumer::attach).
    pub fn consumer(self: &Arc<Self>) -> Result<super::MpscConsumer, AttachError> {
        let me = self.new_id();
        let (view, head) = RingView::heap(self).attach_consumer(me)?;
        Ok(super::MpscConsumer::from_parts(view, head, me))
    }

    /// The whole ring memory, for the fuzzer to overwrite.
    #[cfg(not(loom))]
    pub(crate) fn raw_bytes(&self) -> (*mut u8, usize) {
        self.mem.raw_bytes()
    }
}

/// What keeps a ring's memory mapped while a handle uses it.
#[derive(Debug, Clone)]
pub(crate) enum Backing {
    /// A heap ring.
    Heap(Arc<HeapMpsc>),
    /// A ring section of a shared region.
    #[cfg(not(loom))]
    Region(crate::region::Region),
}

/// A handle's view of one ring: raw pointers into memory kept alive by the
/// [`Backing`], and the geometry derived once at attach.
#[derive(Debug)]
pub(crate) struct RingView {
    ctrl: NonNull<Control>,
    data: NonNull<u8>,
    #[cfg(loom)]
    words: NonNull<AtomicU64>,
    /// Data bytes, a power of two in MIN_CAPACITY..=MAX_CAPACITY.
    pub(crate) cap: u64,
    /// `cap - 1`.
    pub(crate) mask: u64,
    /// `max_payload(cap)`.
    pub(crate) max_payload: u64,
    backing: Backing,
}

impl RingView {
    fn heap(heap: &Arc<HeapMpsc>) -> Self {
        let mem = &heap.mem;
        Self::new(
            Backing::Heap(Arc::clone(heap)),
            mem.ctrl,
            mem.data,
            mem.capacity,
            #[cfg(loom)]
            NonNull::from(&mem.words[0]),
        )
    }

    /// A view over `ctrl` and `capacity` data bytes at `data`, which
    /// `backing` keeps alive.
    pub(crate) fn new(
        backing: Backing,
        ctrl: NonNull<Control>,
        data: NonNull<u8>,
        capacity: usize,
        #[cfg(loom)] words: NonNull<AtomicU64>,
    ) -> Self {
        let cap = capacity as u64;
        Self {
            ctrl,
            data,
            #[cfg(loom)]
            words,
            cap,
            mask: cap - 1,
            max_payload: max_payload(capacity) as u64,
            backing,
        }
    }

    /// The shared control block.
    #[inline(always)]
    pub(crate) fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a 64-aligned control block that
        // `backing` keeps alive as long as `self`; it holds only atomics
        // and doorbells, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    /// The header word at data index `idx` (taken modulo the capacity and
    /// rounded down to 8, so any value is in bounds).
    #[inline(always)]
    pub(crate) fn header(&self, idx: u64) -> &AtomicU64 {
        let idx = idx & self.mask & !7;
        #[cfg(not(loom))]
        {
            // SAFETY: idx + 8 <= cap (idx < cap, both multiples of 8); the
            // data area is 64-aligned, so the word is 8-aligned; an
            // AtomicU64 is valid for any bits and lives as long as the
            // backing, which `self` keeps.
            unsafe { &*self.data.as_ptr().add(idx as usize).cast::<AtomicU64>() }
        }
        #[cfg(loom)]
        {
            // SAFETY: `words` holds cap / 8 atomics and idx / 8 < cap / 8.
            unsafe { &*self.words.as_ptr().add((idx / 8) as usize) }
        }
    }

    /// A pointer to data byte `idx`.
    ///
    /// # Safety
    /// `idx <= cap`.
    #[inline(always)]
    pub(crate) unsafe fn data_at(&self, idx: u64) -> *mut u8 {
        debug_assert!(idx <= self.cap);
        // SAFETY: the data area holds `cap` bytes and `idx <= cap`.
        unsafe { self.data.as_ptr().add(idx as usize) }
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
    }

    /// Whether the peer with raw id `raw` is alive: a heap id handed out
    /// and not declared dead, or a region peer whose process runs (pid and
    /// start time; a stopped process is alive).
    pub(crate) fn alive(&self, raw: u32) -> bool {
        match &self.backing {
            Backing::Heap(heap) => heap.alive(raw),
            #[cfg(not(loom))]
            Backing::Region(region) => {
                crate::region::PeerId::from_raw(raw).is_some_and(|id| region.peer_alive(id))
            }
        }
    }

    /// Marks the ring poisoned and wakes every sleeper so that it notices.
    #[cold]
    pub(crate) fn poison_shared(&self) {
        let ctrl = self.ctrl();
        // Relaxed: carries no data; the doorbells' SeqCst fences order it
        // before the sleepers' re-checks.
        ctrl.roles.poisoned.store(1, Ordering::Relaxed);
        ctrl.data_bell.ring();
        ctrl.space_bell.ring();
    }

    /// Whether a side poisoned the ring.
    #[inline]
    pub(crate) fn shared_poisoned(&self) -> bool {
        // Relaxed: see `poison_shared`.
        self.ctrl().roles.poisoned.load(Ordering::Relaxed) != 0
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
            return Err(AttachError::Corrupted);
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
                Err(holder) => return Err(AttachError::RoleTaken { holder }),
            }
        }
        if !won {
            // Relaxed: only reported.
            let holder = roles.consumer.load(Ordering::Relaxed);
            return Err(AttachError::RoleTaken { holder });
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

    /// Completes a release that a dead consumer began (it stored
    /// `release_end` and was killed while zeroing, or before it stored the
    /// head): zeroes the rest again and stores the head. Called by the new
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
            return Err(AttachError::Corrupted);
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

    /// Frees the consumer role if `me` still holds it.
    pub(crate) fn release_consumer(&self, me: u32) {
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
        Err(AttachError::RoleTaken { holder: last })
    }

    /// Frees producer entry `e` if `me` still holds it.
    pub(crate) fn release_producer(&self, e: usize, me: u32) {
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
