//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the plain
//! test that replays their stored corpus (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes and must return normally whatever
//! they are: a panic, a hang or a crash is a bug in the library.

mod arena_lanes;
mod channel_frame;
mod handle_validate;
mod mpsc_consume;
mod pool_frames;
mod region_open;
mod snapshot_read;
mod spsc_consume;

pub use crate::channel::tickets::{Arrival, Tickets};
pub use arena_lanes::arena_lanes;
pub use channel_frame::channel_frame;
pub use handle_validate::handle_validate;
pub use mpsc_consume::mpsc_consume;
pub use pool_frames::pool_frames;
pub use region_open::region_open;
pub use snapshot_read::snapshot_read;
pub use spsc_consume::spsc_consume;

/// A fuzz entry point.
pub type Entry = fn(&[u8]);

/// The fuzz targets by name, as the corpus folders under `fuzz/corpus/` are
/// named.
pub const TARGETS: &[(&str, Entry)] = &[
    ("region_open", region_open),
    ("spsc_consume", spsc_consume),
    ("mpsc_consume", mpsc_consume),
    ("handle_validate", handle_validate),
    ("arena_lanes", arena_lanes),
    ("snapshot_read", snapshot_read),
    ("pool_frames", pool_frames),
    ("channel_frame", channel_frame),
];

/// A cursor over a fuzz input: each read takes bytes from the front, `None`
/// once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte()?;
        }
        Some(u64::from_le_bytes(b))
    }
}

/// A heap ring of kind `K` made from the head of a fuzz input
/// `[cap_exp, flags, image...]`: `64 << (cap_exp % 6)` bytes; when
/// `flags & 1`, its whole memory (control block and data) is overwritten
/// with the next bytes of the input (as many as it spans, or fewer).
/// Returns the ring and the flags.
fn heap_ring_from<K: crate::ring::Kind>(
    input: &mut Input<'_>,
) -> Option<(crate::ring::HeapRing<K>, u8)> {
    let (exp, flags) = (input.byte()?, input.byte()?);
    let ring = crate::ring::HeapRing::<K>::new(64usize << (exp % 6)).ok()?;
    if flags & 1 != 0 {
        let (_, len) = ring.raw_bytes();
        let take = len.min(input.0.len());
        let (image, rest) = input.0.split_at(take);
        poke(&ring, 0, image);
        input.0 = rest;
    }
    Some((ring, flags))
}

/// Writes `bytes` at `offset` (wrapped into the ring memory) of a heap
/// ring, as a hostile peer would.
fn poke<K: crate::ring::Kind>(ring: &crate::ring::HeapRing<K>, offset: usize, bytes: &[u8]) {
    let (ptr, len) = ring.raw_bytes();
    // SAFETY: the whole allocation of the ring, alive while `ring` is;
    // the fuzz loop is single threaded and no frame or claim borrow is alive
    // between operations.
    unsafe { poke_raw(ptr, len, offset, bytes) };
}

/// Writes `bytes` at `offset` of the `len` bytes at `ptr`, wrapping around,
/// as a hostile peer would overwrite shared memory.
///
/// # Safety
/// `ptr` is valid for writes of `len > 0` bytes, and nothing else reads or
/// writes them during the call except through atomics.
unsafe fn poke_raw(ptr: *mut u8, len: usize, offset: usize, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        let at = (offset + i) % len;
        // SAFETY: `at < len` (the caller's contract covers the range).
        unsafe { ptr.add(at).write_volatile(b) };
    }
}
