//! The ring's error enums, one per operation.

use crate::sync::WaitError;

/// A ring capacity that cannot be used ([`section_len`](super::section_len),
/// [`heap_pair`](super::heap_pair)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The capacity is not a power of two.
    #[error("ring capacity {0} is not a power of two")]
    NotPowerOfTwo(usize),
    /// The capacity is below [`MIN_CAPACITY`](super::MIN_CAPACITY).
    #[error("ring capacity {capacity} is below the minimum {min}")]
    TooSmall {
        /// The capacity asked for.
        capacity: usize,
        /// The smallest capacity allowed.
        min: usize,
    },
    /// The capacity is above [`MAX_CAPACITY`](super::MAX_CAPACITY).
    #[error("ring capacity {capacity} is above the maximum {max}")]
    TooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// The largest capacity allowed.
        max: usize,
    },
}

/// Why attaching a producer or consumer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The region has no such section.
    #[cfg(not(loom))]
    #[error("no usable ring section: {0}")]
    Section(#[from] crate::region::SectionError),
    /// The section is not of the ring kind being attached (`SpscRing` or
    /// `MpscRing`).
    #[error("section is not a ring of the kind asked for")]
    WrongKind,
    /// The section is too short for the control block and the minimum
    /// capacity.
    #[error("section of {len} bytes is too short for a ring")]
    TooShort {
        /// The section's length.
        len: usize,
    },
    /// Another live peer holds the role (its raw `PeerId`).
    #[error("the role is held by live peer {holder}")]
    RoleTaken {
        /// The raw peer id of the holder.
        holder: u32,
    },
    /// The ring's shared state is inconsistent, or a peer poisoned it.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a claim (or a send) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The payload is longer than the ring's maximum
    /// ([`max_payload`](super::SpscProducer::max_payload)); waiting would never help.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The ring's maximum payload.
        max: usize,
    },
    /// No room now (only from the `try_` forms).
    #[error("the ring is full")]
    Full,
    /// The deadline passed while the consumer was alive but gave no room.
    #[error("timed out waiting for room")]
    TimedOut,
    /// The consumer died or detached while we waited for room.
    #[error("the consumer is dead")]
    PeerDead,
    /// The ring's shared state is inconsistent; the ring stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a read (or a receive) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// Nothing to read now (only from the `try_` forms).
    #[error("the ring is empty")]
    Empty,
    /// The deadline passed while the producer was alive but sent nothing.
    #[error("timed out waiting for a frame")]
    TimedOut,
    /// The producer died or detached and every frame it committed has been
    /// read.
    #[error("the producer is dead")]
    PeerDead,
    /// A typed receive found a frame of the wrong length (the frame is
    /// consumed).
    #[error("frame of {got} bytes where {expected} were expected")]
    WrongSize {
        /// `size_of::<T>()`.
        expected: usize,
        /// The frame's length.
        got: usize,
    },
    /// The ring's shared state is inconsistent; the ring stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

impl From<WaitError> for ClaimError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::TimedOut => Self::TimedOut,
            WaitError::PeerDead => Self::PeerDead,
        }
    }
}

impl From<WaitError> for RecvError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::TimedOut => Self::TimedOut,
            WaitError::PeerDead => Self::PeerDead,
        }
    }
}
