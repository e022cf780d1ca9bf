//! A read-only look at event and mutex sections: [`observe_event`] and
//! [`observe_mutex`] read them through a
//! [`region::Observer`](crate::region::Observer), which never writes.
//! Values outside what the protocols write are reported as problems, not
//! used. The offsets are those of the layouts drawn (and const-asserted)
//! in `event.rs` and `mutex/layout.rs`.

use crate::region::{ObserveError, Observer, SectionId, SectionKind};
use crate::sync::{Announced, Doorbell, ProcessId};

use super::{CONTENDED, EventMode, TAG_MASK};

/// An event's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventState {
    /// Whether it is signalled.
    pub signalled: bool,
    /// Its mode, once a handle bound it.
    pub mode: Option<EventMode>,
    /// Waiters announced on its doorbell.
    pub sleepers: u32,
    /// What does not hold.
    pub problems: Vec<String>,
}

/// A mutex's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MutexState {
    /// The owner's tag while it is locked.
    pub locked_by: Option<u32>,
    /// Whether a waiter asked to be woken.
    pub contended: bool,
    /// An owner died holding it and nobody marked the value consistent.
    pub poisoned: bool,
    /// The last locker's record: its tag, pid and start time (a hint,
    /// written by each holder after it locks).
    pub last_owner: Option<(u32, ProcessId)>,
    /// Whether the last locker's process runs, when it holds the lock now.
    pub owner_alive: Option<bool>,
    /// What does not hold.
    pub problems: Vec<String>,
}

/// Offsets in an event section (`event.rs`: state, mode, bell).
const EVENT_STATE: usize = 0;
const EVENT_MODE: usize = 4;
const EVENT_BELL: usize = 8;
/// Offsets in a mutex section (`mutex/layout.rs`).
const MUTEX_WORD: usize = 0;
const MUTEX_STATE: usize = 4;
const MUTEX_OWNER_TAG: usize = 8;
const MUTEX_OWNER_PID: usize = 12;
const MUTEX_OWNER_START: usize = 16;

/// What the event in section `id` says now.
///
/// # Errors
/// [`ObserveError::NoSuchSection`], [`ObserveError::WrongKind`],
/// [`ObserveError::Bad`] (a section too short for an event).
pub fn observe_event(obs: &Observer, id: SectionId) -> Result<EventState, ObserveError> {
    obs.section_of(id, SectionKind::Event)?;
    let mut problems = Vec::new();
    let state = obs.u32_at(id, EVENT_STATE, "state")?;
    if state > 1 {
        problems.push(format!("state {state:#x} is neither 0 nor 1"));
    }
    let mode = match obs.u32_at(id, EVENT_MODE, "mode")? {
        0 => None,
        1 => Some(EventMode::AutoReset),
        2 => Some(EventMode::ManualReset),
        m => {
            problems.push(format!("mode {m:#x} is not a mode"));
            None
        }
    };
    let bell = obs.u32_at(id, EVENT_BELL + Doorbell::SLEEPERS_OFFSET, "doorbell")?;
    Ok(EventState {
        signalled: state == 1,
        mode,
        sleepers: Announced::from_word(bell).count,
        problems,
    })
}

/// What the mutex in section `id` says now.
///
/// # Errors
/// As [`observe_event`].
pub fn observe_mutex(obs: &Observer, id: SectionId) -> Result<MutexState, ObserveError> {
    obs.section_of(id, SectionKind::Mutex)?;
    let mut problems = Vec::new();
    let word = obs.u32_at(id, MUTEX_WORD, "lock word")?;
    let state = obs.u32_at(id, MUTEX_STATE, "state")?;
    if state > 1 {
        problems.push(format!(
            "state {state:#x} is neither consistent nor poisoned"
        ));
    }
    let tag = obs.u32_at(id, MUTEX_OWNER_TAG, "owner tag")?;
    let pid = obs.u32_at(id, MUTEX_OWNER_PID, "owner pid")?;
    let start = obs.u64_at(id, MUTEX_OWNER_START, "owner start time")?;
    let last_owner = (tag != 0).then_some((
        tag,
        ProcessId {
            pid,
            start_time: start,
        },
    ));
    let locked_by = (word & TAG_MASK != 0).then_some(word & TAG_MASK);
    if word != 0 && locked_by.is_none() {
        problems.push("contended bit set on an unlocked word".to_owned());
    }
    let owner_alive = match (locked_by, last_owner) {
        (Some(t), Some((lt, p))) if t == lt && p.pid != 0 => Some(p.is_alive()),
        _ => None,
    };
    Ok(MutexState {
        locked_by,
        contended: word & CONTENDED != 0,
        poisoned: state == 1,
        last_owner,
        owner_alive,
        problems,
    })
}
