//! The channel's control section: who serves, which client holds which
//! slot in which session, and the method table the server publishes.
//!
//! ```text
//! section offset
//!   0  +---------------------------------------------------------+
//!      | magic: u64        MAGIC once formatted                  |
//!      | version: u32      VERSION                               |
//!      | state: Futex      FORMATTING / BOUND / SERVING / CLOSED  |  line 0
//!      | server: u32       raw PeerId of the server              |
//!      | slots: u32        client slots                          |
//!      | methods_cap: u32  method table entries                  |
//!      | methods: u32      entries published (Release)           |
//!      | inline_max: u32   largest inline payload                |
//!      | max_in_flight: u32                                      |
//!  64  +---------------------------------------------------------+
//!      | slot[i]: word: u64     owner (bits 0..32): raw PeerId   |  lines 1..1+slots
//!      |                        of the client, 0 free;           |
//!      |                        session (bits 32..56)            |
//!      +---------------------------------------------------------+
//!      | method[j]: meta: u64   name length (bits 0..8)          |  one line each
//!      |            arg: u64    Signature of the argument        |
//!      |            result: u64 Signature of the result          |
//!      |            name: [u64; 5]  up to 40 bytes of UTF-8      |
//!      +---------------------------------------------------------+
//! ```
//!
//! Every field is an atomic (a hostile peer's write is a wrong value, never
//! a data race), and any bit pattern is safe: readers check what they load.
//!
//! # Invariants
//! - The header's plain fields (`magic` .. `max_in_flight` but `state`
//!   and `methods`) are written once by the server before it stores
//!   `state` = BOUND (Release); clients read them after an Acquire load of
//!   `state` and check them against the region (section count and
//!   lengths) before use.
//! - `state` only grows: FORMATTING (0) -> BOUND -> SERVING -> CLOSED,
//!   written by the server; clients sleep on it (a [`Futex`]) until
//!   SERVING.
//! - `methods` (the count) is written by the server alone, Release, after
//!   the entry it adds is complete; entries below it never change. A
//!   reader loads it with Acquire and never trusts it beyond `methods_cap`.
//! - `slot.word` packs the slot's owner and session, so that one CAS
//!   changes both and one load sees both (see [`slot_word`]). Owner: 0
//!   free, or the raw id of the client holding the slot. Session: 24 bits,
//!   never 0 once claimed, bumped by each new owner *in the CAS that claims
//!   the slot* (from a free word, or one of a dead owner) with the session
//!   the word held; the word is given back by CAS, its session kept, by
//!   the client (on drop) or by the server (once it found the owner
//!   dead). The session goes into every frame's `route`: a reply meant for
//!   an earlier owner of the slot is never taken for one of the current
//!   owner's, and the server answers a request only while the word is its
//!   (owner, session), even when one process leaves and claims the slot
//!   again (same owner, another session).

use core::ptr::NonNull;

use crate::region::{Region, SectionKind};
use crate::sync::Futex;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// The kind tag of a channel's control section.
pub const CONTROL_KIND: SectionKind = SectionKind::User(0x4348);
/// `magic` of a formatted control section ("PCYCHAN" and a 1).
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"PCYCHAN1");
/// The layout version (2: a slot's owner and session in one word; 3: two
/// arena lanes per slot, the client's and the server's for it).
pub(crate) const VERSION: u32 = 3;

/// `state`: the server has not finished formatting.
pub(crate) const FORMATTING: u32 = 0;
/// `state`: formatted; the server registers methods and has not served yet.
pub(crate) const BOUND: u32 = 1;
/// `state`: the server serves (clients may connect).
pub(crate) const SERVING: u32 = 2;
/// `state`: the server dropped its handle.
pub(crate) const CLOSED: u32 = 3;

/// The longest method name (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 40;

/// Bits of a route that hold the slot; the session is above them.
pub(crate) const SLOT_BITS: u32 = 8;
/// Sessions are 24 bits.
pub(crate) const SESSION_MASK: u32 = (1 << (32 - SLOT_BITS)) - 1;

/// A slot's word: `owner` (a raw `PeerId`, 0 free) in bits 0..32, its
/// `session` (24 bits) in bits 32..56.
pub(crate) const fn slot_word(owner: u32, session: u32) -> u64 {
    ((session & SESSION_MASK) as u64) << 32 | owner as u64
}

/// The owner in a slot's word (0: free).
pub(crate) const fn slot_owner(word: u64) -> u32 {
    word as u32
}

/// The session in a slot's word.
pub(crate) const fn slot_session(word: u64) -> u32 {
    (word >> 32) as u32 & SESSION_MASK
}

/// A route: the slot and its owner's session.
pub(crate) fn route(slot: usize, session: u32) -> u32 {
    (session & SESSION_MASK) << SLOT_BITS | (slot as u32 & ((1 << SLOT_BITS) - 1))
}

/// (slot, session) of a route.
pub(crate) fn split_route(route: u32) -> (usize, u32) {
    (
        (route & ((1 << SLOT_BITS) - 1)) as usize,
        route >> SLOT_BITS,
    )
}

/// The next session after `s`: 24 bits, never 0.
pub(crate) fn next_session(s: u32) -> u32 {
    match s.wrapping_add(1) & SESSION_MASK {
        0 => 1,
        n => n,
    }
}

/// Line 0 of the control section (see the module docs).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) state: Futex,
    pub(crate) server: AtomicU32,
    pub(crate) slots: AtomicU32,
    pub(crate) methods_cap: AtomicU32,
    pub(crate) methods: AtomicU32,
    pub(crate) inline_max: AtomicU32,
    pub(crate) max_in_flight: AtomicU32,
}

/// One client slot (see the module docs).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Slot {
    /// Owner and session: [`slot_word`].
    pub(crate) word: AtomicU64,
}

/// One method table entry (see the module docs).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct MethodEntry {
    pub(crate) meta: AtomicU64,
    pub(crate) arg: AtomicU64,
    pub(crate) result: AtomicU64,
    pub(crate) name: [AtomicU64; MAX_NAME_LEN / 8],
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<Header>() == 64 && align_of::<Header>() == 64);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, state) == 12);
    assert!(offset_of!(Header, server) == 16);
    assert!(offset_of!(Header, slots) == 20);
    assert!(offset_of!(Header, methods_cap) == 24);
    assert!(offset_of!(Header, methods) == 28);
    assert!(offset_of!(Header, inline_max) == 32);
    assert!(offset_of!(Header, max_in_flight) == 36);
    assert!(size_of::<Slot>() == 64 && align_of::<Slot>() == 64);
    assert!(offset_of!(Slot, word) == 0);
    assert!(size_of::<MethodEntry>() == 64 && align_of::<MethodEntry>() == 64);
    assert!(offset_of!(MethodEntry, arg) == 8);
    assert!(offset_of!(MethodEntry, result) == 16);
    assert!(offset_of!(MethodEntry, name) == 24);
    assert!(MAX_NAME_LEN % 8 == 0);
};

/// The control section's length for `slots` clients and `methods`
/// entries.
pub(crate) const fn control_len(slots: usize, methods: usize) -> usize {
    64 * (1 + slots + methods)
}

/// A view of a control section: its header, slots and method entries.
/// Keeps the region mapped.
#[derive(Debug, Clone)]
pub(crate) struct ControlView {
    base: NonNull<u8>,
    slots: usize,
    methods: usize,
    _region: Region,
}

// SAFETY: the view hands out shared references to atomics only, in a
// mapping its `Region` clone keeps alive; Region is Send + Sync.
unsafe impl Send for ControlView {}
// SAFETY: as above.
unsafe impl Sync for ControlView {}

impl ControlView {
    /// A view of `len` bytes at `base` laid out for `slots` slots and
    /// `methods` entries (at least one of each), or `None` if they do not
    /// fit or `base` is not 64-aligned.
    ///
    /// # Safety
    /// `base` is valid for reads and writes of `len` bytes for as long as
    /// `region` (kept by the view) is alive, and is accessed by every
    /// process only through atomics.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        len: usize,
        slots: usize,
        methods: usize,
        region: Region,
    ) -> Option<Self> {
        if base.as_ptr() as usize % 64 != 0
            || slots == 0
            || methods == 0
            || slots > u8::MAX as usize
            || methods > u16::MAX as usize
            || control_len(slots, methods) > len
        {
            return None;
        }
        Some(Self {
            base,
            slots,
            methods,
            _region: region,
        })
    }

    /// The header line.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: offset 0 is inside the section (control_len >= 64,
        // checked in `new`), 64-aligned; Header is all atomics (valid for
        // any bits) and only shared references are made.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// Slot `i` (taken modulo the slot count, which is at least one).
    pub(crate) fn slot(&self, i: usize) -> &Slot {
        let i = i % self.slots;
        // SAFETY: i < slots (modulo, slots >= 1 checked in `new`), so line
        // 1 + i is inside the section; 64-aligned; Slot is all atomics,
        // shared references only.
        unsafe { self.base.add(64 * (1 + i)).cast::<Slot>().as_ref() }
    }

    /// Method entry `j` (taken modulo the table length, which is at least
    /// one).
    pub(crate) fn method(&self, j: usize) -> &MethodEntry {
        let j = j % self.methods;
        // SAFETY: as in `slot`: j < methods (modulo, methods >= 1 checked
        // in `new`), so line 1 + slots + j is inside the section.
        unsafe {
            self.base
                .add(64 * (1 + self.slots + j))
                .cast::<MethodEntry>()
                .as_ref()
        }
    }

    /// Client slots.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Method table entries.
    pub(crate) fn methods(&self) -> usize {
        self.methods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip() {
        for (slot, session) in [(0, 1), (7, 0x00FF_FFFF), (46, 12345)] {
            assert_eq!(split_route(route(slot, session)), (slot, session));
        }
        for (owner, session) in [(0, 0), (0x0102_0304, 1), (u32::MAX, SESSION_MASK)] {
            let w = slot_word(owner, session);
            assert_eq!((slot_owner(w), slot_session(w)), (owner, session));
        }
        assert_eq!(slot_session(u64::MAX), SESSION_MASK);
        assert_eq!(next_session(SESSION_MASK), 1);
        assert_eq!(next_session(0), 1);
        assert_eq!(next_session(5), 6);
    }
}
