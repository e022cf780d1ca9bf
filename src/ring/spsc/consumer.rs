//! The consumer side of an SPSC ring: read frames in place, release them.

use crate::sync::clock::Instant;
use core::fmt;

use super::view::RingRef;
use crate::region::PeerId;
use crate::ring::core::{recv_outcome, retry};
use crate::ring::error::{RecvError, TryRecvError};
use crate::ring::guard::Loc;
use crate::sync::WaitStrategy;
use crate::sync::shim::{Ordering, prefetch_read};

/// A consumer that read at least this many frames since it last waited is
/// reading a stream: it waits by looking gently first (see
/// `Consumer::look_gently`). A request and its reply, whatever their size,
/// read one frame per wait, and wait as before.
const STREAM_FRAMES: u32 = 8;
/// How far past the end of a frame a streaming consumer prefetches lines
/// it knows published (see `Consumer::prefetch_after`). Measured (64-byte
/// frames, spinning, split, 1 Dec 2026): 256 bytes 70-71 M msg/s, 512
/// bytes 96-103 M, 1024 to 4096 bytes 111-124 M.
const READ_AHEAD: u64 = 1024;
/// At most this many lines prefetched per frame: two, so that the
/// prefetches keep ahead of frames that span more than a line (16 or 32
/// measured the same).
const READ_AHEAD_LINES: u32 = 2;
/// Pauses between two looks at the header while looking gently. A pause
/// took 9 ns on the machine this was measured on (32: about 0.3 us); it
/// takes about 140 cycles on some server CPUs (32: about 1.3 us).
#[cfg(not(loom))]
const GENTLE_PAUSES: u32 = 32;
/// Looks before the ordinary wait: 256 pauses in all, about 2.3 us at 9 ns
/// a pause.
#[cfg(not(loom))]
const GENTLE_LOOKS: u32 = 8;

/// The reading end of an SPSC ring.
///
/// `Send` but not `Sync`: one thread reads at a time, through `&mut self`.
/// Attached by [`Consumer::attach`] (a region section) or
/// [`HeapRing::consumer`](super::HeapRing::consumer); the role is released
/// when it is dropped. The copying and typed forms (`recv`, `recv_value`,
/// ...) come with the [`Receiver`](crate::ring::Receiver) trait.
///
/// Every position and header it reads from shared memory is checked before
/// use; an inconsistency gives [`RecvError::Corrupted`] from then on.
///
/// Released frames reach the producer lazily, so that a consumer keeping
/// up with its producer does not pay a store and a fence per frame: the
/// shared head is stored when a quarter of the ring has been released since
/// the last store, when a read finds the ring empty, before a blocking call
/// waits, on [`flush_releases`](Self::flush_releases) and on drop. A
/// consumer that takes over the role from a dead one starts at the last
/// stored head, so frames the dead one had read but not yet published as
/// released are delivered again (at-least-once across a consumer crash).
///
/// A consumer that has just read a stream (at least 8 frames since it last
/// waited), finds the ring empty and has a strategy that spins, first looks
/// at the ring gently: once per 32 pauses, at most 8 times (about 2.3 us
/// where a pause takes 9 ns), and not past its deadline; then it waits as
/// its strategy says. The producer is writing the line it would poll, and
/// each look takes that line away from it. A frame that arrives meanwhile
/// is seen up to 32 pauses late; a request and its reply (one frame per
/// wait) never pay this.
///
/// A consumer reading a stream (a quarter of the ring read without finding
/// it empty) also learns from the tail hint how far the producer had
/// published, and prefetches up to 1 KiB past each frame it releases (or
/// reads in a batch), inside what was published. Its reads of a stream
/// then overlap instead of waiting for one another.
pub struct Consumer {
    view: RingRef,
    /// Start of the next unread frame. Private: never re-read after
    /// attach. Multiple of 8.
    head: u64,
    /// The last value stored to the shared head: `released <= head`.
    /// Releases reach the producer lazily (see [`Consumer`]). Frames end
    /// at most `released + cap - 8` (the producer has not seen a newer
    /// head).
    released: u64,
    /// Frames read since this consumer last began to wait (saturating): a
    /// stream or a request (see [`STREAM_FRAMES`]).
    run: u32,
    /// A position up to which the producer had published, from the tail
    /// hint (see `learn_tail`). Never trusted: it only bounds the
    /// prefetches, which read nothing (a wrong value costs speed).
    seen_tail: u64,
    /// The next position whose line to prefetch (see `prefetch_after`).
    prefetched: u64,
    /// Set once this side saw the ring inconsistent; every later call fails.
    poisoned: bool,
    strategy: WaitStrategy,
}

// SAFETY: as for `SpscProducer`: raw pointers into memory its backing keeps
// alive, and an exclusive role that moves with the handle.
unsafe impl Send for Consumer {}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("capacity", &self.view.cap)
            .field("head", &self.head)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Consumer {
    pub(crate) fn from_parts(ring: RingRef, head: u64, strategy: WaitStrategy) -> Self {
        let this = Self {
            view: ring,
            head,
            released: head,
            run: 0,
            seen_tail: head,
            prefetched: head,
            poisoned: false,
            strategy,
        };
        this.note_placement();
        this
    }

    /// Notes the CPU we run on, for the producer's demotes (a hint: see the
    /// layout); stored only when it changed, so that the line stays shared.
    /// On attach and before each wait that a gentle look did not end.
    fn note_placement(&self) {
        let cpu = crate::sync::shim::note_cpu();
        let word = &self.view.ctrl().roles.consumer_cpu;
        // Relaxed (both): a hint, ordered with nothing.
        if word.load(Ordering::Relaxed) != cpu {
            word.store(cpu, Ordering::Relaxed);
        }
    }

    crate::ring::core::handle_accessors!();

    /// This consumer's peer id (what a heap ring's `mark_dead` takes).
    pub fn id(&self) -> PeerId {
        self.view.id()
    }

    /// Whether the producer is attached and alive (or never attached yet).
    pub fn is_peer_alive(&self) -> bool {
        self.view.peer_alive()
    }

    /// Reads the next frame in place, without blocking. Dropping the
    /// returned [`Frame`] (or calling [`Frame::release`]) gives its bytes
    /// back to the producer.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if no frame is published,
    /// [`TryRecvError::Corrupted`] if the ring is inconsistent.
    #[inline]
    pub fn try_read(&mut self) -> Result<Frame<'_>, TryRecvError> {
        let loc = self.locate()?;
        Ok(self.frame(loc))
    }

    /// Reads the next frame in place, waiting until `deadline` at most
    /// (`None`: no limit) with the handle's [`WaitStrategy`]. (`read`
    /// and `read_timeout` come with the [`Receiver`](crate::ring::Receiver)
    /// trait.)
    ///
    /// # Errors
    /// [`RecvError::Corrupted`] if the ring is inconsistent;
    /// [`RecvError::TimedOut`]; [`RecvError::PeerDead`] once the producer died or
    /// detached and every frame it published has been read.
    // Inlined: returned through memory, the frame guard is stored and
    // re-read with moves the CPU cannot forward (as the claim guard: see
    // the MPSC producer).
    #[inline]
    pub fn read_deadline(&mut self, deadline: Option<Instant>) -> Result<Frame<'_>, RecvError> {
        let loc = retry(
            self,
            deadline,
            RecvError::TimedOut,
            |c| recv_outcome(c.locate()),
            Self::wait_for_data,
        )?;
        Ok(self.frame(loc))
    }

    /// Reads up to `max` frames that are published now, calling `f(tag,
    /// payload)` for each in order, then releases them all at once.
    /// Returns how many were read (0 if the ring is empty). It stops at
    /// the first frame not yet published, and reads at most one ring's
    /// worth (what the producer could write before seeing a release).
    ///
    /// ```
    /// use polycephaly::ring::{Sender, spsc};
    ///
    /// let ring = spsc::HeapRing::new(256)?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.try_send(b"a")?;
    /// tx.try_send(b"bc")?;
    /// let mut total = 0;
    /// assert_eq!(rx.try_read_batch(10, |_tag, bytes| total += bytes.len()), Ok(2));
    /// assert_eq!(total, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TryRecvError::Corrupted`] if the ring is inconsistent (frames
    /// passed to `f` before the bad one stay read); never `Empty`.
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
        let mut drained = false;
        // Bounded (also when `max` is large): every frame moves `pos` forward by at least 8 bytes, and
        // `parse` refuses one ending past `released + cap - 8` (`released`
        // does not move in the loop).
        loop {
            let Some(loc) = self.parse(pos)? else {
                drained = true;
                break;
            };
            if n == max {
                break;
            }
            // SAFETY: `parse` checked that the payload lies inside the lap
            // and inside the published range, which stays ours until we
            // store a head past it (after `f` returned).
            let bytes = unsafe { self.view.bytes(loc.idx(), loc.len as usize) };
            if self.seen_tail > loc.end {
                self.prefetch_after(loc.end);
            }
            f(loc.tag, bytes);
            pos = loc.end;
            n += 1;
        }
        self.run = self
            .run
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if n > 0 {
            self.release_to(pos);
        }
        if drained {
            // Nothing to read until the producer publishes more: this
            // thread waits (see `waits_begun`).
            crate::sync::shim::note_wait();
            self.flush_releases();
        }
        Ok(n)
    }

    /// As [`try_read_batch`](Self::try_read_batch), first waiting (with the
    /// handle's strategy, until `deadline`) for at least one frame.
    ///
    /// # Errors
    /// As [`read_deadline`](Self::read_deadline).
    pub fn read_batch_deadline(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        f: impl FnMut(u32, &[u8]),
    ) -> Result<usize, RecvError> {
        crate::ring::core::read_batch_deadline(self, max, deadline, f)
    }

    /// The next frame's location: its header polled where it will be
    /// written (one cache line, no tail to read first).
    #[inline]
    fn locate(&mut self) -> Result<Loc, TryRecvError> {
        if self.poisoned {
            return Err(TryRecvError::Corrupted);
        }
        match self.parse(self.head)? {
            Some(loc) => Ok(loc),
            None => Err(self.empty()),
        }
    }

    /// Found the ring empty: publish pending releases (the producer may be
    /// waiting for them), and notice a ring poisoned by another side.
    #[cold]
    fn empty(&mut self) -> TryRecvError {
        // This thread waits (see `waits_begun`), also when it polls.
        crate::sync::shim::note_wait();
        self.flush_releases();
        if self.view.shared_poisoned() {
            return self.poison();
        }
        TryRecvError::Empty
    }

    /// Reads and checks the frame at `pos` (skipping a padding frame);
    /// `None` if none is published there yet.
    #[inline]
    fn parse(&mut self, pos: u64) -> Result<Option<Loc>, TryRecvError> {
        match self.view.frame_at(pos, self.released + self.view.cap) {
            Ok(found) => Ok(found),
            Err(()) => Err(self.poison()),
        }
    }

    #[cold]
    fn poison(&mut self) -> TryRecvError {
        self.poisoned = true;
        self.view.poison_shared();
        TryRecvError::Corrupted
    }

    /// Gives the bytes before `end` back to the producer (lazily: stores the
    /// shared head once a quarter of the ring is pending).
    #[inline]
    fn release_to(&mut self, end: u64) {
        debug_assert!(self.head <= end && end + 8 <= self.released + self.view.cap);
        self.head = end;
        if end - self.released >= self.view.cap / 4 {
            self.flush_releases();
            self.learn_tail();
        }
        // Only a stream's consumer has seen the tail hint ahead of it.
        if self.seen_tail > end {
            self.prefetch_after(end);
        }
    }

    /// Publishes every release made so far to the producer: one Release
    /// store of the head, and a wake-up only if the producer sleeps. The
    /// consumer does this on its own when it finds the ring empty, before
    /// it waits, and on drop; call it when you stop reading for a while
    /// with frames released but the ring not drained.
    #[inline]
    pub fn flush_releases(&mut self) {
        if self.head != self.released && !self.poisoned {
            self.released = self.head;
            // Release: we finished reading the frames before the head;
            // pairs with the producer's Acquire load of the head before it
            // overwrites them.
            self.view.ctrl().head.store(self.head, Ordering::Release);
            self.view.ctrl().space_bell.ring();
        }
    }

    /// Reads the tail hint into `seen_tail`, after a quarter of the ring
    /// was read without finding it empty (a stream: a request and its
    /// reply find the ring empty after each frame, and never read the line
    /// the producer stores the hint in). Not under loom: the prefetches it
    /// bounds do nothing there.
    #[inline]
    fn learn_tail(&mut self) {
        #[cfg(not(loom))]
        {
            // Relaxed: a hint that only bounds prefetches (see
            // `seen_tail`); no data is read on its word.
            let tail = self.view.ctrl().tail.load(Ordering::Relaxed);
            // Any value: one behind what we know, or past the last word a
            // frame may end before (a lap ahead of our head), is left
            // alone.
            if tail > self.seen_tail.max(self.head) && tail - self.head <= self.view.cap - 8 {
                self.seen_tail = tail;
            }
        }
    }

    /// Prefetches the lines from just after the one `end` (the end of a
    /// frame read) lies on, up to 1 KiB past `end` and not past what
    /// the producer was seen to publish (`seen_tail`): at most two per
    /// call, each once. Only a stream's consumer calls it (`seen_tail` is
    /// ahead of it), for each frame it releases and each frame of a batch.
    ///
    /// Without them, each line of a stream is fetched when the read of
    /// the frame before it reaches it (the next frame's position comes
    /// from this one's header), one transfer after the other. Lines not
    /// yet published are left alone: fetching one takes it from the
    /// producer that is writing it (measured: prefetching 2 to 8 lines
    /// ahead unbounded ran a stream at a fifth of its rate). Measured
    /// (`polycephaly bench`, spinning, split, 1 Dec 2026, with the
    /// producer warming its lines ahead): 64-byte frames 70-71 M msg/s
    /// prefetching 256 bytes ahead, 111-122 M at 1 KiB, above the bare
    /// ring of 64-byte slots in the same runs.
    ///
    /// Called when a frame is released, not when `try_read` finds it: the
    /// same call there, never taken by a round trip, still made a spinning
    /// round trip 8-10 ns slower. (A batch read calls it per frame: a
    /// round trip does not read in batches.)
    #[inline(never)]
    fn prefetch_after(&mut self, end: u64) {
        let until = (end + READ_AHEAD).min(self.seen_tail) & !63;
        if self.prefetched < end {
            self.prefetched = (end + 64) & !63;
        }
        let mut lines = 0;
        // SAFETY: index 0 of the data area (0 <= cap).
        let data = unsafe { self.view.data_at(0) };
        while self.prefetched < until && lines < READ_AHEAD_LINES {
            // In the data area: the position is taken modulo the capacity.
            // A raw pointer, not a reference: the line may be one the
            // producer is writing (a forged hint), and a prefetch reads
            // nothing.
            prefetch_read(data.wrapping_add((self.prefetched & self.view.mask) as usize));
            self.prefetched += 64;
            lines += 1;
        }
    }

    /// Sleeps (per the strategy) until the tail moves past our head.
    #[cold]
    fn wait_for_data(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        // The producer may be waiting for room we released.
        self.flush_releases();
        let streaming = self.run >= STREAM_FRAMES;
        self.run = 0;
        // Not for a strategy that sleeps at once: it asked not to spin.
        let spins = self.strategy.spin_only || !self.strategy.spin.is_zero();
        if streaming && spins && self.look_gently(deadline) {
            return Ok(());
        }
        self.note_placement();
        let ring = &self.view;
        let ctrl = ring.ctrl();
        let head = self.head;
        let ready = || {
            if ring.shared_poisoned() {
                return Some(());
            }
            // Acquire: pairs with the producer's Release store of the
            // header that publishes a frame here.
            (ring.header(head).load(Ordering::Acquire) != 0).then_some(())
        };
        ctrl.data_bell
            .wait(ready, &self.strategy, deadline, || ring.peer_alive())?;
        if ring.shared_poisoned() {
            self.poison();
            return Err(RecvError::Corrupted);
        }
        Ok(())
    }

    /// A consumer that caught up with a streaming producer: looks at the
    /// next header once per `GENTLE_PAUSES` pauses, at most `GENTLE_LOOKS`
    /// times, and not past `deadline`; whether a frame (or anything else)
    /// is there.
    ///
    /// The producer is writing the very line the header is on, and each
    /// look takes that line away from it. Measured with 8-byte frames
    /// (`polycephaly bench`, spinning, 30 Nov 2026): 44-46 M msg/s looking
    /// as often as a waiting consumer does, 53-56 M looking gently.
    fn look_gently(&self, deadline: Option<Instant>) -> bool {
        #[cfg(not(loom))]
        for _ in 0..GENTLE_LOOKS {
            for _ in 0..GENTLE_PAUSES {
                crate::sync::shim::spin_loop();
            }
            // Acquire: pairs with the producer's Release store of the
            // header that publishes a frame here.
            if self.view.header(self.head).load(Ordering::Acquire) != 0 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        #[cfg(loom)]
        let _ = deadline;
        false
    }

    fn frame(&mut self, loc: Loc) -> Frame<'_> {
        self.run = self.run.saturating_add(1);
        Frame::new(self, loc)
    }
}

impl Drop for Consumer {
    /// Publishes pending releases; the role is released by the ring view.
    fn drop(&mut self) {
        self.flush_releases();
    }
}

/// A frame read in place from a [`Consumer`] (see [`crate::ring::Frame`]:
/// a live view, copy before you validate).
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
        // SAFETY: `parse` checked that the payload lies inside the lap and
        // inside the published range; the producer does not touch it until
        // we store a head past it, which happens when the frame drops.
        unsafe { self.view.bytes(loc.idx(), loc.len as usize) }
    }

    #[inline]
    fn release_frame(&mut self, loc: Loc) {
        self.release_to(loc.end);
    }
}

#[cfg(all(test, not(loom), not(miri), target_arch = "x86_64"))]
mod tests {
    use crate::ring::spsc::HeapRing;
    use crate::ring::{Receiver, RecvError};
    use crate::sync::shim::Ordering;
    use core::time::Duration;

    #[test]
    fn a_consumer_that_waits_leaves_its_cpu_for_the_producer() {
        let ring = HeapRing::new(256).unwrap();
        let _tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let cpu = |rx: &super::Consumer| rx.view.ctrl().roles.consumer_cpu.load(Ordering::Relaxed);
        assert_ne!(cpu(&rx), 0, "noted on attach");
        rx.view
            .ctrl()
            .roles
            .consumer_cpu
            .store(0, Ordering::Relaxed);
        let got = rx.read_timeout(Duration::from_millis(1)).map(|f| f.len());
        assert_eq!(got, Err(RecvError::TimedOut));
        // CPU numbers plus one; the thread may have moved since, so only
        // the range is certain.
        let max = rustix::thread::sched_getaffinity(None).unwrap().count();
        let seen = cpu(&rx);
        assert!((1..=max.max(1024)).contains(&seen), "consumer_cpu {seen}");
    }
}
