//! A read-only look at an arena section: [`observe`] reads the header,
//! every lane's writer and positions, and the descriptors of its live
//! blocks through a [`region::Observer`](crate::region::Observer), which
//! never writes. Every number is checked before it is used (the geometry
//! against the section's length, positions against each other, each
//! descriptor's tag against the sequence number it should hold, bounds of
//! each block against the lane); what does not hold is listed in the
//! problems of the arena or of its lane. A descriptor reused while it is
//! read shows as [`BlockStatus::Moved`], not as a problem.

use core::mem::offset_of;

use super::layout::{
    ALLOCATED, ARENA_HEADER_LEN, ArenaHeader, COUNT_MASK, DESC_LEN, Desc, FREE, GEN_MASK, Geometry,
    HOLD_SLOTS, LaneCtrl, LaneRole, MAX_SEQ, OWED, PUBLISHED, Progress, READY, RETIRED, tag_seq,
    tag_state,
};
use crate::region::{ObserveError, Observer, PeerId, SectionId, SectionKind};
use crate::sync::{Announced, Doorbell};

/// What a block's descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockStatus {
    /// Its writer is filling it.
    Allocated,
    /// Readable.
    Published,
    /// Being reclaimed.
    Retired,
    /// Free (reclaimed since the positions were read).
    Free,
    /// The descriptor holds another block now (the lane moved on).
    Moved,
}

/// One live block of a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockState {
    /// Its sequence number in the lane.
    pub seq: u64,
    /// What its descriptor says.
    pub status: BlockStatus,
    /// Offset of its first byte in the lane's data.
    pub start: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// Read guards held on it by the peers of the region now.
    pub guards: u32,
    /// Peers named at publish that have not read it yet.
    pub owed: u32,
}

/// One lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneState {
    /// Its index.
    pub index: u32,
    /// Its writer now.
    pub writer: Option<PeerId>,
    /// How many times a writer attached.
    pub attaches: u32,
    /// The oldest block not yet reclaimed.
    pub head_seq: u64,
    /// The next block to allocate.
    pub next_seq: u64,
    /// The live blocks (`head_seq..next_seq`).
    pub blocks: Vec<BlockState>,
    /// Waiters announced on its space doorbell (its writer).
    pub sleepers: u32,
    /// What does not hold in this lane.
    pub problems: Vec<String>,
}

impl LaneState {
    /// Bytes of the lane's live blocks.
    pub fn live_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.bytes).sum()
    }
}

/// An arena's state as one read-only look found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaState {
    /// The lanes the header declares.
    pub lane_count: u32,
    /// Block descriptors per lane.
    pub blocks_per_lane: u32,
    /// Data bytes per lane.
    pub lane_len: u64,
    /// Every lane.
    pub lanes: Vec<LaneState>,
}

/// What the arena in section `id` holds now, read through `obs` without
/// writing anything.
///
/// # Errors
/// [`ObserveError::NoSuchSection`], [`ObserveError::WrongKind`];
/// [`ObserveError::Bad`] when the header is not formatted, or its geometry
/// is invalid or does not fit the section.
pub fn observe(obs: &Observer, id: SectionId) -> Result<ArenaState, ObserveError> {
    let s = obs.section_of(id, SectionKind::Arena)?;
    let bad = |what: String| ObserveError::Bad { id: id.0, what };
    let state = obs.u32_at(id, offset_of!(ArenaHeader, state), "arena state")?;
    if state != READY {
        return Err(bad(format!(
            "arena header not formatted (state {state:#x})"
        )));
    }
    let lanes = obs.u32_at(id, offset_of!(ArenaHeader, lanes), "lane count")?;
    let blocks = obs.u32_at(id, offset_of!(ArenaHeader, blocks), "block count")?;
    let lane_len = obs.u64_at(id, offset_of!(ArenaHeader, lane_len), "lane length")?;
    let g =
        Geometry::new(lanes, blocks, lane_len).map_err(|e| bad(format!("arena header: {e}")))?;
    if g.total > s.len as u64 {
        return Err(bad(format!(
            "arena of {} bytes does not fit its section of {}",
            g.total, s.len
        )));
    }
    // Hold words count only for the peer that holds their slot now (a
    // word of an earlier generation belongs to a peer that left).
    let mut current = [None; HOLD_SLOTS];
    for p in obs.peers() {
        if let Some(c) = current.get_mut(p.id.slot()) {
            *c = Some(p.id.generation());
        }
    }
    let lanes = (0..g.lanes)
        .map(|l| lane(obs, id, &g, l, &current))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ArenaState {
        lane_count: g.lanes,
        blocks_per_lane: g.blocks,
        lane_len: g.lane_len,
        lanes,
    })
}

fn lane(
    obs: &Observer,
    id: SectionId,
    g: &Geometry,
    index: u32,
    current: &[Option<u32>; HOLD_SLOTS],
) -> Result<LaneState, ObserveError> {
    // Cannot overflow: total = header + lanes * stride fits the section.
    let base = ARENA_HEADER_LEN + (u64::from(index) * g.stride) as usize;
    let role = base + offset_of!(LaneCtrl, role);
    let progress = base + offset_of!(LaneCtrl, progress);
    let mut problems = Vec::new();
    let owner = obs.u32_at(id, role + offset_of!(LaneRole, owner), "lane owner")?;
    let writer = match owner {
        0 => None,
        raw => {
            let p = PeerId::from_raw(raw);
            if p.is_none() {
                problems.push(format!("owner word {raw:#x} is not a peer id"));
            }
            p
        }
    };
    let attaches = obs.u32_at(id, role + offset_of!(LaneRole, epoch), "lane epoch")?;
    let head_seq = obs.u64_at(id, progress + offset_of!(Progress, head_seq), "head_seq")?;
    let next_seq = obs.u64_at(id, progress + offset_of!(Progress, next_seq), "next_seq")?;
    let bell = base + offset_of!(LaneCtrl, space_bell) + Doorbell::SLEEPERS_OFFSET;
    let sleepers = Announced::from_word(obs.u32_at(id, bell, "doorbell")?).count;
    let mut state = LaneState {
        index,
        writer,
        attaches,
        head_seq,
        next_seq,
        blocks: Vec::new(),
        sleepers,
        problems,
    };
    if next_seq < head_seq || next_seq - head_seq > u64::from(g.blocks) || next_seq >= MAX_SEQ {
        state.problems.push(format!(
            "positions head_seq {head_seq}, next_seq {next_seq} are impossible with {} descriptors",
            g.blocks
        ));
        return Ok(state);
    }
    let descs = base + size_of::<LaneCtrl>();
    for seq in head_seq..next_seq {
        let at = descs + (seq % u64::from(g.blocks)) as usize * DESC_LEN;
        let tag = obs.u64_at(id, at + offset_of!(Desc, tag), "descriptor tag")?;
        let start = obs.u64_at(id, at + offset_of!(Desc, start), "block start")?;
        let bytes = obs.u64_at(id, at + offset_of!(Desc, bytes), "block length")?;
        let status = if tag_seq(tag) != seq {
            BlockStatus::Moved
        } else {
            match tag_state(tag) {
                ALLOCATED => BlockStatus::Allocated,
                PUBLISHED => BlockStatus::Published,
                RETIRED => BlockStatus::Retired,
                FREE => BlockStatus::Free,
                _ => BlockStatus::Moved,
            }
        };
        let (mut guards, mut owed) = (0, 0);
        if status == BlockStatus::Published || status == BlockStatus::Retired {
            if start % 64 != 0 || start.checked_add(bytes).is_none_or(|end| end > g.lane_len) {
                state.problems.push(format!(
                    "block {seq}: {bytes} bytes at {start} do not fit the lane of {} bytes",
                    g.lane_len
                ));
            }
            for (slot, holder) in current.iter().enumerate() {
                let w = obs.u32_at(id, at + offset_of!(Desc, holds) + 4 * slot, "hold word")?;
                if *holder != Some((w & GEN_MASK) >> 8) {
                    continue;
                }
                guards += w & COUNT_MASK;
                owed += u32::from(w & OWED != 0);
            }
        }
        state.blocks.push(BlockState {
            seq,
            status,
            start,
            bytes,
            guards,
            owed,
        });
    }
    Ok(state)
}
