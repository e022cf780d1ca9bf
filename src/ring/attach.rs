//! Attaching SPSC handles to a ring section of a [`Region`].

use core::ptr::NonNull;

use super::error::AttachError;
use super::layout::{CONSUMER, CONTROL_LEN, Control, PRODUCER, capacity_for_section};
use super::spsc::{Backing, RingRef};
use super::{SpscConsumer, SpscProducer};
use crate::region::{Region, SectionId, SectionKind};
use crate::sync::WaitStrategy;

/// Checks section `id` of `region` and attaches a ring view to `role`.
fn region_ring(
    region: &Region,
    id: SectionId,
    role: usize,
) -> Result<(RingRef, u64, u64), AttachError> {
    let section = region.section(id)?;
    if section.kind != SectionKind::SpscRing {
        return Err(AttachError::WrongKind);
    }
    let Some(capacity) = capacity_for_section(section.len) else {
        return Err(AttachError::TooShort { len: section.len });
    };
    // The region promises 64-byte alignment; the control block needs it.
    if section.ptr.as_ptr() as usize % align_of::<Control>() != 0 {
        return Err(AttachError::Corrupted);
    }
    let ctrl = section.ptr.cast::<Control>();
    // SAFETY: the section holds CONTROL_LEN + capacity bytes or more
    // (`capacity_for_section`), so the data start is inside it.
    let data: NonNull<u8> = unsafe { section.ptr.add(CONTROL_LEN) };
    RingRef::attach(
        Backing::Region(region.clone()),
        ctrl,
        data,
        capacity,
        region.peer_id().to_raw(),
        role,
    )
}

impl SpscProducer {
    /// Attaches as the producer of the SPSC ring in section `id` of
    /// `region` (a section of kind [`SectionKind::SpscRing`] and length
    /// [`section_len`](super::section_len)`(capacity)`). The handle keeps the
    /// region mapped.
    ///
    /// ```
    /// use polycephaly::region::{Region, SectionId, SectionKind};
    /// use polycephaly::ring::{section_len, SpscConsumer, SpscProducer};
    ///
    /// let region = Region::builder()
    ///     .section(SectionKind::SpscRing, section_len(4096)?)
    ///     .build()?;
    /// let mut tx = SpscProducer::attach(&region, SectionId(0))?;
    /// let mut rx = SpscConsumer::attach(&region, SectionId(0))?;
    /// // A second producer is refused while the first lives.
    /// assert!(SpscProducer::attach(&region, SectionId(0)).is_err());
    /// tx.send(b"command")?;
    /// let mut buf = Vec::new();
    /// rx.recv(&mut buf)?;
    /// assert_eq!(buf, b"command");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`AttachError::Section`] if there is no such section,
    /// [`AttachError::WrongKind`], [`AttachError::TooShort`],
    /// [`AttachError::RoleTaken`] while another live handle is the
    /// producer, [`AttachError::Corrupted`] if the ring is inconsistent or
    /// poisoned.
    pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
        let (ring, head, tail) = region_ring(region, id, PRODUCER)?;
        Ok(Self::from_parts(ring, head, tail, WaitStrategy::BLOCK))
    }
}

impl SpscConsumer {
    /// Attaches as the consumer of the SPSC ring in section `id` of
    /// `region`; see [`SpscProducer::attach`]. Taking over from a dead
    /// consumer resumes at the last head it stored (see [`SpscConsumer`]).
    ///
    /// # Errors
    /// As [`SpscProducer::attach`], for the consumer role.
    pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
        let (ring, head, tail) = region_ring(region, id, CONSUMER)?;
        Ok(Self::from_parts(ring, head, tail, WaitStrategy::BLOCK))
    }
}
