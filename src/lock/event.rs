//! [`Event`]: signal and wait across processes, auto-reset or
//! manual-reset, on the shared futex.
//!
//! # Layout
//!
//! ```text
//! offset  size  field   written by                 meaning
//! 0       4     state   signal, reset, consumers   0: not signalled, 1: signalled
//! 4       4     mode    the first attacher (CAS)   0: not yet bound, 1: auto-reset, 2: manual-reset
//! 8       8     bell    waiters and signallers     a Doorbell (futex sequence, sleeper count)
//! 16      48    reserved
//! ```
//!
//! All zero is "not signalled, mode not yet bound, nobody asleep".
//!
//! # Protocol
//!
//! `signal` sets the state (Release) and rings the doorbell, which makes a
//! system call only when a waiter has announced itself; a waiter follows
//! the doorbell's announce / re-check / sleep protocol
//! ([`Doorbell`](crate::sync::Doorbell)), checking the state with Acquire
//! loads. Auto-reset: a waiter consumes the signal (CAS 1 -> 0), so each
//! signal releases one wait; the doorbell wakes every sleeper and those
//! that lose the CAS sleep again. Manual-reset: the state stays set until
//! [`Event::reset`], and releases every wait.
//!
//! An event does not know who will signal it. A waiter that does can tie
//! its wait to that peer with [`Event::wait_while`]: when the peer dies
//! without signalling, the wait ends with `PeerDead` instead of at the
//! deadline.

use crate::sync::clock::Instant;
use core::ptr::NonNull;
use core::time::Duration;
use std::sync::Arc;

use super::error::{EventCorrupted, WaitEventError};
#[cfg(not(loom))]
use crate::AttachError;
use crate::sync::shim::{AtomicU32, Ordering};
use crate::sync::{Doorbell, WaitError, WaitStrategy};

const UNSIGNALLED: u32 = 0;
const SIGNALLED: u32 = 1;

/// The shared part of an event (see the module docs for the layout).
///
/// # Invariants
/// - `state` is [`UNSIGNALLED`] or [`SIGNALLED`]; set by signallers,
///   cleared by `reset` and by auto-reset consumers. Other values are
///   reported as corruption and never cleared silently.
/// - `mode` is 0 until the first handle binds it with a CAS, then the
///   code of an [`EventMode`]; never changed after.
/// - `bell`: any bit pattern is safe (see [`Doorbell`]).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct EventControl {
    state: AtomicU32,
    mode: AtomicU32,
    bell: Doorbell,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<EventControl>() == 64 && align_of::<EventControl>() == 64);
    assert!(core::mem::offset_of!(EventControl, mode) == 4);
    assert!(core::mem::offset_of!(EventControl, bell) == 8);
};

/// Whether a wait consumes the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    /// Each signal releases one wait, which resets the event.
    AutoReset,
    /// A signal releases every wait until [`Event::reset`].
    ManualReset,
}

impl EventMode {
    fn code(self) -> u32 {
        match self {
            Self::AutoReset => 1,
            Self::ManualReset => 2,
        }
    }

    #[cfg(not(loom))]
    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::AutoReset),
            2 => Some(Self::ManualReset),
            _ => None,
        }
    }
}

/// What keeps an event's memory alive while a handle uses it.
#[derive(Debug, Clone)]
enum Keep {
    Heap(#[allow(dead_code)] Arc<EventControl>),
    #[cfg(not(loom))]
    Region(#[allow(dead_code)] crate::region::Region),
    /// The caller of `from_raw` keeps it mapped.
    #[cfg(not(loom))]
    Raw,
}

/// A cross-process event; see the [module docs](super) and
/// [`Event::attach`]. Clones are handles to the same event.
///
/// ```
/// use std::time::Duration;
/// use polycephaly::lock::{Event, EventMode, WaitEventError};
/// use polycephaly::region::{Region, SectionId};
///
/// let region = Region::builder().with(Event::spec()).build()?;
/// let ev = Event::attach(&region, SectionId(0), EventMode::AutoReset)?;
/// ev.signal()?;
/// ev.wait()?; // consumes the signal
/// assert_eq!(
///     ev.wait_timeout(Duration::from_millis(1)),
///     Err(WaitEventError::TimedOut)
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    ctrl: NonNull<EventControl>,
    mode: EventMode,
    strategy: WaitStrategy,
    /// Held only to keep the memory alive.
    #[allow(dead_code)]
    keep: Keep,
}

// SAFETY: `ctrl` points into memory that `keep` keeps alive as long as the
// handle; it holds only atomics.
unsafe impl Send for Event {}
// SAFETY: as above; every access through `&Event` is atomic.
unsafe impl Sync for Event {}

impl Event {
    /// The length an event needs (of a section, or of memory given to
    /// [`from_raw`](Self::from_raw)).
    pub const fn section_len() -> usize {
        size_of::<EventControl>()
    }

    /// The section an event lives in, for the region builder
    /// ([`RegionBuilder::with`](crate::region::RegionBuilder::with)).
    #[cfg(not(loom))]
    pub fn spec() -> impl crate::region::SectionSpec {
        super::LockSpec {
            kind: crate::region::SectionKind::Event,
            len: Self::section_len(),
        }
    }

    /// Attaches to the event in section `id` of `region` (kind
    /// [`SectionKind::Event`](crate::region::SectionKind::Event), length at
    /// least [`section_len`](Self::section_len)) in `mode`. The first
    /// handle binds the event's mode; later ones must ask for the same.
    /// The handle keeps the region mapped.
    ///
    /// # Errors
    /// [`AttachError::Section`], [`AttachError::WrongKind`],
    /// [`AttachError::WrongLength`] (too short), [`AttachError::ModeMismatch`],
    /// [`AttachError::Corrupted`] (a mode word no handle writes).
    #[cfg(not(loom))]
    pub fn attach(
        region: &crate::region::Region,
        id: crate::region::SectionId,
        mode: EventMode,
    ) -> Result<Self, AttachError> {
        let section = region.section(id)?;
        if section.kind != crate::region::SectionKind::Event {
            return Err(AttachError::WrongKind {
                found: section.kind,
                wanted: crate::region::SectionKind::Event,
            });
        }
        // SAFETY: the region keeps the section's `len` bytes mapped while
        // `Keep::Region` (a clone) lives, as long as the handle.
        unsafe { Self::from_parts(section.ptr, section.len, mode, Keep::Region(region.clone())) }
    }

    /// Attaches to an event at `ptr` (memory shared without a region, such
    /// as an anonymous mapping made before a fork).
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `len` bytes for as long as
    ///   the handle (and its clones) live, in memory that every process
    ///   using the event maps shared.
    /// - Those bytes are accessed only through `Event` handles (any bit
    ///   pattern is memory-safe for them, all zero is the initial state).
    ///
    /// # Errors
    /// [`AttachError::WrongLength`] (too short), [`AttachError::Misaligned`]
    /// (not 64-byte aligned), [`AttachError::ModeMismatch`],
    /// [`AttachError::Corrupted`].
    #[cfg(not(loom))]
    pub unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        mode: EventMode,
    ) -> Result<Self, AttachError> {
        // SAFETY: forwarded from the caller.
        unsafe { Self::from_parts(ptr, len, mode, Keep::Raw) }
    }

    /// # Safety
    /// As [`from_raw`](Self::from_raw), `keep` (or the caller, for
    /// `Keep::Raw`) keeping the memory alive.
    #[cfg(not(loom))]
    unsafe fn from_parts(
        ptr: NonNull<u8>,
        len: usize,
        mode: EventMode,
        keep: Keep,
    ) -> Result<Self, AttachError> {
        if len < Self::section_len() {
            return Err(AttachError::WrongLength {
                len,
                what: "an event (at least 64 bytes)",
            });
        }
        if ptr.as_ptr() as usize % align_of::<EventControl>() != 0 {
            return Err(AttachError::Misaligned {
                need: align_of::<EventControl>(),
            });
        }
        Self::bind(ptr.cast(), mode, keep)
    }

    /// An event on the heap, not signalled: for threads of one process,
    /// tests and loom models. Clone it for more handles.
    pub fn new_heap(mode: EventMode) -> Self {
        let ctrl = Arc::new(EventControl {
            state: AtomicU32::new(UNSIGNALLED),
            mode: AtomicU32::new(mode.code()),
            bell: Doorbell::new(),
        });
        Self {
            ctrl: NonNull::from(&*ctrl),
            mode,
            strategy: WaitStrategy::BLOCK,
            keep: Keep::Heap(ctrl),
        }
    }

    #[cfg(not(loom))]
    fn bind(ctrl: NonNull<EventControl>, mode: EventMode, keep: Keep) -> Result<Self, AttachError> {
        let ev = Self {
            ctrl,
            mode,
            strategy: WaitStrategy::BLOCK,
            keep,
        };
        // Relaxed: the mode word publishes nothing else; every handle reads
        // it with a CAS, so all see the one value that bound it.
        match ev
            .ctrl()
            .mode
            .compare_exchange(0, mode.code(), Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Ok(ev),
            Err(found) => match EventMode::from_code(found) {
                Some(m) if m == mode => Ok(ev),
                Some(m) => Err(AttachError::ModeMismatch {
                    found: m,
                    wanted: mode,
                }),
                None => Err(AttachError::Corrupted { what: "event mode" }),
            },
        }
    }

    /// The same handle, waiting as `strategy` says (default
    /// [`WaitStrategy::BLOCK`]: spin up to 50 us, then sleep).
    pub fn with_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The mode this handle was attached in.
    pub fn mode(&self) -> EventMode {
        self.mode
    }

    #[inline(always)]
    fn ctrl(&self) -> &EventControl {
        // SAFETY: `ctrl` points to a live control block (kept by `keep`)
        // of atomics, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    /// Signals the event: wakes the waiters (auto-reset: one wait returns;
    /// manual-reset: all, until [`reset`](Self::reset)). Makes no system
    /// call when nobody sleeps on it.
    ///
    /// # Errors
    /// [`EventCorrupted`] if the state word holds another value (it is
    /// left as found, with the signalled bit set).
    #[inline]
    pub fn signal(&self) -> Result<(), EventCorrupted> {
        // Release: pairs with the waiters' Acquire load or CAS of `state`:
        // what we wrote before signalling is visible to the released wait.
        let prev = self.ctrl().state.fetch_or(SIGNALLED, Ordering::Release);
        // Ring even for a corrupted word: a sleeper re-checks and reports it.
        self.ctrl().bell.ring();
        if prev & !SIGNALLED != 0 {
            return Err(EventCorrupted { value: prev });
        }
        Ok(())
    }

    /// Clears the signal (for manual-reset events; harmless on auto-reset
    /// ones).
    ///
    /// # Errors
    /// [`EventCorrupted`], leaving the word as found.
    pub fn reset(&self) -> Result<(), EventCorrupted> {
        // Relaxed: resetting publishes nothing.
        let prev = self.ctrl().state.fetch_and(!SIGNALLED, Ordering::Relaxed);
        if prev & !SIGNALLED != 0 {
            return Err(EventCorrupted { value: prev });
        }
        Ok(())
    }

    /// Whether the event is signalled now (without consuming it).
    ///
    /// # Errors
    /// [`EventCorrupted`].
    pub fn is_signalled(&self) -> Result<bool, EventCorrupted> {
        // Acquire: pairs with the Release in `signal`.
        match self.ctrl().state.load(Ordering::Acquire) {
            UNSIGNALLED => Ok(false),
            SIGNALLED => Ok(true),
            value => Err(EventCorrupted { value }),
        }
    }

    /// Takes the signal if it is there, without waiting (auto-reset:
    /// consumes it).
    ///
    /// # Errors
    /// [`EventCorrupted`].
    #[inline]
    pub fn try_wait(&self) -> Result<bool, EventCorrupted> {
        match self.mode {
            EventMode::ManualReset => self.is_signalled(),
            EventMode::AutoReset => {
                // Acquire: pairs with the Release in `signal`. Relaxed
                // failure: the value is only inspected.
                match self.ctrl().state.compare_exchange(
                    SIGNALLED,
                    UNSIGNALLED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => Ok(true),
                    Err(UNSIGNALLED) => Ok(false),
                    Err(value) => Err(EventCorrupted { value }),
                }
            }
        }
    }

    /// Waits for the event, without limit.
    ///
    /// # Errors
    /// [`WaitEventError::Corrupted`].
    pub fn wait(&self) -> Result<(), WaitEventError> {
        self.wait_deadline(None)
    }

    /// Waits for the event for at most `timeout`.
    ///
    /// # Errors
    /// [`WaitEventError::TimedOut`], [`WaitEventError::Corrupted`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitEventError> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits for the event until `deadline` (`None`: no limit), spinning
    /// then sleeping as the handle's [`WaitStrategy`] says.
    ///
    /// # Errors
    /// [`WaitEventError::TimedOut`], [`WaitEventError::Corrupted`].
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitEventError> {
        // An event has no one peer to outlive: only the deadline ends the
        // wait.
        self.wait_while(deadline, || true)
    }

    /// Waits for the event until `deadline` (`None`: no limit) or until the
    /// peer expected to signal it dies, whichever comes first.
    ///
    /// `alive` is asked after each sleep slice of the handle's
    /// [`WaitStrategy`] that ends without the event (never on the fast
    /// path), so it may read `/proc`: for a peer of a region,
    /// `|| region.peer_alive(id)`. Once it says the peer is dead, the event
    /// gets one last look (a signal the peer sent before dying still
    /// counts) and the wait ends with [`WaitEventError::PeerDead`].
    ///
    /// ```
    /// use polycephaly::lock::{Event, EventMode, WaitEventError};
    /// let ev = Event::new_heap(EventMode::AutoReset);
    /// // A "peer" already gone: the wait ends after one slice, not never.
    /// assert_eq!(ev.wait_while(None, || false), Err(WaitEventError::PeerDead));
    /// ev.signal().unwrap();
    /// // What it signalled before it died is delivered.
    /// assert_eq!(ev.wait_while(None, || false), Ok(()));
    /// ```
    ///
    /// # Errors
    /// [`WaitEventError::PeerDead`], [`WaitEventError::TimedOut`],
    /// [`WaitEventError::Corrupted`].
    pub fn wait_while(
        &self,
        deadline: Option<Instant>,
        alive: impl FnMut() -> bool,
    ) -> Result<(), WaitEventError> {
        let got = self.ctrl().bell.wait(
            || match self.try_wait() {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
            &self.strategy,
            deadline,
            alive,
        );
        match got {
            Ok(r) => r.map_err(WaitEventError::from),
            Err(WaitError::PeerDead) => Err(WaitEventError::PeerDead),
            Err(WaitError::TimedOut) => Err(WaitEventError::TimedOut),
        }
    }
}
