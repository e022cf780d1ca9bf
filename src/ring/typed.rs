//! Copying and typed forms on top of claim/commit and read/release.

use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::error::{ClaimError, RecvError};
use super::{SpscConsumer, SpscProducer};

impl SpscProducer {
    /// Copies `bytes` into a new frame and publishes it, without blocking.
    ///
    /// # Errors
    /// As [`try_claim`](Self::try_claim).
    #[inline]
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), ClaimError> {
        let mut claim = self.try_claim(bytes.len())?;
        claim.copy_from_slice(bytes);
        claim.commit();
        Ok(())
    }

    /// Copies `bytes` into a new frame and publishes it, waiting for room.
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    #[inline]
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ClaimError> {
        self.send_until(bytes, None)
    }

    /// As [`send`](Self::send), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`claim_timeout`](Self::claim_timeout).
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ClaimError> {
        self.send_until(bytes, Instant::now().checked_add(timeout))
    }

    /// As [`send`](Self::send), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// As [`claim_until`](Self::claim_until).
    pub fn send_until(
        &mut self,
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), ClaimError> {
        let mut claim = self.claim_until(bytes.len(), deadline)?;
        claim.copy_from_slice(bytes);
        claim.commit();
        Ok(())
    }

    /// Sends a plain-old-data value as one frame of `size_of::<T>()` bytes,
    /// without blocking.
    ///
    /// ```
    /// let (mut tx, mut rx) = polycephaly::ring::heap_pair(256).unwrap();
    /// tx.try_send_value(&[1u32, 2, 3]).unwrap();
    /// assert_eq!(rx.try_recv_value::<[u32; 3]>(), Ok([1, 2, 3]));
    /// ```
    ///
    /// # Errors
    /// As [`try_claim`](Self::try_claim).
    #[inline]
    pub fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<(), ClaimError> {
        self.try_send(bytemuck::bytes_of(value))
    }

    /// Sends a plain-old-data value, waiting for room.
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    #[inline]
    pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<(), ClaimError> {
        self.send(bytemuck::bytes_of(value))
    }
}

impl SpscConsumer {
    /// Copies the next frame's payload into `out` (cleared first; it only
    /// allocates if its capacity is too small) and returns the frame's tag,
    /// without blocking.
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

    /// Receives a plain-old-data value sent with
    /// [`send_value`](SpscProducer::send_value), without blocking.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read), and [`RecvError::WrongSize`] (the
    /// frame is consumed) if the frame is not `size_of::<T>()` bytes.
    #[inline]
    pub fn try_recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        let frame = self.try_read()?;
        value_of(&frame)
    }

    /// As [`try_recv_value`](Self::try_recv_value), waiting for a frame.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`RecvError::WrongSize`].
    #[inline]
    pub fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        let frame = self.read()?;
        value_of(&frame)
    }
}

/// Copies a `T` out of a payload of exactly its size (the payload is only
/// 8-aligned, so the read is unaligned).
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
