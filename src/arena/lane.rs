//! The writer's own record of its lane: the live blocks in lane order,
//! where the next block fits, reclaiming in lane order, and what a writer
//! taking a lane over finds (adopted, or reset when inconsistent).
//!
//! # Reclaiming the block at the head of the lane
//!
//! ```text
//! writer (reclaim)                          reader (acquire, release)
//! ----------------                          -------------------------
//! PUBLISHED and read by all it was meant    tag == PUBLISHED(seq)? (Acquire)
//!   for: count mode `remaining == 0`,       hold word += 1          (CAS)
//!   named mode no live peer owes a read     fence(SeqCst)           F_A
//!                                           tag == PUBLISHED(seq)?  (Acquire)
//! tag := RETIRED(seq)                         no: hold word -= 1, Stale
//! fence(SeqCst)                       F_R   check the descriptor against the
//! any live hold?  (Acquire loads)             handle; remaining -= 1 or clear
//!   yes: keep it, look again later            our owed bit        (Relaxed)
//!   no:  free: its bytes and descriptor     ... read the bytes in place ...
//!        may be reused                      hold word -= 1        (Release)
//!                                           ring the space bell
//! ```
//!
//! F_A and F_R are SeqCst fences, totally ordered: if F_A comes first, the
//! writer's scan after F_R sees the reader's hold (or its release, which
//! synchronises with the scan's Acquire, so the reader's reads are over);
//! if F_R comes first, the reader's second tag load sees RETIRED and the
//! reader backs off without touching the bytes. Either way no byte a
//! reader reads is rewritten under it. The same pair makes `remaining`
//! and the owed bits need no ordering of their own: a reader changes them
//! only after its second tag check saw PUBLISHED, so its F_A precedes the
//! F_R of a writer that sees the change, and that writer's scan sees the
//! hold. A reader holding the block past
//! `remaining == 0` (more reads than published for) makes the writer wait
//! for its release; one that comes later gets `Stale`.
//!
//! Liveness is asked only when the lane is short of room (the *slow*
//! pass, rate-limited while waiting): a hold or owed read of a dead peer
//! is then ignored, and its word cleared once the block is freed.
//!
//! # Adopted blocks and orphans
//!
//! A writer taking a lane over adopts the published blocks it finds: their
//! handles may be on their way to readers (in a ring), so they stay
//! readable. But a writer that died between publishing a block and handing
//! its handle on left a block nobody will read, and since the lane reclaims
//! in order, such an *orphan* would hold every later block up for ever. So
//! the slow pass gives an adopted block up (retires it as if done; a later
//! reader gets `Stale`) once the orphan timeout has passed since the
//! takeover; a block a live peer holds is never given up (the hold scan
//! after the retire, as for any block).

use std::collections::VecDeque;

use super::layout::{
    ALLOCATED, COUNT_MASK, Desc, FREE, MAX_SEQ, MODE_COUNT, MODE_NAMED, OWED, PUBLISHED, RETIRED,
    span, tag, tag_seq, tag_state,
};
use super::peer::holder;
use super::view::{ArenaView, Lane};
use crate::sync::shim::{Ordering, fence};

/// A block the writer allocated and has not reclaimed: the writer's own
/// copy, authoritative for placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) seq: u64,
    pub(crate) start: u64,
    /// `start + span(bytes)`.
    pub(crate) end: u64,
    /// 0 until published, then `MODE_COUNT` or `MODE_NAMED`.
    pub(crate) mode: u32,
    /// Found in the lane when this writer took it over (see the module
    /// docs: it may be an orphan).
    pub(crate) adopted: bool,
}

/// The lane's writer-side state.
///
/// # Invariants
/// `live` holds consecutive sequence numbers ending at `next_seq - 1`, at
/// most `blocks` of them, in lane order: each starts at or after the
/// previous one's end, or at 0 once (the wrap), and when wrapped the
/// newest ends at or before the oldest's start. `drain` is empty unless
/// the lane was reset, and then `live` is empty.
#[derive(Debug)]
pub(crate) struct LaneState {
    pub(crate) live: VecDeque<Live>,
    pub(crate) next_seq: u64,
    /// Descriptors that may still be held after a reset.
    drain: Vec<u32>,
    /// Set when the lane's shared state changed under the writer.
    pub(crate) poisoned: bool,
    /// When the last slow (liveness) pass ran.
    last_slow: Option<crate::sync::clock::Instant>,
    /// When this writer took the lane over and adopted blocks (never set
    /// under loom: its clock is a model, and its arena models adopt
    /// blocks they read afterwards).
    adopted_at: Option<crate::sync::clock::Instant>,
    /// How long adopted blocks are waited for before the slow pass may
    /// give them up.
    pub(crate) orphan_timeout: core::time::Duration,
}

/// How long adopted blocks are waited for, unless the writer says
/// otherwise (`ArenaWriter::set_orphan_timeout`).
pub const DEFAULT_ORPHAN_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(1);

/// How often a waiting writer asks about the liveness of the peers that
/// hold the blocks in its way.
const SLOW_INTERVAL: core::time::Duration = core::time::Duration::from_millis(1);

impl LaneState {
    fn empty(next_seq: u64, blocks: u32) -> Self {
        Self {
            live: VecDeque::with_capacity(blocks as usize),
            next_seq,
            drain: Vec::new(),
            poisoned: false,
            last_slow: None,
            adopted_at: None,
            orphan_timeout: DEFAULT_ORPHAN_TIMEOUT,
        }
    }

    /// Where a block spanning `span` bytes fits in a lane of `cap` bytes
    /// (both multiples of 64), if anywhere: after the newest block, or at
    /// 0 (wrapping) when that leaves room before the oldest.
    pub(crate) fn place(&self, cap: u64, span: u64) -> Option<u64> {
        let (Some(first), Some(last)) = (self.live.front(), self.live.back()) else {
            return (span <= cap).then_some(0);
        };
        let (head, tail) = (first.start, last.end);
        if head < tail {
            // Used: head..tail. Free: tail..cap, then 0..head.
            if tail <= cap && span <= cap - tail {
                return Some(tail);
            }
            (span <= head).then_some(0)
        } else {
            // Wrapped (every span is at least 64, so equal means full).
            // Free: tail..head.
            (span <= head - tail).then_some(tail)
        }
    }

    /// Frees blocks from the head of the lane while they may be freed
    /// (see the module docs). `slow`: also ask about the liveness of the
    /// peers in the way. Returns `false` when the lane's shared state is
    /// not what this writer wrote (the writer is then poisoned).
    pub(crate) fn reclaim(&mut self, view: &ArenaView, lane: &Lane<'_>, slow: bool) -> bool {
        while let Some(&b) = self.live.front() {
            let d = lane.desc(b.seq);
            // Relaxed: our own last store (only the lane's writer writes the
            // tag); any other value means someone else wrote it.
            let t = d.tag.load(Ordering::Relaxed);
            if t == tag(b.seq, PUBLISHED) {
                let done = match b.mode {
                    // Relaxed: a reader uses a read up after its second tag
                    // check; `retire` (F_R) then orders its hold before the
                    // scan below (module docs).
                    MODE_COUNT => d.remaining.load(Ordering::Relaxed) == 0,
                    MODE_NAMED => !held(view, d, true, slow),
                    _ => return self.poison(),
                };
                // An adopted block waited for long enough is given up (a
                // live hold still keeps it, below).
                let given_up = slow && b.adopted && self.orphans_due();
                if !(done || given_up) {
                    break;
                }
                retire(d, b.seq);
            } else if t == tag(b.seq, ALLOCATED) {
                // Adopted from a dead writer that never published it.
                retire(d, b.seq);
            } else if t != tag(b.seq, RETIRED) {
                return self.poison();
            }
            if held(view, d, false, slow) {
                break;
            }
            if slow {
                clear_dead(view, d);
            }
            self.live.pop_front();
            // Release: pairs with the Acquire load of a writer taking the
            // lane over.
            lane.ctrl
                .progress
                .head_seq
                .store(b.seq + 1, Ordering::Release);
        }
        true
    }

    /// Reclaims, then finds room for `span` bytes and a descriptor; asks
    /// about liveness (the slow pass) only if there is no room otherwise
    /// and `slow_ok`. `None`: no room. `Some(Err(()))`: poisoned.
    pub(crate) fn make_room(
        &mut self,
        view: &ArenaView,
        lane: &Lane<'_>,
        span: u64,
        slow_ok: bool,
    ) -> Option<Result<u64, ()>> {
        let blocks = view.geom.blocks as usize;
        for slow in [false, true] {
            if slow {
                if !slow_ok || !self.slow_due() {
                    return None;
                }
                self.last_slow = Some(crate::sync::clock::Instant::now());
            }
            self.drain.retain(|&i| {
                let d = lane.descs().get(i as usize);
                d.is_some_and(|d| held(view, d, false, slow))
            });
            if !self.reclaim(view, lane, slow) {
                return Some(Err(()));
            }
            if self.drain.is_empty() && self.live.len() < blocks {
                if let Some(start) = self.place(lane.len, span) {
                    return Some(Ok(start));
                }
            }
        }
        None
    }

    /// Whether a slow pass may run now: always the first time, then once
    /// per `SLOW_INTERVAL` (under loom, whose clock is a model, every time).
    fn slow_due(&self) -> bool {
        // (Under loom the clock is a model: a slice has passed at every
        // reading.)
        self.last_slow.is_none_or(|t| t.elapsed() >= SLOW_INTERVAL)
    }

    /// Whether adopted blocks have been waited for long enough.
    fn orphans_due(&self) -> bool {
        self.adopted_at
            .is_some_and(|t| t.elapsed() >= self.orphan_timeout)
    }

    /// Lets the next slow pass run at once (a new allocation begins).
    pub(crate) fn slow_now(&mut self) {
        self.last_slow = None;
    }

    #[cold]
    fn poison(&mut self) -> bool {
        self.poisoned = true;
        false
    }

    /// The state a writer finds when it claims a lane: the previous
    /// writer's live blocks, read back from the descriptors and checked;
    /// or, if they do not add up, a reset lane.
    pub(crate) fn take_over(lane: &Lane<'_>, blocks: u32) -> Self {
        Self::adopt(lane, blocks).unwrap_or_else(|| Self::reset(lane, blocks))
    }

    fn adopt(lane: &Lane<'_>, blocks: u32) -> Option<Self> {
        let p = &lane.ctrl.progress;
        // Acquire (both): pair with the previous writer's Release stores; its
        // descriptor writes came before them (and a dead process's stores
        // are complete once its death shows).
        let head = p.head_seq.load(Ordering::Acquire);
        let next = p.next_seq.load(Ordering::Acquire);
        if head > next || next - head > u64::from(blocks) || next >= MAX_SEQ {
            return None;
        }
        let mut st = Self::empty(next, blocks);
        #[cfg(not(loom))]
        if next > head {
            st.adopted_at = Some(crate::sync::clock::Instant::now());
        }
        let mut wrapped = false;
        for seq in head..next {
            let d = lane.desc(seq);
            // Acquire: as above.
            let t = d.tag.load(Ordering::Acquire);
            // Relaxed: ordered by the Acquire loads above.
            let start = d.start.load(Ordering::Relaxed);
            let bytes = d.bytes.load(Ordering::Relaxed);
            if bytes > lane.len {
                return None;
            }
            let end = start.checked_add(span(bytes))?;
            let mode = d.shape.load(Ordering::Relaxed) >> 8;
            let state = tag_state(t);
            let mode_ok = matches!(mode, MODE_COUNT | MODE_NAMED) || state != PUBLISHED;
            if tag_seq(t) != seq || state == FREE || !mode_ok || start % 64 != 0 || end > lane.len {
                return None;
            }
            if let Some(prev) = st.live.back() {
                if start < prev.end {
                    if wrapped || start != 0 {
                        return None;
                    }
                    wrapped = true;
                }
            }
            if let Some(first) = st.live.front() {
                if wrapped && end > first.start {
                    return None;
                }
            }
            let mode = if state == PUBLISHED { mode } else { 0 };
            st.live.push_back(Live {
                seq,
                start,
                end,
                mode,
                adopted: true,
            });
        }
        st.retire_strays(lane, head, next);
        Some(st)
    }

    /// Retires the descriptors outside the adopted range (`head..next`)
    /// that still say PUBLISHED or ALLOCATED, and lets allocation wait
    /// until no live peer holds them (the drain). No writer leaves such a
    /// descriptor (it retires a block before it moves the head past it,
    /// and an unpublished one past `next` is only being allocated): a
    /// hostile peer rewrote the progress line or a tag. Left as they are,
    /// readers could still acquire them while the new writer, which does
    /// not know them, hands their bytes out again (found by the fuzz target
    /// `arena_lanes`).
    fn retire_strays(&mut self, lane: &Lane<'_>, head: u64, next: u64) {
        let blocks = lane.descs().len() as u64;
        let mut strays = false;
        for (i, d) in lane.descs().iter().enumerate() {
            let i = i as u64;
            // Descriptor `i` holds the live block `seq` when `seq % blocks
            // == i` for some `seq` in `head..next` (at most `blocks` of
            // them, checked by `adopt`).
            let first = head + (i + blocks - head % blocks) % blocks;
            if first < next {
                continue;
            }
            // Relaxed: nothing is read after it but the tag itself.
            let t = d.tag.load(Ordering::Relaxed);
            match tag_state(t) {
                PUBLISHED | ALLOCATED => {
                    d.tag.store(tag(tag_seq(t), RETIRED), Ordering::Relaxed);
                    self.drain.push(i as u32);
                    strays = true;
                }
                // Retired, but maybe still read: a stray that an earlier
                // heir retired and died before its readers let go (its
                // drain died with it). The drain keeps it only while a
                // peer holds it; an honest lane's retired descriptors
                // outside the range are held by nobody and leave the
                // drain at the first allocation.
                RETIRED => {
                    self.drain.push(i as u32);
                    strays = true;
                }
                _ => {}
            }
        }
        if strays {
            // F_R for every retired descriptor at once (see the module
            // docs): the drain's scans of the holds come after it.
            fence(Ordering::SeqCst);
        }
    }

    /// Retires every descriptor of the lane and starts over above every
    /// sequence number seen; allocation waits until no live peer holds any
    /// of them (the drain).
    fn reset(lane: &Lane<'_>, blocks: u32) -> Self {
        let p = &lane.ctrl.progress;
        // Every handle of this lane names a sequence number at most the
        // newest in its descriptor's tag: start above them all. Tags beyond
        // half the range are garbage (they would leave no room to go on).
        let mut next = 0;
        for d in lane.descs() {
            // Relaxed: nothing is read after it but the tag itself.
            let t = d.tag.load(Ordering::Relaxed);
            let seq = tag_seq(t);
            if seq < MAX_SEQ / 2 {
                next = next.max(seq + 1);
            }
            if matches!(tag_state(t), PUBLISHED | ALLOCATED) {
                d.tag.store(tag(seq, RETIRED), Ordering::Relaxed);
            }
        }
        // F_R for every descriptor at once (see the module docs).
        fence(Ordering::SeqCst);
        // Release: pairs with a later taker's Acquire.
        p.head_seq.store(next, Ordering::Release);
        p.next_seq.store(next, Ordering::Release);
        let mut st = Self::empty(next, blocks);
        st.drain = (0..blocks).collect();
        st
    }
}

/// Stores RETIRED over a block's tag and fences (F_R).
#[inline]
fn retire(d: &Desc, seq: u64) {
    // Relaxed: F_R below orders it before the scan of the holds.
    d.tag.store(tag(seq, RETIRED), Ordering::Relaxed);
    // F_R: pairs with F_A in the reader's acquire (module docs).
    #[cfg(not(polycephaly_broken_arena = "retire_fence"))]
    fence(Ordering::SeqCst);
}

/// Whether a live peer holds the block of `d` (`owed`: or was named and
/// has not read it yet). Without `slow`, every non-zero word counts as
/// live; with it, dead peers' words are ignored.
pub(crate) fn held(view: &ArenaView, d: &Desc, owed: bool, slow: bool) -> bool {
    let mask = if owed { COUNT_MASK | OWED } else { COUNT_MASK };
    d.holds.iter().enumerate().any(|(slot, w)| {
        // Acquire: pairs with the reader's Release decrement: its reads of
        // the block are over before we reuse it. (An owed bit is cleared
        // Relaxed: F_A/F_R order what matters, see `consume`.)
        let v = w.load(Ordering::Acquire);
        // Ignoring dead peers is what frees a block a dead reader held;
        // `--cfg polycephaly_broken_arena="liveness"` removes it, so that
        // the loom model of a reader's death can be shown to catch it.
        #[cfg(polycephaly_broken_arena = "liveness")]
        let slow = {
            let _ = slow;
            false
        };
        v & mask != 0 && (!slow || holder(v, slot).is_some_and(|id| view.alive(id.to_raw())))
    })
}

/// Clears the hold words of dead peers on a block being freed, so that
/// they do not stand in the way of the descriptor's next block.
fn clear_dead(view: &ArenaView, d: &Desc) {
    for (slot, w) in d.holds.iter().enumerate() {
        // Relaxed: the CAS below checks the value; nothing is published.
        let v = w.load(Ordering::Relaxed);
        if v & (COUNT_MASK | OWED) == 0 {
            continue;
        }
        if !holder(v, slot).is_some_and(|id| view.alive(id.to_raw())) {
            // Relaxed: a dead peer's word; a new holder of the slot that
            // changed it meanwhile keeps its value (the CAS fails).
            let _ = w.compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn state(blocks: &[(u64, u64)]) -> LaneState {
        let mut st = LaneState::empty(0, 16);
        for (i, &(start, end)) in blocks.iter().enumerate() {
            st.live.push_back(Live {
                seq: i as u64,
                start,
                end,
                mode: MODE_COUNT,
                adopted: false,
            });
        }
        st
    }

    #[test]
    fn placement_follows_the_lane_and_wraps_once() {
        assert_eq!(state(&[]).place(256, 256), Some(0));
        assert_eq!(state(&[]).place(256, 320), None);
        assert_eq!(state(&[(0, 64)]).place(256, 192), Some(64));
        assert_eq!(state(&[(0, 64)]).place(256, 256), None);
        // Not enough before the end: wrap to 0 if the head left room.
        assert_eq!(state(&[(128, 192)]).place(256, 128), Some(0));
        assert_eq!(state(&[(128, 192)]).place(256, 192), None);
        // Wrapped: room between the newest's end and the oldest's start.
        assert_eq!(state(&[(128, 256), (0, 64)]).place(256, 64), Some(64));
        assert_eq!(state(&[(128, 256), (0, 64)]).place(256, 128), None);
        assert_eq!(state(&[(64, 256), (0, 64)]).place(256, 64), None, "full");
    }
}
