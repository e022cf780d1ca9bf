//! [`ShmMutex`]: a lock around a `Pod` value in shared memory, with owner
//! death detection and takeover.
//!
//! # Layout
//!
//! ```text
//! offset  size  field        written by                 meaning
//! 0       4     word         lockers (CAS)              0: unlocked; else owner tag | CONTENDED?
//! 4       4     state        the holder                 0: consistent, 1: poisoned
//! 8       4     owner_tag    the holder, after locking  the tag of the last locker (a hint)
//! 12      4     owner_pid    the holder, after locking  its pid (0 under loom)
//! 16      8     owner_start  the holder, after locking  its start time (clock ticks since boot)
//! 24      40    reserved
//! D       T     the value    the holder                 D = max(64, align_of::<T>())
//! ```
//!
//! All zero is unlocked, consistent, no owner recorded.
//!
//! # Protocol
//!
//! ```text
//! lock:   CAS word 0 -> me (Acquire)                         fast path
//!         else spin; then: set CONTENDED on the word, FUTEX_WAIT(word, owner|CONTENDED, slice)
//!         after every round (a lost CAS, a spin, a futex return of any kind):
//!           the deadline passed? -> one last CAS 0 -> me, else TimedOut
//!           a slice of time since the last look: owner alive? dead -> CAS owner -> me (takeover)
//!         a waiter that slept acquires with CONTENDED set (other sleepers may remain)
//! unlock: CAS word me -> 0 (Release); if the old word had CONTENDED: FUTEX_WAKE(1)
//!         a word that no longer names us: UnlockError::NotOwner, nothing changed
//! ```
//!
//! The owner, the waiters bit and the free state live in one word, so no
//! fence is needed: a waiter sleeps only while the word still holds the
//! value with CONTENDED that it saw (the kernel compares atomically with
//! going to sleep), and the unlocker's CAS reads the bit in the same
//! atomic step that frees the lock. The woken waiter takes the lock with
//! CONTENDED set, or sets it again before sleeping, so the sleepers that
//! were not woken are never forgotten. A waiter that was woken but gives
//! up (deadline) passes the wake on.
//!
//! The deadline and the owner's liveness go by the clock, not by what the
//! futex returned: a peer that keeps changing the word (so that every CAS
//! loses, or every wait returns at once) cannot hold a locker past its
//! deadline, nor hide a dead owner. The clock is read after every sleep
//! and every 256 rounds that made no system call; the uncontended path and
//! the spin phase are unchanged.
//!
//! Under loom no futex timeout is ever taken, so a waiter judges the
//! owner's liveness on every pass instead of after a timed-out slice
//! (`tests/loom_lock.rs`).
//!
//! A takeover has no Release from the dead owner to pair with: what the
//! dead process wrote is visible because it is gone (its stores completed
//! before the kernel reported it dead, and the liveness check is a system
//! call); the value may still be half-updated, which is what
//! [`LockStatus::OwnerDied`] tells.

mod acquire;
mod guard;
mod layout;

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use super::{CONTENDED, OwnerCheck, TAG_MASK};
use crate::AttachError;
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;
pub use guard::MutexGuard;
use layout::{Control, HeapBlock, Keep};

/// `state`: the data is consistent.
/// How a [`MutexGuard`] came to hold the lock: what is known about the
/// value's consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    /// The last holder unlocked normally: the value is consistent.
    Consistent,
    /// The previous owner died holding the lock and this guard took it over
    /// (like `EOWNERDEAD`). The value may be half-written. Unless
    /// [`MutexGuard::mark_consistent`] is called, the mutex stays poisoned.
    OwnerDied,
    /// An earlier owner died (or panicked) holding the lock and nobody has
    /// marked the value consistent since. Any holder may still repair it
    /// and call [`MutexGuard::mark_consistent`].
    Poisoned,
}

/// The owner recorded in a locked mutex (a hint: read outside the lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRecord {
    /// The tag in the lock word.
    pub tag: u32,
    /// Its pid, 0 if the owner has not recorded itself yet.
    pub pid: u32,
    /// Its start time (clock ticks since boot), 0 if not recorded yet.
    pub start_time: u64,
}

/// A lock around a `T` in shared memory, usable across processes; see the
/// [module docs](super) and [`ShmMutex::attach`].
///
/// A handle is `Sync`: threads of one process may share it. They then
/// share its owner tag, so one thread locking twice deadlocks (until its
/// deadline), as with `std::sync::Mutex`.
pub struct ShmMutex<T> {
    ctrl: NonNull<Control>,
    data: NonNull<T>,
    me: u32,
    owners: Arc<dyn OwnerCheck>,
    strategy: WaitStrategy,
    process: (u32, u64),
    keep: Keep,
    _t: PhantomData<T>,
}

// SAFETY: the handle holds pointers into memory that `keep` keeps alive for
// as long as the handle; the control block is atomics only, and the value
// is reached only through a guard, i.e. by the holder of the lock (T: Send
// because the holder may be another thread).
unsafe impl<T: Pod + Send> Send for ShmMutex<T> {}
// SAFETY: as above; `&ShmMutex` only locks and reads atomics.
unsafe impl<T: Pod + Send> Sync for ShmMutex<T> {}

impl<T> fmt::Debug for ShmMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmMutex")
            .field("tag", &self.me)
            .field("owners", &self.owners)
            .field("strategy", &self.strategy)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> ShmMutex<T> {
    /// Where the value starts in the section: 64, or `align_of::<T>()` if
    /// larger.
    pub const DATA_OFFSET: usize = if align_of::<T>() > 64 {
        align_of::<T>()
    } else {
        64
    };

    /// The length a mutex around a `T` needs (of a section, or of memory
    /// given to [`from_raw`](Self::from_raw)).
    pub const fn section_len() -> usize {
        Self::DATA_OFFSET + size_of::<T>()
    }

    /// The section a mutex around a `T` lives in, for the region builder
    /// ([`RegionBuilder::with`](crate::region::RegionBuilder::with)).
    #[cfg(not(loom))]
    pub fn spec() -> impl crate::region::SectionSpec {
        super::LockSpec {
            kind: crate::region::SectionKind::Mutex,
            len: Self::section_len(),
        }
    }

    /// Attaches to the mutex in section `id` of `region` (kind
    /// [`SectionKind::Mutex`](crate::region::SectionKind::Mutex), length at
    /// least [`section_len`](Self::section_len)). The handle locks as the
    /// region's peer and judges owners through the region's peer table; it
    /// keeps the region mapped.
    ///
    /// # Errors
    /// [`AttachError::Section`], [`AttachError::WrongKind`],
    /// [`AttachError::WrongLength`] (too short), [`AttachError::Misaligned`] (a value
    /// aligned to more than 64 bytes in a section that is not).
    #[cfg(not(loom))]
    pub fn attach(
        region: &crate::region::Region,
        id: crate::region::SectionId,
    ) -> Result<Self, AttachError> {
        let section = region.section(id)?;
        if section.kind != crate::region::SectionKind::Mutex {
            return Err(AttachError::WrongKind {
                found: section.kind,
                wanted: crate::region::SectionKind::Mutex,
            });
        }
        let owners = Arc::new(super::RegionOwner {
            region: region.clone(),
        });
        // SAFETY: the region keeps the section mapped for `len` bytes while
        // `Keep::Region` (a clone) lives, i.e. as long as the handle; its
        // bytes are shared only through this protocol.
        unsafe {
            Self::from_parts(
                section.ptr,
                section.len,
                owners,
                Keep::Region(region.clone()),
            )
        }
    }

    /// Attaches to a mutex at `ptr` (for memory shared without a region,
    /// such as an anonymous mapping made before a fork), judging owners
    /// with `owners`.
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `len` bytes for as long as
    ///   the handle lives, in memory that every process using the mutex
    ///   maps shared.
    /// - Those bytes are accessed only through `ShmMutex` handles (any bit
    ///   pattern is safe for them, all zero is the unlocked state).
    ///
    /// # Errors
    /// [`AttachError::WrongLength`] (too short), [`AttachError::Misaligned`],
    /// [`AttachError::BadTag`].
    #[cfg(not(loom))]
    pub unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        owners: Arc<dyn OwnerCheck>,
    ) -> Result<Self, AttachError> {
        // SAFETY: forwarded from the caller.
        unsafe { Self::from_parts(ptr, len, owners, Keep::Raw) }
    }

    /// A mutex on the heap, holding `T::zeroed()`: for threads of one
    /// process, tests and loom models. More handles to it, each with its
    /// own identity: [`handle`](Self::handle).
    ///
    /// # Errors
    /// [`AttachError::BadTag`].
    pub fn new_heap(owners: Arc<dyn OwnerCheck>) -> Result<Self, AttachError> {
        let block = Arc::new(HeapBlock::new(size_of::<T>(), align_of::<T>())?);
        let ctrl = NonNull::from(&*block.ctrl);
        let data = block.data.cast::<T>();
        Self::new_handle(ctrl, data, owners, Keep::Heap(block))
    }

    /// Another handle to the same mutex, locking as `owners` says.
    ///
    /// # Errors
    /// [`AttachError::BadTag`].
    pub fn handle(&self, owners: Arc<dyn OwnerCheck>) -> Result<Self, AttachError> {
        Self::new_handle(self.ctrl, self.data, owners, self.keep.clone())
            .map(|m| m.with_strategy(self.strategy))
    }

    /// # Safety
    /// As [`from_raw`](Self::from_raw), with `keep` keeping the memory
    /// alive (or the caller, for `Keep::Raw`).
    #[cfg(not(loom))]
    unsafe fn from_parts(
        ptr: NonNull<u8>,
        len: usize,
        owners: Arc<dyn OwnerCheck>,
        keep: Keep,
    ) -> Result<Self, AttachError> {
        if len < Self::section_len() {
            return Err(AttachError::WrongLength {
                len,
                what: "a mutex around this value (its control line and the value)",
            });
        }
        let align = Self::DATA_OFFSET;
        if ptr.as_ptr() as usize % align != 0 {
            return Err(AttachError::Misaligned { need: align });
        }
        // SAFETY: DATA_OFFSET + size_of::<T>() <= len (checked above).
        let data = unsafe { ptr.add(Self::DATA_OFFSET) }.cast::<T>();
        Self::new_handle(ptr.cast::<Control>(), data, owners, keep)
    }

    fn new_handle(
        ctrl: NonNull<Control>,
        data: NonNull<T>,
        owners: Arc<dyn OwnerCheck>,
        keep: Keep,
    ) -> Result<Self, AttachError> {
        let me = owners.my_tag();
        if me == 0 || me & CONTENDED != 0 {
            return Err(AttachError::BadTag { tag: me });
        }
        Ok(Self {
            ctrl,
            data,
            me,
            owners,
            strategy: WaitStrategy::BLOCK,
            process: super::current_process(),
            keep,
            _t: PhantomData,
        })
    }

    /// The same handle, waiting as `strategy` says (default
    /// [`WaitStrategy::BLOCK`]). `strategy.slice` is also how often a
    /// waiter checks whether the owner is alive.
    pub fn with_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// This handle's owner tag.
    pub fn tag(&self) -> u32 {
        self.me
    }

    #[inline(always)]
    fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a live control block (kept by `keep`);
        // it holds only atomics, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    /// The recorded owner, if the mutex is locked.
    pub fn owner(&self) -> Option<OwnerRecord> {
        let c = self.ctrl();
        // Relaxed (all): a diagnostic snapshot, nothing is read through it.
        let word = c.word.word().load(Ordering::Relaxed);
        if word == 0 {
            return None;
        }
        let tag = word & TAG_MASK;
        let recorded = c.owner_tag.load(Ordering::Relaxed) == tag;
        Some(OwnerRecord {
            tag,
            pid: if recorded {
                c.owner_pid.load(Ordering::Relaxed)
            } else {
                0
            },
            start_time: if recorded {
                c.owner_start.load(Ordering::Relaxed)
            } else {
                0
            },
        })
    }
}
