//! The writer of a lane: claims the lane, allocates blocks in place,
//! publishes them, reclaims them in lane order.

use crate::sync::clock::Instant;
use core::fmt;
use core::time::Duration;

use bytemuck::Pod;

use super::block::{BlockMut, UninitBlock};
use super::error::{AllocError, TryAllocError};
use super::handle::{BlockHandle, Readers};
use super::lane::{LaneState, Live};
use super::layout::{
    ALLOCATED, GEN_MASK, HOLD_SLOTS, MAX_ELEM_ALIGN, MAX_SEQ, MODE_COUNT, MODE_NAMED, OWED,
    PUBLISHED, shape, span, tag,
};
use super::view::ArenaView;
use crate::AttachError;
use crate::region::PeerId;
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;

/// The writer of one lane of an arena: the only process that allocates
/// there, so allocation takes no lock and no compare-and-swap.
///
/// Allocate with [`try_alloc`](Self::try_alloc) (zeroed) or
/// [`try_alloc_uninit`](Self::try_alloc_uninit) and their blocking forms,
/// build the array in place, then publish it for its readers: the
/// [`BlockHandle`] that comes back travels to them (in a ring frame). Each
/// allocation first reclaims, in lane order, the blocks their readers are
/// done with; when live blocks fill the lane the `try_` forms say
/// [`Full`](TryAllocError::Full) and the others wait (following the
/// handle's [`WaitStrategy`]) for releases, never overwriting a block a
/// live reader may read.
///
/// `Send` but not `Sync`. Dropping the writer frees the lane for another
/// writer, who adopts its live blocks; a writer that dies leaves its lane
/// to be taken over the same way (see [`attach_lane`](Self::attach_lane)).
pub struct ArenaWriter {
    view: ArenaView,
    lane: u32,
    me: u32,
    state: LaneState,
    strategy: WaitStrategy,
}

// SAFETY: the view's pointers stay valid wherever the handle goes (its
// backing is Send); the handle's state is its own.
unsafe impl Send for ArenaWriter {}

impl fmt::Debug for ArenaWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArenaWriter")
            .field("lane", &self.lane)
            .field("peer", &self.me)
            .field("live_blocks", &self.state.live.len())
            .field("next_seq", &self.state.next_seq)
            .field("poisoned", &self.state.poisoned)
            .finish_non_exhaustive()
    }
}

/// Where a new block went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reserved {
    pub(crate) seq: u64,
    pub(crate) ptr: *mut u8,
}

impl ArenaWriter {
    /// Claims lane `lane` (or, for `None`, the first free lane, else the
    /// first whose writer is dead) and takes over what its previous writer
    /// left.
    pub(crate) fn attach_view(view: ArenaView, lane: Option<u16>) -> Result<Self, AttachError> {
        let lanes = view.geom.lanes;
        if let Some(l) = lane {
            if u32::from(l) >= lanes {
                return Err(AttachError::NoSuchLane { lane: l, lanes });
            }
        }
        let me = view.me().to_raw();
        let candidates = match lane {
            Some(l) => u32::from(l)..u32::from(l) + 1,
            None => 0..lanes,
        };
        let mut taken = None;
        for take_dead in [false, true] {
            for l in candidates.clone() {
                let role = &view.lane(l).ctrl.role;
                // Acquire: pairs with the Release of the previous owner's
                // detach (its last progress is visible).
                let owner = role.owner.load(Ordering::Acquire);
                let free = owner == 0 || (take_dead && owner != me && !view.alive(owner));
                if !free {
                    taken = Some((l, owner));
                    continue;
                }
                // AcqRel: Acquire as above (or the dead owner's stores,
                // complete once its death shows); Release orders our claim
                // before what we write in the lane.
                let won =
                    role.owner
                        .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed);
                if let Err(now) = won {
                    // Another writer got there first.
                    taken = Some((l, now));
                } else {
                    // Relaxed: a count for diagnostics.
                    role.epoch.fetch_add(1, Ordering::Relaxed);
                    let state = LaneState::take_over(&view.lane(l), view.geom.blocks);
                    return Ok(Self {
                        view,
                        lane: l,
                        me,
                        state,
                        strategy: WaitStrategy::BLOCK,
                    });
                }
            }
        }
        let (l, owner) = taken.unwrap_or((0, 0));
        match PeerId::from_raw(owner) {
            Some(holder) => {
                let _ = l;
                Err(AttachError::RoleTaken {
                    holder: Some(holder),
                })
            }
            None => Err(AttachError::Corrupted { what: "lane owner" }),
        }
    }

    /// The lane this writer owns.
    pub fn lane(&self) -> u16 {
        self.lane as u16
    }

    /// The lane's data bytes: the largest block it holds.
    pub fn capacity(&self) -> u64 {
        self.view.geom.lane_len
    }

    /// Blocks allocated and not reclaimed yet (published ones whose
    /// readers are not done, or that were not looked at since).
    pub fn live_blocks(&self) -> usize {
        self.state.live.len()
    }

    /// The peer id this writer acts for (the lane's owner word).
    pub fn peer_id(&self) -> PeerId {
        self.view.me()
    }

    /// How the blocking forms wait (default [`WaitStrategy::BLOCK`]).
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Sets how the blocking forms wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Whether this writer found its lane's shared state changed under it
    /// (every allocation now fails with `Corrupted`; drop the writer and
    /// attach again: the lane is then reset).
    pub fn is_poisoned(&self) -> bool {
        self.state.poisoned
    }

    /// How long the blocks this writer adopted when it took the lane over
    /// are waited for (default [`DEFAULT_ORPHAN_TIMEOUT`](super::DEFAULT_ORPHAN_TIMEOUT), 1 s from the
    /// takeover). Their handles may still be on their way to readers, so
    /// they stay readable; but a writer killed between publishing a block
    /// and handing its handle on left a block nobody will read, which would
    /// hold the lane's reclamation (in lane order) up for ever. Once the
    /// timeout has passed and the lane is short of room, an adopted block
    /// that no live peer holds is given up: a reader that comes later gets
    /// [`Stale`](super::ReadError::Stale).
    pub fn set_orphan_timeout(&mut self, timeout: Duration) {
        self.state.orphan_timeout = timeout;
    }

    /// Reclaims what can be reclaimed now, asking about the liveness of the
    /// peers in the way, and returns the blocks still live.
    ///
    /// # Errors
    /// [`TryAllocError::Corrupted`] if the lane changed under the writer.
    pub fn reclaim(&mut self) -> Result<usize, TryAllocError> {
        let lane = self.view.lane(self.lane);
        if self.state.poisoned || !self.state.reclaim(&self.view, &lane, true) {
            return Err(TryAllocError::Corrupted);
        }
        Ok(self.state.live.len())
    }

    /// A zeroed block of `n` elements of `T`, without waiting.
    ///
    /// ```
    /// use polycephaly::arena::{ArenaSpec, HeapArena, TryAllocError};
    ///
    /// let arena = HeapArena::new(ArenaSpec::new(1, 4096))?;
    /// let mut w = arena.writer()?;
    /// let r = arena.reader()?;
    /// let mut block = w.try_alloc::<f64>(512)?; // the whole lane
    /// block[0] = 1.5;
    /// let h = block.publish_for(1);
    /// assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
    /// drop(r.read::<f64>(&h)?); // read and released: room again
    /// assert!(w.try_alloc::<u8>(1).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TryAllocError::TooLarge`] if it cannot fit the lane at all,
    /// [`TryAllocError::Full`] if live blocks leave no room now,
    /// [`TryAllocError::Corrupted`] if the lane changed under the writer.
    pub fn try_alloc<T: Pod>(&mut self, n: usize) -> Result<BlockMut<'_, T>, TryAllocError> {
        let bytes = bytes_of::<T>(n);
        self.state.slow_now();
        let r = self.reserve(bytes, true)?;
        // SAFETY: `reserve` gave `bytes` writable bytes at `r.ptr`, 64-aligned,
        // that nobody else reads or writes until published.
        unsafe { r.ptr.write_bytes(0, bytes as usize) };
        Ok(BlockMut::new(self, r, n))
    }

    /// As [`try_alloc`](Self::try_alloc), waiting for room.
    ///
    /// # Errors
    /// [`AllocError::TooLarge`], [`AllocError::Corrupted`].
    pub fn alloc<T: Pod>(&mut self, n: usize) -> Result<BlockMut<'_, T>, AllocError> {
        self.alloc_deadline(n, None)
    }

    /// As [`alloc`](Self::alloc), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc), and [`AllocError::TimedOut`].
    pub fn alloc_timeout<T: Pod>(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<BlockMut<'_, T>, AllocError> {
        self.alloc_deadline(n, Instant::now().checked_add(timeout))
    }

    /// As [`alloc`](Self::alloc), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// As [`alloc_timeout`](Self::alloc_timeout).
    pub fn alloc_deadline<T: Pod>(
        &mut self,
        n: usize,
        deadline: Option<Instant>,
    ) -> Result<BlockMut<'_, T>, AllocError> {
        let bytes = bytes_of::<T>(n);
        let r = self.reserve_deadline(bytes, deadline)?;
        // SAFETY: as in `try_alloc`.
        unsafe { r.ptr.write_bytes(0, bytes as usize) };
        Ok(BlockMut::new(self, r, n))
    }

    /// A block of `n` elements of `T` left as the lane holds it (old bytes
    /// of earlier blocks), without waiting: initialise it with
    /// [`UninitBlock::fill`], [`UninitBlock::init_with`] or
    /// [`UninitBlock::copy_from_slice`]. Saves the zeroing pass of
    /// [`try_alloc`](Self::try_alloc) when every element is written anyway.
    ///
    /// # Errors
    /// As [`try_alloc`](Self::try_alloc).
    pub fn try_alloc_uninit<T: Pod>(
        &mut self,
        n: usize,
    ) -> Result<UninitBlock<'_, T>, TryAllocError> {
        self.state.slow_now();
        let r = self.reserve(bytes_of::<T>(n), true)?;
        Ok(UninitBlock::new(self, r, n))
    }

    /// As [`try_alloc_uninit`](Self::try_alloc_uninit), waiting for room.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    pub fn alloc_uninit<T: Pod>(&mut self, n: usize) -> Result<UninitBlock<'_, T>, AllocError> {
        self.alloc_uninit_deadline(n, None)
    }

    /// As [`alloc_uninit`](Self::alloc_uninit), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`alloc_timeout`](Self::alloc_timeout).
    pub fn alloc_uninit_timeout<T: Pod>(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<UninitBlock<'_, T>, AllocError> {
        self.alloc_uninit_deadline(n, Instant::now().checked_add(timeout))
    }

    /// As [`alloc_uninit`](Self::alloc_uninit), giving up at `deadline`
    /// (`None`: never).
    ///
    /// # Errors
    /// As [`alloc_timeout`](Self::alloc_timeout).
    pub fn alloc_uninit_deadline<T: Pod>(
        &mut self,
        n: usize,
        deadline: Option<Instant>,
    ) -> Result<UninitBlock<'_, T>, AllocError> {
        let r = self.reserve_deadline(bytes_of::<T>(n), deadline)?;
        Ok(UninitBlock::new(self, r, n))
    }

    /// Finds room for `bytes`, writes the descriptor (ALLOCATED) and the
    /// progress word. `slow_ok`: a liveness pass may run if needed.
    fn reserve(&mut self, bytes: u64, slow_ok: bool) -> Result<Reserved, TryAllocError> {
        const { assert!(HOLD_SLOTS <= 64) };
        let lane = self.view.lane(self.lane);
        if self.state.poisoned {
            return Err(TryAllocError::Corrupted);
        }
        if bytes > lane.len {
            return Err(TryAllocError::TooLarge {
                bytes,
                max: lane.len,
            });
        }
        let span = span(bytes);
        let start = match self.state.make_room(&self.view, &lane, span, slow_ok) {
            None => return Err(TryAllocError::Full),
            Some(Err(())) => return Err(TryAllocError::Corrupted),
            Some(Ok(start)) => start,
        };
        let seq = self.state.next_seq;
        if seq >= MAX_SEQ - 1 {
            self.state.poisoned = true;
            return Err(TryAllocError::Corrupted);
        }
        let d = lane.desc(seq);
        // Relaxed (all): readers look only at a PUBLISHED tag, whose
        // Release store orders these; a writer taking the lane over reads
        // them after its Acquire of `next_seq`, stored (Release) below.
        d.start.store(start, Ordering::Relaxed);
        d.bytes.store(bytes, Ordering::Relaxed);
        d.remaining.store(0, Ordering::Relaxed);
        d.tag.store(tag(seq, ALLOCATED), Ordering::Relaxed);
        // Release: pairs with the Acquire load of a writer taking over.
        lane.ctrl
            .progress
            .next_seq
            .store(seq + 1, Ordering::Release);
        self.state.next_seq = seq + 1;
        self.state.live.push_back(Live {
            seq,
            start,
            end: start + span,
            mode: 0,
            adopted: false,
        });
        lane.track_write(start, bytes);
        // SAFETY: start + span <= lane.len (placement).
        let ptr = unsafe { lane.data_at(start) };
        Ok(Reserved { seq, ptr })
    }

    /// As `reserve`, waiting on the lane's space bell for releases.
    fn reserve_deadline(
        &mut self,
        bytes: u64,
        deadline: Option<Instant>,
    ) -> Result<Reserved, AllocError> {
        self.state.slow_now();
        match self.reserve(bytes, true) {
            Ok(r) => return Ok(r),
            Err(TryAllocError::Full) => {}
            Err(TryAllocError::TooLarge { bytes, max }) => {
                return Err(AllocError::TooLarge { bytes, max });
            }
            Err(_) => return Err(AllocError::Corrupted),
        }
        let strategy = self.strategy;
        let lane_ix = self.lane;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(AllocError::TimedOut);
            }
            let bell = &self.view.lane(lane_ix).ctrl.space_bell;
            let (view, state) = (&self.view, &mut self.state);
            // Releases ring the bell; a dead holder rings nothing, so the
            // slow pass (rate-limited) runs on slices as well.
            let found = bell.wait(
                || {
                    let lane = view.lane(lane_ix);
                    state.make_room(view, &lane, span(bytes), true)
                },
                &strategy,
                deadline,
                || true,
            )?;
            match found {
                Ok(_) => {
                    // Room is there now: take it (nothing else allocates in
                    // this lane meanwhile).
                    match self.reserve(bytes, false) {
                        Ok(r) => return Ok(r),
                        Err(TryAllocError::Full) => continue,
                        Err(_) => return Err(AllocError::Corrupted),
                    }
                }
                Err(()) => return Err(AllocError::Corrupted),
            }
        }
    }

    /// Publishes block `seq` (the newest, allocated by this writer) for
    /// `readers` and returns its handle.
    pub(crate) fn publish(
        &mut self,
        seq: u64,
        count: u64,
        elem_size: u32,
        align_log2: u8,
        readers: Readers<'_>,
    ) -> BlockHandle {
        let lane = self.view.lane(self.lane);
        let d = lane.desc(seq);
        let Some(b) = self.state.live.back_mut().filter(|b| b.seq == seq) else {
            // Not ours to publish (cannot happen: the block guard borrows
            // the writer). A handle that reads as Stale.
            return BlockHandle::new(self.lane as u16, seq, 0, 0, elem_size, align_log2);
        };
        let mode = match readers {
            Readers::Count(k) => {
                // Relaxed: published by the Release store of the tag.
                d.remaining.store(k, Ordering::Relaxed);
                MODE_COUNT
            }
            Readers::Peers(ids) => {
                for id in ids {
                    owe(d, *id);
                }
                MODE_NAMED
            }
        };
        b.mode = mode;
        let (start, bytes) = (b.start, count.saturating_mul(u64::from(elem_size)));
        // Relaxed: as in `reserve`.
        d.elem.store(elem_size, Ordering::Relaxed);
        d.shape.store(shape(align_log2, mode), Ordering::Relaxed);
        // The bytes written through the block guard.
        lane.track_write(start, bytes);
        // Release: publishes the block's bytes and the fields above; pairs
        // with the Acquire loads of the tag in the reader's acquire.
        #[cfg(not(polycephaly_broken_arena = "publish"))]
        d.tag.store(tag(seq, PUBLISHED), Ordering::Release);
        #[cfg(polycephaly_broken_arena = "publish")]
        d.tag.store(tag(seq, PUBLISHED), Ordering::Relaxed);
        BlockHandle::new(self.lane as u16, seq, start, count, elem_size, align_log2)
    }

    /// Forgets the reads still owed on the lane's live blocks published for
    /// named readers: whoever they were for will not read them (the
    /// channel session they answered ended), so each is reclaimed once no
    /// live peer holds it. Holds are untouched: a reader that reads one
    /// anyway gets it, held until it lets go, or `Stale` once it is
    /// reclaimed (the handshake of every read, `lane.rs`; clearing an owed
    /// bit is to the writer what the reader's own first read is).
    /// (Its one user, the channel, is not built under loom.)
    #[cfg(not(loom))]
    pub(crate) fn forgive_owed(&mut self) {
        let lane = self.view.lane(self.lane);
        for b in self.state.live.iter().filter(|b| b.mode == MODE_NAMED) {
            for word in &lane.desc(b.seq).holds {
                forgive(word);
            }
        }
    }

    /// Forgets block `seq`, allocated and never published (its guard was
    /// dropped): the lane is as before the allocation.
    pub(crate) fn rollback(&mut self, seq: u64) {
        if self.state.live.back().is_some_and(|b| b.seq == seq) {
            self.state.live.pop_back();
            self.state.next_seq = seq;
            // Release: as in `reserve`.
            self.view
                .lane(self.lane)
                .ctrl
                .progress
                .next_seq
                .store(seq, Ordering::Release);
        }
    }
}

impl Drop for ArenaWriter {
    /// Frees the lane; its live blocks stay, for the next writer to adopt.
    fn drop(&mut self) {
        // Release: pairs with the next writer's Acquire; our progress
        // stores are visible to it.
        let _ = self.view.lane(self.lane).ctrl.role.owner.compare_exchange(
            self.me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// Marks peer `id` as owing a read of the block of `d` (named mode). A
/// word left by an earlier holder of the slot (another generation) is
/// void: no live peer holds a block not yet published.
fn owe(d: &super::layout::Desc, id: PeerId) {
    let Some(word) = d.holds.get(id.slot()) else {
        return;
    };
    let bits = id.to_raw() & GEN_MASK;
    // Relaxed: the CAS checks it.
    let mut w = word.load(Ordering::Relaxed);
    // Bounded: only the slot's peer and this writer change the word.
    for _ in 0..64 {
        let new = if w & GEN_MASK == bits {
            w | OWED
        } else {
            bits | OWED
        };
        // Relaxed: published by the Release store of the tag.
        match word.compare_exchange_weak(w, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(x) => w = x,
        }
    }
}

/// Clears the owed bit of a hold word (see [`ArenaWriter::forgive_owed`]).
#[cfg(not(loom))]
fn forgive(word: &crate::sync::shim::AtomicU32) {
    // Relaxed: the CAS checks it.
    let mut w = word.load(Ordering::Relaxed);
    // Bounded: only the slot's peer and this writer change the word.
    for _ in 0..64 {
        if w & OWED == 0 {
            return;
        }
        // Relaxed: only this writer's own reclaim looks at the owed bit
        // (in program order); a reader's hold is ordered by F_A/F_R.
        match word.compare_exchange_weak(w, w & !OWED, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(x) => w = x,
        }
    }
}

/// `n` elements of `T` in bytes (`u64::MAX` on overflow: too large).
fn bytes_of<T: Pod>(n: usize) -> u64 {
    const {
        assert!(
            size_of::<T>() > 0,
            "zero-sized elements have no place in a lane"
        );
        assert!(
            align_of::<T>() <= MAX_ELEM_ALIGN,
            "elements aligned beyond 64 bytes"
        );
    };
    (n as u64).saturating_mul(size_of::<T>() as u64)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::{ArenaSpec, HeapArena, ReadError};
    use super::*;

    #[test]
    fn forgiven_reads_free_a_block_but_never_one_held() {
        let arena = HeapArena::new(ArenaSpec::new(1, 4096)).unwrap();
        let mut w = arena.writer().unwrap();
        let r = arena.reader().unwrap();
        // A block owed to a live reader that will never read it fills the
        // lane.
        let unread = w.try_alloc::<u8>(4096).unwrap().publish_to(r.peer_id());
        assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
        w.forgive_owed();
        let held = w.try_alloc::<u8>(4096).unwrap().publish_to(r.peer_id());
        assert_eq!(r.read_bytes(&unread).unwrap_err(), ReadError::Stale);
        // Forgiving a block another peer is reading keeps it until that
        // peer lets go.
        let other = arena.reader().unwrap();
        let guard = other.read_bytes(&held).unwrap();
        w.forgive_owed();
        assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
        drop(guard);
        assert!(w.try_alloc::<u8>(4096).is_ok());
    }
}
