//! Copying and typed receive forms of the MPSC consumer (the producer's are
//! beside its claim), and attaching handles to a region section.

use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::MpscConsumer;
use crate::ring::RecvError;

impl MpscConsumer {
    /// Copies the next frame's payload into `out` (cleared first) and
    /// returns its tag, without blocking.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read).
    #[inline]
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<u32, RecvError> {
        let frame = self.try_read()?;
        out.clear();
        out.extend_from_slice(&frame);
        Ok(frame.tag())
    }

    /// As [`try_recv`](Self::try_recv), waiting for a frame.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    #[inline]
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<u32, RecvError> {
        self.recv_until(out, None)
    }

    /// As [`recv`](Self::recv), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`read_timeout`](Self::read_timeout).
    pub fn recv_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<u32, RecvError> {
        self.recv_until(out, Instant::now().checked_add(timeout))
    }

    /// As [`recv`](Self::recv), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// As [`read_until`](Self::read_until).
    pub fn recv_until(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<u32, RecvError> {
        let frame = self.read_until(deadline)?;
        out.clear();
        out.extend_from_slice(&frame);
        Ok(frame.tag())
    }

    /// Receives a plain-old-data value, without blocking.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read), and [`RecvError::WrongSize`] (the
    /// frame is consumed) if the frame is not `size_of::<T>()` bytes.
    #[inline]
    pub fn try_recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        let frame = self.try_read()?;
        value_of(&frame)
    }

    /// Receives a plain-old-data value, waiting for a frame.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`RecvError::WrongSize`].
    #[inline]
    pub fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        let frame = self.read()?;
        value_of(&frame)
    }
}

/// Copies a `T` out of a payload of exactly its size.
#[inline]
fn value_of<T: Pod>(bytes: &[u8]) -> Result<T, RecvError> {
    if bytes.len() != size_of::<T>() {
        return Err(RecvError::WrongSize {
            expected: size_of::<T>(),
            got: bytes.len(),
        });
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

#[cfg(not(loom))]
mod region {
    use core::ptr::NonNull;

    use super::super::layout::{CONTROL_LEN, Control, capacity_for_section};
    use super::super::view::{Backing, RingView};
    use super::super::{MpscConsumer, MpscProducer};
    use crate::region::{Region, SectionId, SectionKind};
    use crate::ring::AttachError;

    /// Checks section `id` of `region` and makes a view of it.
    fn view(region: &Region, id: SectionId) -> Result<RingView, AttachError> {
        let section = region.section(id)?;
        if section.kind != SectionKind::MpscRing {
            return Err(AttachError::WrongKind);
        }
        let Some(capacity) = capacity_for_section(section.len) else {
            return Err(AttachError::TooShort { len: section.len });
        };
        if section.ptr.as_ptr() as usize % align_of::<Control>() != 0 {
            return Err(AttachError::Corrupted);
        }
        // SAFETY: the section holds CONTROL_LEN + capacity bytes or more
        // (`capacity_for_section`), so the data start is inside it.
        let data: NonNull<u8> = unsafe { section.ptr.add(CONTROL_LEN) };
        Ok(RingView::new(
            Backing::Region(region.clone()),
            section.ptr.cast(),
            data,
            capacity,
        ))
    }

    impl MpscProducer {
        /// Attaches a producer to the MPSC ring in section `id` of `region`
        /// (a section of kind [`SectionKind::MpscRing`] and length
        /// [`section_len`](crate::ring::mpsc::section_len)`(capacity)`),
        /// identified by the region's peer id. Any number of producers, in
        /// any processes, up to [`MAX_PRODUCERS`](crate::ring::mpsc::MAX_PRODUCERS)
        /// at a time. The handle keeps the region mapped.
        ///
        /// ```
        /// use polycephaly::region::{Region, SectionId, SectionKind};
        /// use polycephaly::ring::mpsc::{section_len, MpscConsumer, MpscProducer};
        ///
        /// let region = Region::builder()
        ///     .section(SectionKind::MpscRing, section_len(4096)?)
        ///     .build()?;
        /// let mut a = MpscProducer::attach(&region, SectionId(0))?;
        /// let mut b = MpscProducer::attach(&region, SectionId(0))?;
        /// let mut rx = MpscConsumer::attach(&region, SectionId(0))?;
        /// a.send(b"one")?;
        /// b.send(b"two")?;
        /// let mut buf = Vec::new();
        /// rx.recv(&mut buf)?;
        /// assert_eq!(buf, b"one");
        /// assert_eq!(rx.producers().len(), 2);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// [`AttachError::Section`] if there is no such section,
        /// [`AttachError::WrongKind`], [`AttachError::TooShort`],
        /// [`AttachError::RoleTaken`] when every producer entry is held,
        /// [`AttachError::Corrupted`] if the ring is inconsistent or
        /// poisoned.
        pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
            let me = region.peer_id().to_raw();
            let (view, entry) = view(region, id)?.attach_producer(me)?;
            Ok(Self::from_parts(view, entry, me))
        }
    }

    impl MpscConsumer {
        /// Attaches as the consumer of the MPSC ring in section `id` of
        /// `region`: one consumer at a time; the role is taken over when
        /// its holder is dead.
        ///
        /// # Errors
        /// As [`MpscProducer::attach`]; [`AttachError::RoleTaken`] while
        /// another live handle is the consumer.
        pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
            let me = region.peer_id().to_raw();
            let (view, head) = view(region, id)?.attach_consumer(me)?;
            Ok(Self::from_parts(view, head, me))
        }
    }
}
