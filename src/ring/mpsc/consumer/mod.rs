//! The consumer side of an MPSC ring: read committed frames in claim
//! order, skip padding and abandoned frames, zero what was consumed,
//! abandon the claims of dead producers.

use crate::sync::clock::Instant;
use core::fmt;
use core::time::Duration;

mod release;
mod walk;

use super::layout::MAX_PRODUCERS;
use super::view::RingView;
use crate::region::PeerId;
use crate::ring::core::{recv_outcome, retry};
use crate::ring::error::{RecvError, TryRecvError};
use crate::ring::guard::Loc;
use crate::sync::WaitStrategy;
use crate::sync::shim::Ordering;

/// The default claim timeout: how long a frame may stay claimed (or
/// reserved and unwritten) at the head before the consumer checks whether
/// its claimer is alive.
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_millis(100);

/// The reading end of an MPSC ring (one per ring).
///
/// `Send` but not `Sync`. The copying and typed forms (`recv`,
/// `recv_value`, ...) come with the [`Receiver`](crate::ring::Receiver)
/// trait. Every position, header and record it reads from
/// shared memory is checked before use (a header's place against the tail
/// when the tail is next read, at the latest before the head passes it);
/// an inconsistency gives [`TryRecvError::Corrupted`] from then on.
///
/// Consumed frames go back to the producers lazily: each is recorded in
/// the ring at once, and released (the tail read, the bytes zeroed, the
/// head stored) once a quarter of the ring is consumed, when the consumer
/// has been blocked for 20 us, before a strategy that does not spin
/// sleeps, and on drop. A consumer keeping up with its producers so reads
/// the tail, whose line every claim takes, once per quarter ring rather
/// than per frame. A consumer that takes the role over from a dead one
/// first releases what that one recorded: a frame consumed is never
/// delivered again.
pub struct Consumer {
    view: RingView,
    /// Our peer id; its raw form is what the consumer role word holds.
    id: PeerId,
    me: u32,
    /// Start of the next unconsumed frame: everything before it was
    /// consumed (and recorded in `release_end`), and is released lazily
    /// (see `release_to`). Multiple of 8.
    head: u64,
    /// The last value stored to the shared head: `released <= head`, and
    /// `head - released` stays below a quarter of the ring plus a frame.
    released: u64,
    /// A position the tail is known to have reached: the last tail read
    /// (checked), or the end of a written frame seen since (a producer
    /// writes a header only after its claim moved the tail past it).
    /// `head <= cached_tail <= released + cap`; checked against the real
    /// tail each time that is read.
    cached_tail: u64,
    /// The last value read from the shared tail (checked).
    tail_seen: u64,
    /// The released head when the producers' doorbell was last rung.
    rung: u64,
    poisoned: bool,
    strategy: WaitStrategy,
    claim_timeout: Duration,
    /// The pending frame at the head, and since when.
    stuck: Option<Stuck>,
}

// SAFETY: raw pointers into memory kept alive by the backing, and an
// exclusive role that moves with the handle.
unsafe impl Send for Consumer {}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Consumer")
            .field("capacity", &self.view.cap)
            .field("head", &self.head)
            .field("released", &self.released)
            .field("cached_tail", &self.cached_tail)
            .field("poisoned", &self.poisoned)
            .field("claim_timeout", &self.claim_timeout)
            .finish()
    }
}

/// A claim found blocking the head (see `Consumer::resolve`): where,
/// and since when (the last liveness check of its claimer, or the first
/// sight of it).
#[derive(Debug, Clone, Copy)]
struct Stuck {
    pos: u64,
    since: Instant,
}

/// Pauses (`spin_loop`, about 25 ns each on the reference machine)
/// before each poll of the header at the head while waiting.
#[cfg(not(loom))]
pub(super) const POLL_PAUSES: u32 = 32;

/// The shortest sleep of a consumer waiting on a blocked head before it
/// looks at the blocker again (see `wait_for_data`).
pub(super) const RECHECK_FLOOR: Duration = Duration::from_millis(1);

/// A consumer blocked this long with frames consumed but not released
/// releases them (see `Consumer::release_to`): requests that come back
/// within a few microseconds do not pay a release each, and a producer
/// that needs the room waits this long at most (plus its own wake-up).
pub(super) const FLUSH_IDLE: Duration = Duration::from_micros(20);

/// One attached producer, as listed by [`Consumer::producers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Its entry in the ring's producer table.
    pub entry: usize,
    /// Its peer id (`None`: the table holds a word that names no peer).
    pub id: Option<PeerId>,
    /// Whether its process runs.
    pub alive: bool,
}

/// What lies at a position.
#[derive(Debug, Clone, Copy)]
enum Parsed {
    /// A committed frame.
    Frame(Loc),
    /// Padding or an abandoned frame of this many bytes.
    Skip(u64),
    /// A claim in progress: the header word (claimed), or 0 (reserved,
    /// header not written yet).
    Pending(u64),
}

impl Consumer {
    pub(crate) fn from_parts(view: RingView, head: u64, id: PeerId) -> Self {
        Self {
            view,
            id,
            me: id.to_raw(),
            head,
            released: head,
            cached_tail: head,
            tail_seen: head,
            rung: head,
            poisoned: false,
            strategy: WaitStrategy::BLOCK,
            claim_timeout: DEFAULT_CLAIM_TIMEOUT,
            stuck: None,
        }
    }

    crate::ring::core::handle_accessors!();

    /// How long a claim may block the head before its claimer's liveness
    /// is checked (default [`DEFAULT_CLAIM_TIMEOUT`]).
    pub fn claim_timeout(&self) -> Duration {
        self.claim_timeout
    }

    /// Sets the claim timeout. A claimer found alive is waited for again,
    /// one timeout at a time, for as long as it lives.
    pub fn set_claim_timeout(&mut self, timeout: Duration) {
        self.claim_timeout = timeout;
    }

    /// This consumer's peer id (what a heap ring's `mark_dead` takes).
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The producers attached now, by entry.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        (0..MAX_PRODUCERS)
            .filter_map(|entry| {
                // Acquire: pairs with the producer's AcqRel claim of its
                // entry.
                let id = self.view.record(entry).owner.load(Ordering::Acquire);
                (id != 0).then(|| ProducerInfo {
                    entry,
                    id: PeerId::from_raw(id),
                    alive: self.view.alive(id),
                })
            })
            .collect()
    }

    /// Reads the next committed frame in place, without blocking. Padding,
    /// abandoned frames and the claims of dead producers (after the claim
    /// timeout) are skipped on the way. Dropping the returned [`Frame`]
    /// consumes it (released lazily: see [`Consumer`]).
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if no frame is ready (the ring is empty, or the
    /// frame at the head is still being written),
    /// [`TryRecvError::Corrupted`] if the ring is inconsistent.
    #[inline]
    pub fn try_read(&mut self) -> Result<Frame<'_>, TryRecvError> {
        let loc = self.next()?;
        Ok(Frame::new(self, loc))
    }

    /// [`try_read`](Self::try_read), waiting for a frame until `deadline`
    /// (see [`Receiver::read_deadline`](crate::ring::Receiver::read_deadline));
    /// a sleeping consumer wakes at claim timeouts to check claimers.
    ///
    /// # Errors
    /// See [`RecvError`]; never `PeerDead`: producers come and go, so use a
    /// deadline.
    // Inlined: returned through memory, the frame guard is stored and
    // re-read with moves the CPU cannot forward (as the claim guard: see
    // the MPSC producer).
    #[inline]
    pub fn read_deadline(&mut self, deadline: Option<Instant>) -> Result<Frame<'_>, RecvError> {
        let loc = retry(
            self,
            deadline,
            RecvError::TimedOut,
            |c| recv_outcome(c.next()),
            Self::wait_for_data,
        )?;
        Ok(Frame::new(self, loc))
    }

    /// Reads up to `max` committed frames that are ready now, calling
    /// `f(tag, payload)` for each in order, then releases them all at once
    /// (lazily: see [`Consumer`]). Returns how many were read.
    ///
    /// # Errors
    /// [`TryRecvError::Corrupted`] if the ring is inconsistent (frames passed
    /// to `f` before the bad one stay read); never `Empty`.
    pub fn try_read_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(u32, &[u8]),
    ) -> Result<usize, TryRecvError> {
        if self.poisoned {
            return Err(TryRecvError::Corrupted);
        }
        let mut pos = self.head;
        let mut n = 0;
        // Bounded: every step but a re-parse moves `pos` forward by at
        // least 8 bytes, within one capacity of the head; a re-parse
        // follows a release, a tail read or a resolution.
        let mut steps = self.view.cap / 8 + 8;
        while n < max && steps > 0 {
            steps -= 1;
            match self.parse(pos)? {
                Parsed::Frame(loc) => {
                    // SAFETY: `parse` checked that the payload lies inside
                    // the lap, within one capacity of the head; it is
                    // committed, so no producer writes it until we release
                    // it.
                    let bytes = unsafe { self.view.bytes(loc.idx(), loc.len as usize) };
                    f(loc.tag, bytes);
                    pos = loc.end;
                    n += 1;
                }
                Parsed::Skip(span) => pos += span,
                Parsed::Pending(_) if pos != self.head => {
                    // Consume what we read, then look again from the new
                    // head (whose window reaches further if that released
                    // it: a full window always is a quarter ring).
                    self.release_to(pos)?;
                }
                Parsed::Pending(word) => {
                    if !self.settle(word)? {
                        break;
                    }
                    pos = self.head;
                }
            }
        }
        if pos != self.head {
            self.release_to(pos)?;
        }
        Ok(n)
    }

    /// Releases every frame consumed so far to the producers now: reads the
    /// tail, zeroes the bytes, stores the head, and wakes producers asleep
    /// for room. The consumer does this on its own (see [`Consumer`]);
    /// call it before you stop reading for a while (a long task, a wait
    /// for something else), so that a producer needing the room the
    /// consumer keeps (at most a quarter of the ring) gets it.
    ///
    /// ```
    /// use polycephaly::ring::{Receiver, Sender, mpsc};
    ///
    /// let ring = mpsc::HeapRing::new(1024)?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.try_send(b"job")?;
    /// let mut buf = Vec::new();
    /// rx.try_recv(&mut buf)?;
    /// rx.flush_releases()?; // the frame's bytes are free again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TryRecvError::Corrupted`] if the ring is inconsistent (a frame
    /// consumed lies past the tail); never `Empty`.
    pub fn flush_releases(&mut self) -> Result<(), TryRecvError> {
        if self.poisoned {
            return Err(TryRecvError::Corrupted);
        }
        self.flush_blocked()
    }

    /// [`try_read_batch`](Self::try_read_batch) after waiting for a frame
    /// until `deadline`.
    ///
    /// # Errors
    /// See [`read_deadline`](Self::read_deadline).
    pub fn read_batch_deadline(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        f: impl FnMut(u32, &[u8]),
    ) -> Result<usize, RecvError> {
        crate::ring::core::read_batch_deadline(self, max, deadline, f)
    }
}

impl Drop for Consumer {
    /// Releases what was consumed (only while the role is still ours, and
    /// not from a copy of the handle inherited through `fork`: the role is
    /// the parent's), then the role.
    fn drop(&mut self) {
        // Acquire: pairs with the Release CAS of a successor that took the
        // role over (then its releases, not ours, count).
        let ours = self.view.ctrl().roles.consumer.load(Ordering::Acquire) == self.me;
        if !self.poisoned && ours && self.view.owned_here() {
            let _ = self.flush_blocked();
        }
        self.view.release_consumer(self.me);
    }
}

/// A committed frame read in place from a [`Consumer`] (see
/// [`crate::ring::Frame`]: a live view, copy before you validate);
/// dropping it consumes it (its bytes are released lazily: see
/// [`Consumer`]).
pub type Frame<'a> = crate::ring::Frame<'a, Consumer>;

impl crate::ring::core::BatchRead for Consumer {
    #[inline]
    fn try_batch(&mut self, max: usize, f: impl FnMut(u32, &[u8])) -> Result<usize, TryRecvError> {
        self.try_read_batch(max, f)
    }

    fn wait_readable(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        self.wait_for_data(deadline)
    }
}

impl crate::ring::FrameSource for Consumer {
    #[inline]
    fn frame_bytes(&self, loc: &Loc) -> &[u8] {
        // SAFETY: `parse` checked that the payload lies inside the lap,
        // within one capacity of the released head; it is committed, so no
        // producer touches it until we release it, which happens after the
        // frame drops (lazily, never before).
        unsafe { self.view.bytes(loc.idx(), loc.len as usize) }
    }

    #[inline]
    fn release_frame(&mut self, loc: Loc) {
        self.consume(loc);
    }
}
