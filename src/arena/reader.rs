//! Readers: a handle checked against the arena gives `&[T]` in place, with
//! no lock; dropping the guard releases the block.

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

use bytemuck::Pod;

use super::error::ReadError;
use super::handle::BlockHandle;
use super::layout::{
    COUNT_MASK, Desc, GEN_MASK, HOLD_SLOTS, MAX_ELEM_ALIGN, MODE_COUNT, MODE_NAMED, OWED,
    PUBLISHED, tag,
};
use super::view::ArenaView;
use crate::AttachError;
use crate::region::PeerId;
use crate::sync::shim::{AtomicU32, Ordering, fence};

/// How many times a compare-and-swap on a shared word is retried before
/// the operation gives up (only a hostile peer changes a word that often).
const CAS_TRIES: u32 = 1 << 10;

/// A reader of an arena's blocks (any lane). Cheap; `Send` and `Sync`:
/// threads may share one.
///
/// [`read`](Self::read) checks a [`BlockHandle`] against the arena and
/// registers this peer as a holder of the block; the [`ReadGuard`] it
/// returns dereferences to `&[T]` in place, and dropping it releases the
/// block. Reading takes no lock and never waits.
pub struct ArenaReader {
    view: ArenaView,
    /// Our slot in the hold words.
    slot: usize,
    /// Our generation bits (`PeerId` bits 8..32).
    gen_bits: u32,
}

impl fmt::Debug for ArenaReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArenaReader")
            .field("peer", &self.view.me())
            .field("lanes", &self.view.geom.lanes)
            .finish_non_exhaustive()
    }
}

impl ArenaReader {
    pub(crate) fn from_view(view: ArenaView) -> Result<Self, AttachError> {
        let me = view.me();
        if me.slot() >= HOLD_SLOTS {
            return Err(AttachError::NoFreeEntry { max: HOLD_SLOTS });
        }
        Ok(Self {
            slot: me.slot(),
            gen_bits: me.to_raw() & GEN_MASK,
            view,
        })
    }

    /// The peer id this reader holds blocks as (name it in
    /// [`Readers::Peers`](super::Readers::Peers)).
    pub fn peer_id(&self) -> PeerId {
        self.view.me()
    }

    /// The arena's lanes.
    pub fn lanes(&self) -> u32 {
        self.view.geom.lanes
    }

    /// Data bytes per lane.
    pub fn lane_len(&self) -> u64 {
        self.view.geom.lane_len
    }

    /// The block `handle` names, as `&[T]` in place.
    ///
    /// The handle is checked first (lane, bounds, alignment and element
    /// size of `T`, generation, and that the block at its place is the one
    /// it names); the guard's slice covers exactly the block. Each
    /// successful read uses up one read of a block published for a count,
    /// or the first read of a named reader.
    ///
    /// The slice is a live view of shared memory: a correct writer never
    /// writes a published block, but a hostile one could change its bytes
    /// while you read them (wrong values, never a read outside the block).
    /// Copy before you validate: check values you depend on in a copy.
    ///
    /// # Errors
    /// The [`ReadError`] naming the check that failed; no slice then.
    pub fn read<T: Pod>(&self, handle: &BlockHandle) -> Result<ReadGuard<'_, T>, ReadError> {
        const {
            assert!(size_of::<T>() > 0 && align_of::<T>() <= MAX_ELEM_ALIGN);
        };
        let held = self.acquire(*handle, size_of::<T>(), align_of::<T>())?;
        Ok(ReadGuard::new(self, held, *handle, handle.len() as usize))
    }

    /// The block `handle` names as bytes, whatever its element type (the
    /// element size and alignment are still checked against the handle's
    /// own, and the rest as in [`read`](Self::read)).
    ///
    /// # Errors
    /// As [`read`](Self::read), but never [`ReadError::WrongType`] for a
    /// sane handle.
    pub fn read_bytes(&self, handle: &BlockHandle) -> Result<ReadGuard<'_, u8>, ReadError> {
        let held = self.acquire(*handle, 0, 1)?;
        let bytes = held.bytes as usize;
        Ok(ReadGuard::new(self, held, *handle, bytes))
    }

    /// Checks `h` (a local copy: nothing is re-read from shared memory once
    /// checked) and registers our hold (the reader's side of the handshake
    /// in `lane.rs`).
    fn acquire(&self, h: BlockHandle, size: usize, align: usize) -> Result<Held<'_>, ReadError> {
        let bytes = h.check(&self.view.geom, size, align)?;
        let lane_ix = u32::from(h.lane());
        let lane = self.view.lane(lane_ix);
        let d = lane.desc(h.generation());
        let want = tag(h.generation(), PUBLISHED);
        // Acquire: pairs with the writer's Release store of PUBLISHED. An
        // early out for stale handles; the load that counts is after F_A.
        if d.tag.load(Ordering::Acquire) != want {
            return Err(ReadError::Stale);
        }
        let word = &d.holds[self.slot];
        let before = self.hold(word)?;
        // F_A: pairs with F_R in the writer's reclaim: either its scan of
        // the holds sees ours, or we see its RETIRED store here.
        #[cfg(not(polycephaly_broken_arena = "acquire_fence"))]
        fence(Ordering::SeqCst);
        // Acquire: pairs with the writer's Release store of PUBLISHED: the
        // block's bytes and the descriptor's fields are visible.
        #[cfg(not(polycephaly_broken_arena = "recheck"))]
        if d.tag.load(Ordering::Acquire) != want {
            self.unhold(&lane, word);
            return Err(ReadError::Stale);
        }
        // Relaxed: ordered by the Acquire above; the writer wrote them
        // before publishing and leaves them alone while we hold the block.
        let shape = d.shape.load(Ordering::Relaxed);
        let mode = shape >> 8;
        let matches = d.start.load(Ordering::Relaxed) == h.offset()
            && d.bytes.load(Ordering::Relaxed) == bytes
            && d.elem.load(Ordering::Relaxed) == h.elem_size()
            && shape & 0xFF == u32::from(h.align_log2())
            && matches!(mode, MODE_COUNT | MODE_NAMED);
        if !matches {
            self.unhold(&lane, word);
            return Err(ReadError::Mismatch);
        }
        if mode == MODE_COUNT {
            consume(d);
        } else if before & GEN_MASK == self.gen_bits && before & OWED != 0 {
            self.settle(word);
        }
        lane.track_read(h.offset(), bytes);
        Ok(Held {
            lane: lane_ix,
            word,
            start: h.offset(),
            bytes,
        })
    }

    /// Adds one to our hold count in `word`; returns the word before. A
    /// word of another generation is a previous holder's of our slot, who
    /// left the region: void, replaced.
    fn hold(&self, word: &AtomicU32) -> Result<u32, ReadError> {
        // Relaxed: the CAS checks it.
        let mut w = word.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            let new = if w & GEN_MASK == self.gen_bits {
                if w & COUNT_MASK == COUNT_MASK {
                    return Err(ReadError::TooManyHolds);
                }
                w + 1
            } else {
                self.gen_bits | 1
            };
            // Relaxed: F_A (after the call) orders it before the re-check.
            match word.compare_exchange_weak(w, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(w),
                Err(x) => w = x,
            }
        }
        Err(ReadError::TooManyHolds)
    }

    /// Takes one from our hold count and rings the lane's space bell.
    fn unhold(&self, lane: &super::view::Lane<'_>, word: &AtomicU32) {
        // Relaxed: the CAS checks it.
        let mut w = word.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            // Not ours any more (a hostile write): nothing of ours to undo.
            if w & GEN_MASK != self.gen_bits || w & COUNT_MASK == 0 {
                break;
            }
            // Release: pairs with the writer's Acquire scan of the holds;
            // our reads of the block happen before its reuse.
            #[cfg(not(polycephaly_broken_arena = "release"))]
            let order = Ordering::Release;
            #[cfg(polycephaly_broken_arena = "release")]
            let order = Ordering::Relaxed;
            match word.compare_exchange_weak(w, w - 1, order, Ordering::Relaxed) {
                Ok(_) => break,
                Err(x) => w = x,
            }
        }
        // Wakes a writer waiting for room (no system call unless one
        // sleeps).
        #[cfg(not(polycephaly_broken_arena = "no_ring"))]
        lane.ctrl.space_bell.ring();
    }

    /// Clears our owed bit (named mode: our one read is done).
    fn settle(&self, word: &AtomicU32) {
        // Relaxed: the CAS checks it.
        let mut w = word.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            if w & GEN_MASK != self.gen_bits || w & OWED == 0 {
                return;
            }
            // Relaxed: as in `consume`, the F_A/F_R pair orders our hold
            // before the writer's scan of the counts.
            match word.compare_exchange_weak(w, w & !OWED, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(x) => w = x,
            }
        }
    }

    fn release(&self, held: &Held<'_>) {
        let lane = self.view.lane(held.lane);
        lane.track_read(held.start, held.bytes);
        self.unhold(&lane, held.word);
    }
}

/// Uses up one expected read of a count-mode block (saturating at 0).
fn consume(d: &Desc) {
    // Relaxed: the CAS checks it.
    let mut r = d.remaining.load(Ordering::Relaxed);
    for _ in 0..CAS_TRIES {
        if r == 0 {
            return;
        }
        // Relaxed: a writer that sees 0 retires the block and fences (F_R)
        // before it scans the holds; we passed our second tag check after
        // F_A, so F_A precedes F_R and its scan sees our hold.
        match d
            .remaining
            .compare_exchange_weak(r, r - 1, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(x) => r = x,
        }
    }
}

/// A registered hold: where to release it.
#[derive(Debug)]
struct Held<'a> {
    lane: u32,
    word: &'a AtomicU32,
    start: u64,
    bytes: u64,
}

/// A published block read in place: dereferences to `&[T]`, exactly the
/// block. Dropping it releases the block (the writer may then reclaim it
/// once its other readers are done).
///
/// A live view of shared memory, bounded by checks: see
/// [`ArenaReader::read`] for what a hostile writer can still do (copy
/// before you validate).
pub struct ReadGuard<'a, T> {
    reader: &'a ArenaReader,
    held: Held<'a>,
    ptr: NonNull<T>,
    len: usize,
    handle: BlockHandle,
    _t: PhantomData<&'a [T]>,
}

// SAFETY: the guard is a shared view (like `&[T]`, Send when T is Sync)
// plus a hold released by atomic operations, valid from any thread.
unsafe impl<T: Sync> Send for ReadGuard<'_, T> {}
// SAFETY: shared access hands out `&[T]` only.
unsafe impl<T: Sync> Sync for ReadGuard<'_, T> {}

impl<T> fmt::Debug for ReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<'a, T> ReadGuard<'a, T> {
    fn new(reader: &'a ArenaReader, held: Held<'a>, handle: BlockHandle, len: usize) -> Self {
        let lane = reader.view.lane(held.lane);
        // SAFETY: `held.start + held.bytes <= lane.len` (the handle's check).
        let ptr = unsafe { lane.data_at(held.start) }.cast::<T>();
        Self {
            reader,
            held,
            ptr: NonNull::new(ptr).unwrap_or(NonNull::dangling()),
            len,
            handle,
            _t: PhantomData,
        }
    }

    /// The handle this guard was read from.
    pub fn handle(&self) -> &BlockHandle {
        &self.handle
    }

    /// Releases the block (the same as dropping the guard).
    pub fn release(self) {}
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements of T (`held.bytes` bytes) from a 64-aligned
        // offset (align_of T <= 64) inside the lane, checked against the
        // handle and the descriptor; published (our Acquire of the tag saw
        // the writer's Release), and held: the writer does not reuse the
        // bytes while our hold stands (the handshake in lane.rs). T is Pod:
        // any bytes are a valid T. A hostile writer could still change them
        // (documented at `ArenaReader::read`).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.reader.release(&self.held);
    }
}
