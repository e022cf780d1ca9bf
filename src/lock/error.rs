//! The error enums of the lock module: one per operation.

/// Why attaching an [`Event`](super::Event) or a
/// [`ShmMutex`](super::ShmMutex) to shared memory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The region has no such section.
    #[cfg(not(loom))]
    #[error(transparent)]
    Section(#[from] crate::region::SectionError),
    /// The section is not of the kind asked for (`Event` or `Mutex`).
    #[cfg(not(loom))]
    #[error("the section is a {found:?} section, not {wanted}")]
    WrongKind {
        /// The section's kind.
        found: crate::region::SectionKind,
        /// What was expected.
        wanted: &'static str,
    },
    /// The memory is shorter than the layout needs.
    #[error("the section holds {len} bytes, {need} are needed")]
    TooShort {
        /// Its length.
        len: usize,
        /// What the layout needs.
        need: usize,
    },
    /// The memory is not aligned as the layout needs (64 bytes, or the
    /// value's alignment if larger).
    #[error("the memory is not {need}-byte aligned")]
    Misaligned {
        /// The alignment needed.
        need: usize,
    },
    /// The handle's [`OwnerCheck`](super::OwnerCheck) gave a tag of 0 or
    /// with bit 31 set.
    #[error("invalid owner tag {tag:#x}")]
    BadTag {
        /// The tag.
        tag: u32,
    },
    /// The event was first attached in the other mode; all handles of one
    /// event must use the same.
    #[error("the event is {found:?}, not {wanted:?}")]
    ModeMismatch {
        /// The mode recorded in the event.
        found: super::EventMode,
        /// The mode asked for.
        wanted: super::EventMode,
    },
    /// A shared word holds a value no correct peer writes.
    #[error("corrupted {what}: {value:#x}")]
    Corrupted {
        /// Which word.
        what: &'static str,
        /// Its value.
        value: u32,
    },
}

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
