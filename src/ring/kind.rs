//! What differs between the two ring kinds, as a sealed trait, and what is
//! written once over it: the shape of a ring's section ([`Spec`]), a ring
//! on the heap ([`HeapRing`]), attaching a view to a region section.

use core::marker::PhantomData;
use std::sync::Arc;

use super::core::{HeapMem, RingControl, check_capacity};
use super::error::CapacityError;
use super::frame::{MIN_CAPACITY, max_payload};
#[cfg(any(feature = "testing", loom))]
use crate::region::PeerId;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::ring::spsc::Spsc {}
    impl Sealed for crate::ring::mpsc::Mpsc {}
}

/// A kind of ring: [`Spsc`](super::spsc::Spsc) or
/// [`Mpsc`](super::mpsc::Mpsc). Sealed: the library's two kinds are the
/// only ones.
pub trait Kind: sealed::Sealed + Sized + core::fmt::Debug + Clone + Copy + 'static {
    /// The control block at the start of the kind's section.
    #[doc(hidden)]
    type Control: RingControl + Default + core::fmt::Debug + Send + Sync;
    /// Bytes of control block before the data bytes of a section.
    const CONTROL_LEN: usize;
    /// The largest data capacity.
    const MAX_CAPACITY: usize;
    /// The kind of region section the ring lives in.
    #[cfg(not(loom))]
    const SECTION: crate::region::SectionKind;
    /// What a section of the wrong length should have held, in words.
    #[doc(hidden)]
    const WHAT: &'static str;
}

/// Declares a ring kind: its marker type, its [`Kind`] impl, and the
/// `Spec` and `HeapRing` aliases of its module.
macro_rules! ring_kind {
    ($kind:ident, $name:literal, $section:ident) => {
        #[doc = concat!("The ", $name, " kind, for [`Spec`] and [`HeapRing`].")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $kind;

        impl crate::ring::Kind for $kind {
            type Control = Control;
            const CONTROL_LEN: usize = CONTROL_LEN;
            const MAX_CAPACITY: usize = MAX_CAPACITY;
            #[cfg(not(loom))]
            const SECTION: crate::region::SectionKind = crate::region::SectionKind::$section;
            const WHAT: &'static str = concat!(
                "an ",
                $name,
                " ring (its control block plus a power-of-two capacity)"
            );
        }

        #[doc = concat!("The shape of an ", $name, " ring (see [`crate::ring::Spec`]).")]
        pub type Spec = crate::ring::Spec<$kind>;

        #[doc = concat!("An ", $name, " ring on the heap (see [`crate::ring::HeapRing`]).")]
        pub type HeapRing = crate::ring::HeapRing<$kind>;
    };
}
pub(crate) use ring_kind;

/// The shape of a ring of kind `K` (use [`spsc::Spec`](super::spsc::Spec)
/// or [`mpsc::Spec`](super::mpsc::Spec)): its capacity, checked. Hand it to
/// the region builder ([`RegionBuilder::with`](crate::region::RegionBuilder::with))
/// so that the section has the kind and the exact length the ring needs;
/// attaching refuses any other length.
///
/// ```
/// use polycephaly::region::Region;
/// use polycephaly::ring::{mpsc, spsc};
///
/// let spec = spsc::Spec::new(4096)?;
/// assert_eq!(spec.section_len(), spsc::CONTROL_LEN + 4096);
/// assert_eq!(spec.max_payload(), 2048 - 8);
/// let region = Region::builder()
///     .with(spec)
///     .with(mpsc::Spec::new(1 << 16)?)
///     .build()?;
/// assert!(spsc::Spec::new(1000).is_err());
/// assert!(mpsc::Spec::new(mpsc::MAX_CAPACITY * 2).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec<K> {
    capacity: usize,
    kind: PhantomData<K>,
}

impl<K: Kind> Spec<K> {
    /// A ring of `capacity` data bytes.
    ///
    /// # Errors
    /// [`CapacityError`] unless `capacity` is a power of two from
    /// [`MIN_CAPACITY`](super::MIN_CAPACITY) to the kind's
    /// [`MAX_CAPACITY`](Kind::MAX_CAPACITY).
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        check_capacity(capacity, MIN_CAPACITY, K::MAX_CAPACITY)?;
        Ok(Self {
            capacity,
            kind: PhantomData,
        })
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The section's length: the control block plus the capacity.
    pub fn section_len(&self) -> usize {
        K::CONTROL_LEN + self.capacity
    }

    /// The largest payload a frame may have: half the ring minus a header.
    pub fn max_payload(&self) -> usize {
        max_payload(self.capacity)
    }
}

#[cfg(not(loom))]
impl<K: Kind> crate::region::SectionSpec for Spec<K> {
    fn kind(&self) -> crate::region::SectionKind {
        K::SECTION
    }
    fn section_len(&self) -> usize {
        Spec::section_len(self)
    }
}

/// A ring of kind `K` on the heap (use
/// [`spsc::HeapRing`](super::spsc::HeapRing) or
/// [`mpsc::HeapRing`](super::mpsc::HeapRing)), for the threads of one
/// process and for loom models, property tests and the fuzzer: the same
/// code as a ring in a region section, with peer ids handed out here.
/// Cheap to clone (an `Arc` inside); the memory lives as long as the ring
/// or a handle attached to it. `producer()` and `consumer()` attach.
///
/// ```
/// use polycephaly::ring::{Receiver, Sender, mpsc, spsc};
///
/// let ring = spsc::HeapRing::new(1024)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_send(b"hello")?;
/// let mut buf = Vec::new();
/// rx.try_recv(&mut buf)?;
/// assert_eq!(buf, b"hello");
///
/// let ring = mpsc::HeapRing::new(1024)?;
/// let (mut a, mut b, mut rx) = (ring.producer()?, ring.producer()?, ring.consumer()?);
/// a.try_send(b"from a")?;
/// b.try_send(b"from b")?;
/// rx.try_recv(&mut buf)?;
/// assert_eq!(buf, b"from a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HeapRing<K: Kind> {
    pub(crate) mem: Arc<HeapMem<K::Control>>,
}

impl<K: Kind> Clone for HeapRing<K> {
    fn clone(&self) -> Self {
        Self {
            mem: Arc::clone(&self.mem),
        }
    }
}

impl<K: Kind> HeapRing<K> {
    /// A zeroed ring of `capacity` bytes (empty, no handles attached).
    ///
    /// # Errors
    /// As [`Spec::new`].
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        Ok(Self {
            mem: Arc::new(HeapMem::new(
                capacity,
                K::CONTROL_LEN,
                MIN_CAPACITY,
                K::MAX_CAPACITY,
            )?),
        })
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.mem.capacity()
    }

    /// Declares the handle with this id dead, as if its process had been
    /// killed (a thread cannot be): blocked peers report `PeerDead`, its
    /// role or entry can be taken over, the MPSC consumer may abandon its
    /// pending claim. A test hook.
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

/// A view of the ring of kind `K` in section `id` of `region`, after the
/// checks every attach makes: the section's kind, its exact length, its
/// alignment.
#[cfg(not(loom))]
pub(crate) fn region_view<K: Kind>(
    region: &crate::region::Region,
    id: crate::region::SectionId,
) -> Result<super::core::View<K::Control>, crate::AttachError> {
    use crate::AttachError;
    let section = region.section(id)?;
    if section.kind != K::SECTION {
        return Err(AttachError::WrongKind {
            found: section.kind,
            wanted: K::SECTION,
        });
    }
    let capacity = super::core::capacity_of_section(
        section.len,
        K::CONTROL_LEN,
        MIN_CAPACITY,
        K::MAX_CAPACITY,
        K::WHAT,
    )?;
    // The region promises 64-byte alignment; the control block needs it.
    let align = align_of::<K::Control>();
    if section.ptr.as_ptr() as usize % align != 0 {
        return Err(AttachError::Misaligned { need: align });
    }
    // SAFETY: the section is CONTROL_LEN + capacity bytes
    // (`capacity_of_section`), so the data start is inside it.
    let data = unsafe { section.ptr.add(K::CONTROL_LEN) };
    // SAFETY: the control block at the section's start (aligned, checked)
    // holds only atomics and doorbells, valid for any bits; `capacity` data
    // bytes follow; the region clone keeps the mapping.
    Ok(unsafe { super::core::View::region(region.clone(), section.ptr.cast(), data, capacity) })
}
