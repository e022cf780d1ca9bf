//! The shared layout of a mutex section (drawn in the module docs of
//! `lock::mutex`), its heap twin, and what keeps a handle's memory alive.

use core::ptr::NonNull;
use std::sync::Arc;

use crate::AttachError;
use crate::sync::futex::Futex;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// A waiter that does not sleep (it spins, or its CAS keeps losing) reads
/// the clock once per this many rounds; under loom, whose clock is a model
/// (see `sync::clock`), on every round.
#[cfg(not(loom))]
pub(super) const CLOCK_EVERY: u32 = 256;
#[cfg(loom)]
pub(super) const CLOCK_EVERY: u32 = 1;

pub(super) const CONSISTENT: u32 = 0;
/// `state`: an owner died holding the lock (or panicked) and nobody has
/// marked the data consistent since.
pub(super) const POISONED: u32 = 1;

/// The control block at the start of a mutex section (see the module docs
/// for the layout).
///
/// # Invariants
/// - `word`: 0, or a valid tag (per the handles' [`OwnerCheck`]) optionally
///   with [`CONTENDED`]. Changed only by CAS: lockers 0 -> tag, waiters
///   tag -> tag|CONTENDED, takeover dead -> tag, the owner tag -> 0.
/// - `state`: [`CONSISTENT`] or [`POISONED`]; written only by the lock
///   holder, so the lock orders its accesses.
/// - `owner_*`: written by each holder just after it locks, never cleared;
///   readers outside the lock get a hint that may be stale.
/// - Any bit pattern is memory-safe; a bad `word` or `state` is reported as
///   corruption when read.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Control {
    pub(super) word: Futex,
    pub(super) state: AtomicU32,
    pub(super) owner_tag: AtomicU32,
    pub(super) owner_pid: AtomicU32,
    pub(super) owner_start: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Control>() == 64 && align_of::<Control>() == 64);
    assert!(core::mem::offset_of!(Control, state) == 4);
    assert!(core::mem::offset_of!(Control, owner_tag) == 8);
    assert!(core::mem::offset_of!(Control, owner_pid) == 12);
    assert!(core::mem::offset_of!(Control, owner_start) == 16);
};

impl Control {
    pub(super) fn new() -> Self {
        Self {
            word: Futex::new(0),
            state: AtomicU32::new(CONSISTENT),
            owner_tag: AtomicU32::new(0),
            owner_pid: AtomicU32::new(0),
            owner_start: AtomicU64::new(0),
        }
    }
}

/// A mutex's memory on the heap (threads of one process, tests, loom):
/// the control block as a real object (loom atomics cannot be laid over raw
/// bytes) and a zeroed allocation for the value. Under loom a cell stands
/// for the value, touched wherever a guard reads or writes it, so that a
/// model sees an access to the value the lock does not order.
#[derive(Debug)]
pub(super) struct HeapBlock {
    pub(super) ctrl: Box<Control>,
    pub(super) data: NonNull<u8>,
    layout: std::alloc::Layout,
    #[cfg(loom)]
    pub(super) cell: loom::cell::UnsafeCell<()>,
}

// SAFETY: HeapBlock owns its allocation; the value's bytes are only
// accessed by the holder of the lock, the control block through atomics.
unsafe impl Send for HeapBlock {}
// SAFETY: as above: `&HeapBlock` hands out nothing but raw pointers.
unsafe impl Sync for HeapBlock {}

impl HeapBlock {
    pub(super) fn new(size: usize, align: usize) -> Result<Self, AttachError> {
        let layout = std::alloc::Layout::from_size_align(size.max(1), align)
            .map_err(|_| AttachError::Misaligned { need: align })?;
        // SAFETY: the size is at least 1.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(data) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        Ok(Self {
            ctrl: Box::new(Control::new()),
            data,
            layout,
            #[cfg(loom)]
            cell: loom::cell::UnsafeCell::new(()),
        })
    }
}

impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: `data` came from `alloc_zeroed(self.layout)`, freed once.
        unsafe { std::alloc::dealloc(self.data.as_ptr(), self.layout) };
    }
}

/// What keeps a mutex's memory alive while a handle uses it.
#[derive(Debug, Clone)]
pub(super) enum Keep {
    Heap(#[allow(dead_code)] Arc<HeapBlock>),
    #[cfg(not(loom))]
    Region(#[allow(dead_code)] crate::region::Region),
    /// The caller of `from_raw` keeps it mapped.
    #[cfg(not(loom))]
    Raw,
}
