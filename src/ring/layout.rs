//! The shared layout of an SPSC ring section, and its heap twin.
//!
//! ```text
//! section offset
//!   0  +-----------------------------------------------+
//!      | tail: u64         written by the producer      |  line 0
//!  64  +-----------------------------------------------+
//!      | head: u64         written by the consumer      |  line 1
//! 128  +-----------------------------------------------+
//!      | holder[2]: u32    role words (raw PeerId, 0 = free)
//!      | epoch[2]: u32     attaches so far, per role    |  line 2
//!      | poisoned: u32     non-zero once corruption seen|
//! 192  +-----------------------------------------------+
//!      | data bell: Doorbell  the consumer sleeps here  |  line 3
//! 256  +-----------------------------------------------+
//!      | space bell: Doorbell the producer sleeps here  |  line 4
//! 320  +-----------------------------------------------+
//!      | data: capacity bytes (2^k) of frames           |
//!      +-----------------------------------------------+
//! ```
//!
//! All-zero memory is a valid, empty ring with no producer and no consumer,
//! so a zero-filled section needs no initialisation.
//!
//! # Invariants (checked on every read, never trusted)
//! - `tail`: written only by the producer (Release, after the frames it
//!   publishes), read by the consumer (Acquire). Multiple of 8, never
//!   decreases, `head <= tail <= head + capacity`.
//! - `head`: written only by the consumer (Release, after it finished
//!   reading the frames it releases; lazily, see `SpscConsumer`), read by
//!   the producer (Acquire). Same constraints. Each side keeps a private copy of the other's position
//!   that may be stale (older, never newer).
//! - `holder[r]`: the raw `PeerId` of the process that holds role `r`
//!   (0 producer, 1 consumer), 0 when free; set by CAS on attach, cleared on
//!   drop, taken over by CAS when the holder is dead.
//! - `epoch[r]`: incremented on each attach to role `r`; a free role with a
//!   non-zero epoch means the peer came and left.
//! - `poisoned`: set by a side that found the ring inconsistent; it is
//!   never cleared.

use core::ops::Deref;
use core::ptr::NonNull;

use super::error::RingError;
use super::frame::{MAX_CAPACITY, MIN_CAPACITY};
use crate::sync::Doorbell;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// One 64-byte cache line holding `T`, so that words written by different
/// processes never share a line.
///
/// 64 and not crossbeam's 128 (`CachePadded` on x86-64): a region section
/// is only guaranteed 64-byte aligned.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> Deref for Line<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Role index of the producer in [`Roles`].
pub(crate) const PRODUCER: usize = 0;
/// Role index of the consumer in [`Roles`].
pub(crate) const CONSUMER: usize = 1;

/// The role words (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Roles {
    pub(crate) holder: [AtomicU32; 2],
    pub(crate) epoch: [AtomicU32; 2],
    pub(crate) poisoned: AtomicU32,
}

/// The control block at the start of a ring section (see the module docs).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) tail: Line<AtomicU64>,
    pub(crate) head: Line<AtomicU64>,
    pub(crate) roles: Line<Roles>,
    pub(crate) data_bell: Line<Doorbell>,
    pub(crate) space_bell: Line<Doorbell>,
}

/// Bytes of control block before the data bytes of a ring section.
pub const CONTROL_LEN: usize = 5 * 64;

#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<Control>() == CONTROL_LEN);
    assert!(align_of::<Control>() == 64);
    assert!(offset_of!(Control, tail) == 0);
    assert!(offset_of!(Control, head) == 64);
    assert!(offset_of!(Control, roles) == 128);
    assert!(offset_of!(Control, data_bell) == 192);
    assert!(offset_of!(Control, space_bell) == 256);
    assert!(size_of::<Roles>() == 20);
};

/// Checks a capacity: a power of two within
/// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
///
/// # Errors
/// The [`RingError`] naming the broken rule.
pub fn check_capacity(capacity: usize) -> Result<(), RingError> {
    check_capacity_within(capacity, MIN_CAPACITY, MAX_CAPACITY)
}

/// Checks a capacity: a power of two within `min..=max` (shared by the
/// SPSC and MPSC layouts, whose limits differ).
pub(crate) fn check_capacity_within(
    capacity: usize,
    min: usize,
    max: usize,
) -> Result<(), RingError> {
    if capacity < min {
        return Err(RingError::TooSmall { capacity, min });
    }
    if capacity > max {
        return Err(RingError::TooLarge { capacity, max });
    }
    if !capacity.is_power_of_two() {
        return Err(RingError::NotPowerOfTwo(capacity));
    }
    Ok(())
}

/// The section length to ask the region for, for a ring of `capacity` data
/// bytes: the control block plus the capacity.
///
/// ```
/// use polycephaly::ring::{section_len, CONTROL_LEN};
/// assert_eq!(section_len(4096).unwrap(), CONTROL_LEN + 4096);
/// assert!(section_len(1000).is_err());
/// ```
///
/// # Errors
/// [`RingError`] when `capacity` is not a power of two or out of range.
pub fn section_len(capacity: usize) -> Result<usize, RingError> {
    check_capacity(capacity)?;
    Ok(CONTROL_LEN + capacity)
}

/// The capacity of a ring laid over a section of `len` bytes: the largest
/// power of two that fits after the control block, capped at
/// [`MAX_CAPACITY`]. Both sides derive the same value from the same length,
/// also when the region rounded the length up.
#[cfg(not(loom))]
pub(crate) fn capacity_for_section(len: usize) -> Option<usize> {
    capacity_after(len, CONTROL_LEN, MIN_CAPACITY, MAX_CAPACITY)
}

/// The largest power of two that fits in `len - control` bytes, capped at
/// `max`; `None` when less than `min` fits (shared by SPSC and MPSC).
#[cfg(not(loom))]
pub(crate) fn capacity_after(len: usize, control: usize, min: usize, max: usize) -> Option<usize> {
    let room = len.checked_sub(control)?;
    if room < min {
        return None;
    }
    let cap = 1usize << (usize::BITS - 1 - room.leading_zeros());
    Some(cap.min(max))
}

/// A ring's memory on the heap: for rings inside one process, loom models,
/// property tests and the fuzzer. Same layout as a section in a normal
/// build; under loom the control block is a real loom object beside the
/// data bytes, since loom atomics cannot be laid over raw memory.
#[derive(Debug)]
pub(crate) struct HeapRing {
    ctrl: NonNull<Control>,
    data: NonNull<u8>,
    capacity: usize,
    // Under loom only kept for its drop (the data bytes live in it).
    #[cfg_attr(loom, allow(dead_code))]
    block: ZeroedBlock,
    #[cfg(loom)]
    _ctrl_box: Box<Control>,
}

// SAFETY: HeapRing owns its allocation; all shared access goes through
// atomics in `Control` or through the ring protocol on the data bytes.
unsafe impl Send for HeapRing {}
// SAFETY: as above: `&HeapRing` only hands out raw pointers.
unsafe impl Sync for HeapRing {}

impl HeapRing {
    /// A zeroed ring of `capacity` bytes (an empty, unattached ring).
    pub(crate) fn new(capacity: usize) -> Result<Self, RingError> {
        check_capacity(capacity)?;
        #[cfg(not(loom))]
        {
            let block = ZeroedBlock::new(CONTROL_LEN, capacity, MAX_CAPACITY)?;
            Ok(Self {
                ctrl: block.ptr().cast(),
                data: block.data(),
                capacity,
                block,
            })
        }
        #[cfg(loom)]
        {
            let block = ZeroedBlock::new(0, capacity, MAX_CAPACITY)?;
            let ctrl_box = Box::new(Control::default());
            Ok(Self {
                ctrl: NonNull::from(&*ctrl_box),
                data: block.data(),
                capacity,
                block,
                _ctrl_box: ctrl_box,
            })
        }
    }

    /// The control block.
    pub(crate) fn ctrl(&self) -> NonNull<Control> {
        self.ctrl
    }

    /// The first data byte.
    pub(crate) fn data(&self) -> NonNull<u8> {
        self.data
    }

    /// The data capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The whole ring memory (control and data) as raw bytes, for the fuzzer
    /// to overwrite.
    #[cfg(not(loom))]
    pub(crate) fn raw_bytes(&self) -> (*mut u8, usize) {
        (self.block.ptr().as_ptr(), self.block.len())
    }
}

/// The memory of a heap ring (SPSC or MPSC): one zeroed, 64-aligned
/// allocation of a control block (`head_len` bytes, 0 under loom where the
/// control block is a separate loom object) followed by the data bytes;
/// freed on drop.
///
/// # Invariants
/// `ptr` came from `alloc_zeroed(layout)`, `layout.size() = head_len +
/// capacity > 0`, and it is freed once, by `Drop`.
#[derive(Debug)]
pub(crate) struct ZeroedBlock {
    ptr: NonNull<u8>,
    head_len: usize,
    layout: std::alloc::Layout,
}

impl ZeroedBlock {
    /// Allocates `head_len + capacity` zeroed bytes (`capacity` checked by
    /// the caller: a power of two of at least the minimum; `max` is only
    /// reported if the size does not fit a layout).
    pub(crate) fn new(head_len: usize, capacity: usize, max: usize) -> Result<Self, RingError> {
        let layout = head_len
            .checked_add(capacity)
            .and_then(|size| std::alloc::Layout::from_size_align(size, 64).ok())
            .ok_or(RingError::TooLarge { capacity, max })?;
        // SAFETY: `layout` has a non-zero size (capacity >= MIN_CAPACITY).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        Ok(Self {
            ptr,
            head_len,
            layout,
        })
    }

    /// The first byte (the control block's).
    #[cfg(not(loom))]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The first data byte, after the control block.
    pub(crate) fn data(&self) -> NonNull<u8> {
        // SAFETY: the allocation holds head_len + capacity bytes.
        unsafe { self.ptr.add(self.head_len) }
    }

    /// Bytes in all.
    #[cfg(not(loom))]
    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for ZeroedBlock {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed
        // once, here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        assert!(check_capacity(64).is_ok());
        assert_eq!(
            check_capacity(32),
            Err(RingError::TooSmall {
                capacity: 32,
                min: 64
            })
        );
        assert_eq!(check_capacity(96), Err(RingError::NotPowerOfTwo(96)));
        assert_eq!(capacity_for_section(CONTROL_LEN + 4096), Some(4096));
        assert_eq!(capacity_for_section(CONTROL_LEN + 4096 + 100), Some(4096));
        assert_eq!(capacity_for_section(CONTROL_LEN + 63), None);
        assert_eq!(capacity_for_section(10), None);
    }
}
