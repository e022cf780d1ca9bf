//! Frames and position arithmetic: tiny pure functions shared by both sides.
//!
//! A frame starts at a position that is a multiple of [`FRAME_ALIGN`] and is
//! laid out as
//!
//! ```text
//! +----------------+----------------+---------------------------+---------+
//! | len word (u32) |   tag (u32)    | payload (len bytes)       | pad to 8|
//! +----------------+----------------+---------------------------+---------+
//!  \------------ header: one u64 ---/
//! ```
//!
//! The header is one native-endian `u64`: the low half is the *length
//! word*, the high half the user's tag. Bit 31 of the length word marks a
//! *padding frame*: the producer writes one when the next frame does not fit
//! before the end of the byte ring; its length covers the rest of the lap,
//! so the frame after it starts at index 0. A padding frame is always
//! published together with the frame that follows it.
//!
//! Positions are `u64` byte counters that never wrap (2^64 bytes at 100 GB/s
//! is 5 years); the index into the ring is `pos & mask`. Because the
//! capacity is a power of two and a multiple of 8, an 8-aligned header never
//! straddles the end of the ring.

/// Bytes in a frame header (length word and tag).
pub const FRAME_HEADER_LEN: usize = 8;

/// Every frame starts at a multiple of this many bytes.
pub const FRAME_ALIGN: usize = 8;

/// The smallest byte capacity of a ring, either kind.
pub const MIN_CAPACITY: usize = 64;

/// How far past the end of its claim an MPSC producer warms lines for
/// writing: the two lines from 128 bytes on (a 64-byte message's frame is
/// 72 bytes, so they hold the frame after next). Chosen by measurement
/// (64 bytes to 2 KiB tried; see the commit that introduced it).
pub(crate) const MPSC_WARM_AHEAD: u64 = 128;

/// How far past its tail a streaming SPSC producer warms lines for writing
/// (256 to 1024 bytes measured the same; 512 was taken).
pub(crate) const SPSC_WARM_AHEAD: u64 = 512;

/// Asks for the two cache lines from `end + ahead` (rounded down to a
/// line) of a ring whose data starts at `data` (`mask` = capacity - 1),
/// for writing, where they lie below `limit` (free space for the producer).
///
/// A frame's stores otherwise find its lines in the consumer's cache (an
/// MPSC consumer zeroed them a lap earlier, an SPSC one read them), and
/// wait for them to come back:
/// - MPSC: the commit CAS drains the store buffer, so every message waits
///   for its lines.
/// - SPSC: the stores drain in the background, but in order, and a
///   stream's producer filled the store buffer behind the one waiting for
///   its line (measured, spinning, split, 1 Dec 2026: 8-byte frames 60-62
///   M msg/s without, 124-130 M with; 64-byte ones 57-67 M against 71-73
///   M, before the consumer's read-ahead grew to 1 KiB).
///   Only while streaming: a producer that publishes one frame and waits
///   (a round trip) has no store waiting behind its last ones.
///
/// Only a hint: no memory is accessed.
#[inline(always)]
pub(crate) fn warm_lines_after(data: *const u8, mask: u64, end: u64, ahead: u64, limit: u64) {
    let at = (end + ahead) & !63;
    for line in [at, at + 64] {
        if line + 64 <= limit {
            crate::sync::shim::prefetch_write(data.wrapping_add((line & mask) as usize));
        }
    }
}

/// Bit 31 of the length word: this frame is padding to the end of the lap.
pub(crate) const PAD_FLAG: u32 = 1 << 31;

/// The largest payload a ring of `capacity` bytes accepts: half the ring
/// minus a header.
///
/// Half the ring, so that a frame always fits once the ring is empty, even
/// when it must be preceded by a padding frame: the padding is shorter than
/// the frame it precedes, so the two together never exceed the capacity.
#[inline]
pub const fn max_payload(capacity: usize) -> usize {
    capacity / 2 - FRAME_HEADER_LEN
}

/// `x` rounded up to a multiple of [`FRAME_ALIGN`]. `x` is at most a
/// capacity (2^31), so the sum cannot overflow.
#[inline]
pub(crate) const fn align_up(x: u64) -> u64 {
    (x + (FRAME_ALIGN as u64 - 1)) & !(FRAME_ALIGN as u64 - 1)
}

/// Bytes a frame with `payload` payload bytes takes in the ring, header and
/// alignment included.
#[inline]
pub(crate) const fn frame_len(payload: u64) -> u64 {
    FRAME_HEADER_LEN as u64 + align_up(payload)
}

/// Bytes of padding needed before a frame of `total` bytes written at
/// position `pos` of a ring of `capacity` bytes: zero when it fits before the
/// end of the lap, else the whole rest of the lap.
#[inline]
pub(crate) fn pad_before(pos: u64, total: u64, capacity: u64) -> u64 {
    debug_assert!(capacity.is_power_of_two());
    debug_assert!(pos % FRAME_ALIGN as u64 == 0);
    debug_assert!(total <= capacity / 2);
    let room = capacity - (pos & (capacity - 1));
    if total > room { room } else { 0 }
}

/// Packs a header.
#[inline]
pub(crate) const fn encode_header(len_word: u32, tag: u32) -> u64 {
    (len_word as u64) | ((tag as u64) << 32)
}

/// Unpacks a header into (length word, tag).
#[inline]
pub(crate) const fn decode_header(header: u64) -> (u32, u32) {
    (header as u32, (header >> 32) as u32)
}

/// The length word of a padding frame that fills `room` bytes (header
/// included) up to the end of the lap.
#[inline]
pub(crate) const fn pad_word(room: u64) -> u32 {
    PAD_FLAG | (room - FRAME_HEADER_LEN as u64) as u32
}

/// Whether `pos` is a valid frame position (8-aligned).
#[inline]
pub(crate) const fn is_aligned(pos: u64) -> bool {
    pos % FRAME_ALIGN as u64 == 0
}

/// The largest position accepted when attaching (2^62 bytes: 146 years at
/// 1 GB/s), so that position arithmetic can never overflow.
pub(crate) const MAX_POSITION: u64 = 1 << 62;

/// Whether a pair (head, tail) read from shared memory is consistent: both
/// aligned, head <= tail <= MAX_POSITION, and at most `capacity` bytes in
/// flight.
#[inline]
pub(crate) const fn positions_ok(head: u64, tail: u64, capacity: u64) -> bool {
    is_aligned(head)
        && is_aligned(tail)
        && head <= tail
        && tail <= MAX_POSITION
        && tail - head <= capacity
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_are_aligned() {
        assert_eq!(frame_len(0), 8);
        assert_eq!(frame_len(1), 16);
        assert_eq!(frame_len(8), 16);
        assert_eq!(frame_len(9), 24);
    }

    #[test]
    fn padding_only_when_the_frame_does_not_fit() {
        assert_eq!(pad_before(0, 32, 64), 0);
        assert_eq!(pad_before(32, 32, 64), 0);
        assert_eq!(pad_before(40, 32, 64), 24);
        assert_eq!(pad_before(64 + 56, 16, 64), 8);
    }

    #[test]
    fn headers_round_trip() {
        let h = encode_header(pad_word(24), 7);
        assert_eq!(decode_header(h), (PAD_FLAG | 16, 7));
    }

    #[test]
    fn position_checks() {
        assert!(positions_ok(8, 72, 64));
        assert!(!positions_ok(8, 80, 64));
        assert!(!positions_ok(16, 8, 64));
        assert!(!positions_ok(3, 8, 64));
        assert!(!positions_ok(u64::MAX - 7, u64::MAX - 7, 64));
        assert_eq!(max_payload(64), 24);
    }
}
