//! What a read-only look at a ring finds ([`RingState`]), for both kinds:
//! [`spsc::observe`](super::spsc::observe) and
//! [`mpsc::observe`](super::mpsc::observe) read a section through a
//! [`region::Observer`](crate::region::Observer), which never writes.
//!
//! Nothing read is trusted: positions are checked against each other and
//! the capacity, every frame header between the head and the tail is
//! decoded and checked before the walk steps over it, and what does not
//! hold is listed in [`RingState::problems`]. A live ring moves under the
//! reader: the positions are read head first (so the head read is never
//! ahead of the tail read), and a walk is taken again when the head moved
//! during it (the frames it read may have been reused); after a few tries
//! the frame count is left out rather than reported torn.

use crate::region::{ObserveError, PeerId};

use super::frame::frame_len;

/// The most frames a walk counts before it stops (a ring of small frames
/// can hold millions; the count then says "at least").
pub const WALK_LIMIT: u64 = 1 << 20;

/// The frames between the head and the tail, by what their headers say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Messages published (committed) and not yet released.
    pub messages: u64,
    /// Their payload bytes.
    pub payload: u64,
    /// Padding frames (to the end of a lap).
    pub padding: u64,
    /// MPSC: frames claimed by a producer and not committed yet, and
    /// reservations whose header is not written yet.
    pub in_flight: u64,
    /// MPSC: claims given up (a producer that died or withdrew).
    pub abandoned: u64,
    /// The walk stopped at [`WALK_LIMIT`] frames: there are more.
    pub more: bool,
}

/// A ring's state as one read-only look found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingState {
    /// The byte capacity (from the section's length).
    pub capacity: u64,
    /// The consumer's released position.
    pub head: u64,
    /// The end of what producers published (SPSC) or claimed (MPSC).
    pub tail: u64,
    /// MPSC: the end of what the consumer consumed, released lazily
    /// (equal to `head` once everything consumed is released).
    pub release_end: Option<u64>,
    /// The frames between head and tail; `None` when the ring moved too
    /// fast to walk, or a header was inconsistent (see `problems`).
    pub frames: Option<FrameCounts>,
    /// The producer (SPSC) or producers (MPSC) attached now.
    pub producers: Vec<PeerId>,
    /// The consumer attached now.
    pub consumer: Option<PeerId>,
    /// How many times the consumer role was attached.
    pub consumer_attaches: u32,
    /// SPSC: how many times the producer role was attached.
    pub producer_attaches: Option<u32>,
    /// A side found the ring inconsistent and poisoned it.
    pub poisoned: bool,
    /// Waiters announced on the data doorbell (the consumer, asleep or
    /// about to be).
    pub data_sleepers: u32,
    /// Waiters announced on the space doorbell (producers).
    pub space_sleepers: u32,
    /// What does not hold, in words.
    pub problems: Vec<String>,
}

impl RingState {
    /// Bytes between head and tail (0 if the tail is behind).
    pub fn used(&self) -> u64 {
        self.tail.saturating_sub(self.head)
    }
}

/// A role word: `None` for 0, the id for a valid one, and a problem for
/// anything else.
pub(crate) fn holder(raw: u32, what: &str, problems: &mut Vec<String>) -> Option<PeerId> {
    if raw == 0 {
        return None;
    }
    let id = PeerId::from_raw(raw);
    if id.is_none() {
        problems.push(format!("{what} word {raw:#x} is not a peer id"));
    }
    id
}

/// How one frame header reads, for the walk.
pub(crate) enum Step {
    /// A published message of this many payload bytes.
    Message(u64),
    /// Padding to the end of the lap, this many payload bytes.
    Padding(u64),
    /// Claimed, not committed (MPSC), this many payload bytes.
    Claimed(u64),
    /// Given up (MPSC), this many payload bytes.
    Abandoned(u64),
    /// Not written yet (MPSC): the rest is in flight.
    Unwritten,
}

/// Reads the positions with `positions` (head first, then tail), walks
/// the frames with `decode` (the header at a data index), and takes it
/// again while the head moves during the walk (a few times).
pub(crate) fn settle(
    capacity: u64,
    max_payload: u64,
    positions: impl Fn() -> Result<(u64, u64), ObserveError>,
    decode: impl Fn(u64) -> Result<Step, String>,
) -> Result<(u64, u64, Option<FrameCounts>, Vec<String>), ObserveError> {
    let mut last = (0, 0, None, Vec::new());
    for _ in 0..4 {
        let (head, tail) = positions()?;
        let mut problems = Vec::new();
        if head % 8 != 0 || tail % 8 != 0 {
            problems.push(format!(
                "positions not 8-aligned (head {head}, tail {tail})"
            ));
        }
        if tail < head {
            problems.push(format!("tail {tail} is behind head {head}"));
        } else if tail - head > capacity {
            problems.push(format!(
                "{} bytes between head and tail, more than the capacity {capacity}",
                tail - head
            ));
        }
        let frames = if problems.is_empty() {
            match walk(capacity, max_payload, head, tail, &decode) {
                Ok(f) => Some(f),
                Err(e) => {
                    problems.push(e);
                    None
                }
            }
        } else {
            None
        };
        let (again, _) = positions()?;
        last = (head, tail, frames, problems);
        if again == head {
            return Ok(last);
        }
    }
    // Still moving: what was read is stale, not wrong.
    Ok((last.0, last.1, None, Vec::new()))
}

fn walk(
    capacity: u64,
    max_payload: u64,
    head: u64,
    tail: u64,
    decode: &impl Fn(u64) -> Result<Step, String>,
) -> Result<FrameCounts, String> {
    let mask = capacity - 1;
    let mut c = FrameCounts::default();
    let mut pos = head;
    let mut seen = 0u64;
    while pos < tail {
        if seen == WALK_LIMIT {
            c.more = true;
            break;
        }
        seen += 1;
        let idx = pos & mask;
        let step = decode(idx).map_err(|e| format!("frame at position {pos}: {e}"))?;
        let len = match step {
            Step::Unwritten => {
                c.in_flight += 1;
                break;
            }
            Step::Message(len) | Step::Claimed(len) | Step::Abandoned(len) if len > max_payload => {
                return Err(format!(
                    "frame at position {pos}: {len} payload bytes, more than the {max_payload} allowed"
                ));
            }
            Step::Message(len) => {
                c.messages += 1;
                c.payload += len;
                len
            }
            Step::Padding(len) => {
                c.padding += 1;
                len
            }
            Step::Claimed(len) => {
                c.in_flight += 1;
                len
            }
            Step::Abandoned(len) => {
                c.abandoned += 1;
                len
            }
        };
        let total = frame_len(len.min(capacity));
        if idx + total > capacity {
            return Err(format!(
                "frame at position {pos} ({total} bytes) runs past the end of the lap"
            ));
        }
        if pos + total > tail {
            return Err(format!(
                "frame at position {pos} ({total} bytes) runs past the tail {tail}"
            ));
        }
        pos += total;
    }
    Ok(c)
}
