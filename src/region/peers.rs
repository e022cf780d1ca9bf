//! The peer table: who has the region open.
//!
//! Each [`PeerSlot`] is one cache line, written by the process holding it.
//! Its `word` is `pid << 32 | id`, changed only by compare-and-swap, so the
//! id and the pid of a holder appear together:
//!
//! ```text
//! claim:    CAS word  free(gen) -> pid<<32 | PeerId(gen+1, slot)   (AcqRel)
//!           or        dead holder's word -> ditto                  (AcqRel)
//!           start_time, role, heartbeat := ...                     (Relaxed)
//!           published := id                                        (Release)
//! heartbeat: heartbeat := now                                      (Relaxed)
//! release:  CAS word  pid<<32 | id -> free(gen)                    (Release)
//! ```
//!
//! A reader loads `word` (Acquire), then `published` (Acquire): if it holds
//! the same id, the start time and role it reads next are the holder's (the
//! Acquire pairs with the Release store of `published`). Otherwise the holder
//! is between its CAS and its publish (or died there): the reader knows the
//! pid only, and judges liveness by the pid alone. A re-load of `word` after
//! the reads (behind an Acquire fence) detects a slot that changed hands
//! meanwhile. A hostile peer can make any slot look taken or free; at worst
//! that makes the table look full or a peer look dead, never a crash.

use super::layout::PeerSlot;
pub use super::peer_id::PeerId;
use crate::sync::ProcessId;
use crate::sync::clock::monotonic_ns;
use crate::sync::shim::{Ordering, fence};

/// One row of [`Region::peers`](super::Region::peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's id.
    pub id: PeerId,
    /// Its pid.
    pub pid: u32,
    /// Its start time (0 while it is still publishing its slot).
    pub start_time: u64,
    /// Its role (0 while it is still publishing its slot).
    pub role: u32,
    /// Its last heartbeat, CLOCK_MONOTONIC nanoseconds.
    pub heartbeat: u64,
    /// Whether its process runs (pid exists with a matching start time, and
    /// a thread of it has not exited).
    pub alive: bool,
}

fn low(word: u64) -> u32 {
    word as u32
}

fn pid_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn is_free(word: u64) -> bool {
    low(word) & 0xFF == 0
}

/// A consistent read of one held slot.
struct View {
    id: Option<PeerId>,
    pid: u32,
    start_time: Option<u64>,
    role: u32,
    heartbeat: u64,
    word: u64,
}

impl View {
    fn alive(&self) -> bool {
        match self.start_time {
            Some(start_time) => ProcessId {
                pid: self.pid,
                start_time,
            }
            .is_alive(),
            None => ProcessId::of(self.pid).is_some(),
        }
    }
}

fn view(slot: &PeerSlot) -> Option<View> {
    for _ in 0..4 {
        // Acquire: pairs with the claimer's AcqRel CAS.
        let word = slot.word.load(Ordering::Acquire);
        if is_free(word) {
            return None;
        }
        // Acquire: pairs with the Release store of `published` in `publish`,
        // so the start time and role read below are the holder's.
        let published = slot.published.load(Ordering::Acquire);
        let (start_time, role) = if published == low(word) {
            (
                // Relaxed: ordered by the Acquire load of `published` above.
                Some(slot.start_time.load(Ordering::Relaxed)),
                slot.role.load(Ordering::Relaxed),
            )
        } else {
            (None, 0)
        };
        // Relaxed: a liveness hint, nothing is published with it.
        let heartbeat = slot.heartbeat.load(Ordering::Relaxed);
        // Acquire fence: keeps the re-load below after the reads above, so an
        // unchanged word means they belong to this holder.
        fence(Ordering::Acquire);
        if slot.word.load(Ordering::Relaxed) == word {
            return Some(View {
                id: PeerId::from_raw(low(word)),
                pid: pid_of(word),
                start_time,
                role,
                heartbeat,
                word,
            });
        }
    }
    // Changing hands faster than we can read: report it as held, pid unknown.
    let word = slot.word.load(Ordering::Acquire);
    Some(View {
        id: PeerId::from_raw(low(word)),
        pid: pid_of(word),
        start_time: None,
        role: 0,
        heartbeat: 0,
        word,
    })
}

fn publish(slot: &PeerSlot, id: PeerId, me: ProcessId, role: u32) {
    // Relaxed: published by the Release store of `published` below.
    slot.start_time.store(me.start_time, Ordering::Relaxed);
    slot.role.store(role, Ordering::Relaxed);
    slot.heartbeat.store(monotonic_ns(), Ordering::Relaxed);
    // Release: pairs with the Acquire load of `published` in `view`.
    slot.published.store(id.to_raw(), Ordering::Release);
}

/// Claims a slot among `slots` for `me`: a free one first, else one whose
/// holder is dead. Bounded: a few passes over the table, one CAS per slot
/// per pass. `None` if every slot is held by a live process.
pub(crate) fn claim(slots: &[PeerSlot], me: ProcessId, role: u32) -> Option<PeerId> {
    for _round in 0..3 {
        for reclaim in [false, true] {
            for (index, slot) in slots.iter().enumerate() {
                // Relaxed: only a guess for the CAS below, which checks it.
                let word = slot.word.load(Ordering::Relaxed);
                let take = if is_free(word) {
                    true
                } else {
                    reclaim && view(slot).is_some_and(|v| v.word == word && !v.alive())
                };
                if !take {
                    continue;
                }
                let Some(id) = PeerId::new(index, (low(word) >> 8).wrapping_add(1)) else {
                    continue;
                };
                let new = u64::from(me.pid) << 32 | u64::from(id.to_raw());
                // AcqRel: Acquire pairs with the previous holder's Release
                // CAS (its writes to the slot are done); Release orders our
                // claim before our writes become visible with `published`.
                if slot
                    .word
                    .compare_exchange(word, new, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    publish(slot, id, me, role);
                    return Some(id);
                }
            }
        }
    }
    None
}

/// Frees the slot `id` holds, if `pid` still holds it.
pub(crate) fn release(slots: &[PeerSlot], id: PeerId, pid: u32) {
    let Some(slot) = slots.get(id.slot()) else {
        return;
    };
    let held = u64::from(pid) << 32 | u64::from(id.to_raw());
    let free = u64::from(id.generation() << 8);
    // Release: pairs with the next claimer's AcqRel CAS. Failure (Relaxed):
    // someone took the slot from us (they judged us dead); nothing to undo.
    let _ = slot
        .word
        .compare_exchange(held, free, Ordering::Release, Ordering::Relaxed);
}

/// Stores a heartbeat into `id`'s slot.
pub(crate) fn heartbeat(slots: &[PeerSlot], id: PeerId) {
    if let Some(slot) = slots.get(id.slot()) {
        // Relaxed: a liveness hint; nothing is published with it.
        slot.heartbeat.store(monotonic_ns(), Ordering::Relaxed);
    }
}

/// Whether `id` still holds its slot and its process runs.
pub(crate) fn alive(slots: &[PeerSlot], id: PeerId) -> bool {
    slots
        .get(id.slot())
        .and_then(view)
        .is_some_and(|v| v.id == Some(id) && v.alive())
}

/// Every held slot.
pub(crate) fn list(slots: &[PeerSlot]) -> Vec<PeerInfo> {
    slots
        .iter()
        .filter_map(view)
        .filter_map(|v| {
            Some(PeerInfo {
                id: v.id?,
                pid: v.pid,
                start_time: v.start_time.unwrap_or(0),
                role: v.role,
                heartbeat: v.heartbeat,
                alive: v.alive(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Vec<PeerSlot> {
        (0..n)
            .map(|_| PeerSlot {
                word: Default::default(),
                start_time: Default::default(),
                heartbeat: Default::default(),
                role: Default::default(),
                published: Default::default(),
                reserved: [0; 32],
            })
            .collect()
    }

    #[test]
    fn claim_list_release_and_generation() {
        let t = table(2);
        let me = ProcessId::current();
        let a = claim(&t, me, 5).unwrap();
        let b = claim(&t, me, 6).unwrap();
        assert_ne!(a.slot(), b.slot());
        assert!(
            claim(&t, me, 7).is_none(),
            "both slots held by a live process"
        );
        let peers = list(&t);
        assert_eq!(peers.len(), 2);
        assert!(peers.iter().all(|p| p.alive && p.pid == me.pid));
        assert!(alive(&t, a));
        release(&t, a, me.pid);
        assert!(!alive(&t, a));
        let c = claim(&t, me, 8).unwrap();
        assert_eq!(c.slot(), a.slot());
        assert_ne!(c, a, "a reused slot gives a new id");
    }

    #[test]
    fn a_dead_holder_is_reclaimed() {
        let t = table(1);
        let ghost = ProcessId {
            pid: ProcessId::current().pid,
            start_time: 1, // our pid, but not our start time: another process
        };
        let old = claim(&t, ghost, 0).unwrap();
        assert!(!alive(&t, old));
        let new = claim(&t, ProcessId::current(), 0).unwrap();
        assert_ne!(new, old);
        assert!(alive(&t, new));
    }

    #[test]
    fn garbage_words_do_not_panic() {
        let t = table(3);
        t[0].word.store(u64::MAX, Ordering::Relaxed);
        t[1].word.store(0xFFFF_FFFF_0000_0001, Ordering::Relaxed);
        t[2].word.store(0x0000_0000_FFFF_FF00, Ordering::Relaxed);
        let _ = list(&t);
        let id = claim(&t, ProcessId::current(), 0).unwrap();
        assert!(alive(&t, id));
    }
}
