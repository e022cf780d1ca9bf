//! Taking and releasing the lock: the uncontended CAS, the slow path that
//! spins, sleeps and judges the owner, the takeover of a dead owner's lock.

use core::marker::PhantomData;
use core::time::Duration;

use bytemuck::Pod;

use super::layout::{CLOCK_EVERY, CONSISTENT, POISONED};
use super::{LockStatus, MutexGuard, ShmMutex};
use crate::lock::error::{LockError, TryLockError, UnlockError};
use crate::lock::{CONTENDED, TAG_MASK};
use crate::sync::clock::Instant;
use crate::sync::futex::WaitOutcome;
use crate::sync::shim::{Ordering, spin_loop};

impl<T: Pod> ShmMutex<T> {
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
    /// the shared futex, following the handle's [`WaitStrategy`](crate::sync::WaitStrategy). After
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
    pub(super) fn track_value(&self, write: bool) {
        #[cfg(loom)]
        {
            let super::layout::Keep::Heap(block) = &self.keep;
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
    pub(super) fn release(&self) -> Result<(), UnlockError> {
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
