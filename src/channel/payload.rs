//! Payloads: where they travel (inline in the frame, or by handle through
//! the sender's arena lane) and how they are received (a guard that reads
//! in place, or a copy). Nothing here knows who talks to whom: a sender is
//! any [`Sender`] (an SPSC or MPSC ring) with an arena lane and the peer
//! its blocks are for; a receiver is a frame's bytes and an arena reader.
//!
//! The rule, the same for requests and replies: a payload of at most
//! `inline_max` bytes whose elements need no more than 8-byte alignment
//! travels in the frame; anything else is built in (or copied into) a
//! block of the sender's lane and its handle travels in the frame. The
//! block is published for the one peer that will read it, so it is
//! reclaimed once that peer has read and released it, or died.

use core::fmt;
use core::ops::Deref;
use core::time::Duration;

use bytemuck::Pod;

use super::wire::{self, BLOCK_FRAME_LEN, HEADER_LEN, Head, Status};
use crate::arena::{AllocError, ArenaWriter, BlockHandle, BlockMut, ReadGuard, TryAllocError};
use crate::region::PeerId;
use crate::ring::{ClaimError, Commit, Sender, TryClaimError};
use crate::sync::clock::Instant;

/// The largest element alignment an inline payload is read in place with
/// (frame payloads are 8-aligned, and the header is 32 bytes).
const INLINE_ALIGN: usize = 8;

/// A received slice: read in place from the arena block it came in, or
/// copied out of its frame. Dereferences to `&[T]`; dropping it releases
/// the block.
///
/// # A live view
///
/// A block read in place is shared memory that a correct sender never
/// writes again, but a buggy or hostile one could: its bounds were checked
/// (the view never reaches outside the block) but its contents may change
/// while you hold it. **Copy before you validate** ([`to_vec`](Self::to_vec)
/// or [`into_vec`](Self::into_vec)) when the values must stay what you
/// checked. Inline payloads are copies already.
pub struct Payload<'a, T> {
    repr: Repr<'a, T>,
}

enum Repr<'a, T> {
    /// Copied out of a frame.
    Owned(Vec<T>),
    /// In place in a held block (length a multiple of `size_of::<T>()`,
    /// 64-aligned: checked when made).
    Block(ReadGuard<'a, u8>),
}

impl<'a, T: Pod> Payload<'a, T> {
    /// A copy of `bytes`, `None` if the length is not a whole number of
    /// `T`s.
    pub(crate) fn copied(bytes: &[u8]) -> Option<Self> {
        if size_of::<T>() == 0 {
            return bytes.is_empty().then(|| Self {
                repr: Repr::Owned(Vec::new()),
            });
        }
        if bytes.len() % size_of::<T>() != 0 {
            return None;
        }
        Some(Self {
            repr: Repr::Owned(collect(bytes)),
        })
    }

    /// The block `guard` holds, seen as `[T]` in place; a copy (releasing
    /// the block) if `T` is aligned beyond the block's place (blocks are
    /// 64-aligned); `None` (releasing it) if its length does not fit `T`.
    pub(crate) fn in_block(guard: ReadGuard<'a, u8>) -> Option<Self> {
        match bytemuck::try_cast_slice::<u8, T>(&guard) {
            Ok(_) => Some(Self {
                repr: Repr::Block(guard),
            }),
            Err(bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned) => {
                Self::copied(&guard)
            }
            Err(_) => None,
        }
    }

    /// Whether the elements are read in place from an arena block (not a
    /// copy: inline payloads are copies, and so are blocks of elements
    /// aligned beyond 64 bytes, a block's alignment).
    pub fn is_in_place(&self) -> bool {
        matches!(self.repr, Repr::Block(_))
    }

    /// The handle of the block read in place, if it came by handle.
    pub fn handle(&self) -> Option<&BlockHandle> {
        match &self.repr {
            Repr::Block(g) => Some(g.handle()),
            Repr::Owned(_) => None,
        }
    }

    /// A copy of the elements (see the type's docs: copy before you
    /// validate).
    pub fn to_vec(&self) -> Vec<T> {
        self.deref().to_vec()
    }

    /// The elements as a vector: the copy it already is, or a copy of the
    /// block (which is then released).
    pub fn into_vec(self) -> Vec<T> {
        match self.repr {
            Repr::Owned(v) => v,
            Repr::Block(g) => collect(&g),
        }
    }
}

impl<T: Pod> Deref for Payload<'_, T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match &self.repr {
            Repr::Owned(v) => v,
            // Checked when made; the guard's bounds never change.
            Repr::Block(g) => bytemuck::try_cast_slice(g).unwrap_or(&[]),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Payload<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.len())
            .field("in_place", &self.is_in_place())
            .finish()
    }
}

/// A copy of `bytes` as `T`s (whole ones; a partial last one is left
/// out), aligned whatever `bytes` is.
pub(crate) fn collect<T: Pod>(bytes: &[u8]) -> Vec<T> {
    if size_of::<T>() == 0 {
        return Vec::new();
    }
    let mut v = vec![T::zeroed(); bytes.len() / size_of::<T>()];
    let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut v);
    let n = dst.len();
    dst.copy_from_slice(&bytes[..n]);
    v
}

/// Why a reply could not be built or sent (and what the error reply, if
/// any, says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The handler's room could not be had (see [`OutError`]).
    Out(OutError),
    /// The argument is not of the method's shape.
    BadArgument(String),
    /// The handler panicked.
    Panicked(String),
    /// No method of this id.
    UnknownMethod,
}

impl Fault {
    /// The error reply for this fault. Every fault of a request has one:
    /// whether it can be sent (the client still there, its ring sane) is
    /// the sender's to find out, not the fault's to guess.
    pub(crate) fn status(&self) -> (Status, String) {
        match self {
            Fault::Out(e @ OutError::TooLarge { .. }) => (Status::ReplyTooLarge, e.to_string()),
            Fault::Out(e @ OutError::Busy) => (Status::Busy, e.to_string()),
            Fault::Out(e @ OutError::AlreadyAllocated) => (Status::Panicked, e.to_string()),
            Fault::Out(e @ (OutError::ClientGone | OutError::Corrupted)) => {
                (Status::Failed, e.to_string())
            }
            Fault::BadArgument(m) => (Status::BadArgument, m.clone()),
            Fault::Panicked(m) => (Status::Panicked, m.clone()),
            Fault::UnknownMethod => (Status::UnknownMethod, String::new()),
        }
    }
}

/// Why a handler could not get room for its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutError {
    /// The result is larger than the server's arena lane.
    #[error("a result of {bytes} bytes is larger than the lane ({max})")]
    TooLarge {
        /// The result's length.
        bytes: u64,
        /// The lane's length.
        max: u64,
    },
    /// No room in time (the lane or the reply ring stayed full).
    #[error("no room for the result in time")]
    Busy,
    /// The handler asked for room twice.
    #[error("the handler asked for room for its result twice")]
    AlreadyAllocated,
    /// The caller is gone: the result will not be delivered.
    #[error("the caller is gone")]
    ClientGone,
    /// The reply ring or the lane is corrupted.
    #[error("the channel is corrupted")]
    Corrupted,
}

/// Room for a result, handed out once per reply (object safe, so that the
/// registry's handlers do not depend on the kind of ring).
pub(crate) trait Outbox {
    /// `len` zeroed bytes, written in place where the result travels:
    /// 8-aligned when inline (only for `align <= 8`), else 64-aligned (an
    /// arena block), so aligned for `align` unless it is above 64.
    fn room(&mut self, len: usize, align: usize) -> Result<&mut [u8], OutError>;

    /// The room [`room`](Self::room) gave, again; `None` if none was
    /// asked for.
    fn reserved(&mut self) -> Option<&mut [u8]>;
}

/// Where an in-place handler builds its result: [`alloc`](Self::alloc)
/// gives room for `n` elements, in the reply's frame or in a block of the
/// server's lane (by size, as for every payload), zeroed. Once per call.
///
/// Elements aligned beyond 64 bytes (an arena block's alignment) cannot be
/// built where they travel: they are built in a buffer of the server's and
/// copied there when the handler returns.
pub struct Out<'o, T> {
    outbox: &'o mut dyn Outbox,
    /// The result of over-aligned elements, built here and copied into the
    /// outbox's room by [`flush`](Self::flush).
    staged: Option<Vec<T>>,
}

impl<T> fmt::Debug for Out<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Out").finish_non_exhaustive()
    }
}

impl<'o, T: Pod> Out<'o, T> {
    pub(crate) fn new(outbox: &'o mut dyn Outbox) -> Self {
        Self {
            outbox,
            staged: None,
        }
    }

    /// Room for `n` elements of the result, zeroed, in place where they
    /// will travel.
    ///
    /// # Errors
    /// [`OutError::TooLarge`] (larger than the server's lane),
    /// [`OutError::Busy`], [`OutError::AlreadyAllocated`] (a second call),
    /// [`OutError::ClientGone`], [`OutError::Corrupted`]. Return it from
    /// the handler: the caller gets the matching error.
    pub fn alloc(&mut self, n: usize) -> Result<&mut [T], OutError> {
        let bytes = n.checked_mul(size_of::<T>()).ok_or(OutError::TooLarge {
            bytes: u64::MAX,
            max: 0,
        })?;
        let aligned = {
            let room = self.outbox.room(bytes, align_of::<T>())?;
            room.as_ptr() as usize % align_of::<T>() == 0
        };
        if size_of::<T>() == 0 {
            return Ok(&mut []);
        }
        if aligned {
            // In place: `bytes` long and aligned for T (inline: 8-aligned
            // and align <= 8; else a 64-aligned block and align <= 64).
            let room = self.outbox.reserved().ok_or(OutError::Corrupted)?;
            return bytemuck::try_cast_slice_mut(room).map_err(|_| OutError::Corrupted);
        }
        // Aligned beyond the block: built in an aligned buffer, copied
        // into the room by `flush`.
        Ok(self.staged.insert(vec![T::zeroed(); n]).as_mut_slice())
    }

    /// Copies a result built apart (over-aligned elements) to where it
    /// travels; nothing to do for one built in place.
    pub(crate) fn flush(self) -> Result<(), OutError> {
        let Some(v) = self.staged else {
            return Ok(());
        };
        let src: &[u8] = bytemuck::cast_slice(&v);
        match self.outbox.reserved() {
            Some(room) if room.len() == src.len() => {
                room.copy_from_slice(src);
                Ok(())
            }
            _ => Err(OutError::Corrupted),
        }
    }
}

/// How long a send may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// Not at all (`try_` forms).
    Never,
    /// Until the deadline (`None`: no limit).
    Until(Option<Instant>),
}

/// Why a payload could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendFault {
    /// No room now (`Patience::Never`).
    Full,
    /// The deadline passed.
    TimedOut,
    /// Larger than the lane.
    TooLarge { bytes: u64, max: u64 },
    /// The receiver (of the ring) is gone.
    PeerDead,
    /// A ring or the lane is corrupted (or the consumer abandoned our claim,
    /// which only happens to a producer it believes dead).
    Corrupted,
}

impl From<TryClaimError> for SendFault {
    fn from(e: TryClaimError) -> Self {
        match e {
            TryClaimError::Full => SendFault::Full,
            // Frames are sized by the spec to fit; a ring that says no is
            // not the one the spec describes.
            TryClaimError::TooLarge { .. } | TryClaimError::Corrupted => SendFault::Corrupted,
        }
    }
}

impl From<ClaimError> for SendFault {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::TimedOut => SendFault::TimedOut,
            ClaimError::PeerDead => SendFault::PeerDead,
            ClaimError::TooLarge { .. } | ClaimError::Corrupted => SendFault::Corrupted,
        }
    }
}

impl From<TryAllocError> for SendFault {
    fn from(e: TryAllocError) -> Self {
        match e {
            TryAllocError::Full => SendFault::Full,
            TryAllocError::TooLarge { bytes, max } => SendFault::TooLarge { bytes, max },
            _ => SendFault::Corrupted,
        }
    }
}

impl From<AllocError> for SendFault {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::TimedOut => SendFault::TimedOut,
            AllocError::TooLarge { bytes, max } => SendFault::TooLarge { bytes, max },
            _ => SendFault::Corrupted,
        }
    }
}

/// Claims a ring frame of `len` bytes as `patience` allows.
#[inline]
fn claim<S: Sender>(tx: &mut S, len: usize, patience: Patience) -> Result<S::Claim<'_>, SendFault> {
    match patience {
        Patience::Never => Ok(tx.try_claim(len)?),
        Patience::Until(deadline) => Ok(tx.claim_deadline(len, deadline)?),
    }
}

/// A zeroed block of `len` bytes, or one holding a copy of `src`.
fn block<'w>(
    writer: &'w mut ArenaWriter,
    len: usize,
    src: Option<&[u8]>,
    patience: Patience,
) -> Result<BlockMut<'w, u8>, SendFault> {
    Ok(match (src, patience) {
        (Some(bytes), Patience::Never) => writer
            .try_alloc_uninit::<u8>(len)?
            .copy_from_slice(bytes)
            .map_err(|_| SendFault::Corrupted)?,
        (Some(bytes), Patience::Until(d)) => writer
            .alloc_uninit_deadline::<u8>(len, d)?
            .copy_from_slice(bytes)
            .map_err(|_| SendFault::Corrupted)?,
        (None, Patience::Never) => writer.try_alloc::<u8>(len)?,
        (None, Patience::Until(d)) => writer.alloc_deadline::<u8>(len, d)?,
    })
}

/// Where a sender's payloads that do not go inline are built, and whom
/// their blocks are for.
#[derive(Debug)]
pub(crate) struct Lane<'w> {
    /// The sender's lane.
    pub(crate) writer: &'w mut ArenaWriter,
    /// The peer that will read the blocks.
    pub(crate) reader: PeerId,
    /// The largest inline payload.
    pub(crate) inline_max: usize,
}

impl Lane<'_> {
    fn inline(&self, len: usize, align: usize) -> bool {
        len <= self.inline_max && align <= INLINE_ALIGN
    }
}

/// A payload to send: `len` bytes aligned for `align`, a copy of `src`
/// if given, else zeroed bytes that `fill` writes in place.
pub(crate) struct Outgoing<'s, F> {
    pub(crate) len: usize,
    pub(crate) align: usize,
    pub(crate) src: Option<&'s [u8]>,
    pub(crate) fill: F,
}

impl<'s> Outgoing<'s, fn(&mut [u8])> {
    /// A copy of `bytes`, for elements aligned to `align`.
    pub(crate) fn copy(bytes: &'s [u8], align: usize) -> Self {
        Self {
            len: bytes.len(),
            align,
            src: Some(bytes),
            fill: |_| {},
        }
    }
}

/// Sends a frame headed by `head` carrying `payload`, inline or by handle
/// by the rule of the module docs.
///
/// No ring frame stays claimed while caller code runs: a frame claimed in
/// an MPSC ring holds up its consumer (it reads in claim order) and so
/// every other producer's frames behind it. An inline payload that `fill`
/// builds is built in `scratch` (8-aligned, at most `inline_max` bytes)
/// and copied into the frame once it is claimed; by handle, the block is
/// built before the frame is claimed and published only once the frame is
/// claimed (a frame that cannot be had leaves no block behind).
pub(crate) fn send<S: Sender, F: FnOnce(&mut [u8])>(
    tx: &mut S,
    lane: Lane<'_>,
    scratch: &mut Vec<u64>,
    head: &Head,
    payload: Outgoing<'_, F>,
    patience: Patience,
) -> Result<(), SendFault> {
    let Outgoing {
        len,
        align,
        src,
        fill,
    } = payload;
    if lane.inline(len, align) {
        let body: &[u8] = match src {
            Some(bytes) => bytes,
            None => {
                scratch.clear();
                scratch.resize(len.div_ceil(8), 0);
                let staged = &mut bytemuck::cast_slice_mut(scratch.as_mut_slice())[..len];
                fill(staged);
                staged
            }
        };
        let mut frame = claim(tx, HEADER_LEN + len, patience)?;
        wire::encode_inline(&mut frame, head);
        frame[HEADER_LEN..].copy_from_slice(body);
        return frame.commit().map_err(|_| SendFault::Corrupted);
    }
    let mut b = block(lane.writer, len, src, patience)?;
    if src.is_none() {
        fill(&mut b);
    }
    let mut frame = claim(tx, BLOCK_FRAME_LEN, patience)?;
    let handle = b.publish_to(lane.reader);
    wire::encode_block(&mut frame, head, &handle);
    frame.commit().map_err(|_| SendFault::Corrupted)
}

/// The longest message an error reply carries (bytes of UTF-8).
pub(crate) const ERROR_MESSAGE_MAX: usize = 256;

/// Sends an error reply headed by `head`: `status` and a message (cut to
/// [`ERROR_MESSAGE_MAX`] bytes), inline.
pub(crate) fn send_error<S: Sender>(
    tx: &mut S,
    head: &Head,
    status: Status,
    message: &str,
    patience: Patience,
) -> Result<(), SendFault> {
    let mut cut = message.len().min(ERROR_MESSAGE_MAX);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let msg = &message.as_bytes()[..cut];
    let mut frame = claim(tx, HEADER_LEN + msg.len(), patience)?;
    wire::encode_inline(&mut frame, &head.error(status));
    frame[HEADER_LEN..].copy_from_slice(msg);
    frame.commit().map_err(|_| SendFault::Corrupted)
}

/// A reply being built: the [`Outbox`] a handler writes its result into,
/// then [`finish`](Self::finish)ed. An inline result is written into a
/// scratch buffer and copied into the reply frame when it is finished (at
/// most `inline_max` bytes), so that no ring frame stays claimed while
/// handler code runs; a larger one is built in place in a block of the
/// lane. Dropping it unfinished sends nothing and leaves no block.
pub(crate) struct ReplyOut<'b, S: Sender> {
    tx: &'b mut S,
    writer: Option<&'b mut ArenaWriter>,
    scratch: &'b mut Vec<u64>,
    reader: PeerId,
    inline_max: usize,
    head: Head,
    stall: Duration,
    state: OutState<'b>,
}

enum OutState<'b> {
    Empty,
    /// This many bytes of the scratch buffer.
    Inline(usize),
    Block(BlockMut<'b, u8>),
}

impl<'b, S: Sender> ReplyOut<'b, S> {
    /// A reply headed by `head` through `tx`, large results in `lane`,
    /// small ones staged in `scratch`; it waits for room at most `stall`
    /// (the clock is read only if it has to wait).
    pub(crate) fn new(
        tx: &'b mut S,
        lane: Lane<'b>,
        scratch: &'b mut Vec<u64>,
        head: Head,
        stall: Duration,
    ) -> Self {
        Self {
            tx,
            writer: Some(lane.writer),
            scratch,
            reader: lane.reader,
            inline_max: lane.inline_max,
            head,
            stall,
            state: OutState::Empty,
        }
    }

    /// Sends the reply: the staged bytes in a frame, or a frame with the
    /// handle of the block (published only once the frame is claimed), or
    /// an empty reply if no room was asked for.
    pub(crate) fn finish(self) -> Result<(), OutError> {
        let Self {
            tx,
            scratch,
            reader,
            head,
            stall,
            state,
            ..
        } = self;
        match state {
            OutState::Empty => with_claim(tx, HEADER_LEN, stall, |mut frame| {
                wire::encode_inline(&mut frame, &head);
                frame.commit()
            }),
            OutState::Inline(len) => with_claim(tx, HEADER_LEN + len, stall, |mut frame| {
                wire::encode_inline(&mut frame, &head);
                let staged: &[u8] = bytemuck::cast_slice(scratch.as_slice());
                frame[HEADER_LEN..].copy_from_slice(&staged[..len]);
                frame.commit()
            }),
            OutState::Block(b) => with_claim(tx, BLOCK_FRAME_LEN, stall, |mut frame| {
                let handle = b.publish_to(reader);
                wire::encode_block(&mut frame, &head, &handle);
                frame.commit()
            }),
        }
    }
}

/// Claims a frame of `len` bytes (waiting up to `stall` if the ring is
/// full: the clock is read only then) and hands it to `f`, which commits
/// it.
#[inline]
fn with_claim<S: Sender>(
    tx: &mut S,
    len: usize,
    stall: Duration,
    f: impl FnOnce(S::Claim<'_>) -> Result<(), crate::ring::CommitError>,
) -> Result<(), OutError> {
    let outcome = match tx.try_claim(len) {
        Ok(frame) => return f(frame).map_err(|_| OutError::Corrupted),
        Err(TryClaimError::Full) => None,
        Err(e) => Some(SendFault::from(e)),
    };
    let fault = match outcome {
        Some(fault) => fault,
        None => match tx.claim_deadline(len, Instant::now().checked_add(stall)) {
            Ok(frame) => return f(frame).map_err(|_| OutError::Corrupted),
            Err(e) => SendFault::from(e),
        },
    };
    Err(match fault {
        SendFault::PeerDead => OutError::ClientGone,
        SendFault::TimedOut | SendFault::Full => OutError::Busy,
        SendFault::TooLarge { bytes, max } => OutError::TooLarge { bytes, max },
        SendFault::Corrupted => OutError::Corrupted,
    })
}

impl<S: Sender> Outbox for ReplyOut<'_, S> {
    fn reserved(&mut self) -> Option<&mut [u8]> {
        match &mut self.state {
            OutState::Empty => None,
            OutState::Inline(len) => {
                let staged: &mut [u8] = bytemuck::cast_slice_mut(self.scratch.as_mut_slice());
                staged.get_mut(..*len)
            }
            OutState::Block(b) => Some(&mut b[..]),
        }
    }

    fn room(&mut self, len: usize, align: usize) -> Result<&mut [u8], OutError> {
        if !matches!(self.state, OutState::Empty) {
            return Err(OutError::AlreadyAllocated);
        }
        if len <= self.inline_max && align <= INLINE_ALIGN {
            self.scratch.clear();
            self.scratch.resize(len.div_ceil(8), 0);
            self.state = OutState::Inline(len);
            let staged: &mut [u8] = bytemuck::cast_slice_mut(self.scratch.as_mut_slice());
            return Ok(&mut staged[..len]);
        }
        let w = self.writer.take().ok_or(OutError::AlreadyAllocated)?;
        let b = w
            .alloc_deadline::<u8>(len, Instant::now().checked_add(self.stall))
            .map_err(|e| match SendFault::from(e) {
                SendFault::TooLarge { bytes, max } => OutError::TooLarge { bytes, max },
                SendFault::TimedOut | SendFault::Full => OutError::Busy,
                SendFault::PeerDead | SendFault::Corrupted => OutError::Corrupted,
            })?;
        self.state = OutState::Block(b);
        match &mut self.state {
            OutState::Block(b) => Ok(&mut b[..]),
            _ => Err(OutError::Corrupted),
        }
    }
}
