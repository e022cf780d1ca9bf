//! A peer's id: which slot of a region's peer table, in which generation.
//!
//! Kept apart from the table itself so that every layer can name peers,
//! loom models included (which have no region: their heap structures hand
//! out ids of the same form).

use core::num::NonZeroU32;

/// Capacity of the peer table.
pub const MAX_PEERS: u32 = 48;

/// A peer's id: its slot index plus the slot's generation, so a reused slot
/// gives a different id.
///
/// Raw form: bits 0..8 hold `slot + 1` (1..=[`MAX_PEERS`]), bits 8..32 the
/// generation (24 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(NonZeroU32);

impl PeerId {
    /// The raw 32-bit form, e.g. to store in shared memory.
    pub fn to_raw(self) -> u32 {
        self.0.get()
    }

    /// The id a raw word stands for, `None` if it cannot be a peer id.
    pub fn from_raw(raw: u32) -> Option<PeerId> {
        let slot = raw & 0xFF;
        if slot == 0 || slot > MAX_PEERS {
            return None;
        }
        NonZeroU32::new(raw).map(PeerId)
    }

    /// The slot index this id lives in.
    pub fn slot(self) -> usize {
        ((self.0.get() & 0xFF) - 1) as usize
    }

    /// The slot's generation when this id was handed out.
    pub fn generation(self) -> u32 {
        self.0.get() >> 8
    }

    /// The id of `slot` (below [`MAX_PEERS`]) in `generation` (taken
    /// modulo 2^24).
    pub(crate) fn new(slot: usize, generation: u32) -> Option<PeerId> {
        let low = u32::try_from(slot).ok()?.checked_add(1)?;
        PeerId::from_raw((generation & 0x00FF_FFFF) << 8 | low)
    }

    /// The `n`-th id a heap structure hands out (`n` from 0): slot `n % 48`,
    /// generation `n / 48`, so that ids are distinct and valid without a
    /// peer table.
    pub(crate) fn nth(n: u32) -> PeerId {
        let slot = (n % MAX_PEERS) as usize;
        // A slot below MAX_PEERS always gives an id.
        PeerId::new(slot, n / MAX_PEERS).unwrap_or(PeerId(NonZeroU32::MIN))
    }

    /// The inverse of [`nth`](Self::nth).
    pub(crate) fn ordinal(self) -> u32 {
        self.generation() * MAX_PEERS + self.slot() as u32
    }
}

impl core::fmt::Display for PeerId {
    /// `slot.generation`, e.g. `3.17`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.slot(), self.generation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_and_bad_words() {
        let id = PeerId::new(3, 7).unwrap();
        assert_eq!((id.slot(), id.generation()), (3, 7));
        assert_eq!(PeerId::from_raw(id.to_raw()), Some(id));
        assert_eq!(PeerId::from_raw(0), None);
        assert_eq!(PeerId::from_raw(0x100), None);
        assert_eq!(PeerId::from_raw(MAX_PEERS + 1), None);
        assert_eq!(id.to_string(), "3.7");
    }

    #[test]
    fn heap_ids_are_distinct_and_invert() {
        for n in [0, 1, 47, 48, 49, 1000] {
            assert_eq!(PeerId::nth(n).ordinal(), n);
        }
        assert_ne!(PeerId::nth(0), PeerId::nth(48));
    }
}
