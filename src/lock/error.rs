//! The error enums of the lock module: one per operation (attaching gives
//! the crate-wide [`AttachError`](crate::AttachError)).

/// Why [`ShmMutex::lock`](super::ShmMutex::lock) (and its timeout forms)
/// failed. The lock is not held after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The deadline passed while a live owner held the lock.
    #[error("timed out waiting for the lock")]
    TimedOut,
    /// A shared word holds a value no correct peer writes: the lock word
    /// names no possible locker, or the consistency state is out of range.
    #[error("corrupted {what}: {value:#x}")]
    Corrupted {
        /// Which word (`lock word` or `state`).
        what: &'static str,
        /// Its value.
        value: u32,
    },
}

/// Why [`ShmMutex::try_lock`](super::ShmMutex::try_lock) failed. The lock
/// is not held after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryLockError {
    /// A live owner holds the lock.
    #[error("the lock is held")]
    WouldBlock,
    /// As [`LockError::Corrupted`].
    #[error("corrupted {what}: {value:#x}")]
    Corrupted {
        /// Which word.
        what: &'static str,
        /// Its value.
        value: u32,
    },
}

impl From<TryLockError> for LockError {
    fn from(e: TryLockError) -> Self {
        match e {
            TryLockError::WouldBlock => LockError::TimedOut,
            TryLockError::Corrupted { what, value } => LockError::Corrupted { what, value },
        }
    }
}

/// Why [`MutexGuard::unlock`](super::MutexGuard::unlock) did not release
/// the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnlockError {
    /// The lock word no longer names this handle: another locker judged it
    /// dead and took the lock over (or the word was overwritten). Nothing
    /// was changed; the data may have been written by the new owner.
    #[error("the lock is no longer ours (word {word:#x})")]
    NotOwner {
        /// The lock word found.
        word: u32,
    },
}

/// Why [`Event::wait`](super::Event::wait) (and its forms) returned without
/// the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitEventError {
    /// The deadline passed first.
    #[error("timed out waiting for the event")]
    TimedOut,
    /// The peer the wait was tied to (see
    /// [`Event::wait_while`](super::Event::wait_while)) died, and the event
    /// was still not signalled after it.
    #[error("the signalling peer died before signalling")]
    PeerDead,
    /// The state word holds a value no correct peer writes.
    #[error(transparent)]
    Corrupted(#[from] EventCorrupted),
}

/// The event's state word holds a value no correct peer writes (from
/// [`Event::signal`](super::Event::signal), [`reset`](super::Event::reset),
/// [`is_signalled`](super::Event::is_signalled)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupted event state: {value:#x}")]
pub struct EventCorrupted {
    /// The value found.
    pub value: u32,
}
