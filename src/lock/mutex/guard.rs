//! The guard that holds a mutex locked and gives its value.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use bytemuck::Pod;

use super::layout::{CONSISTENT, POISONED};
use super::{LockStatus, ShmMutex};
use crate::lock::error::UnlockError;
use crate::sync::shim::Ordering;

/// Holds a [`ShmMutex`] locked; gives the value through `Deref` and
/// `DerefMut`; unlocks when dropped.
///
/// Not `Send`: it belongs to the thread that locked. Dropping it during a
/// panic poisons the mutex.
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    pub(super) mutex: &'a ShmMutex<T>,
    pub(super) status: LockStatus,
    pub(super) _not_send: PhantomData<*const ()>,
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
