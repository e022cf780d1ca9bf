//! The frame a consumer reads in place, written once for both kinds.

use core::fmt;
use core::ops::Deref;

/// Where a checked frame lies in a consumer's ring: plain numbers, no
/// borrow.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    /// Data index of the payload (below the capacity, at most 2^31: a
    /// `u32`, so that the whole location is 24 bytes, as small as the
    /// guard that carries it is returned).
    pub(crate) idx: u32,
    /// Payload bytes.
    pub(crate) len: u32,
    /// The producer's tag.
    pub(crate) tag: u32,
    /// The producer-table entry of the producer that sent it (MPSC; 0 for
    /// SPSC).
    pub(crate) entry: u32,
    /// Position just after the frame (and the padding before it).
    pub(crate) end: u64,
}

const _: () = assert!(size_of::<Loc>() == 24);

impl Loc {
    /// The payload's data index.
    #[inline(always)]
    pub(crate) fn idx(&self) -> u64 {
        u64::from(self.idx)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::ring::spsc::Consumer {}
    impl Sealed for crate::ring::mpsc::Consumer {}
}

/// A consumer that lends frames in place: [`spsc::Consumer`] and
/// [`mpsc::Consumer`]. Sealed.
///
/// [`spsc::Consumer`]: crate::ring::spsc::Consumer
/// [`mpsc::Consumer`]: crate::ring::mpsc::Consumer
pub trait FrameSource: sealed::Sealed {
    /// The payload of the frame at `loc` (checked when it was read).
    #[doc(hidden)]
    fn frame_bytes(&self, loc: &Loc) -> &[u8];
    /// Gives the frame at `loc` back to the producers.
    #[doc(hidden)]
    fn release_frame(&mut self, loc: Loc);
}

/// A frame read in place (use [`spsc::Frame`] or [`mpsc::Frame`]).
/// Dereferences to its payload; dropping it (or [`release`](Self::release))
/// gives the bytes back to the producers (lazily: see each consumer).
///
/// # A live view
///
/// The payload is the ring's own memory, not a copy. The protocol gives it
/// to the consumer until the frame is released, and a correct producer
/// does not touch it; a buggy or hostile one still can, at any moment. The
/// frame's place and length were checked, so a slice never reaches outside
/// its frame, but the *contents* may change while you look at them (by
/// Rust's rules that is a data race, which this type trusts the peer not to
/// start). Where that matters, **copy before you validate**: parse or check
/// a copy (`to_vec`, or the [`Receiver`](crate::ring::Receiver) trait's
/// `recv` and `recv_value`), never the view, so that what you checked is
/// what you use.
///
/// [`spsc::Frame`]: crate::ring::spsc::Frame
/// [`mpsc::Frame`]: crate::ring::mpsc::Frame
pub struct Frame<'a, C: FrameSource> {
    consumer: &'a mut C,
    loc: Loc,
}

impl<'a, C: FrameSource> Frame<'a, C> {
    /// The frame at `loc`, which `consumer` checked.
    #[inline]
    pub(crate) fn new(consumer: &'a mut C, loc: Loc) -> Self {
        Self { consumer, loc }
    }

    /// The tag the producer set (`Claim::set_tag`).
    #[inline]
    pub fn tag(&self) -> u32 {
        self.loc.tag
    }

    /// The producer-table entry of the producer that sent it (an MPSC
    /// ring's; 0 for SPSC).
    #[inline]
    pub fn entry(&self) -> usize {
        self.loc.entry as usize
    }

    /// Releases the frame (the same as dropping it).
    #[inline]
    pub fn release(self) {}
}

impl<C: FrameSource> fmt::Debug for Frame<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.loc.len)
            .field("tag", &self.loc.tag)
            .field("entry", &self.loc.entry)
            .finish()
    }
}

impl<C: FrameSource> Deref for Frame<'_, C> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.consumer.frame_bytes(&self.loc)
    }
}

impl<C: FrameSource> Drop for Frame<'_, C> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.release_frame(self.loc);
    }
}
