//! Loom models of the arena (src/arena/lane.rs, reader.rs, snapshot.rs):
//! the same code as an arena in a region, on a heap arena whose data bytes
//! are tracked by loom cells (one per 8 bytes): the writer's writes are
//! recorded between allocation and publication, a reader's reads between
//! its acquisition and its release, so that a read not ordered after the
//! publication, or a write into a block a reader still holds, fails the
//! model. A reader's death is the heap arena's `mark_dead`.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_arena`.
//! Each model fails when its key step is removed with
//! `--cfg polycephaly_broken_arena="..."` (named at each model).
#![cfg(loom)]

use loom::thread;
use polycephaly::arena::{
    ArenaSpec, BlockHandle, HeapArena, HeapSnapshot, ReadError, Readers, TryAllocError,
    TrySnapshotError,
};
use polycephaly::sync::WaitStrategy;

/// One lane of `lane_len` bytes and two descriptors.
fn arena(lane_len: usize) -> std::sync::Arc<HeapArena> {
    HeapArena::new(ArenaSpec::new(1, lane_len).with_blocks(2)).unwrap()
}

/// The handle the first block of a fresh lane gets: `n` u64s, generation
/// 0, offset 0. Known in advance, so that no synchronisation between the
/// threads passes it (which would order what the model must check).
fn first_handle(n: u64) -> BlockHandle {
    BlockHandle::from_parts(0, 0, 0, n, 8, 8)
}

/// Allocates `n` u64s set to `v`, yielding while the lane is full.
fn alloc_fill(w: &mut polycephaly::arena::ArenaWriter, n: usize, v: u64) -> BlockHandle {
    loop {
        match w.try_alloc_uninit::<u64>(n) {
            Ok(b) => return b.fill(v).publish_for(1),
            Err(TryAllocError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// A reader reads a block the writer publishes concurrently: it sees the
/// block only once published, and then all of it.
/// Key ordering: the Release store of PUBLISHED (`publish`).
#[test]
fn a_read_follows_the_publication() {
    loom::model(|| {
        let a = arena(64);
        let mut w = a.writer().unwrap();
        let r = a.reader().unwrap();
        let t = thread::spawn(move || {
            alloc_fill(&mut w, 2, 7);
            w
        });
        loop {
            match r.read::<u64>(&first_handle(2)) {
                Ok(g) => {
                    assert_eq!(&*g, &[7, 7]);
                    break;
                }
                Err(ReadError::Stale) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        drop(t.join().unwrap());
    });
}

/// The writer reuses the bytes of a block only after its reader released
/// it: the lane holds one block, the writer allocates again while the
/// reader reads the first.
/// Key ordering: the Release decrement of the hold (`release`).
#[test]
fn reuse_waits_for_the_release() {
    loom::model(|| {
        let a = arena(64);
        let mut w = a.writer().unwrap();
        let r = a.reader().unwrap();
        let h = alloc_fill(&mut w, 8, 1);
        let t = thread::spawn(move || {
            let g = r.read::<u64>(&h).unwrap();
            assert!(g.iter().all(|&x| x == 1));
        });
        alloc_fill(&mut w, 8, 2);
        t.join().unwrap();
    });
}

/// A reader with an old handle races the writer reclaiming that block
/// (its one published read was used up) and writing a new one in its
/// place: the reader either reads the old bytes while the writer waits,
/// or is told the handle is stale.
/// Key steps: the reader's fence and second tag check, the writer's fence
/// (`recheck`, `acquire_fence`, `retire_fence`).
#[test]
fn a_late_reader_and_the_reclaim_never_overlap() {
    loom::model(|| {
        let a = arena(64);
        let mut w = a.writer().unwrap();
        let (r1, r2) = (a.reader().unwrap(), a.reader().unwrap());
        let h = alloc_fill(&mut w, 8, 1);
        drop(r1.read::<u64>(&h).unwrap());
        let t = thread::spawn(move || {
            alloc_fill(&mut w, 8, 2);
        });
        match r2.read::<u64>(&h) {
            Ok(g) => assert!(g.iter().all(|&x| x == 1)),
            Err(ReadError::Stale) => {}
            Err(e) => panic!("{e}"),
        }
        t.join().unwrap();
    });
}

/// A block published for two readers is reused only after both read and
/// released it.
/// Key ordering: the Release decrement of `remaining` with the hold made
/// before it (`release` also breaks it).
#[test]
fn k_readers_then_reuse() {
    loom::model(|| {
        let a = arena(64);
        let mut w = a.writer().unwrap();
        let (r1, r2) = (a.reader().unwrap(), a.reader().unwrap());
        let h = w
            .try_alloc_uninit::<u64>(8)
            .unwrap()
            .fill(1)
            .publish(Readers::Count(2));
        let t1 = thread::spawn(move || {
            assert!(r1.read::<u64>(&h).unwrap().iter().all(|&x| x == 1));
        });
        let t2 = thread::spawn(move || {
            assert!(r2.read::<u64>(&h).unwrap().iter().all(|&x| x == 1));
        });
        alloc_fill(&mut w, 8, 2);
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// A named reader dies holding the block (it never releases): the writer
/// reclaims it once the death shows, and not before.
/// Key step: ignoring a dead peer's hold (`liveness`: the model then never
/// ends, which loom reports).
#[test]
fn a_dead_readers_hold_is_reclaimed() {
    loom::model(|| {
        let a = arena(64);
        let mut w = a.writer().unwrap();
        let r = a.reader().unwrap();
        let h = w
            .try_alloc_uninit::<u64>(8)
            .unwrap()
            .fill(1)
            .publish_to(r.peer_id());
        let arena2 = a.clone();
        let t = thread::spawn(move || {
            let g = r.read::<u64>(&h).unwrap();
            assert!(g.iter().all(|&x| x == 1));
            let me = r.peer_id();
            // Killed holding the guard: its process is gone.
            std::mem::forget(g);
            std::mem::forget(r);
            arena2.mark_dead(me);
        });
        alloc_fill(&mut w, 8, 2);
        t.join().unwrap();
    });
}

/// A writer that sleeps for room (no spinning under loom) is woken by the
/// release that makes room.
/// Key step: the release's ring of the space bell (`no_ring`: a lost
/// wake-up, which loom reports as a deadlock).
#[test]
fn a_sleeping_writer_is_woken_by_the_release() {
    loom::model(|| {
        let a = arena(64);
        let mut w = a.writer().unwrap();
        w.set_wait_strategy(WaitStrategy::SLEEP);
        let r = a.reader().unwrap();
        let h = alloc_fill(&mut w, 8, 1);
        let t = thread::spawn(move || {
            drop(r.read::<u64>(&h).unwrap());
        });
        let b = w.alloc::<u64>(8).unwrap();
        drop(b);
        t.join().unwrap();
    });
}

/// A reader of a snapshot cell racing two writes never accepts a torn
/// value: every copy it accepts is one write's.
/// Key orderings: the writer's Release fence after the odd `seq`
/// (`seqlock_writer`), the reader's Acquire fence before its second load
/// of `seq` (`seqlock_reader`).
#[test]
fn a_snapshot_read_is_never_torn() {
    loom::model(|| {
        let cell = HeapSnapshot::<[u64; 2]>::new();
        let mut w = cell.writer().unwrap();
        let r = cell.reader().unwrap();
        let t = thread::spawn(move || {
            w.write(&[1, 1]);
            w.write(&[2, 2]);
        });
        for _ in 0..2 {
            match r.try_read() {
                Ok(v) => assert_eq!(v[0], v[1], "torn read accepted: {v:?}"),
                Err(TrySnapshotError::Busy) => {}
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
    });
}
