//! The arena in one process: heap arenas and region sections, threads as
//! readers, `mark_dead` for a killed peer. The multi-process cases are in
//! `arena_processes.rs`, the interleavings in `loom_arena.rs`.

use std::sync::Barrier;
use std::time::Duration;

use polycephaly::AttachError;
use polycephaly::arena::{
    AllocError, ArenaReader, ArenaSpec, ArenaWriter, BlockHandle, FormatError, HeapArena,
    HeapSnapshot, ReadError, Readers, SnapshotError, SnapshotReader, SnapshotWriter, TryAllocError,
    TrySnapshotError, snapshot_section_len,
};
use polycephaly::region::{Region, SectionId, SectionKind};

/// A generous bound that only detects hangs.
const HANG: Duration = Duration::from_secs(30);

fn arena(lane_len: usize, blocks: u32) -> std::sync::Arc<HeapArena> {
    HeapArena::new(ArenaSpec::new(1, lane_len).with_blocks(blocks)).unwrap()
}

#[test]
fn publish_read_release_reclaim() {
    let a = arena(4096, 8);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w
        .try_alloc_uninit::<u64>(100)
        .unwrap()
        .init_with(|i| i as u64 * 3)
        .publish_for(1);
    assert_eq!(h.len(), 100);
    assert_eq!(h.elem_size(), 8);
    {
        let g = r.read::<u64>(&h).unwrap();
        assert_eq!(g.len(), 100);
        assert_eq!(g[99], 297);
        assert_eq!(w.reclaim().unwrap(), 1, "held: not reclaimed");
    }
    assert_eq!(w.reclaim().unwrap(), 0);
    assert_eq!(r.read::<u64>(&h).unwrap_err(), ReadError::Stale);
}

#[test]
fn zeroed_blocks_are_zero_and_uninit_blocks_reuse_the_bytes() {
    let a = arena(128, 2);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w.try_alloc_uninit::<u8>(64).unwrap().fill(7).publish_for(1);
    drop(r.read::<u8>(&h).unwrap());
    let b = w.try_alloc::<u8>(128).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    drop(b); // unpublished: rolled back
    assert_eq!(w.live_blocks(), 0);
    let copy = w
        .try_alloc_uninit::<u8>(3)
        .unwrap()
        .copy_from_slice(&[1, 2]);
    let Err(block) = copy else {
        panic!("a slice of the wrong length was accepted");
    };
    let h = block.copy_from_slice(&[1, 2, 3]).unwrap().publish_for(1);
    assert_eq!(&*r.read::<u8>(&h).unwrap(), &[1, 2, 3]);
}

#[test]
fn k_readers_each_use_one_read() {
    let a = arena(4096, 8);
    let mut w = a.writer().unwrap();
    let readers: Vec<_> = (0..3).map(|_| a.reader().unwrap()).collect();
    let h = w.try_alloc::<u32>(10).unwrap().publish_for(3);
    for (i, r) in readers.iter().enumerate() {
        assert_eq!(w.reclaim().unwrap(), 1, "after {i} reads");
        drop(r.read::<u32>(&h).unwrap());
    }
    assert_eq!(w.reclaim().unwrap(), 0);
}

#[test]
fn threads_read_one_block_concurrently() {
    let a = arena(1 << 16, 8);
    let mut w = a.writer().unwrap();
    let readers: Vec<_> = (0..4).map(|_| a.reader().unwrap()).collect();
    let ids: Vec<_> = readers.iter().map(|r| r.peer_id()).collect();
    let h = w
        .alloc_uninit::<u64>(4096)
        .unwrap()
        .init_with(|i| i as u64)
        .publish(Readers::Peers(&ids));
    std::thread::scope(|s| {
        for r in &readers {
            s.spawn(move || {
                let g = r.read::<u64>(&h).unwrap();
                assert_eq!(g.iter().sum::<u64>(), 4095 * 4096 / 2);
            });
        }
    });
    assert_eq!(w.reclaim().unwrap(), 0);
}

#[test]
fn a_named_reader_that_died_before_reading_is_not_waited_for() {
    let a = arena(128, 4);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let ghost = a.reader().unwrap();
    let h = w
        .try_alloc::<u8>(128)
        .unwrap()
        .publish(Readers::Peers(&[r.peer_id(), ghost.peer_id()]));
    drop(r.read::<u8>(&h).unwrap());
    assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
    a.mark_dead(ghost.peer_id());
    assert!(w.try_alloc::<u8>(1).is_ok(), "the dead reader owes nothing");
}

#[test]
fn a_reader_that_dies_holding_does_not_leak() {
    let a = arena(128, 4);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w.try_alloc::<u8>(128).unwrap().publish_for(1);
    let g = r.read::<u8>(&h).unwrap();
    assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
    a.mark_dead(r.peer_id());
    assert!(w.try_alloc::<u8>(1).is_ok());
    // The dead peer's guard drops later (its process is gone in reality).
    drop(g);
}

#[test]
fn a_new_peer_in_a_dead_readers_slot_reads_past_its_leftovers() {
    // Four slots under a normal build are plenty: 48. Kill the reader in
    // slot 1 while it holds a block; the next reader claims that slot.
    let a = arena(256, 8);
    let mut w = a.writer().unwrap();
    let dead = a.reader().unwrap();
    let h = w.try_alloc::<u8>(64).unwrap().publish_for(2);
    let g = dead.read::<u8>(&h).unwrap();
    a.mark_dead(dead.peer_id());
    let heir = a.reader().unwrap();
    assert_eq!(heir.peer_id().slot(), dead.peer_id().slot());
    assert_ne!(heir.peer_id(), dead.peer_id());
    drop(heir.read::<u8>(&h).unwrap());
    // Both reads happened, the dead holder counts for nothing.
    assert_eq!(w.reclaim().unwrap(), 0);
    std::mem::forget(g);
}

#[test]
fn stale_and_forged_handles_are_refused() {
    let a = arena(4096, 4);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w.try_alloc::<u64>(8).unwrap().publish_for(2);
    let forge =
        |lane, g, off, len, size, align| BlockHandle::from_parts(lane, g, off, len, size, align);
    let (g, off) = (h.generation(), h.offset());
    let cases = [
        (forge(1, g, off, 8, 8, 8), "no such lane"),
        (forge(0, g, off, 8, 4, 4), "wrong type"),
        (forge(0, g, 4096, 8, 8, 8), "out of bounds"),
        (forge(0, g, 4032, 9, 8, 8), "runs past the lane"),
        (forge(0, g, 8, 8, 8, 8), "misaligned"),
        (forge(0, g + 1, off, 8, 8, 8), "never published"),
        (forge(0, g, off, 7, 8, 8), "wrong length"),
        (forge(0, g, off + 64, 8, 8, 8), "wrong place"),
        (forge(0, g, off, u64::MAX, 8, 8), "overflowing length"),
        (forge(0, u64::MAX, off, 8, 8, 8), "absurd generation"),
        (forge(0, g, off, 8, 8, 3), "alignment not a power of two"),
        (bytemuck::Zeroable::zeroed(), "all zero"),
    ];
    for (bad, what) in cases {
        let e = r.read::<u64>(&bad).map(|_| ()).unwrap_err();
        println!("{what}: {e}");
    }
    assert!(matches!(
        r.read::<u32>(&h).unwrap_err(),
        ReadError::WrongType { .. }
    ));
    assert!(matches!(
        r.read::<u64>(&forge(0, g, off + 64, 8, 8, 8)).unwrap_err(),
        ReadError::Mismatch | ReadError::Stale
    ));
    // The real handle still works, as bytes too.
    assert_eq!(r.read_bytes(&h).unwrap().len(), 64);
    drop(r.read::<u64>(&h).unwrap());
    assert_eq!(w.reclaim().unwrap(), 0);
    assert_eq!(r.read::<u64>(&h).unwrap_err(), ReadError::Stale);
}

#[test]
fn zero_element_arrays_work() {
    let a = arena(128, 4);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w.try_alloc::<f64>(0).unwrap().publish_for(1);
    assert!(h.is_empty());
    assert!(r.read::<f64>(&h).unwrap().is_empty());
    assert_eq!(w.reclaim().unwrap(), 0);
}

#[test]
fn too_large_and_full() {
    let a = arena(256, 2);
    let mut w = a.writer().unwrap();
    assert!(matches!(
        w.try_alloc::<u8>(257).unwrap_err(),
        TryAllocError::TooLarge {
            bytes: 257,
            max: 256
        }
    ));
    assert!(matches!(
        w.try_alloc::<u64>(usize::MAX).unwrap_err(),
        TryAllocError::TooLarge { .. }
    ));
    let _a = w.try_alloc::<u8>(1).unwrap().publish_for(1);
    let _b = w.try_alloc::<u8>(1).unwrap().publish_for(1);
    // Room in bytes, but both descriptors are live.
    assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
    assert_eq!(
        w.alloc_timeout::<u8>(1, Duration::from_millis(20))
            .unwrap_err(),
        AllocError::TimedOut
    );
}

#[test]
fn the_lane_wraps_and_reuses_bytes_in_order() {
    let a = arena(320, 8);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..1000u64 {
        let n = (i % 3 + 1) as usize * 8; // 64 to 192 bytes
        let h = loop {
            match w.try_alloc_uninit::<u64>(n) {
                Ok(b) => break b.fill(i).publish_for(1),
                Err(TryAllocError::Full) => {
                    let old: BlockHandle = pending.pop_front().expect("full with nothing pending");
                    let g = r.read::<u64>(&old).unwrap();
                    assert!(g.iter().all(|&x| x == g[0]));
                }
                Err(e) => panic!("{e}"),
            }
        };
        pending.push_back(h);
    }
}

#[test]
fn a_blocked_writer_is_woken_by_a_release() {
    let a = arena(128, 4);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w.try_alloc::<u8>(128).unwrap().publish_for(1);
    let guard = r.read::<u8>(&h).unwrap();
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            drop(guard);
        });
        start.wait();
        let b = w
            .alloc_timeout::<u8>(64, HANG)
            .expect("woken by the release");
        drop(b);
    });
}

#[test]
fn extra_readers_past_k_hold_the_block_until_they_release() {
    let a = arena(128, 4);
    let mut w = a.writer().unwrap();
    let (r1, r2) = (a.reader().unwrap(), a.reader().unwrap());
    let h = w.try_alloc::<u8>(128).unwrap().publish_for(1);
    let g1 = r1.read::<u8>(&h).unwrap();
    let g2 = r2.read::<u8>(&h).unwrap(); // a read beyond the one published
    drop(g1);
    assert_eq!(w.try_alloc::<u8>(1).unwrap_err(), TryAllocError::Full);
    assert_eq!(r1.read::<u8>(&h).unwrap_err(), ReadError::Stale, "retired");
    drop(g2);
    assert!(w.try_alloc::<u8>(1).is_ok());
}

#[test]
fn too_many_guards_on_one_block() {
    let a = arena(128, 4);
    let mut w = a.writer().unwrap();
    let r = a.reader().unwrap();
    let h = w.try_alloc::<u8>(8).unwrap().publish_for(1000);
    let guards: Vec<_> = (0..127).map(|_| r.read::<u8>(&h).unwrap()).collect();
    assert_eq!(r.read::<u8>(&h).unwrap_err(), ReadError::TooManyHolds);
    drop(guards);
    assert!(r.read::<u8>(&h).is_ok());
}

#[test]
fn a_new_writer_adopts_the_live_blocks_of_the_last() {
    let a = arena(256, 4);
    let r = a.reader().unwrap();
    let mut w = a.writer_for_lane(0).unwrap();
    let mut kept = w.try_alloc::<u8>(64).unwrap();
    kept.fill(5);
    let kept = kept.publish_for(1);
    assert!(matches!(
        a.writer_for_lane(0).unwrap_err(),
        AttachError::RoleTaken { holder: Some(_) }
    ));
    let dying = w.peer_id();
    // Dies holding an unpublished block.
    let b = w.try_alloc::<u8>(64).unwrap();
    std::mem::forget(b);
    std::mem::forget(w);
    a.mark_dead(dying);
    let mut heir = a.writer().unwrap();
    assert_eq!(heir.lane(), 0);
    assert_eq!(heir.live_blocks(), 2);
    assert_eq!(&*r.read::<u8>(&kept).unwrap(), &[5; 64]);
    // The unpublished block goes at once, the read one too.
    assert_eq!(heir.reclaim().unwrap(), 0);
    assert!(heir.try_alloc::<u8>(256).is_ok());
}

/// A writer killed between publishing a block and handing its handle on
/// leaves a block nobody will ever read. Its heir adopts it like any live
/// block, and lanes reclaim in lane order: without a limit it would hold
/// the lane's reclamation up for ever (found by
/// `arena_processes::long_writers_killed_at_random_points`). Once the lane
/// is short of room and the orphan timeout has passed since the takeover,
/// an adopted block that no live peer holds is given up (a late reader
/// gets `Stale`); one that is held is never.
#[test]
fn an_adopted_block_nobody_reads_is_given_up_when_room_runs_short() {
    let a = arena(4096, 8);
    let r = a.reader().unwrap();
    let mut w = a.writer_for_lane(0).unwrap();
    let lost = w.try_alloc::<u8>(1024).unwrap().publish_for(1);
    let held = w.try_alloc::<u8>(1024).unwrap().publish_for(1);
    let in_flight = w.try_alloc::<u8>(1024).unwrap().publish_for(1);
    let dying = w.peer_id();
    std::mem::forget(w);
    a.mark_dead(dying);
    let mut heir = a.writer_for_lane(0).unwrap();
    heir.set_orphan_timeout(Duration::from_millis(50));
    assert_eq!(heir.live_blocks(), 3);
    // A handle still on its way is read within the timeout.
    assert!(r.read::<u8>(&in_flight).is_ok());
    let guard = r.read::<u8>(&held).unwrap();
    assert_eq!(heir.try_alloc::<u8>(4096).unwrap_err(), TryAllocError::Full);
    // The orphan at the head goes once the timeout passed; the held block
    // stays (the whole lane cannot be had), and so does room behind it.
    let start = std::time::Instant::now();
    assert_eq!(
        heir.alloc_timeout::<u8>(4096, Duration::from_millis(300))
            .unwrap_err(),
        AllocError::TimedOut
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.read::<u8>(&lost).unwrap_err(), ReadError::Stale);
    // The held block, and the one read behind it (lane order).
    assert_eq!(heir.live_blocks(), 2);
    assert!(heir.try_alloc::<u8>(1024).is_ok(), "room again");
    drop(guard);
    assert!(heir.alloc_timeout::<u8>(4096, HANG).is_ok());
}

#[test]
fn region_arena_format_attach_and_scribbles() {
    let spec = ArenaSpec::new(2, 4096).with_blocks(8);
    let region = Region::builder()
        .section(SectionKind::Arena, spec.section_len().unwrap())
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let arena_id = SectionId(0);
    assert!(matches!(
        ArenaReader::attach(&region, arena_id).unwrap_err(),
        AttachError::NotFormatted { .. }
    ));
    assert!(matches!(
        spec.format(&region, SectionId(1)).unwrap_err(),
        FormatError::WrongKind
    ));
    spec.format(&region, arena_id).unwrap();
    spec.format(&region, arena_id).unwrap();
    assert!(matches!(
        ArenaSpec::new(1, 4096)
            .with_blocks(8)
            .format(&region, arena_id)
            .unwrap_err(),
        FormatError::Mismatch
    ));
    let mut w0 = ArenaWriter::attach(&region, arena_id).unwrap();
    let mut w1 = ArenaWriter::attach(&region, arena_id).unwrap();
    assert_eq!((w0.lane(), w1.lane()), (0, 1));
    assert!(matches!(
        ArenaWriter::attach(&region, arena_id).unwrap_err(),
        AttachError::RoleTaken { .. }
    ));
    let r = ArenaReader::attach(&region, arena_id).unwrap();
    let h0 = w0.try_alloc::<u16>(10).unwrap().publish_to(r.peer_id());
    let h1 = w1.try_alloc::<u16>(10).unwrap().publish_to(r.peer_id());
    drop(r.read::<u16>(&h0).unwrap());
    // A hostile peer scribbles over lane 1's bookkeeping and descriptors.
    let s = region.section(arena_id).unwrap();
    let lane1 = 4096 + spec.section_len().unwrap().saturating_sub(4096) / 2;
    for i in (0..4096).step_by(8) {
        // SAFETY: inside the section; the bytes are lane control and
        // descriptor words, accessed by the library only atomically (a
        // plain write racing nothing here: one thread).
        unsafe {
            s.ptr
                .as_ptr()
                .add(lane1 + i)
                .cast::<u64>()
                .write_volatile(0x5a5a_5a5a_5a5a_5a5a ^ i as u64)
        };
    }
    assert!(r.read::<u16>(&h1).is_err());
    // The writer may or may not notice (it checks its own tags when it
    // reclaims); either way nothing breaks.
    let _ = w1.try_alloc::<u8>(1);
    drop(w1);
    // The next writer of lane 1 finds nonsense and resets the lane.
    let mut w1 = ArenaWriter::attach_lane(&region, arena_id, 1).unwrap();
    assert!(r.read::<u16>(&h1).is_err());
    let h = w1
        .alloc_timeout::<u16>(10, HANG)
        .expect("a reset lane drains and works")
        .publish_for(1);
    assert_eq!(r.read::<u16>(&h).unwrap().len(), 10);
}

#[test]
fn snapshot_cells_on_the_heap() {
    let cell = HeapSnapshot::<[u64; 5]>::new();
    let mut w = cell.writer().unwrap();
    let r = cell.reader().unwrap();
    assert!(cell.writer().is_err(), "one writer");
    assert_eq!(r.try_read_versioned().unwrap(), ([0; 5], 0));
    for v in 1..100u64 {
        w.write(&[v; 5]);
        assert_eq!(r.try_read_versioned().unwrap(), ([v; 5], v));
    }
    // The writer dies; a new one takes over and goes on.
    cell.mark_dead(HeapSnapshot::writer_id(&w));
    std::mem::forget(w);
    let mut w2 = cell.writer().unwrap();
    w2.write(&[7; 5]);
    assert_eq!(r.read().unwrap(), [7; 5]);
}

#[test]
fn snapshot_readers_never_see_a_torn_value() {
    let cell = HeapSnapshot::<[u64; 64]>::new();
    let mut w = cell.writer().unwrap();
    let readers: Vec<_> = (0..2).map(|_| cell.reader().unwrap()).collect();
    let done = polycephaly::sync::shim::AtomicBool::new(false);
    std::thread::scope(|s| {
        for r in &readers {
            let done = &done;
            s.spawn(move || {
                let mut seen = 0;
                while !done.load(polycephaly::sync::shim::Ordering::Relaxed) {
                    match r.try_read() {
                        Ok(v) => {
                            assert!(v.iter().all(|&x| x == v[0]), "torn: {v:?}");
                            seen += 1;
                        }
                        Err(TrySnapshotError::Busy) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                seen
            });
        }
        for v in 0..200_000u64 {
            w.write(&[v; 64]);
        }
        done.store(true, polycephaly::sync::shim::Ordering::Relaxed);
    });
}

#[test]
fn snapshot_cells_in_a_region() {
    let region = Region::builder()
        .section(SectionKind::Arena, snapshot_section_len::<[f32; 3]>())
        .build()
        .unwrap();
    let mut w = SnapshotWriter::<[f32; 3]>::attach(&region, SectionId(0)).unwrap();
    let r = SnapshotReader::<[f32; 3]>::attach(&region, SectionId(0)).unwrap();
    assert!(matches!(
        SnapshotReader::<[f32; 2]>::attach(&region, SectionId(0)).unwrap_err(),
        AttachError::WrongValueSize {
            expected: 8,
            found: 12
        }
    ));
    assert!(matches!(
        SnapshotReader::<[f32; 5]>::attach(&region, SectionId(0)).unwrap_err(),
        AttachError::WrongLength { .. }
    ));
    assert!(matches!(
        ArenaReader::attach(&region, SectionId(0)).unwrap_err(),
        AttachError::NotFormatted { .. } | AttachError::WrongLength { .. }
    ));
    w.write(&[1.0, 2.0, 3.0]);
    assert_eq!(r.read_timeout(HANG).unwrap(), [1.0, 2.0, 3.0]);
    drop(w);
    // No writer: a stable value still reads.
    assert_eq!(r.read().unwrap(), [1.0, 2.0, 3.0]);
    let _ = SnapshotError::PeerDead;
}
