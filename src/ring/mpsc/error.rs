//! The MPSC-only error enums (the others are shared with SPSC:
//! [`ClaimError`], [`RecvError`](crate::ring::RecvError),
//! [`AttachError`](crate::ring::AttachError)).

use crate::ring::ClaimError;

/// Why a commit failed. The claimed bytes are lost either way; the caller
/// knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The consumer judged this producer dead (its claim outlived the
    /// claim timeout and the liveness check said so) and turned the frame
    /// into padding before the commit landed. Nothing was delivered.
    #[error("the consumer abandoned this claim before it was committed")]
    Abandoned,
    /// The ring is poisoned (this side or another found it inconsistent).
    #[error("the ring is corrupted")]
    Corrupted,
}

/// Why a copying send failed: a claim error, or the commit's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The payload is longer than the ring's maximum.
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
    /// The consumer abandoned the claim before the commit (see
    /// [`CommitError::Abandoned`]).
    #[error("the consumer abandoned this claim before it was committed")]
    Abandoned,
    /// The ring's shared state is inconsistent; the ring stays poisoned.
    #[error("the ring is corrupted")]
    Corrupted,
}

impl From<ClaimError> for SendError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::TooLarge { len, max } => Self::TooLarge { len, max },
            ClaimError::Full => Self::Full,
            ClaimError::TimedOut => Self::TimedOut,
            ClaimError::PeerDead => Self::PeerDead,
            ClaimError::Corrupted => Self::Corrupted,
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
