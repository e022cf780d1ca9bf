//! What master and drones put in shared memory: the pool's region layout,
//! its control section, and the frames on its rings.
//!
//! ```text
//! section 0            control: header, then one line per drone slot
//! section 1            results: MPSC ring, drones (and the keeper) -> master
//! section 2            arena: lane 0 the master's, lane 1 + i drone i's
//! section 3 + i        tasks of drone slot i: SPSC ring, master -> drone
//! ```
//!
//! Every frame starts with a fixed header ([`TaskHeader`], [`ResultHeader`],
//! [`Hello`]) read with a length check; every length and count in it is
//! checked against the frame before anything is sliced. A drone trusts the
//! master's frames no more than the master trusts a drone's: a frame that
//! does not add up is an error for that task, never a panic.

use crate::sync::shim::{AtomicU32, AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};

use crate::AttachError;
use crate::arena::BlockHandle;
use crate::region::{Region, SectionId, SectionKind};

/// The control section.
pub(crate) const CONTROL: SectionId = SectionId(0);
/// The results ring.
pub(crate) const RESULTS: SectionId = SectionId(1);
/// The arena.
pub(crate) const ARENA: SectionId = SectionId(2);
/// The task ring of drone slot `slot`.
pub(crate) const fn task_ring(slot: usize) -> SectionId {
    SectionId(3 + slot as u16)
}
/// The arena lane of drone slot `slot` (lane 0 is the master's).
pub(crate) const fn drone_lane(slot: usize) -> u16 {
    1 + slot as u16
}

/// The control section's kind: a user kind, tagged "PC".
pub(crate) const CONTROL_KIND: SectionKind = SectionKind::User(0x5043);
const MAGIC: u64 = u64::from_le_bytes(*b"polypool");
const VERSION: u32 = 1;

/// Frame tags.
pub(crate) const TAG_TASK: u32 = 1;
pub(crate) const TAG_STOP: u32 = 2;
pub(crate) const TAG_RESULT: u32 = 3;
pub(crate) const TAG_HELLO: u32 = 4;
/// From the keeper: "look at the keeper's events".
pub(crate) const TAG_NOTICE: u32 = 5;

/// The control section's header. All fields are atomics: a hostile drone
/// may write them while others read (wrong values, never a data race).
///
/// Invariants (written once by the master before any drone starts, read
/// only after): `magic` and `version` as above; `slots` the number of
/// drone slots and of task rings; `master_pid` and `master_peer` the
/// master's process id and region peer id; `fingerprint` the registry's.
#[repr(C, align(64))]
pub(crate) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    slots: AtomicU32,
    fingerprint: AtomicU64,
    master_pid: AtomicU32,
    master_peer: AtomicU32,
}

/// One drone slot's words: advice from the drone to the master, never
/// trusted for safety (a wrong value delays a time-out or blames the wrong
/// task, which then runs again).
///
/// Invariants: written only by the slot's current drone: `running` is the
/// sequence number + 1 of the chunk it runs (0: none), `item` the item of
/// that chunk it is on, `progress` counts the items it started, `busy_ns`
/// the nanoseconds it spent running chunks (for statistics); `sent_block`
/// holds a [`BlockHandle`] the drone published for the master and has not
/// yet committed a result frame naming (`sent_block_set` is 1 then), so
/// that the master can release it when the drone dies in between.
#[repr(C, align(64))]
pub(crate) struct SlotWords {
    pub(crate) running: AtomicU64,
    pub(crate) item: AtomicU64,
    pub(crate) progress: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) sent_block_set: AtomicU64,
    pub(crate) sent_block: [AtomicU64; 4],
}

impl SlotWords {
    /// Records `h` as published and not yet sent.
    pub(crate) fn record_block(&self, h: &BlockHandle) {
        let words: [u64; 4] = bytemuck::cast(*h);
        for (w, v) in self.sent_block.iter().zip(words) {
            // Relaxed (all): read by the master only after this drone's
            // death, which orders every store of the dead process before.
            w.store(v, Ordering::Relaxed);
        }
        self.sent_block_set.store(1, Ordering::Relaxed);
    }

    /// Forgets the recorded block (its result frame is committed).
    pub(crate) fn clear_block(&self) {
        // Relaxed: as in `record_block`.
        self.sent_block_set.store(0, Ordering::Relaxed);
    }

    /// The recorded block, if any, and forgets it (the master, after the
    /// drone's death). Unchecked: the reader checks any handle it reads.
    pub(crate) fn take_block(&self) -> Option<BlockHandle> {
        // Relaxed (all): see `record_block`.
        if self.sent_block_set.swap(0, Ordering::Relaxed) != 1 {
            return None;
        }
        let mut words = [0u64; 4];
        for (v, w) in words.iter_mut().zip(&self.sent_block) {
            *v = w.load(Ordering::Relaxed);
        }
        Some(bytemuck::cast(words))
    }
}

/// The control section's length for `slots` slots.
pub(crate) const fn control_len(slots: usize) -> usize {
    size_of::<Header>() + slots * size_of::<SlotWords>()
}

/// A checked view of the control section.
#[derive(Clone)]
pub(crate) struct Control {
    /// Keeps the mapping.
    _region: Region,
    header: core::ptr::NonNull<Header>,
    slots: usize,
}

// SAFETY: the pointers point into the mapping `_region` keeps alive, at
// structures of atomics only; sharing them across threads is as safe as
// sharing the atomics.
unsafe impl Send for Control {}
// SAFETY: as for `Send`.
unsafe impl Sync for Control {}

impl core::fmt::Debug for Control {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Control")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// What the master writes in the header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderValues {
    pub(crate) slots: usize,
    pub(crate) fingerprint: u64,
    pub(crate) master_pid: u32,
    pub(crate) master_peer: u32,
}

impl Control {
    fn view(region: &Region) -> Result<(Self, usize), AttachError> {
        let section = region.section(CONTROL)?;
        if section.kind != CONTROL_KIND {
            return Err(AttachError::WrongKind {
                found: section.kind,
                wanted: CONTROL_KIND,
            });
        }
        if section.len < size_of::<Header>() {
            return Err(AttachError::WrongLength {
                len: section.len,
                what: "pool control section",
            });
        }
        if section.ptr.as_ptr() as usize % align_of::<Header>() != 0 {
            return Err(AttachError::Misaligned {
                need: align_of::<Header>(),
            });
        }
        let max = (section.len - size_of::<Header>()) / size_of::<SlotWords>();
        Ok((
            Self {
                _region: region.clone(),
                header: section.ptr.cast(),
                slots: 0,
            },
            max,
        ))
    }

    /// Formats the control section of a region the master just built.
    pub(crate) fn format(region: &Region, v: HeaderValues) -> Result<Self, AttachError> {
        let (mut this, max) = Self::view(region)?;
        if v.slots > max {
            return Err(AttachError::WrongLength {
                len: control_len(max),
                what: "pool control section",
            });
        }
        this.slots = v.slots;
        let h = this.header();
        // Relaxed (all): written before any drone exists; a drone starts
        // after the fork that follows, which orders them before its loads.
        h.version.store(VERSION, Ordering::Relaxed);
        h.slots.store(v.slots as u32, Ordering::Relaxed);
        h.fingerprint.store(v.fingerprint, Ordering::Relaxed);
        h.master_pid.store(v.master_pid, Ordering::Relaxed);
        h.master_peer.store(v.master_peer, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Relaxed);
        Ok(this)
    }

    /// Attaches a drone to the control section, checking the header.
    pub(crate) fn attach(region: &Region) -> Result<(Self, HeaderValues), AttachError> {
        let (this, max) = Self::view(region)?;
        let h = this.header();
        // Relaxed (all): see `format`.
        if h.magic.load(Ordering::Relaxed) != MAGIC || h.version.load(Ordering::Relaxed) != VERSION
        {
            return Err(AttachError::NotFormatted {
                what: "pool control section",
            });
        }
        let slots = h.slots.load(Ordering::Relaxed) as usize;
        if slots > max {
            return Err(AttachError::Corrupted {
                what: "pool slot count",
            });
        }
        let v = HeaderValues {
            slots,
            fingerprint: h.fingerprint.load(Ordering::Relaxed),
            master_pid: h.master_pid.load(Ordering::Relaxed),
            master_peer: h.master_peer.load(Ordering::Relaxed),
        };
        Ok((Self { slots, ..this }, v))
    }

    fn header(&self) -> &Header {
        // SAFETY: checked in `view`: the section holds a `Header` at its
        // (aligned) start, atomics only, valid for any bits; the region
        // clone keeps it mapped.
        unsafe { self.header.as_ref() }
    }

    /// The words of slot `slot`, if there is such a slot.
    pub(crate) fn slot(&self, slot: usize) -> Option<&SlotWords> {
        if slot >= self.slots {
            return None;
        }
        // SAFETY: `slot < slots <= max` (checked in `format`/`attach`), so
        // the line is inside the section, 64-aligned after the 64-aligned
        // header; atomics only.
        Some(unsafe { &*self.header.as_ptr().add(1).cast::<SlotWords>().add(slot) })
    }
}

/// Reads a `T` from the start of `bytes`, if it is long enough.
pub(crate) fn read_head<T: Pod>(bytes: &[u8]) -> Option<(T, &[u8])> {
    let head = bytes.get(..size_of::<T>())?;
    Some((bytemuck::pod_read_unaligned(head), &bytes[size_of::<T>()..]))
}

/// The most items a chunk has (the master cuts chunks to fit a frame, so
/// far fewer); a drone refuses more.
pub(crate) const MAX_CHUNK_ITEMS: usize = 1 << 16;

/// Where a frame's payload is.
pub(crate) const IN_FRAME: u32 = 0;
/// The payload is a range of an arena block: an [`ArenaRef`] follows.
pub(crate) const IN_ARENA: u32 = 1;

/// A task frame's header; the chunk's input follows (in the frame, or in
/// the arena: `place`).
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct TaskHeader {
    /// The chunk's sequence number (unique in the pool's life).
    pub(crate) seq: u64,
    /// The drone generation it is for: a drone skips others' frames.
    pub(crate) generation: u32,
    /// The task's index in the registry.
    pub(crate) task: u32,
    /// Items in the chunk.
    pub(crate) count: u32,
    /// [`IN_FRAME`] or [`IN_ARENA`].
    pub(crate) place: u32,
}

/// A range of an arena block.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct ArenaRef {
    pub(crate) handle: BlockHandle,
    /// First byte of the range, in the block.
    pub(crate) offset: u64,
    /// Bytes in the range.
    pub(crate) len: u64,
}

/// Every item succeeded and every output has the task's fixed size: the
/// outputs follow, packed.
pub(crate) const DENSE: u32 = 0;
/// One entry per item: an [`Entry`], then its bytes, padded to 8.
pub(crate) const ENTRIES: u32 = 1;
/// The chunk's outputs together do not fit the drone's arena lane: two
/// `u64`s follow, their size and the lane's.
pub(crate) const TOO_LARGE: u32 = 2;

/// A result frame's header; the chunk's outputs follow (in the frame, or
/// in the drone's arena lane: `place`).
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct ResultHeader {
    pub(crate) seq: u64,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) count: u32,
    /// [`DENSE`] or [`ENTRIES`].
    pub(crate) form: u32,
    /// [`IN_FRAME`] or [`IN_ARENA`].
    pub(crate) place: u32,
    pub(crate) _pad: u32,
}

/// An item's status, in [`ENTRIES`] form.
pub(crate) const ITEM_OK: u32 = 0;
pub(crate) const ITEM_PANICKED: u32 = 1;
pub(crate) const ITEM_BAD_INPUT: u32 = 2;
pub(crate) const ITEM_UNKNOWN_TASK: u32 = 3;

/// One item's entry in [`ENTRIES`] form: its status and the length of
/// the bytes that follow (output, or a message).
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) status: u32,
    pub(crate) len: u32,
}

/// Appends an entry and its bytes, padded to 8.
pub(crate) fn push_entry(out: &mut Vec<u8>, status: u32, bytes: &[u8]) {
    let len = bytes.len().min(u32::MAX as usize);
    out.extend_from_slice(bytemuck::bytes_of(&Entry {
        status,
        len: len as u32,
    }));
    out.extend_from_slice(&bytes[..len]);
    out.resize(out.len().next_multiple_of(8), 0);
}

/// A drone's first frame.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Hello {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) pid: u32,
    /// [`HELLO_OK`] or why the drone cannot serve.
    pub(crate) status: u32,
}

pub(crate) const HELLO_OK: u32 = 0;
/// The drone's registry is not the master's.
pub(crate) const HELLO_WRONG_REGISTRY: u32 = 1;

/// Parses `slot.generation`.
pub(crate) fn parse_drone_var(s: &str) -> Option<(usize, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_padded_and_read_back() {
        let mut out = Vec::new();
        push_entry(&mut out, ITEM_OK, b"abc");
        push_entry(&mut out, ITEM_PANICKED, b"");
        assert_eq!(out.len(), 16 + 8);
        let (e, rest) = read_head::<Entry>(&out).unwrap();
        assert_eq!((e.status, e.len), (ITEM_OK, 3));
        assert_eq!(&rest[..3], b"abc");
    }

    #[test]
    fn drone_var() {
        assert_eq!(parse_drone_var("3.17"), Some((3, 17)));
        assert_eq!(parse_drone_var("3"), None);
        assert_eq!(parse_drone_var("x.1"), None);
    }
}
