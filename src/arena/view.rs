//! What arena handles share: the memory they point into and what keeps it
//! alive, the lanes' parts, liveness of peers, and the header's format and
//! checks.

use core::ptr::NonNull;

#[cfg(not(loom))]
use super::error::FormatError;
use super::heap::HeapPeer;
#[cfg(not(loom))]
use super::layout::{ARENA_HEADER_LEN, ARENA_VERSION, ArenaHeader, FORMATTING, READY};
use super::layout::{Desc, Geometry, LaneCtrl};
#[cfg(not(loom))]
use crate::AttachError;
use crate::region::PeerId;
#[cfg(not(loom))]
use crate::sync::shim::Ordering;

/// What keeps an arena's memory mapped while a handle uses it, and whom
/// the handle acts for.
#[derive(Debug)]
pub(crate) enum Backing {
    /// A heap arena, and the handle's peer id there.
    Heap(HeapPeer),
    /// An arena section of a region (the region's peer id).
    #[cfg(not(loom))]
    Region(crate::region::Region),
}

/// A handle's view of an arena: its checked geometry and where its parts
/// are.
///
/// # Invariants
/// In a normal build `base` is the 64-aligned first byte of at least
/// `geom.total` bytes laid out as `layout` says, alive while `backing`
/// lives. Under loom the parts are the heap arena's loom objects.
#[derive(Debug)]
pub(crate) struct ArenaView {
    #[cfg_attr(loom, allow(dead_code))]
    base: NonNull<u8>,
    pub(crate) geom: Geometry,
    backing: Backing,
}

// SAFETY: the view holds a pointer into memory kept alive by `backing`
// (a Region or an Arc, both Send + Sync); every shared access through it
// is atomic or follows the lane protocol.
unsafe impl Send for ArenaView {}
// SAFETY: as above; `&ArenaView` hands out shared references to atomics
// and raw pointers only.
unsafe impl Sync for ArenaView {}

/// One lane's parts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lane<'a> {
    pub(crate) ctrl: &'a LaneCtrl,
    descs: &'a [Desc],
    data: NonNull<u8>,
    /// Data bytes.
    pub(crate) len: u64,
    #[cfg(loom)]
    cells: &'a [loom::cell::UnsafeCell<()>],
}

impl<'a> Lane<'a> {
    /// A lane made of loom objects (see `HeapArena`).
    #[cfg(loom)]
    pub(crate) fn loom(
        ctrl: &'a LaneCtrl,
        descs: &'a [Desc],
        data: NonNull<u8>,
        len: u64,
        cells: &'a [loom::cell::UnsafeCell<()>],
    ) -> Self {
        Self {
            ctrl,
            descs,
            data,
            len,
            cells,
        }
    }

    /// The descriptor that holds block `seq` (`seq % blocks`: any value is
    /// in bounds).
    #[inline(always)]
    pub(crate) fn desc(&self, seq: u64) -> &'a Desc {
        // `descs.len()` is `blocks`, a power of two (Geometry invariant),
        // so the mask keeps the index in bounds.
        &self.descs[(seq as usize) & (self.descs.len() - 1)]
    }

    /// Every descriptor of the lane.
    pub(crate) fn descs(&self) -> &'a [Desc] {
        self.descs
    }

    /// A pointer to data byte `off`.
    ///
    /// # Safety
    /// `off <= self.len`.
    #[inline(always)]
    pub(crate) unsafe fn data_at(&self, off: u64) -> *mut u8 {
        debug_assert!(off <= self.len);
        // SAFETY: the lane has `len` data bytes and `off <= len`.
        unsafe { self.data.as_ptr().add(off as usize) }
    }

    /// Loom: records writes to bytes `start..start + bytes` (the writer's,
    /// between allocation and publication). No-op otherwise.
    #[inline(always)]
    pub(crate) fn track_write(&self, start: u64, bytes: u64) {
        #[cfg(loom)]
        for c in self.cells_of(start, bytes) {
            c.with_mut(|_| ());
        }
        #[cfg(not(loom))]
        let _ = (start, bytes);
    }

    /// Loom: records reads of bytes `start..start + bytes` (a reader's,
    /// while it holds the block). No-op otherwise.
    #[inline(always)]
    pub(crate) fn track_read(&self, start: u64, bytes: u64) {
        #[cfg(loom)]
        for c in self.cells_of(start, bytes) {
            c.with(|_| ());
        }
        #[cfg(not(loom))]
        let _ = (start, bytes);
    }

    /// The tracking cells (one per 8 data bytes) that `start..start+bytes`
    /// touches.
    #[cfg(loom)]
    fn cells_of(&self, start: u64, bytes: u64) -> &'a [loom::cell::UnsafeCell<()>] {
        if bytes == 0 {
            return &[];
        }
        let first = (start / 8) as usize;
        let last = ((start + bytes).div_ceil(8) as usize).min(self.cells.len());
        self.cells.get(first..last).unwrap_or(&[])
    }
}

impl ArenaView {
    /// A view of the arena of `geom` at `base`, kept alive by `backing`.
    ///
    /// # Safety
    /// `base` satisfies the type's invariants for `geom` and `backing`.
    pub(crate) unsafe fn new(base: NonNull<u8>, geom: Geometry, backing: Backing) -> Self {
        Self {
            base,
            geom,
            backing,
        }
    }

    /// Lane `lane` (`lane < geom.lanes`, checked by callers; a larger value
    /// gives lane 0 rather than memory outside the arena).
    pub(crate) fn lane(&self, lane: u32) -> Lane<'_> {
        let lane = if lane < self.geom.lanes { lane } else { 0 };
        #[cfg(not(loom))]
        {
            let g = &self.geom;
            let off = super::layout::ARENA_HEADER_LEN as u64 + u64::from(lane) * g.stride;
            // SAFETY: `lane < lanes`, so `off + stride <= total`, inside
            // the arena (type invariant); `off` is a multiple of 4096 and
            // the lane's control lines and descriptors sit at 64-aligned
            // offsets in it (layout.rs); they hold only atomics and bytes,
            // valid for any bit pattern, and live as long as `self`.
            unsafe {
                let lane_base = self.base.as_ptr().add(off as usize);
                let ctrl = &*lane_base.cast::<LaneCtrl>();
                let descs = core::slice::from_raw_parts(
                    lane_base.add(super::layout::LANE_CTRL_LEN).cast::<Desc>(),
                    g.blocks as usize,
                );
                let data = NonNull::new_unchecked(lane_base.add(g.data_off as usize));
                Lane {
                    ctrl,
                    descs,
                    data,
                    len: g.lane_len,
                }
            }
        }
        #[cfg(loom)]
        {
            let Backing::Heap(peer) = &self.backing;
            peer.arena().loom_lane(lane)
        }
    }

    /// Whether the peer with raw id `raw` is alive: for a region, its
    /// process runs (pid plus start time); for a heap arena, it holds its
    /// slot and was not declared dead.
    pub(crate) fn alive(&self, raw: u32) -> bool {
        let Some(id) = PeerId::from_raw(raw) else {
            return false;
        };
        match &self.backing {
            Backing::Heap(peer) => peer.arena().peer_alive(id),
            #[cfg(not(loom))]
            Backing::Region(region) => region.peer_alive(id),
        }
    }

    /// The id this handle acts for.
    pub(crate) fn me(&self) -> PeerId {
        match &self.backing {
            Backing::Heap(peer) => peer.id(),
            #[cfg(not(loom))]
            Backing::Region(region) => region.peer_id(),
        }
    }
}

/// The header at `base`.
///
/// # Safety
/// `base` is 64-aligned and valid for `ARENA_HEADER_LEN` bytes for `'a`.
#[cfg(not(loom))]
unsafe fn header<'a>(base: NonNull<u8>) -> &'a ArenaHeader {
    const _: () = assert!(size_of::<ArenaHeader>() <= ARENA_HEADER_LEN);
    // SAFETY: per the contract; the header holds only atomics, valid for
    // any bit pattern.
    unsafe { base.cast::<ArenaHeader>().as_ref() }
}

/// Writes the header of an arena of `geom` at `base` (`len` bytes), or
/// checks that it holds that arena already. The lanes need no writing:
/// zeroed lanes are empty.
///
/// # Safety
/// `base` is 64-aligned and valid for `len` bytes, zeroed when first
/// formatted, and shared only through atomics.
#[cfg(not(loom))]
pub(crate) unsafe fn format_raw(
    base: NonNull<u8>,
    len: usize,
    geom: &Geometry,
) -> Result<(), FormatError> {
    if (len as u64) < geom.total {
        return Err(FormatError::TooShort {
            len,
            need: geom.total,
        });
    }
    // SAFETY: len >= total >= ARENA_HEADER_LEN; the caller's contract.
    let h = unsafe { header(base) };
    // Acquire (both): pairs with the Release store of READY by whoever
    // formatted it first, so the fields compared below are theirs.
    match h
        .state
        .compare_exchange(0, FORMATTING, Ordering::Acquire, Ordering::Acquire)
    {
        Ok(_) => {
            // Relaxed: published by the Release store of READY.
            h.version.store(ARENA_VERSION, Ordering::Relaxed);
            h.lanes.store(geom.lanes, Ordering::Relaxed);
            h.blocks.store(geom.blocks, Ordering::Relaxed);
            h.lane_len.store(geom.lane_len, Ordering::Relaxed);
            // Release: pairs with the Acquire load in `read_geometry`.
            h.state.store(READY, Ordering::Release);
            Ok(())
        }
        Err(READY) => match copy_geometry(h) {
            Ok(g) if g == *geom => Ok(()),
            _ => Err(FormatError::Mismatch),
        },
        Err(FORMATTING) => Err(FormatError::Busy),
        Err(_) => Err(FormatError::Mismatch),
    }
}

/// The geometry of the formatted arena at `base` (`len` bytes), checked.
///
/// # Safety
/// `base` is 64-aligned and valid for `len >= ARENA_HEADER_LEN` bytes,
/// shared only through atomics.
#[cfg(not(loom))]
pub(crate) unsafe fn read_geometry(base: NonNull<u8>, len: usize) -> Result<Geometry, AttachError> {
    if len < ARENA_HEADER_LEN {
        return Err(AttachError::WrongLength {
            len,
            what: "an arena (its 4 KiB header at least)",
        });
    }
    // SAFETY: checked length, the caller's contract.
    let h = unsafe { header(base) };
    // Acquire: pairs with the Release store of READY in `format_raw`.
    match h.state.load(Ordering::Acquire) {
        READY => {}
        0 | FORMATTING => {
            return Err(AttachError::NotFormatted {
                what: "formatted arena",
            });
        }
        _ => {
            return Err(AttachError::NotFormatted {
                what: "arena of lanes",
            });
        }
    }
    let g = copy_geometry(h)?;
    if (len as u64) < g.total {
        return Err(AttachError::WrongLength {
            len,
            what: "the arena its header describes",
        });
    }
    Ok(g)
}

/// The header's fields (read after an Acquire of READY), checked.
#[cfg(not(loom))]
fn copy_geometry(h: &ArenaHeader) -> Result<Geometry, AttachError> {
    // Relaxed: ordered by the caller's Acquire of READY; written once.
    if h.version.load(Ordering::Relaxed) != ARENA_VERSION {
        return Err(AttachError::Corrupted { what: "version" });
    }
    Geometry::new(
        h.lanes.load(Ordering::Relaxed),
        h.blocks.load(Ordering::Relaxed),
        h.lane_len.load(Ordering::Relaxed),
    )
    .map_err(|_| AttachError::Corrupted { what: "geometry" })
}
