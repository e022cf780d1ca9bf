//! Who holds what: the region's [`PeerId`], or under loom (where the region
//! layer is not built) a stand-in with the same raw encoding, so that the
//! arena code is the same in both builds.

#[cfg(not(loom))]
pub use crate::region::PeerId;

#[cfg(loom)]
mod stand_in {
    use core::num::NonZeroU32;

    use super::super::layout::HOLD_SLOTS;

    /// A peer's id (loom build): bits 0..8 `slot + 1`, bits 8..32 the
    /// generation, as [`region::PeerId`](https://docs.rs) encodes it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PeerId(NonZeroU32);

    impl PeerId {
        /// The raw 32-bit form.
        pub fn to_raw(self) -> u32 {
            self.0.get()
        }

        /// The id a raw word stands for, `None` if it cannot be one.
        pub fn from_raw(raw: u32) -> Option<PeerId> {
            let slot = raw & 0xFF;
            if slot == 0 || slot as usize > HOLD_SLOTS {
                return None;
            }
            NonZeroU32::new(raw).map(PeerId)
        }

        /// The slot index.
        pub fn slot(self) -> usize {
            ((self.0.get() & 0xFF) - 1) as usize
        }

        /// The slot's generation.
        pub fn generation(self) -> u32 {
            self.0.get() >> 8
        }
    }
}

#[cfg(loom)]
pub use stand_in::PeerId;

/// The id of the holder of slot `slot` whose hold word is `word` (its
/// generation bits), `None` if that cannot be an id.
#[inline]
pub(crate) fn holder(word: u32, slot: usize) -> Option<PeerId> {
    let low = u32::try_from(slot).ok()?.checked_add(1)?;
    PeerId::from_raw((word & super::layout::GEN_MASK) | low)
}
