//! The shared layout of a region: the header page and what follows it.
//!
//! ```text
//! offset  size   what                                      written by      when
//! ------  -----  ----------------------------------------  --------------  ----------------------
//!      0     64  HeaderFixed: magic, version, header_len,   creator         before init_state
//!                total_len, creator pid/start time,
//!                section_count, max_peers
//!     64     64  init_state (a Futex word), rest padding    creator         last (Release, READY)
//!    128    512  section table: 16 x SectionEntry           creator         before init_state
//!                (kind u32, offset u64, len u64)
//!    640   3072  peer table: 48 x PeerSlot, one cache line   each peer       claim / heartbeat / drop
//!                each (see `peers.rs` for the protocol)
//!   3712    384  reserved (zero)
//!   4096    ...  sections, each at a 64-byte aligned offset, zero-filled at creation
//!               total_len = end of the last section rounded up to the page size
//! ```
//!
//! Invariants of a valid header (checked by `validate.rs` on every open):
//! - `magic == MAGIC`, `version == LAYOUT_VERSION`, `header_len == HEADER_LEN`;
//! - `total_len` equals the file's length and is at most [`MAX_TOTAL_LEN`];
//! - `section_count <= MAX_SECTIONS`, `1 <= max_peers <= MAX_PEERS`;
//! - every section has a known kind, a non-zero length, an offset that is a
//!   multiple of [`SECTION_ALIGN`] and at least [`HEADER_LEN`], ends within
//!   `total_len`, and shares no byte with another section.
//!
//! The plain fields (everything but `init_state` and the peer table) are
//! written once by the creator before it release-stores `init_state`, and
//! never again; an opener copies them out after its acquire-load of
//! `init_state` and validates the copy, so a later change by a hostile peer
//! cannot slip between a check and a use.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::sync::Futex;
use crate::sync::shim::{AtomicU32, AtomicU64};

/// The first eight bytes of every region.
pub const MAGIC: [u8; 8] = *b"PLYCPHLY";
/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = 1;
/// The header page's length; sections start at or after it.
pub const HEADER_LEN: usize = 4096;
/// Capacity of the section table.
pub const MAX_SECTIONS: usize = 16;
pub use super::peer_id::MAX_PEERS;
/// Every section offset is a multiple of this (a cache line).
pub const SECTION_ALIGN: usize = 64;
/// The largest region we create or open: 1 TiB.
pub const MAX_TOTAL_LEN: u64 = 1 << 40;
/// `init_state` once the creator has written everything.
pub const INIT_READY: u32 = 0x5245_4459; // "READ" + "Y": unlikely as garbage

/// Offset of the `init_state` word.
pub const INIT_OFFSET: usize = 64;
/// Offset of the section table.
pub const SECTION_TABLE_OFFSET: usize = 128;
/// Offset of the peer table.
pub const PEER_TABLE_OFFSET: usize =
    SECTION_TABLE_OFFSET + MAX_SECTIONS * size_of::<SectionEntry>();
/// How many bytes of the header an opener copies out to validate: the
/// fixed fields, the init line and the section table.
pub const PLAIN_LEN: usize = PEER_TABLE_OFFSET;

/// The fixed part of the header (offset 0).
///
/// Written once by the creator before `init_state` becomes [`INIT_READY`];
/// read by openers from a private copy.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct HeaderFixed {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`HEADER_LEN`].
    pub header_len: u32,
    /// The whole region's length in bytes, header included; equals the file's.
    pub total_len: u64,
    /// The creator's pid.
    pub creator_pid: u32,
    /// How many entries of the section table are used (the first ones).
    pub section_count: u32,
    /// The creator's start time (field 22 of /proc/PID/stat).
    pub creator_start_time: u64,
    /// How many peer slots are in use (1..=[`MAX_PEERS`]).
    pub max_peers: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: [u8; 16],
}

/// One entry of the section table.
///
/// `kind` is [`encode_kind`] of a section kind; `offset` and `len` are in
/// bytes from the start of the region.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SectionEntry {
    /// The section kind, see [`encode_kind`].
    pub kind: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Offset from the start of the region.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Reserved, zero.
    pub reserved1: u64,
}

/// One peer slot, alone on its cache line (each is written by its owner).
///
/// All fields are atomics valid for any bit pattern; the claim / publish /
/// release protocol is described in `peers.rs`.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PeerSlot {
    /// `pid << 32 | id`. The low 32 bits are a `PeerId` while the slot is
    /// held; when free their low byte is 0 and bits 8.. keep the generation
    /// of the last holder. Changed only by CAS.
    pub word: AtomicU64,
    /// The holder's start time; valid once `published` equals the id.
    pub start_time: AtomicU64,
    /// The holder's last heartbeat (CLOCK_MONOTONIC nanoseconds).
    pub heartbeat: AtomicU64,
    /// The holder's role; valid once `published` equals the id.
    pub role: AtomicU32,
    /// The id whose `start_time` and `role` are written (Release).
    pub published: AtomicU32,
    /// Reserved.
    pub reserved: [u8; 32],
}

const _: () = {
    assert!(size_of::<HeaderFixed>() == 64);
    assert!(core::mem::offset_of!(HeaderFixed, total_len) == 16);
    assert!(core::mem::offset_of!(HeaderFixed, creator_start_time) == 32);
    assert!(core::mem::offset_of!(HeaderFixed, max_peers) == 40);
    assert!(size_of::<SectionEntry>() == 32);
    assert!(core::mem::offset_of!(SectionEntry, offset) == 8);
    assert!(size_of::<PeerSlot>() == 64 && align_of::<PeerSlot>() == 64);
    assert!(core::mem::offset_of!(PeerSlot, published) == 28);
    assert!(size_of::<Futex>() == 4);
    assert!(INIT_OFFSET >= size_of::<HeaderFixed>() && INIT_OFFSET % 64 == 0);
    assert!(SECTION_TABLE_OFFSET >= INIT_OFFSET + 64);
    assert!(PEER_TABLE_OFFSET == 640 && PEER_TABLE_OFFSET % 64 == 0);
    assert!(PEER_TABLE_OFFSET + MAX_PEERS as usize * size_of::<PeerSlot>() <= HEADER_LEN);
    assert!(HEADER_LEN % SECTION_ALIGN == 0);
    assert!(MAX_PEERS < 256); // a slot index fits a PeerId's low byte
};

/// Section kind codes as stored in [`SectionEntry::kind`].
mod code {
    pub const RAW: u32 = 1;
    pub const SPSC_RING: u32 = 2;
    pub const MPSC_RING: u32 = 3;
    pub const ARENA: u32 = 4;
    pub const EVENT: u32 = 5;
    pub const MUTEX: u32 = 6;
    pub const USER_TAG: u32 = 0x0001_0000;
}

/// The table word for `kind`.
pub fn encode_kind(kind: super::SectionKind) -> u32 {
    use super::SectionKind as K;
    match kind {
        K::Raw => code::RAW,
        K::SpscRing => code::SPSC_RING,
        K::MpscRing => code::MPSC_RING,
        K::Arena => code::ARENA,
        K::Event => code::EVENT,
        K::Mutex => code::MUTEX,
        K::User(n) => code::USER_TAG | u32::from(n),
    }
}

/// The kind a table word stands for, `None` for an unknown word.
pub fn decode_kind(word: u32) -> Option<super::SectionKind> {
    use super::SectionKind as K;
    Some(match word {
        code::RAW => K::Raw,
        code::SPSC_RING => K::SpscRing,
        code::MPSC_RING => K::MpscRing,
        code::ARENA => K::Arena,
        code::EVENT => K::Event,
        code::MUTEX => K::Mutex,
        w if w & !0xFFFF == code::USER_TAG => K::User((w & 0xFFFF) as u16),
        _ => return None,
    })
}

/// `n` rounded up to a multiple of `align` (a power of two), `None` on
/// overflow.
pub fn align_up(n: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(n.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::SectionKind;

    #[test]
    fn kinds_round_trip_and_unknown_words_are_refused() {
        for k in [
            SectionKind::Raw,
            SectionKind::SpscRing,
            SectionKind::MpscRing,
            SectionKind::Arena,
            SectionKind::Event,
            SectionKind::Mutex,
            SectionKind::User(0),
            SectionKind::User(u16::MAX),
        ] {
            assert_eq!(decode_kind(encode_kind(k)), Some(k));
        }
        for w in [0, 7, 0xFFFF, 0x0002_0000, u32::MAX] {
            assert_eq!(decode_kind(w), None, "{w:#x}");
        }
    }

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(1, 64), Some(64));
        assert_eq!(align_up(64, 64), Some(64));
        assert_eq!(align_up(u64::MAX, 64), None);
    }
}
