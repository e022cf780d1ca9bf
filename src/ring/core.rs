//! What the two ring kinds share: the cache line, capacity rules, the heap
//! memory of rings for one process, what keeps a ring's memory alive and
//! answers "is this peer alive", the view every handle holds, and the one
//! retry-until-deadline loop of the blocking forms.

use crate::sync::clock::Instant;
use core::ops::Deref;
use core::ptr::NonNull;
use std::sync::Arc;

use super::error::{CapacityError, ClaimError, RecvError, TryClaimError, TryRecvError};
use crate::region::PeerId;
use crate::sync::Doorbell;
use crate::sync::shim::{AtomicU32, AtomicU64, Ordering};

/// One 64-byte cache line holding `T`, so that words written by different
/// processes never share a line.
///
/// 64 and not crossbeam's 128 (`CachePadded` on x86-64): a region section
/// is only guaranteed 64-byte aligned.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> Deref for Line<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What every ring control block has, whatever its kind: the poison flag
/// and the two doorbells.
pub trait RingControl {
    /// Non-zero once a side found the ring inconsistent; never cleared.
    fn poisoned(&self) -> &AtomicU32;
    /// The consumer sleeps here, producers ring it.
    fn data_bell(&self) -> &Doorbell;
    /// Producers sleep here, the consumer rings it.
    fn space_bell(&self) -> &Doorbell;
}

/// Checks a capacity: a power of two within `min..=max`.
pub(crate) fn check_capacity(capacity: usize, min: usize, max: usize) -> Result<(), CapacityError> {
    if capacity < min {
        return Err(CapacityError::TooSmall { capacity, min });
    }
    if capacity > max {
        return Err(CapacityError::TooLarge { capacity, max });
    }
    if !capacity.is_power_of_two() {
        return Err(CapacityError::NotPowerOfTwo(capacity));
    }
    Ok(())
}

/// The capacity of a ring laid over a section of exactly `len` bytes with a
/// control block of `control` bytes: `len - control`, which must be a
/// capacity in `min..=max`. Exact, so that a section sized for one kind
/// (whose control block has another length) is refused, not silently read
/// as a ring of half the capacity.
#[cfg(not(loom))]
pub(crate) fn capacity_of_section(
    len: usize,
    control: usize,
    min: usize,
    max: usize,
    what: &'static str,
) -> Result<usize, crate::AttachError> {
    let wrong = crate::AttachError::WrongLength { len, what };
    let capacity = len.checked_sub(control).ok_or(wrong)?;
    check_capacity(capacity, min, max)
        .map_err(|_| crate::AttachError::WrongLength { len, what })?;
    Ok(capacity)
}

/// The peer ids of a ring on the heap, and a test switch to declare one
/// dead (a thread cannot be killed like a process).
#[derive(Debug, Default)]
pub(crate) struct HeapPeers {
    /// How many ids were handed out (id `n` is `PeerId::nth(n)`).
    next: AtomicU32,
    /// Bit `n % 64` of word `n / 64`: the `n`-th id is dead (n < 256).
    dead: [AtomicU64; 4],
}

impl HeapPeers {
    /// A fresh id.
    pub(crate) fn new_id(&self) -> PeerId {
        // Relaxed: a unique counter.
        PeerId::nth(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Declares `id` dead (ids past the 256th cannot be).
    #[cfg(any(feature = "testing", loom))]
    pub(crate) fn mark_dead(&self, id: PeerId) {
        let n = id.ordinal();
        if let Some(word) = self.dead.get(n as usize / 64) {
            // Release: pairs with the Acquire load in `alive`. A process's
            // stores are complete once its death can be observed; a thread
            // declared dead models that by publishing its stores with the
            // declaration.
            word.fetch_or(1 << (n % 64), Ordering::Release);
        }
    }

    /// Whether the raw id `raw` was handed out here and not declared dead.
    pub(crate) fn alive(&self, raw: u32) -> bool {
        let Some(id) = PeerId::from_raw(raw) else {
            return false;
        };
        let n = id.ordinal();
        // Relaxed: ids are only counted.
        let handed_out = n < self.next.load(Ordering::Relaxed);
        // Acquire: pairs with the Release in `mark_dead`.
        let dead = self
            .dead
            .get(n as usize / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (n % 64)) != 0);
        handed_out && !dead
    }
}

/// The memory of a ring on the heap (either kind): the control block `C`
/// and `capacity` data bytes, zeroed (an empty ring with no handles), and
/// the ring's peer ids.
///
/// In a normal build it is one allocation laid out as a section. Under loom
/// the control block is a loom object of its own, the header words are an
/// array of loom atomics, and each 8 data bytes have a loom cell that the
/// code touches where it reads or writes them, so that a model sees a
/// payload read that is not ordered after its write (loom atomics cannot be
/// laid over raw memory, and loom does not see plain bytes).
#[derive(Debug)]
pub(crate) struct HeapMem<C> {
    ctrl: NonNull<C>,
    data: NonNull<u8>,
    capacity: usize,
    pub(crate) peers: HeapPeers,
    // Kept for its drop (the memory lives in it); read only by the fuzzer.
    #[cfg_attr(any(loom, not(feature = "testing")), allow(dead_code))]
    block: ZeroedBlock,
    #[cfg(loom)]
    _ctrl_box: Box<C>,
    #[cfg(loom)]
    words: Box<[AtomicU64]>,
    #[cfg(loom)]
    cells: Box<[loom::cell::UnsafeCell<()>]>,
}

// SAFETY: HeapMem owns its allocation; all shared access goes through the
// atomics of `C`, the header words, or the ring protocol on the data bytes.
unsafe impl<C: Send + Sync> Send for HeapMem<C> {}
// SAFETY: as above; `&HeapMem` only hands out raw pointers.
unsafe impl<C: Send + Sync> Sync for HeapMem<C> {}

impl<C: Default> HeapMem<C> {
    /// A zeroed ring of `capacity` bytes (checked against `min..=max`) with
    /// a control block of `control_len` bytes (`size_of::<C>()`, whose
    /// all-zero bit pattern is a valid empty `C`).
    pub(crate) fn new(
        capacity: usize,
        control_len: usize,
        min: usize,
        max: usize,
    ) -> Result<Self, CapacityError> {
        check_capacity(capacity, min, max)?;
        #[cfg(not(loom))]
        {
            debug_assert_eq!(control_len, size_of::<C>());
            let block = ZeroedBlock::new(control_len, capacity, max)?;
            Ok(Self {
                ctrl: block.ptr().cast(),
                data: block.data(),
                capacity,
                peers: HeapPeers::default(),
                block,
            })
        }
        #[cfg(loom)]
        {
            let _ = control_len;
            let block = ZeroedBlock::new(0, capacity, max)?;
            let ctrl_box = Box::new(C::default());
            Ok(Self {
                ctrl: NonNull::from(&*ctrl_box),
                data: block.data(),
                capacity,
                peers: HeapPeers::default(),
                block,
                _ctrl_box: ctrl_box,
                words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
                cells: (0..capacity / 8)
                    .map(|_| loom::cell::UnsafeCell::new(()))
                    .collect(),
            })
        }
    }

    /// The data capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The whole memory (control and data) as raw bytes, for the fuzzer to
    /// overwrite as a hostile peer would.
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn raw_bytes(&self) -> (*mut u8, usize) {
        (self.block.ptr().as_ptr(), self.block.len())
    }
}

/// What keeps a ring's memory mapped while a handle uses it, and knows who
/// is alive.
#[derive(Debug)]
pub(crate) enum Backing<C> {
    /// A ring on the heap (one process).
    Heap(Arc<HeapMem<C>>),
    /// A ring section of a shared region.
    #[cfg(not(loom))]
    Region(crate::region::Region),
}

impl<C> Backing<C> {
    /// Whether the peer with raw id `raw` is alive: a heap id handed out and
    /// not declared dead, or a region peer whose process runs (pid and
    /// start time; a stopped process is alive). Reads `/proc` for a region:
    /// slow paths only.
    pub(crate) fn alive(&self, raw: u32) -> bool {
        match self {
            Self::Heap(mem) => mem.peers.alive(raw),
            #[cfg(not(loom))]
            Self::Region(region) => PeerId::from_raw(raw).is_some_and(|id| region.peer_alive(id)),
        }
    }

    /// Whether this process may release what its handle holds in the ring
    /// (a role, a producer entry). False in a child made by `fork` that
    /// holds a copy of its parent's handle: the role is the parent's, and
    /// releasing it would make the running parent look gone.
    pub(crate) fn owned_here(&self) -> bool {
        match self {
            Self::Heap(_) => true,
            #[cfg(not(loom))]
            Self::Region(region) => region.opened_by_current_process(),
        }
    }
}

/// A handle's view of one ring: raw pointers into memory kept alive by the
/// [`Backing`], and the geometry derived once at attach (never re-read).
#[derive(Debug)]
pub(crate) struct View<C> {
    ctrl: NonNull<C>,
    data: NonNull<u8>,
    #[cfg(loom)]
    words: NonNull<AtomicU64>,
    #[cfg(loom)]
    cells: NonNull<loom::cell::UnsafeCell<()>>,
    /// Data bytes, a power of two checked at attach.
    pub(crate) cap: u64,
    /// `cap - 1`.
    pub(crate) mask: u64,
    /// The largest payload: `max_payload(cap)`.
    pub(crate) max_payload: u64,
    pub(crate) backing: Backing<C>,
}

impl<C> View<C> {
    /// A view of the heap ring `mem`.
    pub(crate) fn heap(mem: &Arc<HeapMem<C>>) -> Self {
        Self {
            ctrl: mem.ctrl,
            data: mem.data,
            #[cfg(loom)]
            words: NonNull::from(&mem.words[0]),
            #[cfg(loom)]
            cells: NonNull::from(&mem.cells[0]),
            cap: mem.capacity as u64,
            mask: mem.capacity as u64 - 1,
            max_payload: super::frame::max_payload(mem.capacity) as u64,
            backing: Backing::Heap(Arc::clone(mem)),
        }
    }

    /// A view of a ring section: `ctrl` at its start (64-aligned), then
    /// `capacity` data bytes at `data`, kept mapped by `region`.
    ///
    /// # Safety
    /// `ctrl` points to a `C` (valid for any bits) and `data` to `capacity`
    /// bytes (a power of two), both inside `region`'s mapping, 64-aligned.
    #[cfg(not(loom))]
    pub(crate) unsafe fn region(
        region: crate::region::Region,
        ctrl: NonNull<C>,
        data: NonNull<u8>,
        capacity: usize,
    ) -> Self {
        Self {
            ctrl,
            data,
            cap: capacity as u64,
            mask: capacity as u64 - 1,
            max_payload: super::frame::max_payload(capacity) as u64,
            backing: Backing::Region(region),
        }
    }

    /// The shared control block.
    #[inline(always)]
    pub(crate) fn ctrl(&self) -> &C {
        // SAFETY: `ctrl` points to a 64-aligned control block, valid for any
        // bit pattern (atomics and doorbells), that `backing` keeps alive as
        // long as `self`.
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
        // `idx <= cap`; `cap` fits usize (it was a usize capacity).
        unsafe { self.data.as_ptr().add(idx as usize) }
    }

    /// The 8-byte word at data index `idx` as an atomic (`idx` is taken
    /// modulo the capacity and rounded down to 8, so any value is in
    /// bounds): MPSC frame headers, which several processes write.
    #[inline(always)]
    pub(crate) fn word(&self, idx: u64) -> &AtomicU64 {
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

    /// A slice of `len` data bytes from index `idx`.
    ///
    /// # Safety
    /// `idx + len <= cap`; the protocol gives the bytes to the caller to
    /// read for `'a` (no correct peer writes them meanwhile: see the live
    /// view note at [`Frame`](super::spsc::Frame)).
    #[inline(always)]
    pub(crate) unsafe fn bytes<'a>(&self, idx: u64, len: usize) -> &'a [u8] {
        self.track_read(idx, len as u64);
        // SAFETY: in bounds per the caller, kept mapped by the backing
        // (which the caller's borrow of the handle keeps), readable as the
        // protocol gives them to the caller.
        unsafe { core::slice::from_raw_parts(self.data_at(idx), len) }
    }

    /// A mutable slice of `len` data bytes from index `idx`.
    ///
    /// # Safety
    /// `idx + len <= cap`; the protocol gives the bytes to the caller to
    /// write, exclusively, for `'a`.
    #[inline(always)]
    pub(crate) unsafe fn bytes_mut<'a>(&self, idx: u64, len: usize) -> &'a mut [u8] {
        self.track_write(idx, len as u64);
        // SAFETY: as in `bytes`, and no one else reads or writes them.
        unsafe { core::slice::from_raw_parts_mut(self.data_at(idx), len) }
    }

    /// Under loom: a read of data bytes `[idx, idx + len)` (within one lap)
    /// happens now; the model fails if a write to them is not ordered
    /// before it. Nothing in a normal build.
    #[inline(always)]
    pub(crate) fn track_read(&self, idx: u64, len: u64) {
        #[cfg(loom)]
        for w in idx / 8..(idx + len).div_ceil(8) {
            // SAFETY: w < cap / 8: the range lies within the lap.
            unsafe { &*self.cells.as_ptr().add(w as usize) }.with(|_| ());
        }
        #[cfg(not(loom))]
        let _ = (idx, len);
    }

    /// Under loom: a write of data bytes `[idx, idx + len)` happens now;
    /// the model fails if another access to them is not ordered before it.
    #[inline(always)]
    pub(crate) fn track_write(&self, idx: u64, len: u64) {
        #[cfg(loom)]
        for w in idx / 8..(idx + len).div_ceil(8) {
            // SAFETY: as in `track_read`.
            unsafe { &*self.cells.as_ptr().add(w as usize) }.with_mut(|_| ());
        }
        #[cfg(not(loom))]
        let _ = (idx, len);
    }

    /// Whether the peer with raw id `raw` is alive (see [`Backing::alive`]).
    pub(crate) fn alive(&self, raw: u32) -> bool {
        self.backing.alive(raw)
    }
}

impl<C: RingControl> View<C> {
    /// Marks the ring poisoned for every side and wakes any sleeper so that
    /// it notices.
    #[cold]
    pub(crate) fn poison_shared(&self) {
        let ctrl = self.ctrl();
        // Relaxed: the flag carries no data; readers only stop using the
        // ring. The doorbells' fences order it before their checks.
        ctrl.poisoned().store(1, Ordering::Relaxed);
        // Fenced: pairs with waiters of either kind (`wait` or
        // `wait_fenced`); a cold path.
        ctrl.data_bell().ring_fenced();
        ctrl.space_bell().ring_fenced();
    }

    /// Whether a side poisoned the ring.
    #[inline]
    pub(crate) fn shared_poisoned(&self) -> bool {
        // Relaxed: see `poison_shared`.
        self.ctrl().poisoned().load(Ordering::Relaxed) != 0
    }
}

/// The blocking forms' loop, written once for every ring operation:
/// `attempt` (the `try_` path, `None` for "full" or "empty"); if nothing
/// yet, give up at the deadline with `timed_out`, else `wait` (sleep per the
/// handle's strategy until something may have changed) and try again.
///
/// `state` is passed to both closures, so that each can borrow the handle
/// in turn; the result is plain data (a reservation, a location), turned
/// into a guard by the caller.
#[inline(always)]
pub(crate) fn retry<S, T, E>(
    state: &mut S,
    deadline: Option<Instant>,
    timed_out: E,
    mut attempt: impl FnMut(&mut S) -> Option<Result<T, E>>,
    mut wait: impl FnMut(&mut S, Option<Instant>) -> Result<(), E>,
) -> Result<T, E> {
    loop {
        if let Some(r) = attempt(state) {
            return r;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timed_out);
        }
        wait(state, deadline)?;
    }
}

/// A `try_` claim's outcome, as the blocking claim's loop wants it: `None`
/// (full: wait and try again) or the final result.
#[inline(always)]
pub(crate) fn claim_outcome<R>(r: Result<R, TryClaimError>) -> Option<Result<R, ClaimError>> {
    match r {
        Ok(r) => Some(Ok(r)),
        Err(TryClaimError::Full) => None,
        Err(TryClaimError::TooLarge { len, max }) => Some(Err(ClaimError::TooLarge { len, max })),
        Err(_) => Some(Err(ClaimError::Corrupted)),
    }
}

/// A `try_` read's outcome, as the blocking read's loop wants it: `None`
/// (empty: wait and try again) or the final result.
#[inline(always)]
pub(crate) fn recv_outcome<R>(r: Result<R, TryRecvError>) -> Option<Result<R, RecvError>> {
    match r {
        Ok(r) => Some(Ok(r)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::WrongSize { expected, got }) => {
            Some(Err(RecvError::WrongSize { expected, got }))
        }
        Err(_) => Some(Err(RecvError::Corrupted)),
    }
}

/// A consumer of either kind, as the batch read written once needs it.
pub(crate) trait BatchRead {
    /// Reads up to `max` frames that are ready now (never `Empty`).
    fn try_batch(&mut self, max: usize, f: impl FnMut(u32, &[u8])) -> Result<usize, TryRecvError>;
    /// Sleeps (per the strategy) until something may be ready.
    fn wait_readable(&mut self, deadline: Option<Instant>) -> Result<(), RecvError>;
}

/// `read_batch_deadline` of both consumers: a batch read that first waits
/// (until `deadline`) for at least one frame.
#[inline]
pub(crate) fn read_batch_deadline<C: BatchRead>(
    consumer: &mut C,
    max: usize,
    deadline: Option<Instant>,
    mut f: impl FnMut(u32, &[u8]),
) -> Result<usize, RecvError> {
    retry(
        consumer,
        deadline,
        RecvError::TimedOut,
        |c| match c.try_batch(max, &mut f) {
            Ok(0) if max > 0 => None,
            r => recv_outcome(r),
        },
        C::wait_readable,
    )
}

/// The accessors every ring handle has, over its `view` field (a
/// [`View`]) and its `strategy` and `poisoned` fields.
macro_rules! handle_accessors {
    () => {
        /// The ring's data capacity in bytes.
        pub fn capacity(&self) -> usize {
            self.view.cap as usize
        }

        /// The largest payload a frame may have: `capacity / 2 - 8`.
        pub fn max_payload(&self) -> usize {
            self.view.max_payload as usize
        }

        /// How the blocking forms wait (default
        /// [`WaitStrategy::BLOCK`](crate::sync::WaitStrategy::BLOCK)).
        pub fn wait_strategy(&self) -> crate::sync::WaitStrategy {
            self.strategy
        }

        /// Sets how the blocking forms wait.
        pub fn set_wait_strategy(&mut self, strategy: crate::sync::WaitStrategy) {
            self.strategy = strategy;
        }

        /// Whether this handle found the ring corrupted (every call now
        /// fails).
        pub fn is_poisoned(&self) -> bool {
            self.poisoned
        }
    };
}
pub(crate) use handle_accessors;

/// The memory of a heap ring: one zeroed, 64-aligned allocation of a
/// control block (`head_len` bytes, 0 under loom where the control block is
/// a separate loom object) followed by the data bytes; freed on drop.
///
/// # Invariants
/// `ptr` came from `alloc_zeroed(layout)`, `layout.size() = head_len +
/// capacity > 0`, and it is freed once, by `Drop`.
#[derive(Debug)]
pub(crate) struct ZeroedBlock {
    ptr: NonNull<u8>,
    head_len: usize,
    layout: std::alloc::Layout,
}

impl ZeroedBlock {
    /// Allocates `head_len + capacity` zeroed bytes (`capacity` checked by
    /// the caller: a power of two of at least the minimum; `max` is only
    /// reported if the size does not fit a layout).
    pub(crate) fn new(head_len: usize, capacity: usize, max: usize) -> Result<Self, CapacityError> {
        let layout = head_len
            .checked_add(capacity)
            .and_then(|size| std::alloc::Layout::from_size_align(size, 64).ok())
            .ok_or(CapacityError::TooLarge { capacity, max })?;
        // SAFETY: `layout` has a non-zero size (capacity >= the minimum).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        Ok(Self {
            ptr,
            head_len,
            layout,
        })
    }

    /// The first byte (the control block's).
    #[cfg(not(loom))]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The first data byte, after the control block.
    pub(crate) fn data(&self) -> NonNull<u8> {
        // SAFETY: the allocation holds head_len + capacity bytes.
        unsafe { self.ptr.add(self.head_len) }
    }

    /// Bytes in all.
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for ZeroedBlock {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed
        // once, here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        assert!(check_capacity(64, 64, 1 << 20).is_ok());
        assert_eq!(
            check_capacity(32, 64, 1 << 20),
            Err(CapacityError::TooSmall {
                capacity: 32,
                min: 64
            })
        );
        assert_eq!(
            check_capacity(96, 64, 1 << 20),
            Err(CapacityError::NotPowerOfTwo(96))
        );
        assert_eq!(
            capacity_of_section(320 + 4096, 320, 64, 1 << 20, "x").ok(),
            Some(4096)
        );
        // A section sized for the other kind's control block is refused.
        assert!(capacity_of_section(4416 + 65536, 320, 64, 1 << 20, "x").is_err());
        assert!(capacity_of_section(320 + 4096 + 8, 320, 64, 1 << 20, "x").is_err());
        assert!(capacity_of_section(10, 320, 64, 1 << 20, "x").is_err());
    }

    #[test]
    fn heap_peers_hand_out_live_ids_until_declared_dead() {
        let peers = HeapPeers::default();
        let (a, b) = (peers.new_id(), peers.new_id());
        assert_ne!(a, b);
        assert!(peers.alive(a.to_raw()) && peers.alive(b.to_raw()));
        peers.mark_dead(a);
        assert!(!peers.alive(a.to_raw()) && peers.alive(b.to_raw()));
        // Never handed out, or not an id at all.
        assert!(!peers.alive(PeerId::nth(7).to_raw()));
        assert!(!peers.alive(0));
    }
}
