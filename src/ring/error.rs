//! The ring's error enums: one per operation, the `try_` forms apart from
//! the blocking ones. Both ring kinds give the same errors.

use crate::sync::WaitError;

/// A capacity a ring cannot have (`Spec::new`, `HeapRing::new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// The capacity is not a power of two.
    #[error("ring capacity {0} is not a power of two")]
    NotPowerOfTwo(usize),
    /// The capacity is below the kind's minimum.
    #[error("ring capacity {capacity} is below the minimum {min}")]
    TooSmall {
        /// The capacity asked for.
        capacity: usize,
        /// The smallest capacity allowed.
        min: usize,
    },
    /// The capacity is above the kind's maximum.
    #[error("ring capacity {capacity} is above the maximum {max}")]
    TooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// The largest capacity allowed.
        max: usize,
    },
}

/// Why a `try_claim` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryClaimError {
    /// The payload is longer than the ring's maximum (`max_payload()`);
    /// waiting would never help.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The ring's maximum payload.
        max: usize,
    },
    /// No room now.
    #[error("the ring is full")]
    Full,
    /// The ring's shared state is inconsistent; it stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a blocking claim (`claim`, `claim_timeout`, `claim_deadline`)
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// The payload is longer than the ring's maximum; waiting would never
    /// help.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The ring's maximum payload.
        max: usize,
    },
    /// The deadline passed while the consumer was alive but gave no room.
    #[error("timed out waiting for room")]
    TimedOut,
    /// The consumer died or detached while the ring stayed full.
    #[error("the consumer is dead")]
    PeerDead,
    /// The ring's shared state is inconsistent; it stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a commit failed (only an MPSC commit can: an SPSC one always
/// publishes). The claimed bytes are lost either way, and the caller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The consumer judged this producer dead (its claim outlived the claim
    /// timeout and the liveness check said so) and skipped the frame before
    /// the commit landed. Nothing was delivered.
    #[error("the consumer abandoned this claim before it was committed")]
    Abandoned,
    /// The ring's shared state is inconsistent; it stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a `try_send` (a claim, a copy and a commit) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The payload is longer than the ring's maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The ring's maximum payload.
        max: usize,
    },
    /// No room now.
    #[error("the ring is full")]
    Full,
    /// The claim was abandoned before the commit (MPSC only, see
    /// [`CommitError::Abandoned`]).
    #[error("the consumer abandoned this claim before it was committed")]
    Abandoned,
    /// The ring's shared state is inconsistent; it stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a blocking send (`send`, `send_timeout`, `send_deadline`) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload is longer than the ring's maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The ring's maximum payload.
        max: usize,
    },
    /// The deadline passed while the consumer was alive but gave no room.
    #[error("timed out waiting for room")]
    TimedOut,
    /// The consumer died or detached while the ring stayed full.
    #[error("the consumer is dead")]
    PeerDead,
    /// The claim was abandoned before the commit (MPSC only, see
    /// [`CommitError::Abandoned`]).
    #[error("the consumer abandoned this claim before it was committed")]
    Abandoned,
    /// The ring's shared state is inconsistent; it stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a `try_read` or `try_recv` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing to read now (for MPSC also: the frame at the head is still
    /// being written).
    #[error("the ring is empty")]
    Empty,
    /// A typed receive found a frame of the wrong length (the frame is
    /// consumed).
    #[error("frame of {got} bytes where {expected} were expected")]
    WrongSize {
        /// `size_of::<T>()`.
        expected: usize,
        /// The frame's length.
        got: usize,
    },
    /// The ring's shared state is inconsistent; it stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a blocking read or receive (`read`, `read_timeout`,
/// `read_deadline`, and the `recv` forms) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The deadline passed while the producer was alive but sent nothing.
    #[error("timed out waiting for a frame")]
    TimedOut,
    /// The producer died or detached and every frame it published has
    /// been read (SPSC: an MPSC ring's producers come and go, so its
    /// consumer never reports this; use a deadline).
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
    /// The ring's shared state is inconsistent; it stays poisoned.
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

impl From<TryClaimError> for TrySendError {
    fn from(e: TryClaimError) -> Self {
        match e {
            TryClaimError::TooLarge { len, max } => Self::TooLarge { len, max },
            TryClaimError::Full => Self::Full,
            TryClaimError::Corrupted => Self::Corrupted,
        }
    }
}

impl From<ClaimError> for SendError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::TooLarge { len, max } => Self::TooLarge { len, max },
            ClaimError::TimedOut => Self::TimedOut,
            ClaimError::PeerDead => Self::PeerDead,
            ClaimError::Corrupted => Self::Corrupted,
        }
    }
}

impl From<CommitError> for TrySendError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Abandoned => Self::Abandoned,
            CommitError::Corrupted => Self::Corrupted,
        }
    }
}

impl From<CommitError> for SendError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Abandoned => Self::Abandoned,
            CommitError::Corrupted => Self::Corrupted,
        }
    }
}
