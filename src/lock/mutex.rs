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

use crate::sync::clock::Instant;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::time::Duration;
use std::sync::Arc;

use bytemuck::Pod;

use super::error::{LockError, TryLockError, UnlockError};
use super::{CONTENDED, OwnerCheck, TAG_MASK};
use crate::AttachError;
use crate::sync::WaitStrategy;
use crate::sync::futex::{Futex, WaitOutcome};
use crate::sync::shim::{AtomicU32, AtomicU64, Ordering, spin_loop};

/// `state`: the data is consistent.
/// A waiter that does not sleep (it spins, or its CAS keeps losing) reads
/// the clock once per this many rounds; under loom, whose clock is a model
/// (see `sync::clock`), on every round.
#[cfg(not(loom))]
const CLOCK_EVERY: u32 = 256;
#[cfg(loom)]
const CLOCK_EVERY: u32 = 1;

const CONSISTENT: u32 = 0;
/// `state`: an owner died holding the lock (or panicked) and nobody has
/// marked the data consistent since.
const POISONED: u32 = 1;

/// The control block at the start of a mutex section (see the module docs
/// for the layout).
///
/// # Invariants
/// - `word`: 0, or a valid tag (per the handles' [`OwnerCheck`]) optionally
///   with [`CONTENDED`]. Changed only by CAS: lockers 0 -> tag, waiters
///   tag -> tag|CONTENDED, takeover dead -> tag, the owner tag -> 0.
/// - `state`: [`CONSISTENT`] or [`POISONED`]; written only by the lock
///   holder, so the lock orders its accesses.
/// - `owner_*`: written by each holder just after it locks, never cleared;
///   readers outside the lock get a hint that may be stale.
/// - Any bit pattern is memory-safe; a bad `word` or `state` is reported as
///   corruption when read.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Control {
    word: Futex,
    state: AtomicU32,
    owner_tag: AtomicU32,
    owner_pid: AtomicU32,
    owner_start: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Control>() == 64 && align_of::<Control>() == 64);
    assert!(core::mem::offset_of!(Control, state) == 4);
    assert!(core::mem::offset_of!(Control, owner_tag) == 8);
    assert!(core::mem::offset_of!(Control, owner_pid) == 12);
    assert!(core::mem::offset_of!(Control, owner_start) == 16);
};

impl Control {
    fn new() -> Self {
        Self {
            word: Futex::new(0),
            state: AtomicU32::new(CONSISTENT),
            owner_tag: AtomicU32::new(0),
            owner_pid: AtomicU32::new(0),
            owner_start: AtomicU64::new(0),
        }
    }
}

/// A mutex's memory on the heap (threads of one process, tests, loom):
/// the control block as a real object (loom atomics cannot be laid over raw
/// bytes) and a zeroed allocation for the value. Under loom a cell stands
/// for the value, touched wherever a guard reads or writes it, so that a
/// model sees an access to the value the lock does not order.
#[derive(Debug)]
struct HeapBlock {
    ctrl: Box<Control>,
    data: NonNull<u8>,
    layout: std::alloc::Layout,
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<()>,
}

// SAFETY: HeapBlock owns its allocation; the value's bytes are only
// accessed by the holder of the lock, the control block through atomics.
unsafe impl Send for HeapBlock {}
// SAFETY: as above: `&HeapBlock` hands out nothing but raw pointers.
unsafe impl Sync for HeapBlock {}

impl HeapBlock {
    fn new(size: usize, align: usize) -> Result<Self, AttachError> {
        let layout = std::alloc::Layout::from_size_align(size.max(1), align)
            .map_err(|_| AttachError::Misaligned { need: align })?;
        // SAFETY: the size is at least 1.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(data) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        Ok(Self {
            ctrl: Box::new(Control::new()),
            data,
            layout,
            #[cfg(loom)]
            cell: loom::cell::UnsafeCell::new(()),
        })
    }
}

impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: `data` came from `alloc_zeroed(self.layout)`, freed once.
        unsafe { std::alloc::dealloc(self.data.as_ptr(), self.layout) };
    }
}

/// What keeps a mutex's memory alive while a handle uses it.
#[derive(Debug, Clone)]
enum Keep {
    Heap(#[allow(dead_code)] Arc<HeapBlock>),
    #[cfg(not(loom))]
    Region(#[allow(dead_code)] crate::region::Region),
    /// The caller of `from_raw` keeps it mapped.
    #[cfg(not(loom))]
    Raw,
}

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

    /// Locks without waiting. Uncontended, this is one compare-and-swap and
    /// no system call. When the lock is held, the owner's liveness is
    /// checked (which reads `/proc` for a region's peers): a dead owner's
    /// lock is taken over ([`LockStatus::OwnerDied`]).
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] while a live owner holds it;
    /// [`TryLockError::Corrupted`] for a lock word naming no possible
    /// locker or a consistency state out of range.
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        // Acquire: pairs with the Release CAS in `release`: the previous
        // holder's writes to the value happen before our reads.
        match self.ctrl().word.word().compare_exchange(
            0,
            self.me,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => self.finish(false).map_err(try_from_lock),
            Err(word) => self.try_lock_held(word),
        }
    }

    #[cold]
    fn try_lock_held(&self, word: u32) -> Result<MutexGuard<'_, T>, TryLockError> {
        for _ in 0..4 {
            match self.judge(word) {
                Judged::Corrupted(value) => {
                    return Err(TryLockError::Corrupted {
                        what: "lock word",
                        value,
                    });
                }
                Judged::Alive => return Err(TryLockError::WouldBlock),
                Judged::Dead => {
                    if self.take_over(word) {
                        return self.finish(true).map_err(try_from_lock);
                    }
                }
                Judged::Free => {}
            }
            // The word changed under us: one more quick try.
            if let Ok(g) = self.try_cas_free(0) {
                return g.map_err(try_from_lock);
            }
        }
        Err(TryLockError::WouldBlock)
    }

    /// One CAS 0 -> me|extra: `Ok(guard result)` if it took the lock.
    #[inline]
    #[allow(clippy::type_complexity)]
    fn try_cas_free(&self, extra: u32) -> Result<Result<MutexGuard<'_, T>, LockError>, u32> {
        // Acquire: as in `try_lock`.
        self.ctrl()
            .word
            .word()
            .compare_exchange(0, self.me | extra, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| self.finish(false))
    }

    /// Locks, waiting as long as a live owner holds it.
    ///
    /// # Errors
    /// [`LockError::Corrupted`] (see [`try_lock`](Self::try_lock)).
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError> {
        self.lock_deadline(None)
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockError::TimedOut`]; [`LockError::Corrupted`].
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, LockError> {
        self.lock_deadline(Instant::now().checked_add(timeout))
    }

    /// Locks, waiting until `deadline` at most (`None`: no limit).
    ///
    /// While a live owner holds the lock the caller spins, then sleeps on
    /// the shared futex, following the handle's [`WaitStrategy`]. After
    /// every slice without the lock it checks the owner: a dead owner's lock
    /// is taken over ([`LockStatus::OwnerDied`]); a stopped one is alive and
    /// waited for.
    ///
    /// # Errors
    /// [`LockError::TimedOut`]; [`LockError::Corrupted`].
    #[inline]
    pub fn lock_deadline(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, T>, LockError> {
        match self.try_cas_free(0) {
            Ok(g) => g,
            Err(_) => self.lock_slow(deadline),
        }
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, T>, LockError> {
        if let Some(g) = self.spin_phase(deadline) {
            return g;
        }
        let word = self.ctrl().word.word();
        let mut slept = false;
        let mut woken = false;
        let mut last_judged = Instant::now();
        // Whether the last round slept in the kernel, and the rounds without
        // a system call since the clock was last read.
        let mut waited = false;
        // The first round reads the clock.
        let mut cheap: u32 = CLOCK_EVERY;
        loop {
            // Relaxed: a guess for the CAS below, which acquires.
            let w = word.load(Ordering::Relaxed);
            // Every round starts here, whatever the last one did: the
            // deadline and the owner's liveness are checked by time, so a
            // peer that keeps changing the word (a CAS that always loses, a
            // futex wait that always returns at once) cannot hold the
            // caller past its deadline. The clock is read after every sleep
            // and every CLOCK_EVERY rounds without one. (Under loom the
            // clock is a model whose every reading is a slice later, so a
            // dead owner is judged before the first sleep: the futex model
            // never times out.)
            if waited || cheap >= CLOCK_EVERY {
                cheap = 0;
                let now = Instant::now();
                let late = deadline.is_some_and(|d| now >= d);
                if late || now.duration_since(last_judged) >= self.strategy.slice {
                    last_judged = now;
                    if self.judge(w) == Judged::Dead && self.take_over(w) {
                        return self.finish(true);
                    }
                }
                if late {
                    if let Ok(g) = self.try_cas_free(if slept { CONTENDED } else { 0 }) {
                        return g;
                    }
                    self.pass_wake(woken);
                    return Err(LockError::TimedOut);
                }
            }
            waited = false;
            cheap += 1;
            if w == 0 {
                // A waiter that slept may have been woken for the others
                // too: it keeps CONTENDED set so they are woken in turn.
                if let Ok(g) = self.try_cas_free(if slept { CONTENDED } else { 0 }) {
                    return g;
                }
                // Lost the race: round again (and through the checks).
                continue;
            }
            if let Judged::Corrupted(value) = self.classify(w) {
                self.pass_wake(woken);
                return Err(LockError::Corrupted {
                    what: "lock word",
                    value,
                });
            }
            if self.strategy.spin_only {
                spin_loop();
            } else if w & CONTENDED != 0
                // Relaxed: announcing publishes nothing; the futex compares
                // against the word itself. A failure (the word changed)
                // goes round to the checks.
                || word
                    .compare_exchange(w, w | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let slice = self.slice(deadline, last_judged);
                let outcome = self.ctrl().word.wait(w | CONTENDED, Some(slice));
                slept = true;
                woken = outcome == WaitOutcome::Woken;
                waited = true;
            }
        }
    }

    /// Under loom: the value is read (or written) now; the model fails if
    /// the lock did not order the last access before it. Nothing in a
    /// normal build.
    #[inline(always)]
    fn track_value(&self, write: bool) {
        #[cfg(loom)]
        {
            let Keep::Heap(block) = &self.keep;
            if write {
                block.cell.with_mut(|_| ());
            } else {
                block.cell.with(|_| ());
            }
        }
        #[cfg(not(loom))]
        let _ = write;
    }

    /// How long the next sleep may last: until the next liveness check (a
    /// slice after `last_judged`) or the deadline, whichever is first.
    fn slice(&self, deadline: Option<Instant>, last_judged: Instant) -> Duration {
        let judge = last_judged.checked_add(self.strategy.slice);
        let until = match (judge, deadline) {
            (Some(j), Some(d)) => Some(j.min(d)),
            (j, d) => j.or(d),
        };
        until.map_or(self.strategy.slice, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// Spins (Backoff, then plain spinning) for `strategy.spin` at most,
    /// trying to take a free lock.
    fn spin_phase(
        &self,
        deadline: Option<Instant>,
    ) -> Option<Result<MutexGuard<'_, T>, LockError>> {
        if self.strategy.spin.is_zero() {
            return None;
        }
        let word = self.ctrl().word.word();
        let start = Instant::now();
        let backoff = crossbeam_utils::Backoff::new();
        let mut n: u32 = 0;
        loop {
            // (Under loom a spin is a yield, so that the model can run the
            // holder: crossbeam's backoff knows nothing of loom.)
            if backoff.is_completed() || cfg!(loom) {
                spin_loop();
            } else {
                backoff.spin();
            }
            // Relaxed: a guess for the CAS, which acquires.
            if word.load(Ordering::Relaxed) == 0 {
                if let Ok(g) = self.try_cas_free(0) {
                    return Some(g);
                }
            }
            n = n.wrapping_add(1);
            if n % 64 == 0 {
                let now = Instant::now();
                if now.duration_since(start) >= self.strategy.spin
                    || deadline.is_some_and(|d| now >= d)
                {
                    return None;
                }
            }
        }
    }

    /// A waiter that was woken (perhaps by an unlock meant to hand it the
    /// lock) and now gives up passes the wake on to another sleeper.
    fn pass_wake(&self, woken: bool) {
        if woken {
            self.ctrl().word.wake_one();
        }
    }

    /// What a lock word says, without the (slow) liveness check.
    fn classify(&self, w: u32) -> Judged {
        if w == 0 {
            return Judged::Free;
        }
        let tag = w & TAG_MASK;
        if tag == 0 || !self.owners.is_valid(tag) {
            return Judged::Corrupted(w);
        }
        Judged::Alive
    }

    /// What a lock word says, with the liveness check. Our own tag is
    /// always alive (another thread of ours holds it).
    fn judge(&self, w: u32) -> Judged {
        match self.classify(w) {
            Judged::Alive => {
                let tag = w & TAG_MASK;
                if tag == self.me || self.owners.is_alive(tag) {
                    Judged::Alive
                } else {
                    Judged::Dead
                }
            }
            other => other,
        }
    }

    /// Takes the lock from the dead owner of word `w`: CAS `w` -> me,
    /// keeping CONTENDED (others may sleep). False if the word changed.
    fn take_over(&self, w: u32) -> bool {
        // Acquire: pairs with nothing the dead owner released (it never
        // unlocked); it orders our reads of the value after the takeover.
        // The dead process's stores were complete before the liveness
        // check saw it gone. Relaxed failure: we retry from a fresh load.
        self.ctrl()
            .word
            .word()
            .compare_exchange(
                w,
                self.me | (w & CONTENDED),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Having taken the lock: record ourselves, read the consistency state.
    #[inline]
    fn finish(&self, took_over: bool) -> Result<MutexGuard<'_, T>, LockError> {
        let c = self.ctrl();
        // Relaxed (record): a hint for `owner`; the lock orders nothing
        // through it. A record that already names our tag names our
        // process (a tag belongs to one process), so it is left alone: the
        // uncontended path then stores nothing but the lock word.
        if c.owner_tag.load(Ordering::Relaxed) != self.me {
            c.owner_pid.store(self.process.0, Ordering::Relaxed);
            c.owner_start.store(self.process.1, Ordering::Relaxed);
            c.owner_tag.store(self.me, Ordering::Relaxed);
        }
        let status = if took_over {
            // Relaxed: `state` is only accessed by the holder; the lock
            // orders it.
            c.state.store(POISONED, Ordering::Relaxed);
            LockStatus::OwnerDied
        } else {
            // Relaxed: written by earlier holders, ordered by the Acquire
            // CAS that gave us the lock.
            match c.state.load(Ordering::Relaxed) {
                CONSISTENT => LockStatus::Consistent,
                POISONED => LockStatus::Poisoned,
                value => {
                    let _ = self.release();
                    return Err(LockError::Corrupted {
                        what: "state",
                        value,
                    });
                }
            }
        };
        Ok(MutexGuard {
            mutex: self,
            status,
            _not_send: PhantomData,
        })
    }

    /// Unlocks: CAS our word to 0, waking one sleeper if the waiters bit
    /// was set. Refuses (changing nothing) if the word is not ours.
    #[inline]
    fn release(&self) -> Result<(), UnlockError> {
        let word = &self.ctrl().word;
        let mut cur = self.me;
        // At most two rounds in a correct run (the waiters bit is set at
        // most once while we hold the lock); bounded against a peer that
        // keeps flipping it.
        for _ in 0..64 {
            // Release: pairs with the Acquire CAS of the next locker; our
            // writes to the value (and `state`) happen before its reads.
            // Relaxed failure: we only look at the value found.
            match word
                .word()
                .compare_exchange(cur, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if cur & CONTENDED != 0 {
                        word.wake_one();
                    }
                    return Ok(());
                }
                Err(now) if now & TAG_MASK == self.me => cur = now,
                Err(now) => return Err(UnlockError::NotOwner { word: now }),
            }
        }
        Err(UnlockError::NotOwner { word: cur })
    }
}

fn try_from_lock(e: LockError) -> TryLockError {
    match e {
        LockError::Corrupted { what, value } => TryLockError::Corrupted { what, value },
        LockError::TimedOut => TryLockError::WouldBlock,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Free,
    Alive,
    Dead,
    Corrupted(u32),
}

/// Holds a [`ShmMutex`] locked; gives the value through `Deref` and
/// `DerefMut`; unlocks when dropped.
///
/// Not `Send`: it belongs to the thread that locked. Dropping it during a
/// panic poisons the mutex.
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a ShmMutex<T>,
    status: LockStatus,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard")
            .field("status", &self.status)
            .field("value", &**self)
            .finish()
    }
}

impl<T: Pod> MutexGuard<'_, T> {
    /// How this guard got the lock: [`LockStatus::Consistent`] normally,
    /// [`LockStatus::OwnerDied`] after a takeover, [`LockStatus::Poisoned`]
    /// if an earlier takeover was never marked consistent. After
    /// [`mark_consistent`](Self::mark_consistent), `Consistent`.
    pub fn status(&self) -> LockStatus {
        self.status
    }

    /// Declares the value consistent (repaired): the mutex is no longer
    /// poisoned, later lockers get [`LockStatus::Consistent`].
    pub fn mark_consistent(&mut self) {
        // Relaxed: only the holder accesses `state`; our unlock's Release
        // publishes it.
        self.mutex.ctrl().state.store(CONSISTENT, Ordering::Relaxed);
        self.status = LockStatus::Consistent;
    }

    /// Declares the value inconsistent: later lockers get
    /// [`LockStatus::Poisoned`] until one calls
    /// [`mark_consistent`](Self::mark_consistent).
    pub fn poison(&mut self) {
        // Relaxed: as in `mark_consistent`.
        self.mutex.ctrl().state.store(POISONED, Ordering::Relaxed);
        self.status = LockStatus::Poisoned;
    }

    /// Unlocks, reporting whether the lock was still ours.
    ///
    /// # Errors
    /// [`UnlockError::NotOwner`] if another locker judged this one dead and
    /// took the lock over (or the word was overwritten): nothing changed.
    pub fn unlock(self) -> Result<(), UnlockError> {
        let this = core::mem::ManuallyDrop::new(self);
        this.mutex.release()
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.mutex.track_value(false);
        // SAFETY: `data` is aligned for T and within the live memory
        // (checked at attach); we hold the lock, so no cooperating peer
        // writes the value; any bits are a valid T (Pod).
        unsafe { self.mutex.data.as_ref() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.mutex.track_value(true);
        // SAFETY: as in `deref`; the guard is borrowed mutably, and holding
        // the lock makes this the only access among cooperating peers.
        unsafe { &mut *self.mutex.data.as_ptr() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.poison();
        }
        // A lock taken over by another is not ours to release: nothing to
        // do (`unlock` reports it).
        let _ = self.mutex.release();
    }
}
