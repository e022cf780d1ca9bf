//! The shared layout of an arena section: the header, the lanes, their
//! block descriptors and hold words; the geometry derived from a spec.
//!
//! ```text
//! section offset
//!      0  +--------------------------------------------------------+
//!         | ArenaHeader: state (0 / FORMATTING / READY), version,  |  written once by
//!         | lanes, blocks per lane, lane_len                       |  `format`, then READY
//!   4096  +== lane 0 ==============================================+
//!         | +0    role line: owner (raw PeerId, 0 free), epoch     |  writers (CAS)
//!         | +64   progress line: head_seq, next_seq              |  the lane's writer
//!         | +128  space bell: Doorbell (the writer sleeps here)    |  writer / readers
//!         | +192  descriptors[blocks], 256 bytes each:             |
//!         |         line 0: tag = seq << 2 | state, start, bytes,  |  the lane's writer
//!         |                 elem size, shape (align, mode),        |
//!         |                 remaining (count mode)                 |  readers (CAS)
//!         |         lines 1-3: holds[48]: one u32 per peer slot    |  each reader its own
//!         | +data_off (page aligned): lane_len data bytes          |  the writer, then
//!         |                                                        |  readers (read only)
//!         +== lane 1 at 4096 + stride ... ========================+
//! ```
//!
//! `data_off = round_up(192 + 256 * blocks, 4096)`, `stride = data_off +
//! round_up(lane_len, 4096)` (see `Geometry`). All-zero lanes are valid
//! and empty: no owner, every descriptor free (tag 0).
//!
//! # Descriptor tag (one `u64`)
//! `seq << 2 | state`, where `seq` is the block's sequence number in its
//! lane (its *generation*: never reused, `< MAX_SEQ`; descriptor
//! `seq % blocks` holds it) and `state` one of FREE (0), ALLOCATED (1: the
//! writer fills the block), PUBLISHED (2: readable), RETIRED (3: being
//! reclaimed; no new reader gets in). A reader accepts a block only while
//! its tag equals `seq << 2 | PUBLISHED` for the handle's `seq`.
//!
//! # Hold word (one `u32` per region peer slot, per descriptor)
//! ```text
//! bits 0..7   count: read guards this peer holds on the block (0..=127)
//! bit  7      owed: this peer was named at publish and has not read yet
//! bits 8..32  generation of the peer (its PeerId's high 24 bits)
//! ```
//! The slot index is the word's position, so a word names one peer
//! exactly: `PeerId::from_raw(gen_bits | (slot + 1))`. A word whose
//! generation is not the slot's current holder's belongs to a peer that left
//! the region (dead or detached): its counts and owed bit are void.
//!
//! # Invariants (checked on every read, never trusted)
//! - `tag`: written only by the lane's writer. Between ALLOCATED and the
//!   PUBLISHED store (Release) the writer writes `start`, `bytes`, `elem`,
//!   `shape`, `remaining`, and the block's data; after it, none of them
//!   until the block is RETIRED and no live peer holds it.
//! - `start + bytes <= lane_len`, `start % 64 == 0`, the block's *span*
//!   (`bytes` rounded up to 64, at least 64) does not overlap another live
//!   block's. Live blocks lie in lane order from `head_seq` to
//!   `next_seq - 1`, cyclically, wrapping at most once.
//! - `remaining` (count mode): acquisitions still expected; decremented by
//!   each successful acquisition (saturating at 0), set only by publish.
//! - a hold word is changed only by compare-and-swap: by its slot's peer
//!   (count up at acquire, down at release; owed cleared at acquire), by
//!   the writer (owed set at publish, or cleared when the writer knows
//!   the read will not come; a dead peer's word cleared once the block is
//!   reclaimed).
//! - `head_seq <= next_seq <= head_seq + blocks`: written only by the lane's
//!   writer (Release), read by the next writer when it takes the lane over.
//!
//! A hostile peer can write any of these: readers then get errors or wrong
//! values, a writer errors or reclaims late (see the module docs); no bound
//! read from here is used before it is checked.

use crate::sync::Doorbell;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// Bytes before the first lane: the header, padded to a page.
pub const ARENA_HEADER_LEN: usize = 4096;
/// Bytes of a lane's control lines (role, progress, space bell).
pub const LANE_CTRL_LEN: usize = 192;
/// Bytes of one block descriptor.
pub const DESC_LEN: usize = 256;
/// Every block starts on a cache line and spans a whole number of lines.
pub const BLOCK_ALIGN: u64 = 64;
/// The largest element alignment a block supports: a block's start is
/// 64-byte aligned, so every element of a type aligned up to this is.
pub const MAX_ELEM_ALIGN: usize = 64;
/// The most lanes an arena has.
pub const MAX_LANES: u16 = 1024;
/// The most block descriptors a lane has.
pub const MAX_BLOCKS: u32 = 1 << 16;
/// The largest lane: 256 GiB.
pub const MAX_LANE_LEN: u64 = 1 << 38;
/// The largest arena section: the region's limit.
pub const MAX_TOTAL: u64 = 1 << 40;
/// Descriptors per lane unless the spec says otherwise.
#[cfg(not(loom))]
pub const DEFAULT_BLOCKS: u32 = 256;
/// Descriptors per lane unless the spec says otherwise (small under loom).
#[cfg(loom)]
pub const DEFAULT_BLOCKS: u32 = 2;

/// How many peer slots a descriptor tracks holds for: the region's peer
/// table ([`MAX_PEERS`](crate::region::layout::MAX_PEERS)).
#[cfg(not(loom))]
pub const HOLD_SLOTS: usize = crate::region::layout::MAX_PEERS as usize;
/// How many peer slots a descriptor tracks (small under loom).
#[cfg(loom)]
pub const HOLD_SLOTS: usize = 4;

/// The arena layout version in the header.
#[cfg(not(loom))]
pub(crate) const ARENA_VERSION: u32 = 1;
/// Header `state` once formatted ("ARNA").
#[cfg(not(loom))]
pub(crate) const READY: u32 = u32::from_le_bytes(*b"ARNA");
/// Header `state` while a formatter writes the header.
#[cfg(not(loom))]
pub(crate) const FORMATTING: u32 = 1;

/// Sequence numbers stay below this: tags (`seq << 2`) never overflow and
/// 2^61 blocks is centuries of allocations.
pub(crate) const MAX_SEQ: u64 = 1 << 61;

/// Descriptor states (the low two bits of a tag).
pub(crate) const FREE: u64 = 0;
pub(crate) const ALLOCATED: u64 = 1;
pub(crate) const PUBLISHED: u64 = 2;
pub(crate) const RETIRED: u64 = 3;

/// A descriptor tag.
#[inline(always)]
pub(crate) const fn tag(seq: u64, state: u64) -> u64 {
    seq << 2 | state
}

/// The sequence number of a tag.
#[inline(always)]
pub(crate) const fn tag_seq(tag: u64) -> u64 {
    tag >> 2
}

/// The state of a tag.
#[inline(always)]
pub(crate) const fn tag_state(tag: u64) -> u64 {
    tag & 3
}

/// Hold word fields.
pub(crate) const COUNT_MASK: u32 = 0x7F;
pub(crate) const OWED: u32 = 0x80;
pub(crate) const GEN_MASK: u32 = !0xFF;

/// Publication modes (`shape >> 8`).
pub(crate) const MODE_COUNT: u32 = 1;
pub(crate) const MODE_NAMED: u32 = 2;

/// The `shape` word: element alignment (log2) and mode.
#[inline(always)]
pub(crate) const fn shape(align_log2: u8, mode: u32) -> u32 {
    align_log2 as u32 | mode << 8
}

/// The bytes a block of `bytes` occupies in its lane: a whole number of
/// cache lines, at least one (so every block has a place and 0-byte blocks
/// need no special case). Saturates: a length read from shared memory may
/// be anything, and no lane is near `u64::MAX` bytes.
#[inline(always)]
pub(crate) const fn span(bytes: u64) -> u64 {
    if bytes <= BLOCK_ALIGN {
        BLOCK_ALIGN
    } else {
        bytes.saturating_add(BLOCK_ALIGN - 1) & !(BLOCK_ALIGN - 1)
    }
}

/// `n` rounded up to a multiple of `align` (a power of two), `None` on
/// overflow.
#[inline]
pub(crate) const fn align_up(n: u64, align: u64) -> Option<u64> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// One 64-byte cache line holding `T`.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The arena header (section offset 0). Written by `format` before it
/// release-stores `state = READY`; read by attachers after an Acquire load
/// of `state`, copied and checked once.
#[cfg(not(loom))]
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct ArenaHeader {
    /// 0 (never formatted), FORMATTING, or READY.
    pub(crate) state: AtomicU32,
    /// [`ARENA_VERSION`].
    pub(crate) version: AtomicU32,
    /// Lanes in the section.
    pub(crate) lanes: AtomicU32,
    /// Descriptors per lane (a power of two).
    pub(crate) blocks: AtomicU32,
    /// Data bytes per lane (a multiple of 64).
    pub(crate) lane_len: AtomicU64,
}

/// A lane's writer role (role line).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LaneRole {
    /// Raw `PeerId` of the lane's writer, 0 when free. Changed by CAS only.
    pub(crate) owner: AtomicU32,
    /// How many writers attached so far (a count, for diagnostics).
    pub(crate) epoch: AtomicU32,
}

/// What a writer taking the lane over needs (progress line). Written only
/// by the lane's writer (Release).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The oldest block not reclaimed yet.
    pub(crate) head_seq: AtomicU64,
    /// The sequence number the next allocation gets.
    pub(crate) next_seq: AtomicU64,
}

/// The control lines at the start of a lane.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LaneCtrl {
    pub(crate) role: Line<LaneRole>,
    pub(crate) progress: Line<Progress>,
    /// Rung by every release; the writer sleeps here when the lane is full.
    pub(crate) space_bell: Line<Doorbell>,
}

/// One block descriptor (see the module docs for its protocol).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Desc {
    /// `seq << 2 | state`.
    pub(crate) tag: AtomicU64,
    /// Offset of the block's first byte in the lane's data.
    pub(crate) start: AtomicU64,
    /// Payload bytes.
    pub(crate) bytes: AtomicU64,
    /// Element size in bytes.
    pub(crate) elem: AtomicU32,
    /// `align_log2 | mode << 8`.
    pub(crate) shape: AtomicU32,
    /// Count mode: acquisitions still expected.
    pub(crate) remaining: AtomicU32,
    reserved: [u8; 28],
    /// One hold word per peer slot (own cache lines).
    pub(crate) holds: [AtomicU32; HOLD_SLOTS],
}

impl Default for Desc {
    fn default() -> Self {
        Self {
            tag: AtomicU64::new(0),
            start: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            elem: AtomicU32::new(0),
            shape: AtomicU32::new(0),
            remaining: AtomicU32::new(0),
            reserved: [0; 28],
            holds: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<ArenaHeader>() <= ARENA_HEADER_LEN);
    assert!(offset_of!(ArenaHeader, lane_len) == 16);
    assert!(size_of::<LaneCtrl>() == LANE_CTRL_LEN);
    assert!(offset_of!(LaneCtrl, progress) == 64);
    assert!(offset_of!(LaneCtrl, space_bell) == 128);
    assert!(size_of::<Desc>() == DESC_LEN && align_of::<Desc>() == 64);
    assert!(offset_of!(Desc, shape) == 28);
    assert!(offset_of!(Desc, remaining) == 32);
    assert!(offset_of!(Desc, holds) == 64);
    assert!(LANE_CTRL_LEN % 64 == 0 && ARENA_HEADER_LEN % 4096 == 0);
    // A hold word's generation bits are a PeerId's (bits 8..32).
    assert!(HOLD_SLOTS <= 48 && COUNT_MASK | OWED | GEN_MASK == u32::MAX);
    assert!(MAX_SEQ << 2 >> 2 == MAX_SEQ);
    assert!(MAX_TOTAL == crate::region::layout::MAX_TOTAL_LEN);
};

/// Where everything of an arena is, derived from its lanes, blocks per
/// lane and lane length (the header's fields, or a spec's).
///
/// # Invariants
/// `1 <= lanes <= MAX_LANES`; `blocks` a power of two in `1..=MAX_BLOCKS`;
/// `64 <= lane_len <= MAX_LANE_LEN`, a multiple of 64; the offsets follow
/// the module docs and `total` fits a `usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) lanes: u32,
    pub(crate) blocks: u32,
    pub(crate) lane_len: u64,
    /// Offset of the data bytes in a lane.
    pub(crate) data_off: u64,
    /// Bytes from one lane to the next.
    pub(crate) stride: u64,
    /// The section length the arena needs.
    pub(crate) total: u64,
}

impl Geometry {
    /// Checks the numbers and lays the arena out.
    pub(crate) fn new(lanes: u32, blocks: u32, lane_len: u64) -> Result<Self, super::SpecError> {
        use super::SpecError;
        if lanes == 0 || lanes > u32::from(MAX_LANES) {
            return Err(SpecError::Lanes {
                lanes,
                max: MAX_LANES,
            });
        }
        if !blocks.is_power_of_two() || blocks > MAX_BLOCKS {
            return Err(SpecError::Blocks {
                blocks,
                max: MAX_BLOCKS,
            });
        }
        let lane_len = match align_up(lane_len, BLOCK_ALIGN) {
            Some(l) if lane_len >= BLOCK_ALIGN && l <= MAX_LANE_LEN => l,
            _ => {
                return Err(SpecError::LaneLen {
                    len: lane_len,
                    max: MAX_LANE_LEN,
                });
            }
        };
        let too_large = SpecError::TooLarge { max: MAX_TOTAL };
        // Cannot overflow: blocks <= 2^16, lane_len <= 2^38, lanes <= 2^10.
        let ctrl = LANE_CTRL_LEN as u64 + u64::from(blocks) * DESC_LEN as u64;
        let data_off = align_up(ctrl, 4096).ok_or(too_large)?;
        let stride = data_off + align_up(lane_len, 4096).ok_or(too_large)?;
        let total = ARENA_HEADER_LEN as u64 + u64::from(lanes) * stride;
        if total > MAX_TOTAL || usize::try_from(total).is_err() {
            return Err(too_large);
        }
        Ok(Self {
            lanes,
            blocks,
            lane_len,
            data_off,
            stride,
            total,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spans_and_tags() {
        assert_eq!(span(0), 64);
        assert_eq!(span(64), 64);
        assert_eq!(span(65), 128);
        assert_eq!(span(u64::MAX), !63, "saturates");
        assert_eq!(tag_seq(tag(7, PUBLISHED)), 7);
        assert_eq!(tag_state(tag(7, RETIRED)), RETIRED);
        assert_eq!(align_up(u64::MAX, 64), None);
    }

    #[test]
    fn geometry_lays_lanes_out_on_pages() {
        let g = Geometry::new(2, 256, 1000).unwrap();
        assert_eq!(g.lane_len, 1024);
        assert_eq!(g.data_off, 4096 * 17);
        assert_eq!(g.stride, g.data_off + 4096);
        assert_eq!(g.total, 4096 + 2 * g.stride);
        assert!(Geometry::new(0, 256, 1000).is_err());
        assert!(Geometry::new(1, 3, 1000).is_err());
        assert!(Geometry::new(1, 4, 0).is_err());
        assert!(Geometry::new(1, 4, MAX_LANE_LEN + 1).is_err());
        assert!(Geometry::new(1, 4, 1 << 30).is_ok(), "1 GiB lanes");
    }
}
