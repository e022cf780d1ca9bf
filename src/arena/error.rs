//! The arena's error enums, one per operation.

use crate::sync::WaitError;

/// Why an [`ArenaSpec`](super::ArenaSpec) cannot be laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// No lanes, or more than the maximum.
    #[error("an arena holds 1..={max} lanes, not {lanes}")]
    Lanes {
        /// The lanes asked for.
        lanes: u32,
        /// [`MAX_LANES`](super::layout::MAX_LANES).
        max: u16,
    },
    /// Blocks per lane is not a power of two, or too many.
    #[error("blocks per lane must be a power of two up to {max}, not {blocks}")]
    Blocks {
        /// The number asked for.
        blocks: u32,
        /// [`MAX_BLOCKS`](super::layout::MAX_BLOCKS).
        max: u32,
    },
    /// A lane is shorter than 64 bytes or longer than the maximum.
    #[error("a lane holds 64..={max} bytes, not {len}")]
    LaneLen {
        /// The length asked for.
        len: u64,
        /// [`MAX_LANE_LEN`](super::layout::MAX_LANE_LEN).
        max: u64,
    },
    /// The whole arena would be larger than a region may be.
    #[error("the arena would be larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
}

/// Why [`ArenaSpec::format`](super::ArenaSpec::format) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The region has no such section (or the handle is not this
    /// process's).
    #[cfg(not(loom))]
    #[error(transparent)]
    Section(#[from] crate::region::SectionError),
    /// The section is not of kind [`SectionKind::Arena`](crate::region::SectionKind).
    #[error("the section is not an arena section")]
    WrongKind,
    /// The spec itself is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The section is shorter than the spec needs.
    #[error("the section holds {len} bytes, the spec needs {need}")]
    TooShort {
        /// The section's length.
        len: usize,
        /// [`ArenaSpec::section_len`](super::ArenaSpec::section_len).
        need: u64,
    },
    /// The section was formatted already, with another layout.
    #[error("the section holds an arena of another layout")]
    Mismatch,
    /// Another process is formatting the section now (or died doing so).
    #[error("another process is formatting the section")]
    Busy,
}

/// Why [`ArenaWriter::try_alloc`](super::ArenaWriter::try_alloc) (or its
/// uninitialised form) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryAllocError {
    /// No room now: live blocks fill the lane (or every descriptor).
    #[error("the lane is full")]
    Full,
    /// The block would be larger than the whole lane; waiting never helps.
    #[error("a block of {bytes} bytes does not fit a lane of {max}")]
    TooLarge {
        /// The bytes asked for (`u64::MAX` if the count overflowed).
        bytes: u64,
        /// The lane's length.
        max: u64,
    },
    /// The writer found its lane's shared state changed under it (a
    /// hostile or buggy peer); the writer is poisoned.
    #[error("the lane is corrupted")]
    Corrupted,
}

/// Why a blocking allocation ([`ArenaWriter::alloc`](super::ArenaWriter::alloc)
/// and its forms) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// The block would be larger than the whole lane.
    #[error("a block of {bytes} bytes does not fit a lane of {max}")]
    TooLarge {
        /// The bytes asked for (`u64::MAX` if the count overflowed).
        bytes: u64,
        /// The lane's length.
        max: u64,
    },
    /// The deadline passed while live readers held the room.
    #[error("timed out waiting for room in the lane")]
    TimedOut,
    /// See [`TryAllocError::Corrupted`].
    #[error("the lane is corrupted")]
    Corrupted,
}

impl From<WaitError> for AllocError {
    fn from(e: WaitError) -> Self {
        match e {
            // Blocks are held by peers judged one by one; the lane's wait
            // never asks about a single peer.
            WaitError::TimedOut | WaitError::PeerDead => Self::TimedOut,
        }
    }
}

/// Why [`ArenaReader::read`](super::ArenaReader::read) refused a handle.
///
/// None of these hands out a slice; each is final for that handle except
/// [`TooManyHolds`](Self::TooManyHolds) (release a guard and retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The handle names a lane the arena does not have.
    #[error("lane {lane} does not exist (the arena has {lanes})")]
    NoSuchLane {
        /// The handle's lane.
        lane: u16,
        /// The arena's lanes.
        lanes: u32,
    },
    /// The handle's element size or alignment is not `T`'s.
    #[error("the block holds {size}-byte elements aligned to {align}, not the type asked for")]
    WrongType {
        /// The handle's element size.
        size: u32,
        /// The handle's element alignment.
        align: u64,
    },
    /// The handle's range is not inside its lane (or its length overflows).
    #[error("block {offset}+{bytes} is outside the lane's {lane_len} bytes")]
    OutOfBounds {
        /// The handle's offset.
        offset: u64,
        /// Its length in bytes (`u64::MAX` if it overflowed).
        bytes: u64,
        /// The lane's length.
        lane_len: u64,
    },
    /// The handle's offset is not aligned for its elements.
    #[error("block offset {offset} is not aligned to {align}")]
    Misaligned {
        /// The handle's offset.
        offset: u64,
        /// The alignment needed.
        align: u64,
    },
    /// The block is gone: reclaimed (its generation was reused), never
    /// published, or not published yet.
    #[error("stale handle: the block is no longer (or not yet) published")]
    Stale,
    /// The block at the handle's place does not match the handle: a forged
    /// handle, or lane bookkeeping overwritten by a hostile peer.
    #[error("the handle does not match the block it names")]
    Mismatch,
    /// This peer already holds 127 guards on the block.
    #[error("too many read guards held on one block")]
    TooManyHolds,
}

/// Why [`SnapshotReader::try_read`](super::SnapshotReader::try_read)
/// gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySnapshotError {
    /// The writer was writing during every attempt: no consistent copy.
    /// Retry, or use a blocking form.
    #[error("the cell was being written during every attempt")]
    Busy,
}

/// Why a blocking snapshot read gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The deadline passed while the writer kept writing.
    #[error("timed out waiting for a consistent copy")]
    TimedOut,
    /// The writer died in the middle of a write: no consistent value until
    /// a new writer attaches and writes.
    #[error("the writer died while writing")]
    PeerDead,
}
