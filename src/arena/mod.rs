//! The bulk arena: protected write, unprotected read, for large arrays
//! between processes; and snapshot cells.
//!
//! An arena section (kind [`SectionKind::Arena`](crate::region::SectionKind),
//! length from [`ArenaSpec::section_len`], formatted once with
//! [`ArenaSpec::format`]) holds *lanes*, each a byte ring of its own with a
//! table of block descriptors (layout and invariants in [`layout`]).
//!
//! - **Lanes.** Each writer process owns a lane ([`ArenaWriter::attach`]):
//!   one allocator, so allocating takes no lock and no compare-and-swap.
//!   [`ArenaWriter::try_alloc`] gives a zeroed block of `T: Pod` to build
//!   in place, [`ArenaWriter::try_alloc_uninit`] one to initialise without
//!   the zeroing pass; blocking, `_timeout` and `_deadline` forms wait for
//!   room. [`BlockMut::publish`] makes it readable and gives a
//!   [`BlockHandle`] (32 bytes, `Pod`) to send through a ring. Nobody
//!   writes a published block: *protected write*.
//! - **Readers.** [`ArenaReader::read`] checks a handle (lane, bounds,
//!   alignment and size of `T`, generation, and that the block at its place
//!   is the one named) and gives `&[T]` in place, with no lock: *unprotected
//!   read*. Dropping the [`ReadGuard`] releases the block.
//! - **Reclaim.** A block is published for [`Readers`]: a count `k` of
//!   reads, or named peers. The writer reclaims blocks in lane order as it
//!   allocates, once their readers are done (or dead: a reader holding a
//!   block is judged by the region's peer table, pid plus start time); a
//!   held block is never reused, and a full lane makes the writer wait.
//! - **Snapshot cells** ([`SnapshotWriter`], [`SnapshotReader`]): one `Pod`
//!   value written by one process and read by many through a seqlock; a
//!   reader never blocks the writer and never accepts a torn value.
//!
//! # Who holds a block
//!
//! Each descriptor has one hold word per region peer slot: a reader's
//! generation, its count of guards on the block, and an "owed" bit for a
//! named reader that has not read yet. A reader raises its count, fences,
//! then checks the block's generation again; the writer, to reclaim,
//! retires the block (a new tag), fences, then looks at the hold words:
//! the two fences are a Dekker pair, so either the writer sees the hold or
//! the reader sees the block retired and backs off (the full table is in
//! `lane.rs`). A count-mode block is done when its `k` acquisitions
//! happened (each uses one up) and no live peer still holds it; a
//! named-mode block when every named peer read it or died, and no live
//! peer holds it. A word of a dead peer, or of an earlier holder of the
//! slot (another generation), counts for nothing.
//!
//! A writer that dies leaves its lane's bookkeeping in shared memory: the
//! next writer of the lane ([`ArenaWriter::attach_lane`]) adopts its live
//! blocks (they stay readable), or resets the lane when the bookkeeping
//! does not add up. An adopted block nobody reads (its writer died between
//! publishing it and handing its handle on) is given up once the lane is
//! short of room and the orphan timeout has passed
//! ([`ArenaWriter::set_orphan_timeout`]), so that it cannot hold the lane
//! up for ever.
//!
//! # What a hostile peer can do
//!
//! Peers are trusted not to write what they do not own, but nothing read
//! from shared memory is used before it is checked: a forged, stale,
//! misaligned or out-of-range handle gives a [`ReadError`], never a slice
//! outside its block, and the bounds of a guard come from the checked
//! handle, never re-read. A hostile process that scribbles over the lane
//! bookkeeping makes reads fail, blocks be reclaimed late (allocation
//! waits, then times out) or early; a hostile *writer* of a block's bytes
//! changes the values under a reader of `Pod` data: wrong values, never
//! unsafety in our code. So a [`ReadGuard`] is a live view: copy before you
//! validate (check what you rely on in a copy of the bytes).
//!
//! # Sizes
//!
//! Blocks of 0 elements work (they take one cache line of the lane). Lanes
//! go up to [`layout::MAX_LANE_LEN`] (256 GiB). Lanes of 2 MiB or more ask
//! for transparent huge pages (see [`shared_huge_pages`]).
//!
//! ```
//! use polycephaly::arena::{ArenaSpec, HeapArena, Readers};
//!
//! // One lane; a writer and two readers (threads here, processes with a
//! // region: see `ArenaSpec`).
//! let arena = HeapArena::new(ArenaSpec::new(1, 1 << 20))?;
//! let mut writer = arena.writer()?;
//! let (a, b) = (arena.reader()?, arena.reader()?);
//! let block = writer.alloc_uninit::<f32>(1024)?.fill(0.5);
//! let handle = block.publish(Readers::Peers(&[a.peer_id(), b.peer_id()]));
//! std::thread::scope(|s| {
//!     for r in [&a, &b] {
//!         s.spawn(move || {
//!             let data = r.read::<f32>(&handle).unwrap();
//!             assert_eq!(data.iter().sum::<f32>(), 512.0);
//!         });
//!     }
//! });
//! writer.reclaim()?;
//! assert_eq!(writer.live_blocks(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(not(loom))]
mod attach;
mod block;
mod error;
mod handle;
mod heap;
#[cfg(not(loom))]
mod huge;
mod lane;
pub mod layout;
#[cfg(not(loom))]
pub mod observe;
mod peer;
mod reader;
mod snapshot;
mod spec;
mod view;
mod writer;

pub use block::{BlockMut, UninitBlock};
pub use error::{
    AllocError, FormatError, ReadError, SnapshotError, SpecError, TryAllocError, TrySnapshotError,
};
pub use handle::{BlockHandle, Readers};
pub use heap::HeapArena;
#[cfg(not(loom))]
pub use huge::{HUGE_PAGE, private_huge_pages, shared_huge_pages};
pub use lane::DEFAULT_ORPHAN_TIMEOUT;
pub use reader::{ArenaReader, ReadGuard};
pub use snapshot::{HeapSnapshot, SnapshotReader, SnapshotWriter, snapshot_section_len};
pub use spec::ArenaSpec;
pub use writer::ArenaWriter;
