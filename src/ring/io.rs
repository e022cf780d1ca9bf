//! The copying and typed forms, written once for both ring kinds on top of
//! their zero-copy claim/commit and read/release.

use crate::sync::clock::Instant;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use bytemuck::Pod;

use super::error::{
    ClaimError, CommitError, RecvError, SendError, TryClaimError, TryRecvError, TrySendError,
};

/// A claimed frame that can be committed: [`spsc::Claim`](super::spsc::Claim)
/// and [`mpsc::Claim`](super::mpsc::Claim).
pub trait Commit: DerefMut<Target = [u8]> {
    /// Sets the frame's tag, a `u32` the consumer reads back.
    fn set_tag(&mut self, tag: u32);

    /// Publishes the frame.
    ///
    /// # Errors
    /// Only an MPSC commit can fail: see [`CommitError`].
    fn commit(self) -> Result<(), CommitError>;
}

/// A frame read in place: [`spsc::Frame`](super::spsc::Frame) and
/// [`mpsc::Frame`](super::mpsc::Frame). Dropping it releases it (lazily:
/// see each consumer).
pub trait ReadFrame: Deref<Target = [u8]> {
    /// The tag its producer set.
    fn tag(&self) -> u32;
}

/// The writing end of a ring, either kind: claim room, write in place,
/// commit; and the copying (`send`) and typed (`send_value`) forms on top.
///
/// Every blocking form has a `try_` form that never waits and `_timeout` and
/// `_deadline` forms; see the crate's API conventions.
///
/// ```
/// use polycephaly::ring::{Receiver, Sender, mpsc, spsc};
///
/// /// Works with either kind of ring.
/// fn send_all(tx: &mut impl Sender, items: &[u64]) -> Result<(), Box<dyn std::error::Error>> {
///     for x in items {
///         tx.send_value(x)?;
///     }
///     Ok(())
/// }
///
/// let ring = spsc::HeapRing::new(1024)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// send_all(&mut tx, &[1, 2])?;
/// assert_eq!(rx.try_recv_value::<u64>()?, 1);
///
/// let ring = mpsc::HeapRing::new(1024)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// send_all(&mut tx, &[3])?;
/// assert_eq!(rx.try_recv_value::<u64>()?, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Sender {
    /// The claim guard.
    type Claim<'a>: Commit
    where
        Self: 'a;

    /// Claims room for a frame of `len` payload bytes without waiting.
    ///
    /// # Errors
    /// See [`TryClaimError`].
    fn try_claim(&mut self, len: usize) -> Result<Self::Claim<'_>, TryClaimError>;

    /// Claims room for a frame, waiting until `deadline` at most (`None`: no
    /// limit).
    ///
    /// # Errors
    /// See [`ClaimError`].
    fn claim_deadline(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Self::Claim<'_>, ClaimError>;

    /// Claims room for a frame, waiting for it without limit.
    ///
    /// # Errors
    /// See [`ClaimError`] (never `TimedOut`).
    #[inline]
    fn claim(&mut self, len: usize) -> Result<Self::Claim<'_>, ClaimError> {
        self.claim_deadline(len, None)
    }

    /// As [`claim`](Self::claim), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`ClaimError`].
    fn claim_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Self::Claim<'_>, ClaimError> {
        self.claim_deadline(len, Instant::now().checked_add(timeout))
    }

    /// Copies `bytes` into a new frame and commits it, without waiting.
    ///
    /// # Errors
    /// See [`TrySendError`].
    #[inline]
    fn try_send(&mut self, bytes: &[u8]) -> Result<(), TrySendError> {
        let mut claim = self.try_claim(bytes.len())?;
        claim.copy_from_slice(bytes);
        Ok(claim.commit()?)
    }

    /// Copies `bytes` into a new frame and commits it, waiting for room.
    ///
    /// # Errors
    /// See [`SendError`] (never `TimedOut`).
    #[inline]
    fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_deadline(bytes, None)
    }

    /// As [`send`](Self::send), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`SendError`].
    fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_deadline(bytes, Instant::now().checked_add(timeout))
    }

    /// As [`send`](Self::send), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// See [`SendError`].
    #[inline]
    fn send_deadline(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        let mut claim = self.claim_deadline(bytes.len(), deadline)?;
        claim.copy_from_slice(bytes);
        Ok(claim.commit()?)
    }

    /// Sends a plain-old-data value as one frame of `size_of::<T>()` bytes,
    /// without waiting.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send).
    #[inline]
    fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<(), TrySendError> {
        self.try_send(bytemuck::bytes_of(value))
    }

    /// Sends a plain-old-data value, waiting for room.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    #[inline]
    fn send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.send(bytemuck::bytes_of(value))
    }

    /// As [`send_value`](Self::send_value), giving up at `deadline`.
    ///
    /// # Errors
    /// As [`send_deadline`](Self::send_deadline).
    #[inline]
    fn send_value_deadline<T: Pod>(
        &mut self,
        value: &T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.send_deadline(bytemuck::bytes_of(value), deadline)
    }
}

/// The reading end of a ring, either kind: read in place and release; and
/// the copying (`recv`) and typed (`recv_value`) forms on top.
///
/// The copying forms are the ones that are safe against a peer that keeps
/// writing a frame after publishing it: validate the copy.
pub trait Receiver {
    /// The frame guard.
    type Frame<'a>: ReadFrame
    where
        Self: 'a;

    /// Reads the next frame in place, without waiting.
    ///
    /// # Errors
    /// See [`TryRecvError`] (never `WrongSize`).
    fn try_read(&mut self) -> Result<Self::Frame<'_>, TryRecvError>;

    /// Reads the next frame in place, waiting until `deadline` at most
    /// (`None`: no limit).
    ///
    /// # Errors
    /// See [`RecvError`] (never `WrongSize`).
    fn read_deadline(&mut self, deadline: Option<Instant>) -> Result<Self::Frame<'_>, RecvError>;

    /// Reads the next frame in place, waiting for it without limit.
    ///
    /// # Errors
    /// See [`RecvError`] (never `TimedOut` or `WrongSize`).
    #[inline]
    fn read(&mut self) -> Result<Self::Frame<'_>, RecvError> {
        self.read_deadline(None)
    }

    /// As [`read`](Self::read), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`RecvError`] (never `WrongSize`).
    fn read_timeout(&mut self, timeout: Duration) -> Result<Self::Frame<'_>, RecvError> {
        self.read_deadline(Instant::now().checked_add(timeout))
    }

    /// Copies the next frame's payload into `out` (cleared first; it only
    /// allocates if its capacity is too small) and returns the frame's tag,
    /// without waiting.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read).
    #[inline]
    fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<u32, TryRecvError> {
        let frame = self.try_read()?;
        out.clear();
        out.extend_from_slice(&frame);
        Ok(frame.tag())
    }

    /// As [`try_recv`](Self::try_recv), waiting for a frame.
    ///
    /// # Errors
    /// As [`read_deadline`](Self::read_deadline) (never `TimedOut`).
    #[inline]
    fn recv(&mut self, out: &mut Vec<u8>) -> Result<u32, RecvError> {
        self.recv_deadline(out, None)
    }

    /// As [`recv`](Self::recv), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`read_deadline`](Self::read_deadline).
    fn recv_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<u32, RecvError> {
        self.recv_deadline(out, Instant::now().checked_add(timeout))
    }

    /// As [`recv`](Self::recv), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// As [`read_deadline`](Self::read_deadline).
    #[inline]
    fn recv_deadline(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<u32, RecvError> {
        let frame = self.read_deadline(deadline)?;
        out.clear();
        out.extend_from_slice(&frame);
        Ok(frame.tag())
    }

    /// Receives a plain-old-data value sent with
    /// [`send_value`](Sender::send_value), without waiting.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read), and [`TryRecvError::WrongSize`] (the
    /// frame is consumed) if the frame is not `size_of::<T>()` bytes.
    #[inline]
    fn try_recv_value<T: Pod>(&mut self) -> Result<T, TryRecvError> {
        let frame = self.try_read()?;
        value_of(&frame).map_err(|(expected, got)| TryRecvError::WrongSize { expected, got })
    }

    /// As [`try_recv_value`](Self::try_recv_value), waiting for a frame.
    ///
    /// # Errors
    /// As [`read_deadline`](Self::read_deadline), and
    /// [`RecvError::WrongSize`].
    #[inline]
    fn recv_value<T: Pod>(&mut self) -> Result<T, RecvError> {
        self.recv_value_deadline(None)
    }

    /// As [`recv_value`](Self::recv_value), giving up at `deadline`.
    ///
    /// # Errors
    /// As [`recv_value`](Self::recv_value), and [`RecvError::TimedOut`].
    #[inline]
    fn recv_value_deadline<T: Pod>(&mut self, deadline: Option<Instant>) -> Result<T, RecvError> {
        let frame = self.read_deadline(deadline)?;
        value_of(&frame).map_err(|(expected, got)| RecvError::WrongSize { expected, got })
    }
}

/// Copies a `T` out of a payload of exactly its size (the payload is only
/// 8-aligned, so the read is unaligned); else (expected, got).
#[inline]
fn value_of<T: Pod>(bytes: &[u8]) -> Result<T, (usize, usize)> {
    if bytes.len() != size_of::<T>() {
        return Err((size_of::<T>(), bytes.len()));
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

/// The trait impls of one ring kind's handles, by their inherent methods;
/// `$commit` turns the kind's own commit into the trait's.
macro_rules! impl_traits {
    ($kind:ident, $commit:expr) => {
        mod $kind {
            use super::*;
            use crate::ring::$kind::{Claim, Consumer, Frame, Producer};

            impl Commit for Claim<'_> {
                #[inline]
                fn set_tag(&mut self, tag: u32) {
                    Claim::set_tag(self, tag);
                }
                #[inline]
                fn commit(self) -> Result<(), CommitError> {
                    let commit: fn(Self) -> Result<(), CommitError> = $commit;
                    commit(self)
                }
            }

            impl ReadFrame for Frame<'_> {
                #[inline]
                fn tag(&self) -> u32 {
                    Frame::tag(self)
                }
            }

            impl Sender for Producer {
                type Claim<'a> = Claim<'a>;
                #[inline]
                fn try_claim(&mut self, len: usize) -> Result<Claim<'_>, TryClaimError> {
                    Producer::try_claim(self, len)
                }
                #[inline]
                fn claim_deadline(
                    &mut self,
                    len: usize,
                    deadline: Option<Instant>,
                ) -> Result<Claim<'_>, ClaimError> {
                    Producer::claim_deadline(self, len, deadline)
                }
            }

            impl Receiver for Consumer {
                type Frame<'a> = Frame<'a>;
                #[inline]
                fn try_read(&mut self) -> Result<Frame<'_>, TryRecvError> {
                    Consumer::try_read(self)
                }
                #[inline]
                fn read_deadline(
                    &mut self,
                    deadline: Option<Instant>,
                ) -> Result<Frame<'_>, RecvError> {
                    Consumer::read_deadline(self, deadline)
                }
            }
        }
    };
}

// An SPSC commit always publishes.
impl_traits!(spsc, |claim| {
    claim.commit();
    Ok(())
});
impl_traits!(mpsc, |claim| claim.commit());
