//! Reading arbitrary handles from an arena whose bookkeeping holds
//! arbitrary bytes, as a forger or a hostile process sharing the arena
//! could make them: every read either fails with an error or gives a
//! slice of exactly the handle's length inside the handle's lane.
//!
//! Input: `[shape, ops...]`. `shape` picks 1 or 2 lanes, 2 to 16 blocks
//! per lane and 256 to 2048 bytes per lane. Then each op byte picks an
//! operation, taking its arguments from the following bytes: allocate and
//! publish (for a count or for a named reader), read a handle made of 32
//! input bytes, read a known handle with some bytes flipped, release
//! guards, poke bytes into the lanes' control lines and descriptors (with
//! guards alive) or anywhere (with none), reclaim, hand the lane over to a
//! new writer after the old one "died".

use super::Input;
use crate::arena::layout::{ARENA_HEADER_LEN, Geometry};
use crate::arena::{
    ArenaReader, ArenaSpec, ArenaWriter, BlockHandle, HeapArena, ReadGuard, Readers,
};

/// Writes `bytes` at `offset` of the arena memory (wrapped).
fn poke(arena: &HeapArena, offset: usize, bytes: &[u8]) {
    let (ptr, len) = arena.raw_bytes();
    // SAFETY: the arena's whole allocation, alive while `arena` is. The
    // loop is single threaded; the callers poke data bytes only when no
    // guard (the only plain references into the memory) is alive, and
    // everything else is atomics, which a plain write between operations
    // does not alias.
    unsafe { super::poke_raw(ptr, len, offset, bytes) };
}

/// Whether `offset` (wrapped into `len`) lies in some lane's data.
fn in_data(g: &Geometry, len: usize, offset: usize) -> bool {
    let o = (offset % len) as u64;
    let Some(rel) = o.checked_sub(ARENA_HEADER_LEN as u64) else {
        return false;
    };
    rel % g.stride >= g.data_off
}

/// The data bytes of lane `lane`: (first address, end address).
fn lane_data(arena: &HeapArena, lane: u16) -> (usize, usize) {
    let geom = arena.geometry();
    let (base, _) = arena.raw_bytes();
    let off = ARENA_HEADER_LEN as u64 + u64::from(lane) * geom.stride + geom.data_off;
    let start = base as usize + off as usize;
    (start, start + geom.lane_len as usize)
}

/// Checks what a successful read promises: exactly the handle's elements,
/// inside the handle's lane.
fn check<T>(arena: &HeapArena, h: &BlockHandle, g: &[T]) {
    assert!(u32::from(h.lane()) < arena.geometry().lanes);
    let (lo, hi) = lane_data(arena, h.lane());
    let start = g.as_ptr() as usize;
    let bytes = core::mem::size_of_val(g);
    assert!(
        start >= lo && start + bytes <= hi,
        "a slice outside its lane"
    );
    assert_eq!(Some(bytes as u64), h.byte_len());
}

/// The fuzz entry point (see the module docs). Never panics, never hangs.
pub fn handle_validate(data: &[u8]) {
    let mut input = Input(data);
    let Some(shape) = input.byte() else {
        return;
    };
    let lanes = 1 + u16::from(shape & 1);
    let blocks = 2u32 << ((shape >> 1) & 3);
    let lane_len = 256usize << ((shape >> 3) & 3);
    let Ok(arena) = HeapArena::new(ArenaSpec::new(lanes, lane_len).with_blocks(blocks)) else {
        return;
    };
    let geom = arena.geometry();
    let (_, mem_len) = arena.raw_bytes();
    let mut writer: Option<ArenaWriter> = arena.writer().ok();
    let readers: Vec<ArenaReader> = (0..2).filter_map(|_| arena.reader().ok()).collect();
    let mut guards: Vec<ReadGuard<'_, u8>> = Vec::new();
    let mut known: Vec<BlockHandle> = Vec::new();
    let mut graveyard = Vec::new();
    let mut sum = 0u64;
    while let Some(op) = input.byte() {
        let Some(r) = readers.get(usize::from(op >> 7) % readers.len().max(1)) else {
            return;
        };
        match op % 9 {
            0 | 1 => {
                let n = usize::from(input.byte().unwrap_or(0));
                if let Some(w) = writer.as_mut() {
                    if let Ok(b) = w.try_alloc_uninit::<u64>(n) {
                        let b = b.fill(n as u64);
                        let h = if op % 9 == 0 {
                            b.publish(Readers::Count(u32::from(op >> 4 & 3)))
                        } else {
                            b.publish_to(r.peer_id())
                        };
                        known.push(h);
                    }
                }
            }
            2 => {
                let mut raw = [0u8; 32];
                for b in &mut raw {
                    *b = input.byte().unwrap_or(0);
                }
                let h: BlockHandle = bytemuck::pod_read_unaligned(&raw);
                read_all(&arena, r, &h, &mut guards, &mut sum);
            }
            3 => {
                let Some(&h) =
                    known.get(usize::from(input.byte().unwrap_or(0)) % known.len().max(1))
                else {
                    continue;
                };
                let mut raw: [u8; 32] = bytemuck::cast(h);
                let at = usize::from(input.byte().unwrap_or(0)) % 32;
                raw[at] ^= input.byte().unwrap_or(1);
                let h: BlockHandle = bytemuck::cast(raw);
                read_all(&arena, r, &h, &mut guards, &mut sum);
            }
            4 => {
                let keep = usize::from(input.byte().unwrap_or(0)) % (guards.len() + 1);
                guards.truncate(keep);
            }
            5 => {
                let offset = usize::from(input.u16().unwrap_or(0)) * 8;
                let n = usize::from(input.byte().unwrap_or(0) % 16);
                let bytes: Vec<u8> = (0..n).filter_map(|_| input.byte()).collect();
                // Control lines and descriptors only while guards are alive.
                if guards.is_empty()
                    || !(0..bytes.len()).any(|i| in_data(&geom, mem_len, offset + i))
                {
                    poke(&arena, offset, &bytes);
                }
            }
            6 => {
                if let Some(w) = writer.as_mut() {
                    let _ = w.reclaim();
                }
            }
            7 => {
                // The writer dies; a new one takes its lane over.
                if let Some(w) = writer.take() {
                    let id = w.peer_id();
                    let lane = w.lane();
                    arena.mark_dead(id);
                    // Its process is gone; the handle is dropped at the end
                    // (its drop finds the lane no longer its own).
                    graveyard.push(w);
                    writer = arena.writer_for_lane(lane).ok();
                } else {
                    writer = arena.writer().ok();
                }
            }
            _ => {
                if let Some(&h) = known.last() {
                    if let Ok(g) = r.read::<u64>(&h) {
                        check(&arena, &h, &g);
                        sum = g.iter().fold(sum, |a, &x| a.wrapping_add(x));
                    }
                }
            }
        }
    }
    drop(guards);
    drop(writer);
    drop(graveyard);
    std::hint::black_box(sum);
}

/// Reads `h` in every form; keeps the byte guard if it succeeds.
fn read_all<'a>(
    arena: &HeapArena,
    r: &'a ArenaReader,
    h: &BlockHandle,
    guards: &mut Vec<ReadGuard<'a, u8>>,
    sum: &mut u64,
) {
    if let Ok(g) = r.read::<u64>(h) {
        check(arena, h, &g);
        *sum = sum.wrapping_add(g.iter().fold(0u64, |a, &x| a.wrapping_add(x)));
    }
    if let Ok(g) = r.read::<u32>(h) {
        check(arena, h, &g);
    }
    if let Ok(g) = r.read::<u8>(h) {
        check(arena, h, &g);
    }
    if let Ok(g) = r.read_bytes(h) {
        check(arena, h, &g);
        guards.push(g);
    }
}
