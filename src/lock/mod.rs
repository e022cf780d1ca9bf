//! A cross-process event and a mutex that survives its owner's death.
//!
//! The talk's `RemoteSemaphore` gave mutual exclusion between images through
//! OS event messages at 117 us a round trip. The rings replace it for
//! commands; these are the primitives themselves, for state that processes
//! share their own way.
//!
//! - [`Event`]: `signal` / `wait(timeout)` across processes, auto-reset or
//!   manual-reset, on the shared futex. `signal` makes no system call while
//!   nobody sleeps.
//! - [`ShmMutex<T>`]: a lock around a `T: bytemuck::Pod` in a region section.
//!   Uncontended lock and unlock are one compare-and-swap each, no system
//!   call. The lock word names the owner; when the owner dies holding the
//!   lock, the next locker takes it over and is told
//!   ([`LockStatus::OwnerDied`], like `EOWNERDEAD`); it decides whether the
//!   data is consistent ([`MutexGuard::mark_consistent`]) or leaves the mutex
//!   poisoned, so later lockers are told too ([`LockStatus::Poisoned`]). A
//!   stopped (`SIGSTOP`) owner is alive: it is waited for, never robbed.
//!
//! All-zero section memory is the initial state of both (unlocked,
//! unsignalled, consistent), so a fresh region section needs no init step.
//! Every shared word is checked when read: a value no correct peer writes
//! gives a `Corrupted` error, never a hang or a panic.
//!
//! # Who owns a lock: [`OwnerCheck`]
//!
//! A lock word holds its owner's *tag*, a non-zero 31-bit number. Each
//! handle has an [`OwnerCheck`] that gives its own tag and judges the tags
//! it finds: whether a tag can name a locker at all, and whether that locker
//! still lives. Handles attached to a [`Region`](crate::region::Region) use
//! the region's peer table (tag = the handle's [`PeerId`](crate::region::PeerId),
//! alive = the peer still holds its slot and its process, pid plus start
//! time, runs). [`ProcessOwner`] judges by pid alone, for memory shared
//! without a region (forked processes, the bench). Tests and loom models
//! bring their own.
//!
//! ```
//! use polycephaly::lock::{LockStatus, ShmMutex};
//! use polycephaly::region::{Region, SectionId};
//!
//! let region = Region::builder().with(ShmMutex::<u64>::spec()).build()?;
//! let counter = ShmMutex::<u64>::attach(&region, SectionId(0))?;
//! {
//!     let mut n = counter.lock()?;
//!     assert_eq!(n.status(), LockStatus::Consistent);
//!     *n += 1;
//! } // unlocked here
//! assert_eq!(*counter.try_lock()?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod event;
mod mutex;
#[cfg(not(loom))]
mod observe;

use core::fmt::Debug;

pub use error::{EventCorrupted, LockError, TryLockError, UnlockError, WaitEventError};
pub use event::{Event, EventMode};
pub use mutex::{LockStatus, MutexGuard, OwnerRecord, ShmMutex};
#[cfg(not(loom))]
pub use observe::{EventState, MutexState, observe_event, observe_mutex};

/// The bit of a mutex word that says waiters may sleep; a tag never has it.
pub const CONTENDED: u32 = 1 << 31;

/// Tags are the 31 bits below [`CONTENDED`].
pub const TAG_MASK: u32 = !CONTENDED;

/// Who this handle is when it locks, and what is known about the owner a
/// lock word names.
///
/// Implementations must give every handle that may lock at the same time a
/// different tag, and must never call a live locker dead: a locker judged
/// dead loses its lock to the next one (it is told so when it unlocks).
/// Calling a dead locker alive only delays the takeover.
pub trait OwnerCheck: Send + Sync + Debug {
    /// This handle's tag: non-zero, below 2^31 (attaching refuses others).
    fn my_tag(&self) -> u32;

    /// Whether `tag` (non-zero, below 2^31) can name a locker at all. A
    /// lock word whose tag fails this is corrupted. Called on the slow path
    /// of every contended lock, so it should be cheap.
    fn is_valid(&self, tag: u32) -> bool;

    /// Whether the locker named by `tag` (valid) still lives. Called only
    /// after a slice of waiting passed without the lock coming free, so it
    /// may read `/proc`.
    fn is_alive(&self, tag: u32) -> bool;
}

/// Liveness by pid: the tag is this process's pid, a locker lives while a
/// process with its pid exists and is not a zombie.
///
/// For memory shared between forked processes without a region (the bench
/// uses it). All threads of a process share its tag. A pid reused by a new
/// process after the owner died keeps the lock from being taken over until
/// that process ends too; handles attached to a region do not have this
/// weakness (they also compare start times).
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOwner;

#[cfg(not(loom))]
impl OwnerCheck for ProcessOwner {
    fn my_tag(&self) -> u32 {
        rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs()
    }

    fn is_valid(&self, tag: u32) -> bool {
        // Linux pids are positive and at most 2^22 (PID_MAX_LIMIT).
        (1..=1 << 22).contains(&tag)
    }

    fn is_alive(&self, tag: u32) -> bool {
        crate::sync::ProcessId::of(tag).is_some()
    }
}

/// Liveness through a region's peer table: the tag is the handle's
/// [`PeerId`](crate::region::PeerId) without its top bit (bit 31, the top
/// bit of the slot generation, which the lock word uses for
/// [`CONTENDED`]).
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub(crate) struct RegionOwner {
    pub(crate) region: crate::region::Region,
}

#[cfg(not(loom))]
impl OwnerCheck for RegionOwner {
    fn my_tag(&self) -> u32 {
        self.region.peer_id().to_raw() & TAG_MASK
    }

    fn is_valid(&self, tag: u32) -> bool {
        // The low byte is the slot: from_raw checks it is in range. Bit 31
        // does not change that answer.
        crate::region::PeerId::from_raw(tag).is_some()
    }

    fn is_alive(&self, tag: u32) -> bool {
        // The tag lost bit 31 of the id: the owner is one of two ids, and
        // at most one of them holds the slot now.
        [tag, tag | CONTENDED]
            .into_iter()
            .filter_map(crate::region::PeerId::from_raw)
            .any(|id| self.region.peer_alive(id))
    }
}

/// The section of an event or a mutex: its kind and length.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy)]
struct LockSpec {
    kind: crate::region::SectionKind,
    len: usize,
}

#[cfg(not(loom))]
impl crate::region::SectionSpec for LockSpec {
    fn kind(&self) -> crate::region::SectionKind {
        self.kind
    }
    fn section_len(&self) -> usize {
        self.len
    }
}

/// This process as recorded in a mutex's owner record: pid and start time
/// (zeros under loom, which has no processes).
fn current_process() -> (u32, u64) {
    #[cfg(not(loom))]
    {
        let me = crate::sync::ProcessId::current();
        (me.pid, me.start_time)
    }
    #[cfg(loom)]
    {
        (0, 0)
    }
}
