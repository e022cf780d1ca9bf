//! Who holds what: the region's [`PeerId`] (its raw form is what hold
//! words and owner words store).

pub use crate::region::PeerId;

/// The id of the holder of slot `slot` whose hold word is `word` (its
/// generation bits), `None` if that cannot be an id.
#[inline]
pub(crate) fn holder(word: u32, slot: usize) -> Option<PeerId> {
    let low = u32::try_from(slot).ok()?.checked_add(1)?;
    PeerId::from_raw((word & super::layout::GEN_MASK) | low)
}
