//! The shared layout of an SPSC ring section, its size, and the ring on the
//! heap.
//!
//! ```text
//! section offset
//!   0  +-----------------------------------------------+
//!      | tail: u64         written by the producer      |  line 0
//!  64  +-----------------------------------------------+
//!      | head: u64         written by the consumer      |  line 1
//! 128  +-----------------------------------------------+
//!      | holder[2]: u32    role words (raw PeerId, 0 = free)
//!      | epoch[2]: u32     attaches so far, per role    |  line 2
//!      | poisoned: u32     non-zero once corruption seen|
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
//! # Invariants (checked on every read, never trusted)
//! - `tail`: written only by the producer (Release, after the frames it
//!   publishes), read by the consumer (Acquire). Multiple of 8, never
//!   decreases, `head <= tail <= head + capacity`.
//! - `head`: written only by the consumer (Release, after it finished
//!   reading the frames it releases; lazily, see `Consumer`), read by the
//!   producer (Acquire). Same constraints. Each side keeps a private copy of
//!   the other's position that may be stale (older, never newer).
//! - `holder[r]`: the raw `PeerId` of the process that holds role `r`
//!   (0 producer, 1 consumer), 0 when free; set by CAS on attach, cleared on
//!   drop, taken over by CAS when the holder is dead.
//! - `epoch[r]`: incremented on each attach to role `r`; a free role with a
//!   non-zero epoch means the peer came and left.
//! - `poisoned`: set by a side that found the ring inconsistent; it is
//!   never cleared.

use std::sync::Arc;

#[cfg(any(feature = "testing", loom))]
use crate::region::PeerId;
use crate::ring::core::{HeapMem, Line, RingControl, check_capacity};
use crate::ring::error::CapacityError;
use crate::ring::frame::MIN_CAPACITY;
use crate::sync::Doorbell;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// The largest byte capacity of an SPSC ring (2 GiB), so that every length
/// fits the 31 bits of a header's length word.
pub const MAX_CAPACITY: usize = 1 << 31;

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
}

/// The control block at the start of a ring section (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Control {
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
    assert!(size_of::<Roles>() == 20);
};

/// The shape of an SPSC ring: its capacity, checked. Hand it to the region
/// builder ([`RegionBuilder::with`](crate::region::RegionBuilder::with)) so
/// that the section has the kind and the exact length the ring needs.
///
/// ```
/// use polycephaly::region::Region;
/// use polycephaly::ring::spsc;
///
/// let spec = spsc::Spec::new(4096)?;
/// assert_eq!(spec.section_len(), spsc::CONTROL_LEN + 4096);
/// assert_eq!(spec.max_payload(), 2048 - 8);
/// let region = Region::builder().with(spec).build()?;
/// assert!(spsc::Spec::new(1000).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    capacity: usize,
}

impl Spec {
    /// A ring of `capacity` data bytes.
    ///
    /// # Errors
    /// [`CapacityError`] unless `capacity` is a power of two from
    /// [`MIN_CAPACITY`] to
    /// [`MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        check_capacity(capacity, MIN_CAPACITY, MAX_CAPACITY)?;
        Ok(Self { capacity })
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The section's length: the control block plus the capacity.
    pub fn section_len(&self) -> usize {
        CONTROL_LEN + self.capacity
    }

    /// The largest payload a frame may have: half the ring minus a header.
    pub fn max_payload(&self) -> usize {
        crate::ring::frame::max_payload(self.capacity)
    }
}

#[cfg(not(loom))]
impl crate::region::SectionSpec for Spec {
    fn kind(&self) -> crate::region::SectionKind {
        crate::region::SectionKind::SpscRing
    }
    fn section_len(&self) -> usize {
        Spec::section_len(self)
    }
}

/// The length every attach checks a section against.
#[cfg(not(loom))]
pub(crate) fn capacity_of_section(len: usize) -> Result<usize, crate::AttachError> {
    crate::ring::core::capacity_of_section(
        len,
        CONTROL_LEN,
        MIN_CAPACITY,
        MAX_CAPACITY,
        "an SPSC ring (its control block plus a power-of-two capacity)",
    )
}

/// An SPSC ring on the heap, for the threads of one process (and for loom
/// models, property tests and the fuzzer): the same code as a ring in a
/// region section. Cheap to clone (an `Arc` inside); the memory lives as
/// long as the ring or a handle attached to it.
///
/// ```
/// use polycephaly::ring::{Receiver, Sender, spsc};
///
/// let ring = spsc::HeapRing::new(1024)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_send(b"hello")?;
/// let mut buf = Vec::new();
/// rx.try_recv(&mut buf)?;
/// assert_eq!(buf, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HeapRing {
    pub(crate) mem: Arc<HeapMem<Control>>,
}

impl HeapRing {
    /// A zeroed ring of `capacity` bytes (empty, no handles attached).
    ///
    /// # Errors
    /// As [`Spec::new`].
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        Ok(Self {
            mem: Arc::new(HeapMem::new(
                capacity,
                CONTROL_LEN,
                MIN_CAPACITY,
                MAX_CAPACITY,
            )?),
        })
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.mem.capacity()
    }

    /// Declares the handle with this id dead, as if its process had been
    /// killed (a thread cannot be): the other side's blocking calls then
    /// report `PeerDead`, and the role can be taken over. A test hook.
    #[cfg(any(feature = "testing", loom))]
    pub fn mark_dead(&self, id: PeerId) {
        self.mem.peers.mark_dead(id);
    }

    /// The whole ring memory, for the fuzzer to overwrite.
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn raw_bytes(&self) -> (*mut u8, usize) {
        self.mem.raw_bytes()
    }
}
