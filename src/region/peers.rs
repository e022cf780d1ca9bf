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
//!
//! Liveness: each region handle keeps a [`Liveness`] cache, one
//! [`ProcessWatch`] (a pidfd verified against the start time) per slot,
//! keyed by the slot's word and the holder's start time. A check polls the
//! pidfd; a slot that changed hands (another word, another start time)
//! closes the old pidfd and opens one for the new holder. So a handle holds
//! at most one pidfd per slot of the table, and a reused pid is never
//! mistaken for the peer that registered.

use std::sync::Mutex;

use super::layout::PeerSlot;
pub use super::peer_id::PeerId;
use crate::sync::clock::monotonic_ns;
use crate::sync::shim::{Ordering, fence};
use crate::sync::{ProcessId, ProcessWatch};

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
    /// Whether the holder runs, by `/proc` (`cache` is `None`) or by the
    /// pidfd `cache` keeps for `slot`.
    fn alive(&self, cache: Option<(&Liveness, usize)>) -> bool {
        match (self.start_time, cache) {
            (Some(start_time), Some((cache, slot))) => cache.alive(
                slot,
                self.word,
                ProcessId {
                    pid: self.pid,
                    start_time,
                },
            ),
            (Some(start_time), None) => ProcessId {
                pid: self.pid,
                start_time,
            }
            .is_alive(),
            // Between its CAS and its publish: the pid alone tells.
            (None, _) => ProcessId::of(self.pid).is_some(),
        }
    }
}

/// A handle's pidfds, one per slot of the peer table at most.
#[derive(Debug)]
pub(crate) struct Liveness {
    watches: Mutex<Vec<Option<Watched>>>,
}

/// The holder a watch was opened for: the slot's word (pid and id) and the
/// start time it published.
#[derive(Debug)]
struct Watched {
    word: u64,
    watch: ProcessWatch,
}

impl Liveness {
    /// A cache for a table of `max_peers` slots (nothing is opened yet).
    pub(crate) fn new(max_peers: u32) -> Liveness {
        let slots = (max_peers as usize).min(super::layout::MAX_PEERS as usize);
        Liveness {
            watches: Mutex::new((0..slots).map(|_| None).collect()),
        }
    }

    /// Whether `holder`, which holds `slot` with `word`, runs: the pidfd
    /// kept for that holder, opened (and verified) on first need.
    fn alive(&self, slot: usize, word: u64, holder: ProcessId) -> bool {
        // Poisoning cannot leave the cache inconsistent (each entry is
        // replaced whole); nothing in here panics anyway.
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = watches.get_mut(slot) else {
            return holder.is_alive();
        };
        let same = entry
            .as_ref()
            .is_some_and(|w| w.word == word && w.watch.process() == holder);
        if !same {
            // The slot changed hands (or was never watched): the old
            // holder's pidfd is closed here.
            *entry = Some(Watched {
                word,
                watch: ProcessWatch::new(holder),
            });
        }
        entry.as_mut().is_some_and(|w| w.watch.is_alive())
    }

    /// Closes the watch kept for `slot` unless it is for the holder whose
    /// word is `word` (`None`: the slot is free).
    fn forget_unless(&self, slot: usize, word: Option<u64>) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = watches.get_mut(slot)
            && entry.as_ref().is_some_and(|w| Some(w.word) != word)
        {
            *entry = None;
        }
    }

    /// How many pidfds are open (for tests).
    #[cfg(test)]
    fn open_pidfds(&self) -> usize {
        let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        watches
            .iter()
            .flatten()
            .filter(|w| w.watch.uses_pidfd())
            .count()
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
                    reclaim && view(slot).is_some_and(|v| v.word == word && !v.alive(None))
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

/// Whether `id` still holds its slot and its process runs (by the pidfds
/// of `cache`).
pub(crate) fn alive(slots: &[PeerSlot], id: PeerId, cache: &Liveness) -> bool {
    let Some(slot) = slots.get(id.slot()) else {
        return false;
    };
    match view(slot) {
        Some(v) if v.id == Some(id) => v.alive(Some((cache, id.slot()))),
        // `id` left its slot: a pidfd kept for it (or for any holder but
        // the current one) is closed now.
        other => {
            cache.forget_unless(id.slot(), other.map(|v| v.word));
            false
        }
    }
}

/// Every held slot.
pub(crate) fn list(slots: &[PeerSlot], cache: &Liveness) -> Vec<PeerInfo> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, slot)| {
            let v = view(slot);
            if v.is_none() {
                // A free slot: whatever was kept for it is closed.
                cache.forget_unless(i, None);
            }
            Some((i, v?))
        })
        .filter_map(|(i, v)| {
            Some(PeerInfo {
                id: v.id?,
                pid: v.pid,
                start_time: v.start_time.unwrap_or(0),
                role: v.role,
                heartbeat: v.heartbeat,
                alive: v.alive(Some((cache, i))),
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
        let cache = Liveness::new(2);
        let me = ProcessId::current();
        let a = claim(&t, me, 5).unwrap();
        let b = claim(&t, me, 6).unwrap();
        assert_ne!(a.slot(), b.slot());
        assert!(
            claim(&t, me, 7).is_none(),
            "both slots held by a live process"
        );
        let peers = list(&t, &cache);
        assert_eq!(peers.len(), 2);
        assert!(peers.iter().all(|p| p.alive && p.pid == me.pid));
        assert!(alive(&t, a, &cache));
        assert_eq!(cache.open_pidfds(), 2, "one pidfd per slot");
        release(&t, a, me.pid);
        assert!(!alive(&t, a, &cache));
        assert_eq!(cache.open_pidfds(), 1, "closed once its slot is free");
        let c = claim(&t, me, 8).unwrap();
        assert_eq!(c.slot(), a.slot());
        assert_ne!(c, a, "a reused slot gives a new id");
    }

    #[test]
    fn a_dead_holder_is_reclaimed() {
        let t = table(1);
        let cache = Liveness::new(1);
        let ghost = ProcessId {
            pid: ProcessId::current().pid,
            start_time: 1, // our pid, but not our start time: another process
        };
        let old = claim(&t, ghost, 0).unwrap();
        assert!(!alive(&t, old, &cache));
        assert_eq!(cache.open_pidfds(), 0, "a reused pid keeps no pidfd");
        let new = claim(&t, ProcessId::current(), 0).unwrap();
        assert_ne!(new, old);
        assert!(alive(&t, new, &cache));
        assert_eq!(cache.open_pidfds(), 1);
    }

    #[test]
    fn garbage_words_do_not_panic() {
        let t = table(3);
        t[0].word.store(u64::MAX, Ordering::Relaxed);
        t[1].word.store(0xFFFF_FFFF_0000_0001, Ordering::Relaxed);
        t[2].word.store(0x0000_0000_FFFF_FF00, Ordering::Relaxed);
        let cache = Liveness::new(3);
        let _ = list(&t, &cache);
        let id = claim(&t, ProcessId::current(), 0).unwrap();
        assert!(alive(&t, id, &cache));
    }
}
