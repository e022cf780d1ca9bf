//! [`HeapArena`]: an arena on the heap for one process (threads, loom
//! models, property tests, the fuzzer), with the same code as an arena
//! section, and its own small peer table.

use core::ptr::NonNull;
use std::sync::Arc;

use super::error::SpecError;
use super::layout::{Geometry, HOLD_SLOTS};
use super::view::{ArenaView, Backing};
use super::{ArenaReader, ArenaSpec, ArenaWriter};
use crate::AttachError;
use crate::region::PeerId;
use crate::sync::shim::{AtomicU64, Ordering};

/// Bit 32 of a heap peer word: the holder was declared dead.
const DEAD: u64 = 1 << 32;

/// An arena on the heap: lanes, descriptors and data in one zeroed
/// allocation laid out as an arena section (under loom, loom objects), and
/// a table of peer ids handed out to its handles (at most
/// [`HOLD_SLOTS`](super::layout::HOLD_SLOTS) at a time, reused with a new
/// generation as a region's peer table does).
///
/// ```
/// use polycephaly::arena::{ArenaSpec, HeapArena};
///
/// let arena = HeapArena::new(ArenaSpec::new(1, 1 << 16))?;
/// let mut writer = arena.writer()?;
/// let reader = arena.reader()?;
/// let mut block = writer.try_alloc::<u32>(4)?;
/// block.copy_from_slice(&[1, 2, 3, 4]);
/// let handle = block.publish_for(1);
/// assert_eq!(&*reader.read::<u32>(&handle)?, &[1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HeapArena {
    geom: Geometry,
    #[cfg(not(loom))]
    mem: Zeroed,
    #[cfg(loom)]
    mem: LoomMem,
    peers: HeapPeers,
}

impl HeapArena {
    /// A new, empty arena laid out as `spec` says.
    ///
    /// # Errors
    /// [`SpecError`] for an invalid spec.
    pub fn new(spec: ArenaSpec) -> Result<Arc<Self>, SpecError> {
        let geom = spec.geometry()?;
        #[cfg(not(loom))]
        let mem = {
            let mem = Zeroed::new(geom.total as usize).ok_or(SpecError::TooLarge {
                max: super::layout::MAX_TOTAL,
            })?;
            // SAFETY: a fresh zeroed, 4096-aligned allocation of `total`
            // bytes, not shared yet.
            unsafe { super::view::format_raw(mem.ptr, mem.len, &geom) }.map_err(|_| {
                SpecError::TooLarge {
                    max: super::layout::MAX_TOTAL,
                }
            })?;
            // SAFETY: the allocation holds `geom.total` bytes.
            unsafe { super::huge::advise(mem.ptr, &geom, false) };
            mem
        };
        #[cfg(loom)]
        let mem = LoomMem::new(&geom);
        Ok(Arc::new(Self {
            geom,
            mem,
            peers: HeapPeers::new(),
        }))
    }

    /// A writer of the first free lane (or of one whose writer is dead).
    ///
    /// # Errors
    /// As [`ArenaWriter::attach`].
    pub fn writer(self: &Arc<Self>) -> Result<ArenaWriter, AttachError> {
        ArenaWriter::attach_view(self.view()?, None)
    }

    /// A writer of lane `lane`, taking it over if its writer is dead.
    ///
    /// # Errors
    /// As [`ArenaWriter::attach_lane`].
    pub fn writer_for_lane(self: &Arc<Self>, lane: u16) -> Result<ArenaWriter, AttachError> {
        ArenaWriter::attach_view(self.view()?, Some(lane))
    }

    /// A reader, with a peer id of its own.
    ///
    /// # Errors
    /// [`AttachError::NoFreeEntry`] when every peer slot is held.
    pub fn reader(self: &Arc<Self>) -> Result<ArenaReader, AttachError> {
        ArenaReader::from_view(self.view()?)
    }

    /// Test hook: declares the holder of `id` dead, as if its process had
    /// been killed. Its holds stop counting, its lane may be taken over.
    #[cfg(any(feature = "testing", loom))]
    pub fn mark_dead(&self, id: PeerId) {
        self.peers.mark_dead(id);
    }

    /// Whether `id` holds its slot and was not declared dead.
    pub(crate) fn peer_alive(&self, id: PeerId) -> bool {
        self.peers.alive(id)
    }

    /// The arena's geometry (for the fuzzer's checks).
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn geometry(&self) -> Geometry {
        self.geom
    }

    /// The whole arena memory, for the fuzzer to overwrite.
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn raw_bytes(&self) -> (*mut u8, usize) {
        (self.mem.ptr.as_ptr(), self.mem.len)
    }

    /// A view for a new handle, with a fresh peer id.
    fn view(self: &Arc<Self>) -> Result<ArenaView, AttachError> {
        let id = self
            .peers
            .claim()
            .ok_or(AttachError::NoFreeEntry { max: HOLD_SLOTS })?;
        let peer = HeapPeer {
            arena: Arc::clone(self),
            id,
        };
        #[cfg(not(loom))]
        let base = self.mem.ptr;
        #[cfg(loom)]
        let base = NonNull::dangling();
        // SAFETY: (normal build) the allocation holds `geom.total` bytes
        // laid out and formatted for `geom`, 4096-aligned, kept alive by the
        // Arc inside `peer`; under loom the parts are the loom objects.
        Ok(unsafe { ArenaView::new(base, self.geom, Backing::Heap(peer)) })
    }

    #[cfg(loom)]
    pub(crate) fn loom_lane(&self, lane: u32) -> super::view::Lane<'_> {
        self.mem.lane(lane, &self.geom)
    }
}

/// A heap arena and the peer id a handle holds in it (released on drop).
#[derive(Debug)]
pub(crate) struct HeapPeer {
    arena: Arc<HeapArena>,
    id: PeerId,
}

impl HeapPeer {
    pub(crate) fn arena(&self) -> &HeapArena {
        &self.arena
    }

    pub(crate) fn id(&self) -> PeerId {
        self.id
    }
}

impl Drop for HeapPeer {
    fn drop(&mut self) {
        self.arena.peers.release(self.id);
    }
}

/// A heap structure's peer table: ids handed out to its handles, slots
/// reused with a new generation as in a region's peer table.
///
/// Per slot: the holder's raw id (low byte non-zero), or `gen << 8` when
/// free; bit 32 set once the holder was declared dead.
#[derive(Debug)]
pub(crate) struct HeapPeers {
    slots: [AtomicU64; HOLD_SLOTS],
}

impl HeapPeers {
    pub(crate) fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Claims a free (or dead) slot: a new id whose generation follows the
    /// slot's last.
    pub(crate) fn claim(&self) -> Option<PeerId> {
        for (slot, word) in self.slots.iter().enumerate() {
            // Relaxed: a guess for the CAS.
            let w = word.load(Ordering::Relaxed);
            let low = w as u32;
            if low & 0xFF != 0 && w & DEAD == 0 {
                continue;
            }
            let generation = ((low >> 8).wrapping_add(1) & 0x00FF_FFFF).max(1);
            let id = PeerId::from_raw(generation << 8 | (slot as u32 + 1))?;
            // AcqRel: Acquire sees the previous holder's release; Release
            // publishes the claim to `alive`.
            if word
                .compare_exchange(
                    w,
                    u64::from(id.to_raw()),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Some(id);
            }
        }
        None
    }

    /// Frees `id`'s slot (unless it was declared dead: then it stays
    /// claimable as dead).
    pub(crate) fn release(&self, id: PeerId) {
        if let Some(word) = self.slots.get(id.slot()) {
            // Release: pairs with the next claimer's AcqRel CAS.
            let free = u64::from(id.to_raw() & !0xFF);
            let _ = word.compare_exchange(
                u64::from(id.to_raw()),
                free,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }

    /// Declares `id` dead.
    #[cfg(any(feature = "testing", loom))]
    pub(crate) fn mark_dead(&self, id: PeerId) {
        let Some(word) = self.slots.get(id.slot()) else {
            return;
        };
        // Relaxed: the CAS checks the value.
        let mut w = word.load(Ordering::Relaxed);
        while w as u32 == id.to_raw() && w & DEAD == 0 {
            // Release: pairs with the Acquire load in `alive`. A process's
            // stores are complete once its death can be observed; a handle
            // declared dead models that by publishing its stores with the
            // declaration.
            match word.compare_exchange(w, w | DEAD, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(x) => w = x,
            }
        }
    }

    /// Whether `id` holds its slot and was not declared dead.
    pub(crate) fn alive(&self, id: PeerId) -> bool {
        // Acquire: pairs with the Release in `mark_dead` and the AcqRel
        // claim.
        self.slots
            .get(id.slot())
            .is_some_and(|w| w.load(Ordering::Acquire) == u64::from(id.to_raw()))
    }
}

/// A zeroed, 4096-aligned allocation, freed on drop.
///
/// # Invariants
/// `ptr` came from `alloc_zeroed` with `Layout(len, 4096)`, `len > 0`.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct Zeroed {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

#[cfg(not(loom))]
impl Zeroed {
    pub(crate) fn new(len: usize) -> Option<Self> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Self {
            ptr,
            len: len.max(1),
        })
    }
}

#[cfg(not(loom))]
impl Drop for Zeroed {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout (it was valid
        // then), freed once.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                std::alloc::Layout::from_size_align_unchecked(self.len, 4096),
            );
        }
    }
}

// SAFETY: HeapArena owns its memory; shared access goes through atomics or
// the lane protocol.
#[cfg(not(loom))]
unsafe impl Send for Zeroed {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for Zeroed {}

/// The loom build's arena: loom atomics cannot be laid over raw memory, so
/// the control lines and descriptors are loom objects, the data bytes a
/// plain allocation tracked by one loom cell per 8 bytes.
#[cfg(loom)]
#[derive(Debug)]
struct LoomMem {
    ctrls: Box<[super::layout::LaneCtrl]>,
    descs: Box<[super::layout::Desc]>,
    data: Box<[CacheLine]>,
    data_ptr: NonNull<u8>,
    cells: Box<[loom::cell::UnsafeCell<()>]>,
}

/// 64 data bytes, 64-aligned, so that loom lanes align blocks as sections do.
#[cfg(loom)]
#[repr(C, align(64))]
#[derive(Debug)]
struct CacheLine([u64; 8]);

#[cfg(loom)]
// SAFETY: the data bytes are reached through raw pointers by the lane
// protocol; everything else is loom's own Send + Sync types.
unsafe impl Send for LoomMem {}
#[cfg(loom)]
// SAFETY: as above.
unsafe impl Sync for LoomMem {}

#[cfg(loom)]
impl LoomMem {
    fn new(g: &Geometry) -> Self {
        let lanes = g.lanes as usize;
        let words = lanes * (g.lane_len as usize / 8);
        let mut data: Box<[CacheLine]> =
            (0..words.div_ceil(8)).map(|_| CacheLine([0; 8])).collect();
        let data_ptr = NonNull::new(data.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
        Self {
            ctrls: (0..lanes).map(|_| Default::default()).collect(),
            descs: (0..lanes * g.blocks as usize)
                .map(|_| Default::default())
                .collect(),
            data,
            data_ptr,
            cells: (0..words)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }
    }

    fn lane(&self, lane: u32, g: &Geometry) -> super::view::Lane<'_> {
        let (l, b, w) = (lane as usize, g.blocks as usize, g.lane_len as usize / 8);
        let _ = &self.data;
        super::view::Lane::loom(
            &self.ctrls[l],
            &self.descs[l * b..(l + 1) * b],
            // SAFETY: lane `l` of `lanes` owns words l*w..(l+1)*w.
            unsafe { NonNull::new_unchecked(self.data_ptr.as_ptr().add(l * w * 8)) },
            g.lane_len,
            &self.cells[l * w..(l + 1) * w],
        )
    }
}
