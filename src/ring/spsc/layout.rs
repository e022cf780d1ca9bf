//! The shared layout of an SPSC ring section, its size, and the ring on the
//! heap.
//!
//! ```text
//! section offset
//!   0  +-----------------------------------------------+
//!      | tail: u64         written by the producer (a hint) line 0
//!  64  +-----------------------------------------------+
//!      | head: u64         written by the consumer      |  line 1
//! 128  +-----------------------------------------------+
//!      | holder[2]: u32    role words (raw PeerId, 0 = free)
//!      | epoch[2]: u32     attaches so far, per role    |  line 2
//!      | poisoned: u32     non-zero once corruption seen|
//!      | consumer_cpu: u32 where the consumer last waited (a hint)
//! 192  +-----------------------------------------------+
//!      | data bell: Doorbell  the consumer sleeps here  |  line 3
//! 256  +-----------------------------------------------+
//!      | space bell: Doorbell the producer sleeps here  |  line 4
//! 320  +-----------------------------------------------+
//!      | data: capacity bytes (2^k) of frames           |
//!      +-----------------------------------------------+
//! ```
//!
//! The section is exactly [`CONTROL_LEN`] plus the capacity: attaching
//! refuses any other length (see [`Spec`]). All-zero memory is a valid,
//! empty ring with no producer and no consumer, so a zero-filled section
//! needs no initialisation.
//!
//! # Frames and publication
//! Frames are laid out as in [`ring::frame`](crate::ring::frame), with one
//! more bit in the length word: bit 30, [`READY`], is set in every header
//! the producer writes (data and padding frames), so that no header is ever
//! the all-zero word. The consumer does not read the tail: it polls the
//! header word at its own position, which is zero until the producer
//! publishes the frame that starts there. A frame reaches the consumer in
//! the cache line it is written in, with no second line (the tail's) to
//! fetch first.
//!
//! What makes a zero word mean "not yet" even after a lap, when the bytes
//! at the consumer's position may be an old frame's payload: before the
//! producer publishes frames ending at position `e`, it stores zero in the
//! word at `e`. The word at the published end is therefore zero until the
//! next publication writes a header there, and the consumer, who reaches
//! `e` only through the Acquire load of a header published after that
//! zero, cannot see the bytes that were there before. For the word at `e`
//! to be free, the producer keeps one word of the ring unused: a frame is
//! admitted only if it ends at least 8 bytes before `head + capacity`
//! (Aeron zeroes whole terms behind its readers; the Disruptor uses fixed
//! slots with sequence numbers; one word ahead is all a byte ring needs).
//!
//! # Invariants (checked on every read, never trusted)
//! - The word at the published end (the first position no published frame
//!   covers) is zero, stored before the publication of the frames that end
//!   there; every frame ends at most `head + capacity - 8`.
//! - A batch of frames is published by one Release store: the first word of
//!   the batch (its first header, or the padding frame before it), written
//!   last; the headers after it are plain stores ordered by it.
//! - `tail`: written only by the producer, after the header store that
//!   publishes (Release). A hint for observers and for the next producer:
//!   a producer that dies between the two stores leaves it behind the
//!   published end, and the next producer walks the headers from it to
//!   the zero word. Multiple of 8, never decreases,
//!   `tail <= head + capacity`. It may lag behind `head` (the consumer
//!   reads headers, not the hint, so it reads and releases past a stale
//!   one); one behind `head` counts as `head`.
//! - `head`: written only by the consumer (Release, after it finished
//!   reading the frames it releases; lazily, see `Consumer`), read by the
//!   producer (Acquire). Multiple of 8, never decreases. Each side keeps a private copy of
//!   the other's position that may be stale (older, never newer).
//! - `holder[r]`: the raw `PeerId` of the process that holds role `r`
//!   (0 producer, 1 consumer), 0 when free; set by CAS on attach, cleared on
//!   drop, taken over by CAS when the holder is dead.
//! - `epoch[r]`: incremented on each attach to role `r`; a free role with a
//!   non-zero epoch means the peer came and left.
//! - `poisoned`: set by a side that found the ring inconsistent; it is
//!   never cleared.
//! - `consumer_cpu`: the CPU the consumer ran on when it last began a
//!   wait (one that its gentle looks after a stream did not end), plus one
//!   (0: not known); stored only when it changes. A hint for
//!   the producer's demotes (see `Producer::publish`), never trusted: a
//!   wrong value costs speed, nothing else.

use crate::ring::core::{Line, RingControl};
use crate::sync::Doorbell;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// The largest byte capacity of an SPSC ring (2 GiB), so that every length
/// fits the 31 bits of a header's length word.
pub const MAX_CAPACITY: usize = 1 << 31;

/// Bit 30 of an SPSC frame header's length word: set in every header the
/// producer writes, so that a published header is never zero (the word
/// the consumer polls is zero until its frame is published).
pub(crate) const READY: u32 = 1 << 30;

/// Role index of the producer in [`Roles`].
pub(crate) const PRODUCER: usize = 0;
/// Role index of the consumer in [`Roles`].
pub(crate) const CONSUMER: usize = 1;

/// The role words (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Roles {
    pub(crate) holder: [AtomicU32; 2],
    pub(crate) epoch: [AtomicU32; 2],
    pub(crate) poisoned: AtomicU32,
    /// The CPU the consumer ran on when it last began to wait, plus one
    /// (0: not known). A hint, never trusted: any value is harmless.
    pub(crate) consumer_cpu: AtomicU32,
}

/// The control block at the start of a ring section (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub struct Control {
    pub(crate) tail: Line<AtomicU64>,
    pub(crate) head: Line<AtomicU64>,
    pub(crate) roles: Line<Roles>,
    pub(crate) data_bell: Line<Doorbell>,
    pub(crate) space_bell: Line<Doorbell>,
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

/// Bytes of control block before the data bytes of an SPSC ring section.
pub const CONTROL_LEN: usize = 5 * 64;

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
    assert!(size_of::<Roles>() == 24);
};

crate::ring::kind::ring_kind!(Spsc, "SPSC", SpscRing);
