//! MPSC rings in a region, within one process: attach checks, the consumer
//! role, the producer table (attach, detach, listing, running out), the
//! copy and Pod forms, timeouts. (No system call on the fast paths:
//! `mpsc_syscalls.rs`, alone in its binary since the counts are per
//! process.)

use std::time::Duration;

use polycephaly::AttachError;
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{
    ClaimError, CommitError, Receiver, RecvError, Sender, TryClaimError, TryRecvError,
    TrySendError, mpsc,
};
use polycephaly::sync::WaitStrategy;

fn region(capacity: usize) -> Region {
    Region::builder()
        .with(mpsc::Spec::new(capacity).unwrap())
        .section(SectionKind::SpscRing, 4096)
        .section(SectionKind::MpscRing, 64)
        .build()
        .unwrap()
}

#[test]
fn attach_checks_the_section() {
    let r = region(1024);
    assert!(matches!(
        mpsc::Producer::attach(&r, SectionId(1)),
        Err(AttachError::WrongKind {
            found: SectionKind::SpscRing,
            wanted: SectionKind::MpscRing
        })
    ));
    assert!(matches!(
        mpsc::Consumer::attach(&r, SectionId(2)),
        Err(AttachError::WrongLength { len: 64, .. })
    ));
    assert!(matches!(
        mpsc::Consumer::attach(&r, SectionId(9)),
        Err(AttachError::Section(_))
    ));
}

#[test]
fn one_consumer_many_producers() {
    let r = region(1024);
    let rx = mpsc::Consumer::attach(&r, SectionId(0)).unwrap();
    assert!(matches!(
        mpsc::Consumer::attach(&r, SectionId(0)),
        Err(AttachError::RoleTaken { .. })
    ));
    drop(rx);
    let mut rx = mpsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let mut tx: Vec<mpsc::Producer> = (0..3)
        .map(|_| mpsc::Producer::attach(&r, SectionId(0)).unwrap())
        .collect();
    let listed = rx.producers();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|p| p.alive && p.id == Some(r.peer_id())));
    for (i, p) in tx.iter_mut().enumerate() {
        p.send_value(&(i as u64)).unwrap();
    }
    for i in 0..3u64 {
        assert_eq!(rx.recv_value::<u64>(), Ok(i));
    }
    // Detach one; the others keep going; a new one takes a free entry.
    let gone = tx.remove(1).entry();
    assert_eq!(rx.producers().len(), 2);
    let again = mpsc::Producer::attach(&r, SectionId(0)).unwrap();
    assert_eq!(again.entry(), gone, "the freed entry is reused");
    assert_eq!(rx.producers().len(), 3);
}

#[test]
fn the_producer_table_runs_out() {
    let r = region(1024);
    let all: Vec<mpsc::Producer> = (0..mpsc::MAX_PRODUCERS)
        .map(|_| mpsc::Producer::attach(&r, SectionId(0)).unwrap())
        .collect();
    assert!(matches!(
        mpsc::Producer::attach(&r, SectionId(0)),
        Err(AttachError::NoFreeEntry { max }) if max == mpsc::MAX_PRODUCERS
    ));
    drop(all);
    assert!(mpsc::Producer::attach(&r, SectionId(0)).is_ok());
}

#[test]
fn full_empty_and_timeouts() {
    let r = region(64);
    let mut tx = mpsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = mpsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(&mut buf, Duration::from_millis(5)),
        Err(RecvError::TimedOut)
    );
    tx.try_send(&[1; 24]).unwrap();
    tx.try_send(&[2; 24]).unwrap();
    assert_eq!(tx.try_claim(24).err(), Some(TryClaimError::Full));
    assert_eq!(
        tx.claim_timeout(24, Duration::from_millis(5)).err(),
        Some(ClaimError::TimedOut)
    );
    assert_eq!(
        tx.try_claim(25).err(),
        Some(TryClaimError::TooLarge { len: 25, max: 24 })
    );
    // A claim dropped uncommitted is skipped, not delivered.
    rx.recv(&mut buf).unwrap();
    drop(tx.try_claim(16).unwrap());
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, [2; 24]);
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    assert_eq!(
        rx.try_recv_value::<u32>().err(),
        Some(TryRecvError::Empty),
        "the abandoned claim left nothing behind"
    );
    tx.try_send(b"abc").unwrap();
    assert_eq!(
        rx.try_recv_value::<u64>(),
        Err(TryRecvError::WrongSize {
            expected: 8,
            got: 3
        })
    );
}

/// A claim whose producer died blocks the head until the claim timeout;
/// then a polling consumer (`try_recv`) and a blocking one (which wakes at
/// the timeout by itself) both skip it, and the late commit is told.
#[test]
fn a_dead_claim_is_skipped_after_the_timeout() {
    for blocking in [false, true] {
        let ring = mpsc::HeapRing::new(256).unwrap();
        let mut dead = ring.producer().unwrap();
        let mut live = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_claim_timeout(Duration::from_millis(10));
        let id = dead.id();
        let claim = dead.try_claim(8).unwrap();
        live.try_send(b"after").unwrap();
        let mut buf = Vec::new();
        // Its producer is alive: waited for, however long.
        assert_eq!(
            rx.recv_timeout(&mut buf, Duration::from_millis(30)),
            Err(RecvError::TimedOut)
        );
        ring.mark_dead(id);
        if blocking {
            rx.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
        } else {
            let start = std::time::Instant::now();
            while let Err(e) = rx.try_recv(&mut buf) {
                assert_eq!(e, TryRecvError::Empty);
                assert!(start.elapsed() < Duration::from_secs(20), "never skipped");
                std::thread::yield_now();
            }
        }
        assert_eq!(buf, b"after");
        assert_eq!(claim.commit(), Err(CommitError::Abandoned));
    }
}

/// Releases are lazy: frames consumed are recorded at once and released
/// later. A consumer that dies with frames consumed but not released
/// leaves them recorded, and the next consumer releases them first: none
/// is delivered twice, none is lost.
#[test]
fn frames_consumed_before_a_crash_are_not_delivered_again() {
    let ring = mpsc::HeapRing::new(1024).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..6u8 {
        tx.try_send(&[i; 8]).unwrap();
    }
    let mut buf = Vec::new();
    // 3 frames of 16 bytes: far below a quarter of the ring, so the
    // consumer keeps them unreleased.
    for i in 0..3u8 {
        assert_eq!(rx.try_recv(&mut buf), Ok(0));
        assert_eq!(buf, [i; 8]);
    }
    ring.mark_dead(rx.id());
    let mut next = ring.consumer().unwrap();
    // The dead consumer's handle goes away after the takeover: the role is
    // no longer its, so it releases nothing.
    drop(rx);
    for i in 3..6u8 {
        assert_eq!(next.try_recv(&mut buf), Ok(0));
        assert_eq!(buf, [i; 8], "frame {i}");
    }
    assert_eq!(next.try_recv(&mut buf), Err(TryRecvError::Empty));
    // Dropping the next consumer releases what it kept: with no consumer
    // attached, the producer fills the whole ring (64 frames of 16 bytes).
    drop(next);
    for i in 0..64u8 {
        assert_eq!(tx.try_send(&[i; 8]), Ok(()), "frame {i}");
    }
    assert_eq!(tx.try_send(&[0; 8]), Err(TrySendError::Full));
}

/// A 128-byte ring with its head released at 48 and a 24-byte frame
/// (48..72) consumed and kept unreleased: a producer that needs 120 bytes
/// (padding to the end of the lap, then a 64-byte frame) fits only once
/// the consumer gives those 24 back.
fn ring_with_a_frame_kept() -> (mpsc::HeapRing, mpsc::Producer, mpsc::Consumer) {
    let ring = mpsc::HeapRing::new(128).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut buf = Vec::new();
    for i in 1..=3u8 {
        tx.try_send(&[i; 16]).unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(0));
    }
    assert_eq!(tx.try_send(&[4; 56]), Err(TrySendError::Full));
    (ring, tx, rx)
}

/// A consumer that polls with `try_recv` and finds nothing gives back what
/// it kept once it has been idle a moment (20 us), so that a producer
/// waiting for that room is not left waiting.
#[test]
fn a_polling_consumer_gives_back_what_it_kept_once_idle() {
    let (_ring, mut tx, mut rx) = ring_with_a_frame_kept();
    let mut buf = Vec::new();
    let start = std::time::Instant::now();
    loop {
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
        match tx.try_send(&[4; 56]) {
            Ok(()) => break,
            Err(e) => assert_eq!(e, TrySendError::Full),
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never released");
    }
    assert_eq!(rx.try_recv(&mut buf), Ok(0));
    assert_eq!(buf, [4; 56]);
}

/// The same with the consumer waiting for data and a producer blocked for
/// room: a consumer whose strategy spins gives back what it kept once idle
/// (its wait ends then), one that sleeps at once gives it back before it
/// sleeps; either way the producer's frame arrives.
#[test]
fn a_waiting_consumer_gives_back_what_it_kept() {
    for strategy in [WaitStrategy::SPIN, WaitStrategy::BLOCK, WaitStrategy::SLEEP] {
        let (_ring, mut tx, mut rx) = ring_with_a_frame_kept();
        rx.set_wait_strategy(strategy);
        tx.set_wait_strategy(strategy);
        std::thread::scope(|s| {
            let producer = s.spawn(move || tx.send_timeout(&[4; 56], Duration::from_secs(20)));
            let mut buf = Vec::new();
            assert_eq!(
                rx.recv_timeout(&mut buf, Duration::from_secs(20)),
                Ok(0),
                "{strategy:?}"
            );
            assert_eq!(buf, [4; 56]);
            assert_eq!(producer.join().unwrap(), Ok(()), "{strategy:?}");
        });
    }
}
