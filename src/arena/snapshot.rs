//! Snapshot cells: one fixed-size `Pod` value (or array) written by one
//! process and read by many, through a seqlock. A reader never blocks the
//! writer and never accepts a torn value.
//!
//! ```text
//! offset  size  what                                         written by
//!      0     4  shape: 0 fresh, else 'S' << 24 | value bytes  first attacher (CAS)
//!      4     4  writer: raw PeerId of the writer, 0 none      writers (CAS)
//!      8     8  seq: even = stable, odd = a write under way   the writer
//!     64   8*n  words: the value, n = ceil(bytes / 8) u64s    the writer
//! ```
//!
//! ```text
//! writer                                   reader
//! ------                                   ------
//! seq := s + 1 (odd)          (Relaxed)    s1 = seq (Acquire); odd: retry
//! fence(Release)                    FW     copy the words      (Relaxed)
//! store the words             (Relaxed)    fence(Acquire)            FR
//! seq := s + 2                (Release)    s2 = seq (Relaxed)
//!                                          s1 == s2: the copy is one write's
//! ```
//!
//! If the copy saw any word of a write that began after `s1` was stored,
//! FR synchronises with that write's FW, so `s2` sees its odd `seq` (or
//! later) and the copy is refused. Every word is an atomic: a racing copy
//! is a wrong copy, thrown away, never undefined behaviour. All-zero memory
//! is a cell holding `T::zeroed()`, version 0. A writer that dies in the
//! middle of a write leaves `seq` odd: readers get `Busy` (or, blocking,
//! `PeerDead`) until a new writer attaches and writes.
//!
//! A hostile peer can make a reader accept any bytes (they are `Pod`: a
//! wrong value, never unsafety) or keep it retrying (bounded: `Busy`, or
//! the reader's deadline).

use crate::sync::clock::Instant;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;
use std::sync::Arc;

use bytemuck::Pod;

use super::error::{SnapshotError, TrySnapshotError};
use super::heap::HeapPeers;
use crate::AttachError;
use crate::region::PeerId;
use crate::sync::shim::{AtomicU32, AtomicU64, Ordering, fence, spin_loop};

/// The top byte of a cell's shape word.
const SHAPE_TAG: u32 = (b'S' as u32) << 24;
/// The largest value a cell holds.
const MAX_VALUE: usize = (1 << 24) - 1;
/// Attempts of a `try_` read.
#[cfg(not(loom))]
const TRY_ATTEMPTS: u32 = 64;
/// Attempts of a `try_` read (few under loom: each is a yield).
#[cfg(loom)]
const TRY_ATTEMPTS: u32 = 2;

/// The cell's first line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct CellHeader {
    shape: AtomicU32,
    writer: AtomicU32,
    seq: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<CellHeader>() == 64);

/// The section length a cell of `T` needs.
///
/// ```
/// use polycephaly::arena::snapshot_section_len;
/// assert_eq!(snapshot_section_len::<[f64; 4]>(), 64 + 32);
/// ```
pub const fn snapshot_section_len<T: Pod>() -> usize {
    64 + words_of::<T>() * 8
}

const fn words_of<T>() -> usize {
    size_of::<T>().div_ceil(8)
}

fn shape_of<T>() -> u32 {
    SHAPE_TAG | size_of::<T>() as u32
}

/// What keeps a cell alive, and whom a handle acts for.
#[derive(Debug)]
enum Backing {
    Heap(Arc<HeapCell>, PeerId),
    #[cfg(not(loom))]
    Region(crate::region::Region),
}

/// A handle's view of a cell.
///
/// # Invariants
/// `header` and `words` (`n` of them) are valid while `backing` lives;
/// `n == words_of::<T>()` for the handle's `T`.
struct CellView {
    header: NonNull<CellHeader>,
    words: NonNull<AtomicU64>,
    n: usize,
    backing: Backing,
}

impl fmt::Debug for CellView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CellView")
            .field("words", &self.n)
            .finish_non_exhaustive()
    }
}

// SAFETY: pointers into memory kept alive by `backing` (Send + Sync); all
// access is atomic.
unsafe impl Send for CellView {}
// SAFETY: as above.
unsafe impl Sync for CellView {}

impl CellView {
    /// A view of `n` words, checking (or setting, when fresh) the shape.
    ///
    /// # Safety
    /// As the type's invariants, for `T`.
    unsafe fn new<T>(
        header: NonNull<CellHeader>,
        words: NonNull<AtomicU64>,
        backing: Backing,
    ) -> Result<Self, AttachError> {
        let view = Self {
            header,
            words,
            n: words_of::<T>(),
            backing,
        };
        let want = shape_of::<T>();
        // Relaxed: the shape publishes nothing; it is checked, not trusted.
        match view
            .header()
            .shape
            .compare_exchange(0, want, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Ok(view),
            Err(w) if w == want => Ok(view),
            Err(w) if w & 0xFF00_0000 == SHAPE_TAG => Err(AttachError::WrongValueSize {
                expected: size_of::<T>(),
                found: (w & 0x00FF_FFFF) as usize,
            }),
            Err(_) => Err(AttachError::NotFormatted {
                what: "snapshot cell",
            }),
        }
    }

    fn header(&self) -> &CellHeader {
        // SAFETY: type invariant; a header holds only atomics.
        unsafe { self.header.as_ref() }
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: type invariant: `n` atomics, valid for any bits.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr(), self.n) }
    }

    fn me(&self) -> PeerId {
        match &self.backing {
            Backing::Heap(_, id) => *id,
            #[cfg(not(loom))]
            Backing::Region(r) => r.peer_id(),
        }
    }

    fn alive(&self, raw: u32) -> bool {
        let Some(id) = PeerId::from_raw(raw) else {
            return false;
        };
        match &self.backing {
            Backing::Heap(cell, _) => cell.peers.alive(id),
            #[cfg(not(loom))]
            Backing::Region(r) => r.peer_alive(id),
        }
    }
}

impl Drop for CellView {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Heap(cell, id) => cell.peers.release(*id),
            #[cfg(not(loom))]
            Backing::Region(_) => {}
        }
    }
}

/// The writer of a snapshot cell: [`write`](Self::write) never waits.
pub struct SnapshotWriter<T: Pod> {
    cell: CellView,
    me: u32,
    /// The last `seq` stored (even), or the value to continue from.
    seq: u64,
    _t: PhantomData<fn(T)>,
}

impl<T: Pod> fmt::Debug for SnapshotWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> SnapshotWriter<T> {
    /// Claims the writer role (free, or held by a dead writer).
    fn claim(cell: CellView) -> Result<Self, AttachError> {
        let me = cell.me().to_raw();
        let h = cell.header();
        // Acquire: pairs with the previous writer's Release detach.
        let mut cur = h.writer.load(Ordering::Acquire);
        for _ in 0..4 {
            if cur != 0 && cell.alive(cur) {
                return PeerId::from_raw(cur).map_or(
                    Err(AttachError::Corrupted { what: "writer" }),
                    |holder| {
                        Err(AttachError::RoleTaken {
                            holder: Some(holder),
                        })
                    },
                );
            }
            // AcqRel: Acquire as above; Release publishes the claim.
            match h
                .writer
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Relaxed: the role's Acquire ordered the last writer's
                    // stores; an odd value is a write that never finished:
                    // continue after it.
                    let s = h.seq.load(Ordering::Relaxed);
                    return Ok(Self {
                        seq: s.wrapping_add(1) & !1,
                        cell,
                        me,
                        _t: PhantomData,
                    });
                }
                Err(x) => cur = x,
            }
        }
        Err(AttachError::Corrupted { what: "writer" })
    }

    /// Stores `value`: readers that start after this returns see it (or a
    /// later one); readers racing with it retry.
    pub fn write(&mut self, value: &T) {
        let h = self.cell.header();
        let s = self.seq;
        // Relaxed: FW below orders it before the words.
        h.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // FW: pairs with FR in the reader (module docs).
        #[cfg(not(polycephaly_broken_arena = "seqlock_writer"))]
        fence(Ordering::Release);
        let bytes = bytemuck::bytes_of(value);
        for (w, chunk) in self.cell.words().iter().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: ordered by FW and the Release store below.
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        // Release: pairs with the reader's Acquire load of `seq`.
        h.seq.store(s.wrapping_add(2), Ordering::Release);
        self.seq = s.wrapping_add(2);
    }

    /// Writes done so far through this cell (by every writer).
    pub fn version(&self) -> u64 {
        self.seq / 2
    }
}

impl<T: Pod> Drop for SnapshotWriter<T> {
    fn drop(&mut self) {
        // Release: pairs with the next writer's Acquire.
        let _ = self.cell.header().writer.compare_exchange(
            self.me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// A reader of a snapshot cell: copies of consistent values, never torn.
/// `Send` and `Sync`.
pub struct SnapshotReader<T: Pod> {
    cell: CellView,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> fmt::Debug for SnapshotReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReader").finish_non_exhaustive()
    }
}

impl<T: Pod> SnapshotReader<T> {
    /// One attempt: a consistent copy and its version, or `None`.
    fn read_once(&self) -> Option<(T, u64)> {
        let h = self.cell.header();
        // Acquire: pairs with the writer's Release store of an even `seq`.
        let s1 = h.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let mut out = T::zeroed();
        let bytes = bytemuck::bytes_of_mut(&mut out);
        for (w, chunk) in self.cell.words().iter().zip(bytes.chunks_mut(8)) {
            // Relaxed: FR below orders these before the re-load of `seq`.
            let b = w.load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        // FR: pairs with FW in the writer (module docs).
        #[cfg(not(polycephaly_broken_arena = "seqlock_reader"))]
        fence(Ordering::Acquire);
        // Relaxed: ordered by FR.
        let s2 = h.seq.load(Ordering::Relaxed);
        (s1 == s2).then_some((out, s1 / 2))
    }

    /// A consistent copy of the value, trying a few times.
    ///
    /// # Errors
    /// [`TrySnapshotError::Busy`] if a write was under way at every
    /// attempt.
    pub fn try_read(&self) -> Result<T, TrySnapshotError> {
        self.try_read_versioned().map(|(v, _)| v)
    }

    /// As [`try_read`](Self::try_read), with the value's version (the
    /// number of writes before it: 0 for the initial zeroed value).
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read).
    pub fn try_read_versioned(&self) -> Result<(T, u64), TrySnapshotError> {
        for _ in 0..TRY_ATTEMPTS {
            if let Some(v) = self.read_once() {
                return Ok(v);
            }
            spin_loop();
        }
        Err(TrySnapshotError::Busy)
    }

    /// A consistent copy, retrying as long as it takes.
    ///
    /// # Errors
    /// [`SnapshotError::PeerDead`] when the writer died mid-write.
    pub fn read(&self) -> Result<T, SnapshotError> {
        self.read_deadline(None)
    }

    /// As [`read`](Self::read), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`SnapshotError::TimedOut`].
    pub fn read_timeout(&self, timeout: Duration) -> Result<T, SnapshotError> {
        self.read_deadline(Instant::now().checked_add(timeout))
    }

    /// As [`read`](Self::read), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// As [`read_timeout`](Self::read_timeout).
    pub fn read_deadline(&self, deadline: Option<Instant>) -> Result<T, SnapshotError> {
        loop {
            if let Ok(v) = self.try_read() {
                return Ok(v);
            }
            // Relaxed: a liveness hint; the next attempt re-checks `seq`.
            let writer = self.cell.header().writer.load(Ordering::Relaxed);
            if writer == 0 || !self.cell.alive(writer) {
                return self.try_read().map_err(|_| SnapshotError::PeerDead);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SnapshotError::TimedOut);
            }
            #[cfg(not(loom))]
            std::thread::yield_now();
            #[cfg(loom)]
            loom::thread::yield_now();
        }
    }
}

/// A snapshot cell on the heap, for threads, tests and loom models: the
/// same code as a cell in a region section.
///
/// ```
/// use polycephaly::arena::HeapSnapshot;
///
/// let cell = HeapSnapshot::<[f64; 3]>::new();
/// let mut w = cell.writer()?;
/// let r = cell.reader()?;
/// assert_eq!(r.try_read()?, [0.0; 3]);
/// w.write(&[1.0, 2.0, 3.0]);
/// assert_eq!(r.try_read()?, [1.0, 2.0, 3.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HeapSnapshot<T: Pod> {
    cell: Arc<HeapCell>,
    _t: PhantomData<fn() -> T>,
}

/// A heap cell's memory and peer table.
#[derive(Debug)]
pub(crate) struct HeapCell {
    header: Box<CellHeader>,
    words: Box<[AtomicU64]>,
    pub(crate) peers: HeapPeers,
}

impl<T: Pod> HeapSnapshot<T> {
    /// A cell holding `T::zeroed()`.
    pub fn new() -> Self {
        const { assert!(size_of::<T>() > 0 && size_of::<T>() <= MAX_VALUE) };
        Self {
            cell: Arc::new(HeapCell {
                header: Box::default(),
                words: (0..words_of::<T>()).map(|_| AtomicU64::new(0)).collect(),
                peers: HeapPeers::new(),
            }),
            _t: PhantomData,
        }
    }

    fn view(&self) -> Result<CellView, AttachError> {
        let id = self.cell.peers.claim().ok_or(AttachError::NoFreeEntry {
            max: super::layout::HOLD_SLOTS,
        })?;
        let header = NonNull::from(&*self.cell.header);
        let words =
            NonNull::new(self.cell.words.as_ptr().cast_mut()).unwrap_or(NonNull::dangling());
        // SAFETY: the boxes live as long as the Arc in the backing; `words`
        // holds words_of::<T>() atomics.
        unsafe { CellView::new::<T>(header, words, Backing::Heap(Arc::clone(&self.cell), id)) }
    }

    /// The writer (free, or held by a writer declared dead).
    ///
    /// # Errors
    /// [`AttachError::RoleTaken`] while a live writer holds it,
    /// [`AttachError::NoFreeEntry`].
    pub fn writer(&self) -> Result<SnapshotWriter<T>, AttachError> {
        SnapshotWriter::claim(self.view()?)
    }

    /// A reader.
    ///
    /// # Errors
    /// [`AttachError::NoFreeEntry`].
    pub fn reader(&self) -> Result<SnapshotReader<T>, AttachError> {
        Ok(SnapshotReader {
            cell: self.view()?,
            _t: PhantomData,
        })
    }

    /// Test hook: declares the holder of `id` dead.
    #[cfg(any(feature = "testing", loom))]
    pub fn mark_dead(&self, id: PeerId) {
        self.cell.peers.mark_dead(id);
    }

    /// The peer id of a writer, for [`mark_dead`](Self::mark_dead).
    #[cfg(any(feature = "testing", loom))]
    pub fn writer_id(w: &SnapshotWriter<T>) -> PeerId {
        w.cell.me()
    }

    /// The cell's memory as raw words (header first), for the fuzzer.
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn raw_parts(&self) -> (&CellHeader, &[AtomicU64]) {
        (&self.cell.header, &self.cell.words)
    }
}

impl<T: Pod> Default for HeapSnapshot<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
impl CellHeader {
    /// Overwrites the header words, as a hostile peer could (fuzzer).
    #[cfg(all(feature = "testing", not(loom)))]
    pub(crate) fn poke(&self, shape: u32, writer: u32, seq: u64) {
        // Relaxed: a fuzzer's scribble, nothing to order.
        self.shape.store(shape, Ordering::Relaxed);
        self.writer.store(writer, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Relaxed);
    }
}

#[cfg(not(loom))]
mod region_cell {
    use super::*;
    use crate::region::{Region, SectionId, SectionKind};

    /// The header and words of the cell of `T` in section `id`.
    fn region_view<T: Pod>(region: &Region, id: SectionId) -> Result<CellView, AttachError> {
        const { assert!(size_of::<T>() > 0 && size_of::<T>() <= MAX_VALUE) };
        let s = region.section(id)?;
        if s.kind != SectionKind::Arena {
            return Err(AttachError::WrongKind {
                found: s.kind,
                wanted: SectionKind::Arena,
            });
        }
        if s.len < snapshot_section_len::<T>() {
            return Err(AttachError::WrongLength {
                len: s.len,
                what: "a snapshot cell of this value",
            });
        }
        if s.ptr.as_ptr() as usize % 64 != 0 {
            return Err(AttachError::Misaligned { need: 64 });
        }
        let header = s.ptr.cast::<CellHeader>();
        // SAFETY: 64 + 8 * words_of::<T>() <= s.len (checked above).
        let words = unsafe { s.ptr.add(64) }.cast::<AtomicU64>();
        // SAFETY: the section is 64-aligned and long enough for the header
        // and the words, which hold only atomics; the region in the backing
        // keeps it mapped.
        unsafe { CellView::new::<T>(header, words, Backing::Region(region.clone())) }
    }

    impl<T: Pod> SnapshotWriter<T> {
        /// Attaches as the writer of the cell of `T` in section `id` of
        /// `region` (kind [`SectionKind::Arena`], at least
        /// [`snapshot_section_len::<T>()`](super::snapshot_section_len)
        /// bytes; no formatting needed: zeroed memory is a cell holding
        /// `T::zeroed()`). A dead writer's role is taken over.
        ///
        /// ```
        /// use polycephaly::arena::{snapshot_section_len, SnapshotReader, SnapshotWriter};
        /// use polycephaly::region::{Region, SectionId, SectionKind};
        ///
        /// let region = Region::builder()
        ///     .section(SectionKind::Arena, snapshot_section_len::<[u32; 4]>())
        ///     .build()?;
        /// let mut w = SnapshotWriter::<[u32; 4]>::attach(&region, SectionId(0))?;
        /// let r = SnapshotReader::<[u32; 4]>::attach(&region, SectionId(0))?;
        /// w.write(&[1, 2, 3, 4]);
        /// assert_eq!(r.read()?, [1, 2, 3, 4]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// [`AttachError::Section`], [`AttachError::WrongKind`],
        /// [`AttachError::WrongLength`], [`AttachError::WrongValueSize`] (the
        /// cell was first attached with another `T`),
        /// [`AttachError::RoleTaken`] while a live writer holds it.
        pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
            Self::claim(region_view::<T>(region, id)?)
        }
    }

    impl<T: Pod> SnapshotReader<T> {
        /// Attaches a reader of the cell of `T` in section `id` of
        /// `region`; see [`SnapshotWriter::attach`].
        ///
        /// # Errors
        /// As [`SnapshotWriter::attach`], except `RoleTaken`.
        pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
            Ok(Self {
                cell: region_view::<T>(region, id)?,
                _t: PhantomData,
            })
        }
    }
}
