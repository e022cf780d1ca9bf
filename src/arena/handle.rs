//! [`BlockHandle`]: what travels in ring frames to name a published block,
//! and its checks against the arena's geometry; [`Readers`]: whom a block
//! is published for.

use bytemuck::{Pod, Zeroable};

use super::error::ReadError;
use super::layout::{BLOCK_ALIGN, Geometry, MAX_ELEM_ALIGN, MAX_SEQ};
use crate::region::PeerId;

/// The `format` byte of handles made by this version.
const HANDLE_FORMAT: u8 = 1;

/// A published block: lane, place, length, element size and alignment,
/// generation. 32 bytes of plain data, made to travel in ring frames
/// (`send_value(&handle)`).
///
/// A handle is only a claim: [`ArenaReader::read`](super::ArenaReader::read)
/// checks every field against the arena (lane, bounds, alignment for `T`,
/// element size, generation, and that the block at that place is the one
/// named), so a forged, stale or corrupted handle gives a [`ReadError`],
/// never a slice outside its block.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct BlockHandle {
    seq: u64,
    offset: u64,
    count: u64,
    elem_size: u32,
    lane: u16,
    align_log2: u8,
    format: u8,
}

const _: () = assert!(size_of::<BlockHandle>() == 32);

impl BlockHandle {
    /// A handle made up from its parts, e.g. by a test or a tool. It is
    /// checked like any other when read.
    pub fn from_parts(
        lane: u16,
        generation: u64,
        offset: u64,
        len: u64,
        elem_size: u32,
        elem_align: u64,
    ) -> Self {
        Self {
            seq: generation,
            offset,
            count: len,
            elem_size,
            lane,
            // An alignment that is not a power of two gets a log that
            // never matches a type's.
            align_log2: if elem_align.is_power_of_two() {
                elem_align.trailing_zeros() as u8
            } else {
                u8::MAX
            },
            format: HANDLE_FORMAT,
        }
    }

    /// The lane of the block.
    pub fn lane(&self) -> u16 {
        self.lane
    }

    /// The block's generation: its sequence number in its lane, never
    /// reused.
    pub fn generation(&self) -> u64 {
        self.seq
    }

    /// The offset of the block's first byte in its lane's data.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The number of elements.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the block has no elements.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The element size in bytes.
    pub fn elem_size(&self) -> u32 {
        self.elem_size
    }

    /// The element alignment in bytes (`u64::MAX` for a nonsense handle).
    pub fn elem_align(&self) -> u64 {
        1u64.checked_shl(u32::from(self.align_log2))
            .unwrap_or(u64::MAX)
    }

    /// The block's length in bytes, `None` if it overflows.
    pub fn byte_len(&self) -> Option<u64> {
        self.count.checked_mul(u64::from(self.elem_size))
    }

    pub(crate) fn new(
        lane: u16,
        seq: u64,
        offset: u64,
        count: u64,
        elem_size: u32,
        align_log2: u8,
    ) -> Self {
        Self {
            seq,
            offset,
            count,
            elem_size,
            lane,
            align_log2,
            format: HANDLE_FORMAT,
        }
    }

    pub(crate) fn align_log2(&self) -> u8 {
        self.align_log2
    }

    /// Checks the handle against the arena's geometry for elements of
    /// `size` bytes aligned to `align` (`size == 0`: any element type, read
    /// as bytes). Returns the byte length. Uses only the handle's own
    /// fields (a local copy): nothing here is read from shared memory.
    pub(crate) fn check(&self, g: &Geometry, size: usize, align: usize) -> Result<u64, ReadError> {
        if u32::from(self.lane) >= g.lanes {
            return Err(ReadError::NoSuchLane {
                lane: self.lane,
                lanes: g.lanes,
            });
        }
        let wrong_type = ReadError::WrongType {
            size: self.elem_size,
            align: self.elem_align(),
        };
        if self.format != HANDLE_FORMAT
            || self.elem_size == 0
            || self.elem_align() > MAX_ELEM_ALIGN as u64
        {
            return Err(wrong_type);
        }
        if size != 0 && (self.elem_size as usize != size || self.elem_align() != align as u64) {
            return Err(wrong_type);
        }
        let bytes = self.byte_len();
        match bytes {
            Some(b) if b <= g.lane_len && self.offset <= g.lane_len - b => {}
            _ => {
                return Err(ReadError::OutOfBounds {
                    offset: self.offset,
                    bytes: bytes.unwrap_or(u64::MAX),
                    lane_len: g.lane_len,
                });
            }
        }
        // Every block starts on a 64-byte boundary (so is aligned for its
        // elements: MAX_ELEM_ALIGN is 64).
        if self.offset % BLOCK_ALIGN != 0 {
            return Err(ReadError::Misaligned {
                offset: self.offset,
                align: BLOCK_ALIGN,
            });
        }
        if self.seq >= MAX_SEQ {
            return Err(ReadError::Stale);
        }
        Ok(bytes.unwrap_or(0))
    }
}

/// Whom a block is published for: it is reclaimable once they have read it
/// and released their guards, or died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers<'a> {
    /// `k` reads by anybody: each successful
    /// [`read`](super::ArenaReader::read) uses one up. A reader that dies
    /// holding its guard counts as released; one that dies *before* it read
    /// cannot be told from one that is late, so the block waits for it: name
    /// the readers when they are known.
    Count(u32),
    /// These peers, one read each (their first); others may read too while
    /// the block lives. A named peer that dies (or detaches) before or
    /// after reading counts as done. Peers whose slot is beyond what the
    /// arena tracks are ignored.
    Peers(&'a [PeerId]),
}
