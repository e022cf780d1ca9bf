//! The producer side of an SPSC ring: claim, write in place, commit.

use crate::sync::clock::Instant;
use core::fmt;
use core::ops::{Deref, DerefMut};

use super::layout::READY;
use super::view::RingRef;
use crate::region::PeerId;
use crate::ring::core::{claim_outcome, retry};
use crate::ring::error::{ClaimError, TryClaimError};
use crate::ring::frame::{
    SPSC_WARM_AHEAD, encode_header, frame_len, pad_before, pad_word, warm_lines_after,
};
use crate::sync::WaitStrategy;
use crate::sync::shim::{Ordering, cpu_at_wait, demote, demote_before_waiting, waits_begun};

/// The ordering of the header store that publishes a batch: Release.
/// `--cfg polycephaly_weak_spsc_publish` weakens it to Relaxed, so that CI
/// can show the loom models catch a frame read before it is published
/// (they must fail with it).
#[cfg(not(polycephaly_weak_spsc_publish))]
const PUBLISH: Ordering = Ordering::Release;
#[cfg(polycephaly_weak_spsc_publish)]
const PUBLISH: Ordering = Ordering::Relaxed;

/// Whether the producer zeroes the word after the frames it publishes (see
/// the layout's notes). `--cfg polycephaly_broken_spsc_zero` leaves it out,
/// so that CI can show a loom model reads a stale header without it.
const ZERO_AHEAD: bool = !cfg!(polycephaly_broken_spsc_zero);

/// A producer whose thread published more than this many times since it
/// last began a wait (or found a ring empty: see
/// [`waits_begun`](crate::sync::shim::waits_begun)) is streaming: it stops
/// demoting the lines it fills and warms the lines ahead instead (see
/// [`Producer::publish`]). A request and its reply publish once per wait.
const STREAM_PUBLISHES: u32 = 4;

/// The writing end of an SPSC ring.
///
/// `Send` but not `Sync`: one thread writes at a time, through `&mut self`.
/// Attached by [`Producer::attach`] (a region section) or
/// [`HeapRing::producer`](super::HeapRing::producer); the role is released
/// when it is dropped (after publishing any frame committed with
/// [`Claim::commit_deferred`]). The copying and typed forms (`send`,
/// `send_value`, ...) come with the [`Sender`](crate::ring::Sender) trait.
///
/// Memory: a few words plus the backing's handle; no allocation after
/// attach.
pub struct Producer {
    view: RingRef,
    /// End of the last committed frame (published or staged). Private: never
    /// re-read from shared memory after attach. Multiple of 8.
    tail: u64,
    /// End of the published frames: the word there is zero in the ring
    /// (see the layout's notes). `published <= tail`.
    published: u64,
    /// The first word of the staged batch (`published..tail`, when not
    /// empty): written at publish, last, with one Release store.
    first: u64,
    /// A consumer position seen earlier: possibly stale (older), never
    /// newer. `tail + 8 - cached_head <= cap`.
    cached_head: u64,
    /// This thread's `waits_begun()` when it last published.
    waits_seen: u32,
    /// Publishes since this thread last began a wait, counting the last
    /// one (saturating): a stream or a request (see [`STREAM_PUBLISHES`]).
    streak: u32,
    /// Set once this side saw the ring inconsistent; every later call fails.
    poisoned: bool,
    strategy: WaitStrategy,
}

// SAFETY: the handle holds raw pointers into memory kept alive by its
// backing (an `Arc` or a `Region`, both Send + Sync); the producer role is
// exclusive, so moving the handle to another thread moves the role with it.
unsafe impl Send for Producer {}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("capacity", &self.view.cap)
            .field("tail", &self.tail)
            .field("published", &self.published)
            .field("cached_head", &self.cached_head)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Room reserved by a claim: plain numbers, no borrow.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    /// Padding bytes before the frame (0 or the rest of the lap).
    pad: u64,
    /// Padding plus frame bytes.
    need: u64,
    /// Payload length.
    len: u32,
}

impl Producer {
    /// A producer at `tail` (the published end: see `RingRef::attach`),
    /// with the consumer at `head`.
    pub(crate) fn from_parts(ring: RingRef, head: u64, tail: u64, strategy: WaitStrategy) -> Self {
        // Where this thread runs, for the demotes in `publish`, until it
        // first waits.
        crate::sync::shim::note_cpu();
        Self {
            view: ring,
            tail,
            published: tail,
            first: 0,
            cached_head: head,
            waits_seen: waits_begun(),
            streak: 0,
            poisoned: false,
            strategy,
        }
    }

    crate::ring::core::handle_accessors!();

    /// This producer's peer id (what a heap ring's
    /// `mark_dead` takes).
    pub fn id(&self) -> PeerId {
        self.view.id()
    }

    /// Whether the consumer is attached and alive (or never attached yet).
    pub fn is_peer_alive(&self) -> bool {
        self.view.peer_alive()
    }

    /// Whether frames committed with [`Claim::commit_deferred`] wait for a
    /// [`publish`](Self::publish).
    pub fn has_unpublished(&self) -> bool {
        self.tail != self.published
    }

    /// Claims room for a frame of `len` payload bytes without blocking.
    ///
    /// Write the payload through the returned [`Claim`] (it dereferences to
    /// `&mut [u8]` of exactly `len` bytes, holding stale data), then
    /// [`commit`](Claim::commit) it. Dropping it publishes nothing.
    ///
    /// ```
    /// let ring = polycephaly::ring::spsc::HeapRing::new(256)?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let mut claim = tx.try_claim(3)?;
    /// claim.copy_from_slice(b"abc");
    /// claim.set_tag(7);
    /// claim.commit();
    /// let frame = rx.try_read()?;
    /// assert_eq!((&frame[..], frame.tag()), (&b"abc"[..], 7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TryClaimError::TooLarge`] if `len > max_payload()`,
    /// [`TryClaimError::Full`] if there is no room now,
    /// [`TryClaimError::Corrupted`] if the ring is inconsistent.
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<Claim<'_>, TryClaimError> {
        let r = self.reserve(len)?;
        Ok(self.guard(r))
    }

    /// Claims room for a frame of `len` payload bytes, waiting until
    /// `deadline` at most (`None`: no limit) with the handle's
    /// [`WaitStrategy`]. (`claim` and `claim_timeout` come with the
    /// [`Sender`](crate::ring::Sender) trait.)
    ///
    /// # Errors
    /// [`ClaimError::TooLarge`], [`ClaimError::Corrupted`] as for
    /// [`try_claim`](Self::try_claim); [`ClaimError::PeerDead`] when the
    /// consumer died or detached while the ring stayed full;
    /// [`ClaimError::TimedOut`].
    // Inlined: returned through memory, the claim guard is stored and
    // re-read with moves the CPU cannot forward (see the MPSC producer).
    #[inline]
    pub fn claim_deadline(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Claim<'_>, ClaimError> {
        let r = retry(
            self,
            deadline,
            ClaimError::TimedOut,
            |p| claim_outcome(p.reserve(len)),
            |p, deadline| p.wait_for_room(len, deadline),
        )?;
        Ok(self.guard(r))
    }

    /// Publishes every frame committed with [`Claim::commit_deferred`]
    /// since the last publish: one Release store (the batch's first
    /// header), and a wake-up only if the consumer sleeps.
    ///
    /// It also hands the lines the consumer will read to the shared cache
    /// (`cldemote`, a hint), so that the consumer's reads do not snoop into
    /// this core: a spinning round trip of 64-byte frames took 345-375 ns
    /// so on the machine this was measured on, 450-480 ns without (1 Dec
    /// 2026). Not while streaming (more than 4 publishes since this thread
    /// last began a wait, or found a ring empty: see
    /// [`waits_begun`](crate::sync::shim::waits_begun)): there the demotes
    /// cost 1 KiB frames a third of their rate (2.7 against 4.0 M msg/s)
    /// and 64-byte ones a sixth (48-49 against 57-59 M). A streaming
    /// producer instead asks for the lines 512 bytes ahead for writing
    /// (`prefetchw`, a hint), so that its stores do not queue behind one
    /// waiting for its line: 8-byte frames 60 to 124-130 M. A producer
    /// that waits for room counts that wait too, and demotes again for
    /// its next 4 publishes (speed only).
    #[inline]
    pub fn publish(&mut self) {
        if self.tail != self.published {
            let ring = &self.view;
            if ZERO_AHEAD {
                // Relaxed: ordered before the consumer's view of the
                // frames by the Release store below. The word is free:
                // frames end 8 bytes short of `cached_head + cap`.
                ring.header(self.tail).store(0, Ordering::Relaxed);
            }
            // Release: publishes the frames written before it (payloads,
            // the later headers of the batch, the zero above); pairs with
            // the consumer's Acquire load of this header word.
            ring.header(self.published).store(self.first, PUBLISH);
            let waits = waits_begun();
            if waits != self.waits_seen {
                self.waits_seen = waits;
                self.streak = 0;
            }
            self.streak = self.streak.saturating_add(1);
            if self.streak <= STREAM_PUBLISHES {
                self.demote_published();
            } else {
                // A stream: warm the lines the next frames go on (see
                // `warm_lines_after`).
                warm_lines_after(
                    // SAFETY: index 0 of the data area.
                    unsafe { ring.data_at(0) },
                    ring.mask,
                    self.tail,
                    SPSC_WARM_AHEAD,
                    self.cached_head + ring.cap,
                );
            }
            self.published = self.tail;
            // Release: a hint for observers and the next producer (see the
            // layout), after the header store.
            ring.ctrl().tail.store(self.tail, Ordering::Release);
            ring.ctrl().data_bell.ring();
        }
    }

    /// Hands what the consumer reads to the shared cache, so that its reads
    /// are served there and not by a snoop into this core: the lines the
    /// batch being published filled, now (we do not write them again this
    /// lap), and the line the next frame goes on (the zero word's, which
    /// the consumer polls next) once this thread stops to wait: a producer
    /// that goes on writing would only fetch it back.
    ///
    /// Not when the consumer last waited on the CPU this thread last waited
    /// on: it reads from this core's caches, and a demoted line would cost
    /// it a trip to the shared cache (measured: a blocking round trip with
    /// both on one CPU took 2.4-2.9 us so, 2.2-2.4 us without).
    ///
    /// Out of line, so that a stream's publish stays short (measured once:
    /// 64-byte frames at 57-58 M msg/s, against 44-50 M with this inline
    /// and its two loads made before the streak test).
    #[inline(never)]
    fn demote_published(&self) {
        let ring = &self.view;
        // Relaxed: a hint (see the layout); any value is harmless.
        let peer_cpu = ring.ctrl().roles.consumer_cpu.load(Ordering::Relaxed);
        let my_cpu = cpu_at_wait();
        if my_cpu == 0 || peer_cpu != my_cpu {
            let mut line = self.published & !63;
            while line < self.tail & !63 {
                demote(core::ptr::from_ref(ring.header(line)).cast());
                line += 64;
            }
            demote_before_waiting(core::ptr::from_ref(ring.header(self.tail)).cast());
        }
    }

    /// Reserves room for a frame, refreshing the cached head only when the
    /// cache says full.
    #[inline]
    fn reserve(&mut self, len: usize) -> Result<Reservation, TryClaimError> {
        if self.poisoned {
            return Err(TryClaimError::Corrupted);
        }
        if len as u64 > self.view.max_payload {
            return Err(TryClaimError::TooLarge {
                len,
                max: self.view.max_payload as usize,
            });
        }
        let total = frame_len(len as u64);
        let pad = pad_before(self.tail, total, self.view.cap);
        // One word more than the frame: the zero after it (see the layout).
        let need = pad + total;
        // `tail + 8 - cached_head <= cap` (invariant), so no underflow.
        if self.view.cap - 8 - (self.tail - self.cached_head) < need {
            self.refresh_head()?;
            if self.view.cap - 8 - (self.tail - self.cached_head) < need {
                return Err(TryClaimError::Full);
            }
        }
        Ok(Reservation {
            pad,
            need,
            len: len as u32,
        })
    }

    /// Re-reads the consumer's position and checks it.
    #[cold]
    fn refresh_head(&mut self) -> Result<(), TryClaimError> {
        // Acquire: pairs with the consumer's Release store of the head; it
        // finished reading the bytes we are about to overwrite.
        let head = self.view.ctrl().head.load(Ordering::Acquire);
        // The head only grows, and never passes what we published.
        let ok = head % 8 == 0 && self.cached_head <= head && head <= self.published;
        if !ok || self.view.shared_poisoned() {
            self.poison();
            return Err(TryClaimError::Corrupted);
        }
        self.cached_head = head;
        Ok(())
    }

    #[cold]
    fn poison(&mut self) {
        self.poisoned = true;
        self.view.poison_shared();
    }

    /// Sleeps (per the strategy) until the consumer freed room for a frame
    /// of `len` bytes at the current tail.
    #[cold]
    fn wait_for_room(&mut self, len: usize, deadline: Option<Instant>) -> Result<(), ClaimError> {
        // The consumer may be waiting for the frames we staged.
        self.publish();
        let ring = &self.view;
        let ctrl = ring.ctrl();
        let total = frame_len(len as u64);
        let need = pad_before(self.tail, total, ring.cap) + total;
        let (tail, cap) = (self.tail, ring.cap);
        let ready = || {
            if ring.shared_poisoned() {
                return Some(());
            }
            // Acquire: pairs with the consumer's Release store of the head.
            let head = ctrl.head.load(Ordering::Acquire);
            // Wrapping: the value is unchecked here; `reserve` checks it.
            (tail.wrapping_sub(head) <= cap - 8 - need).then_some(())
        };
        ctrl.space_bell
            .wait(ready, &self.strategy, deadline, || ring.peer_alive())?;
        if ring.shared_poisoned() {
            self.poison();
            return Err(ClaimError::Corrupted);
        }
        Ok(())
    }

    #[inline]
    fn guard(&mut self, r: Reservation) -> Claim<'_> {
        Claim {
            producer: self,
            r,
            tag: 0,
        }
    }
}

impl Drop for Producer {
    /// Publishes deferred commits; the role is released by the ring view.
    fn drop(&mut self) {
        if !self.poisoned {
            self.publish();
        }
    }
}

/// Room for one frame, claimed from a [`Producer`]: write the payload
/// in place, then [`commit`](Self::commit). Dropping it publishes nothing.
///
/// Dereferences to `&mut [u8]` of exactly the claimed length; the bytes are
/// whatever the ring held before, so write all of them.
#[must_use = "a claim publishes nothing unless committed"]
pub struct Claim<'a> {
    producer: &'a mut Producer,
    r: Reservation,
    tag: u32,
}

impl fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("len", &self.r.len)
            .field("tag", &self.tag)
            .finish()
    }
}

impl<'a> Claim<'a> {
    /// Sets the frame's tag (default 0), a `u32` the consumer reads back
    /// with [`Frame::tag`](super::Frame::tag).
    #[inline]
    pub fn set_tag(&mut self, tag: u32) {
        self.tag = tag;
    }

    /// The frame's tag.
    #[inline]
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// Data index of the payload.
    #[inline(always)]
    fn payload_idx(&self) -> u64 {
        ((self.producer.tail + self.r.pad) & self.producer.view.mask) + 8
    }

    /// Writes the headers and moves the private tail past the frame. The
    /// first word of a batch is kept back for `publish`; the others are
    /// stored now (the consumer stops at the batch's first word, still
    /// zero, so it does not look at them before the publish).
    #[inline]
    fn finish(self) -> &'a mut Producer {
        let p = self.producer;
        let pos = p.tail;
        let mut put = |at: u64, header: u64| {
            if at == p.published {
                p.first = header;
            } else {
                // Relaxed: ordered by the batch's Release store in
                // `publish`. The word is ours (reserved).
                p.view.header(at).store(header, Ordering::Relaxed);
            }
        };
        if self.r.pad > 0 {
            put(pos, encode_header(READY | pad_word(self.r.pad), 0));
        }
        // The reservation put the whole frame inside the lap, from an
        // 8-aligned position.
        put(
            pos + self.r.pad,
            encode_header(READY | self.r.len, self.tag),
        );
        p.tail = pos + self.r.need;
        p
    }

    /// Commits the frame and publishes it (with every deferred commit
    /// before it): one Release store.
    #[inline]
    pub fn commit(self) {
        self.finish().publish();
    }

    /// Commits the frame without publishing it: it becomes visible at the
    /// next [`Producer::publish`], commit, blocking claim or drop. Use it to
    /// publish a batch with one store.
    #[inline]
    pub fn commit_deferred(self) {
        self.finish();
    }
}

impl Deref for Claim<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the reservation owns `len` bytes from the payload index,
        // inside the lap (idx + len <= cap); nobody else touches them until
        // we publish, and `&self` ties the slice to the claim.
        unsafe {
            self.producer
                .view
                .bytes(self.payload_idx(), self.r.len as usize)
        }
    }
}

impl DerefMut for Claim<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the slice exclusive.
        unsafe {
            self.producer
                .view
                .bytes_mut(self.payload_idx(), self.r.len as usize)
        }
    }
}
