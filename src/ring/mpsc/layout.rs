//! The shared layout of an MPSC ring section, the frame header word, and
//! the heap twin of a section.
//!
//! ```text
//! section offset
//!    0  +------------------------------------------------+
//!       | tail: u64      claimed end; CAS by producers    |  line 0
//!   64  +------------------------------------------------+
//!       | head: u64      written by the consumer          |  line 1
//!       | release_end: u64  end of what was consumed      |
//!  128  +------------------------------------------------+
//!       | consumer: u32  raw PeerId of the consumer, 0 free
//!       | epoch: u32     consumer attaches so far         |  line 2
//!       | poisoned: u32  non-zero once corruption seen    |
//!  192  +------------------------------------------------+
//!       | data bell: Doorbell   the consumer sleeps here  |  line 3
//!  256  +------------------------------------------------+
//!       | space bell: Doorbell  producers sleep here      |  line 4
//!  320  +------------------------------------------------+
//!       | records[64]: one line per producer entry:       |  lines 5..69
//!       |   intent: u64  (claim start | 1), 0 = none      |
//!       |   need: u32    bytes of that claim              |
//!       |   owner: u32   raw PeerId of the producer, 0 free
//! 4416  +------------------------------------------------+
//!       | data: capacity bytes (2^k) of frames            |
//!       +------------------------------------------------+
//! ```
//!
//! The section is exactly [`CONTROL_LEN`] plus the capacity: attaching
//! refuses any other length (see [`Spec`]). All-zero memory is a valid,
//! empty ring with no producer and no consumer.
//!
//! # Invariants (checked on every read, never trusted)
//! - `tail`: moved forward only by a producer's CAS (by the bytes of one
//!   claim); multiple of 8; `head <= tail <= head + capacity`.
//! - `head`: written only by the consumer (Release), after it zeroed the
//!   bytes it releases; multiple of 8, never decreases.
//! - `release_end`: written only by the consumer: the end of what it
//!   consumed, stored as each frame is consumed (releases are lazy, see
//!   the module docs of `mpsc`), and always before the bytes up to it are
//!   zeroed. The head it will store next: a consumer that takes the role
//!   over from a dead one releases up to it first, so that nothing consumed
//!   is delivered again and a zeroed header at the old head is not taken
//!   for a reservation nobody made. `head <= release_end <= tail`,
//!   `release_end - head <= capacity`, multiple of 8; a value past the
//!   tail (a consumer that walked a forged header) is refused.
//! - `records[e]`: written only by the producer holding entry `e`
//!   (`owner`), except that a new producer takes over an entry whose owner
//!   is gone and whose `intent` names no claim at or after the head.
//!   `intent` and `need` describe the producer's latest claim *attempt*
//!   (written before its tail CAS, Release): they are how the consumer
//!   finds the claimer of a frame whose header is still 0.
//! - `poisoned`: set by any side that found the ring inconsistent; never
//!   cleared.
//!
//! # Frame header (one `u64`, at an 8-aligned position)
//! ```text
//! bits  0..23  len: payload bytes (< 2^23)
//! bits 23..29  entry: the claimer's record index (0..64)
//! bits 29..32  kind: 1 claimed, 2 committed, 3 padding, 4 abandoned
//! bits 32..64  tag: the user's tag (set by the commit)
//! ```
//! A header word of 0 is "unwritten": the consumer zeroes every byte it
//! consumed, so a position of the next lap reads as 0 until claimed.

use crate::ring::core::{Line, RingControl};
use crate::sync::Doorbell;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// The largest byte capacity of an MPSC ring (16 MiB), so that every
/// payload length (at most half the ring) fits the header's 23 bits.
pub const MAX_CAPACITY: usize = 1 << 24;

/// How many producers can be attached to one ring at a time (the record
/// table's length).
#[cfg(not(loom))]
pub const MAX_PRODUCERS: usize = 64;
/// How many producers can be attached at a time (small under loom, to keep
/// the models' state space small).
#[cfg(loom)]
pub const MAX_PRODUCERS: usize = 4;

/// Header kinds (bits 29..32 of the header's low half).
pub(crate) const CLAIMED: u32 = 1;
pub(crate) const COMMITTED: u32 = 2;
pub(crate) const PADDING: u32 = 3;
pub(crate) const ABANDONED: u32 = 4;

const LEN_BITS: u32 = 23;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
const ENTRY_SHIFT: u32 = LEN_BITS;
const ENTRY_MASK: u32 = 0x3F;
const KIND_SHIFT: u32 = 29;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: u32,
    pub(crate) entry: u32,
    pub(crate) len: u32,
    pub(crate) tag: u32,
}

impl Header {
    /// Packs a header. `len < 2^23`, `entry < 64`, `kind < 8`.
    #[inline]
    pub(crate) const fn encode(kind: u32, entry: u32, len: u32, tag: u32) -> u64 {
        let low = (kind << KIND_SHIFT) | ((entry & ENTRY_MASK) << ENTRY_SHIFT) | (len & LEN_MASK);
        (low as u64) | ((tag as u64) << 32)
    }

    /// Unpacks a header word (any bits).
    #[inline]
    pub(crate) const fn decode(word: u64) -> Self {
        let low = word as u32;
        Self {
            kind: low >> KIND_SHIFT,
            entry: (low >> ENTRY_SHIFT) & ENTRY_MASK,
            len: low & LEN_MASK,
            tag: (word >> 32) as u32,
        }
    }
}

/// The consumer's released position and the end of what it consumed
/// (line 1).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct HeadWords {
    /// Start of the next unconsumed frame.
    pub(crate) pos: AtomicU64,
    /// The end of what the consumer consumed: the head its next release
    /// stores (equal to `pos` when everything consumed is released).
    pub(crate) release_end: AtomicU64,
}

/// The consumer's role words and the poison flag (line 2).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Roles {
    /// Raw `PeerId` of the consumer, 0 when free.
    pub(crate) consumer: AtomicU32,
    /// Consumer attaches so far.
    pub(crate) epoch: AtomicU32,
    /// Non-zero once a side saw the ring inconsistent.
    pub(crate) poisoned: AtomicU32,
}

/// A producer's record (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Start of the latest claim attempt, with bit 0 set; 0 for none.
    pub(crate) intent: AtomicU64,
    /// Bytes of that attempt (padding included).
    pub(crate) need: AtomicU32,
    /// Raw `PeerId` of the producer holding this entry; 0 when free.
    pub(crate) owner: AtomicU32,
}

/// The control block at the start of an MPSC section.
#[repr(C)]
#[derive(Debug)]
pub struct Control {
    pub(crate) tail: Line<AtomicU64>,
    pub(crate) head: Line<HeadWords>,
    pub(crate) roles: Line<Roles>,
    pub(crate) data_bell: Line<Doorbell>,
    pub(crate) space_bell: Line<Doorbell>,
    pub(crate) records: [Line<Record>; MAX_PRODUCERS],
}

impl RingControl for Control {
    fn poisoned(&self) -> &AtomicU32 {
        &self.roles.poisoned
    }
    fn data_bell(&self) -> &Doorbell {
        &self.data_bell
    }
    fn space_bell(&self) -> &Doorbell {
        &self.space_bell
    }
}

impl Default for Control {
    fn default() -> Self {
        Self {
            tail: Line::default(),
            head: Line::default(),
            roles: Line::default(),
            data_bell: Line::default(),
            space_bell: Line::default(),
            records: core::array::from_fn(|_| Line::default()),
        }
    }
}

/// Bytes of control block before the data bytes of an MPSC section.
pub const CONTROL_LEN: usize = (5 + MAX_PRODUCERS) * 64;

#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<Control>() == CONTROL_LEN);
    assert!(align_of::<Control>() == 64);
    assert!(offset_of!(Control, tail) == 0);
    assert!(offset_of!(Control, head) == 64);
    assert!(offset_of!(Control, roles) == 128);
    assert!(offset_of!(Control, data_bell) == 192);
    assert!(offset_of!(Control, space_bell) == 256);
    assert!(offset_of!(Control, records) == 320);
    assert!(size_of::<HeadWords>() == 16);
    assert!(size_of::<Record>() == 16);
    assert!(size_of::<Line<Record>>() == 64);
    assert!(size_of::<Roles>() == 12);
    // Every payload length fits the header's len field.
    assert!(MAX_CAPACITY / 2 <= LEN_MASK as usize + 1);
    assert!(MAX_PRODUCERS <= ENTRY_MASK as usize + 1);
};

crate::ring::kind::ring_kind!(Mpsc, "MPSC", MpscRing);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let w = Header::encode(COMMITTED, 63, (1 << 23) - 1, 0xDEAD_BEEF);
        assert_eq!(
            Header::decode(w),
            Header {
                kind: COMMITTED,
                entry: 63,
                len: (1 << 23) - 1,
                tag: 0xDEAD_BEEF
            }
        );
        assert_ne!(Header::encode(CLAIMED, 0, 0, 0), 0, "a claim is never 0");
        assert_eq!(Header::decode(0).kind, 0);
    }

    #[test]
    fn capacities() {
        let cap = |len| {
            crate::ring::core::capacity_of_section(len, CONTROL_LEN, 64, MAX_CAPACITY, "x").ok()
        };
        assert!(Spec::new(64).is_ok());
        assert!(Spec::new(MAX_CAPACITY * 2).is_err());
        assert_eq!(cap(CONTROL_LEN + 4096), Some(4096));
        assert_eq!(cap(CONTROL_LEN + 4096 + 8), None);
        // An SPSC section of the same capacity is refused, not read as a
        // smaller MPSC ring.
        assert_eq!(cap(crate::ring::spsc::CONTROL_LEN + (1 << 16)), None);
    }
}
