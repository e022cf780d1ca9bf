//! Loom models of the MPSC ring: the same code as a ring in a region, on a
//! heap ring (loom atomics cannot live in a mapping), with the futex
//! modelled by a mutex and condition variable so that a lost wakeup
//! deadlocks the model. A producer's death is modelled by the heap ring's
//! `mark_dead` (the liveness check), and a death between the tail CAS and
//! the header write by the `reserve_and_vanish` hook.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_mpsc`
#![cfg(loom)]

use std::time::Duration;

use loom::thread;
use polycephaly::ring::{
    CommitError, Receiver, Sender, TryClaimError, TryRecvError, TrySendError, mpsc,
};
use polycephaly::sync::WaitStrategy;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// Reads with `try_read` until a frame comes, yielding in between; returns
/// (tag, payload).
fn next_frame(rx: &mut mpsc::Consumer) -> (u32, Vec<u8>) {
    loop {
        match rx.try_read() {
            Ok(f) => return (f.tag(), f.to_vec()),
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Two producers race for the tail of a 64-byte ring whose head and tail
/// start at 32 (one frame went through): the second claim crosses the end
/// of the lap, with a padding frame when it does not fit (A's 24 bytes then
/// B's 32: 8 bytes of padding), or lands exactly at index 0 (B first). The
/// consumer sleeps for data. Both frames arrive once each, complete.
#[test]
fn two_producers_claim_commit_wrap() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut a = ring.producer().unwrap();
        let mut b = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        // Move head and tail to 32.
        a.try_send(&[9; 24]).unwrap();
        assert_eq!(next_frame(&mut rx).1, [9; 24]);
        let ta = thread::spawn(move || {
            let mut claim = a.try_claim(16).unwrap();
            claim.copy_from_slice(&payload(16, 1));
            claim.set_tag(1);
            claim.commit().unwrap();
        });
        let tb = thread::spawn(move || {
            b.try_send(&payload(24, 100)).unwrap();
        });
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let tag = rx.recv(&mut buf).unwrap();
            if tag == 1 {
                assert_eq!(buf, payload(16, 1));
            } else {
                assert_eq!(buf, payload(24, 100));
            }
            seen.push(tag);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1], "each frame exactly once");
        ta.join().unwrap();
        tb.join().unwrap();
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    });
}

/// Two frames of one producer and one of another, through a 128-byte
/// ring: one producer's frames arrive in its order.
#[test]
fn per_producer_order() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(128).unwrap();
        let mut a = ring.producer().unwrap();
        let mut b = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let ta = thread::spawn(move || {
            for i in 1..=2u8 {
                a.try_send(&[i; 8]).unwrap();
            }
        });
        let tb = thread::spawn(move || {
            b.try_send(&[7; 8]).unwrap();
        });
        let mut from_a = Vec::new();
        for _ in 0..3 {
            let (_, bytes) = next_frame(&mut rx);
            if bytes[0] != 7 {
                from_a.push(bytes[0]);
            }
        }
        assert_eq!(from_a, [1, 2]);
        ta.join().unwrap();
        tb.join().unwrap();
    });
}

/// A producer that finds the ring full re-reads the head, then the tail.
/// Between the two loads the consumer may release and another producer
/// claim against the newer head, so the tail may be more than a capacity
/// ahead of the head it read: that is contention, not corruption (an
/// earlier version poisoned the ring here).
#[test]
fn full_ring_refresh_races_other_claims() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut a = ring.producer().unwrap();
        let mut b = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        a.try_send(&[1; 24]).unwrap();
        a.try_send(&[2; 24]).unwrap();
        let consumer = thread::spawn(move || {
            let frame = rx.try_read().unwrap();
            assert_eq!(frame[0], 1);
            drop(frame);
            rx
        });
        let other = thread::spawn(move || {
            let r = b.try_send(&[3; 24]);
            assert!(matches!(r, Ok(()) | Err(TrySendError::Full)), "{r:?}");
        });
        let r = a.try_send(&[4; 24]);
        assert!(matches!(r, Ok(()) | Err(TrySendError::Full)), "{r:?}");
        let rx = consumer.join().unwrap();
        other.join().unwrap();
        assert!(!rx.is_poisoned() && !a.is_poisoned());
    });
}

/// The abandon race: a producer judged dead (while in fact it still runs)
/// commits while the consumer abandons its claim. Exactly one wins: either
/// the commit succeeds and the frame is delivered once, or the commit
/// reports `Abandoned` and nothing is delivered.
#[test]
fn abandon_races_commit() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_claim_timeout(Duration::ZERO);
        let id = tx.id();
        let mut claim = tx.try_claim(8).unwrap();
        claim.copy_from_slice(&payload(8, 7));
        ring.mark_dead(id);
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            // Two looks: the abandon CAS (or the committed frame).
            for _ in 0..2 {
                if let Ok(f) = rx.try_read() {
                    got.push(f.to_vec());
                }
            }
            (rx, got)
        });
        let committed = claim.commit();
        let (mut rx, mut got) = consumer.join().unwrap();
        while let Ok(f) = rx.try_read() {
            got.push(f.to_vec());
        }
        match committed {
            Ok(()) => assert_eq!(got, [payload(8, 7)]),
            Err(CommitError::Abandoned) => assert!(got.is_empty()),
            Err(e) => panic!("{e}"),
        }
        // The ring is usable afterwards.
        let mut other = ring.producer().unwrap();
        other.try_send(b"next").unwrap();
        assert_eq!(next_frame(&mut rx).1, b"next");
    });
}

/// A producer dies between its tail CAS and its header write while
/// another sends: the consumer waits while the dead one's intent could
/// belong to a live producer, then skips the reservation whole and
/// delivers the other's frame; nothing else comes out.
#[test]
fn dead_reservation_is_skipped() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut dying = ring.producer().unwrap();
        let mut b = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_claim_timeout(Duration::ZERO);
        let ring2 = ring.clone();
        let td = thread::spawn(move || {
            dying.reserve_and_vanish(8).unwrap();
            ring2.mark_dead(dying.id());
            std::mem::forget(dying);
        });
        let tb = thread::spawn(move || {
            b.try_send(&payload(16, 3)).unwrap();
        });
        let (_, bytes) = next_frame(&mut rx);
        assert_eq!(bytes, payload(16, 3));
        td.join().unwrap();
        tb.join().unwrap();
        // Once the reservation is behind the head, nothing is left.
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    });
}

/// The consumer sleeps on an empty ring while a producer commits, and a
/// producer sleeps on a full ring while the consumer releases: neither
/// wakeup is lost (a lost one deadlocks the model).
#[test]
fn sleep_and_wake_both_ways() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        tx.set_wait_strategy(WaitStrategy::SLEEP);
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        // 24-byte payloads take 32 bytes: two fill the ring.
        tx.try_send(&[1; 24]).unwrap();
        tx.try_send(&[2; 24]).unwrap();
        let producer = thread::spawn(move || {
            tx.send(&[3; 24]).unwrap();
            tx
        });
        let mut buf = Vec::new();
        for want in 1..=3u8 {
            rx.recv(&mut buf).unwrap();
            assert_eq!(buf, [want; 24]);
        }
        drop(producer.join().unwrap());
    });
}

/// Issue 9, hole 1: two producers load the same tail and both publish an
/// intent naming it; the winner dies before writing its header, the loser
/// finds the ring full and gives up. The loser must not leave its intent
/// naming the winner's reservation: the consumer would take it for a live
/// claimer and wait for it for as long as it lives, and the ring would
/// never free the room the loser waits for.
#[test]
fn a_live_loser_does_not_wedge_the_consumer_behind_a_dead_winner() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut dying = ring.producer().unwrap();
        let mut loser = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_claim_timeout(Duration::ZERO);
        // One unread 16-byte frame. Whoever wins the race below takes
        // 16..48; the other then needs 16 bytes of padding and 32 of frame,
        // which only fit once the head has passed the winner's claim.
        loser.try_send(&[1; 8]).unwrap();
        let ring2 = ring.clone();
        let td = thread::spawn(move || {
            let r = dying.reserve_and_vanish(24);
            assert!(matches!(r, Ok(()) | Err(TryClaimError::Full)), "{r:?}");
            ring2.mark_dead(dying.id());
            std::mem::forget(dying);
        });
        let tl = thread::spawn(move || {
            let r = loser.try_send(&[2; 24]);
            assert!(matches!(r, Ok(()) | Err(TrySendError::Full)), "{r:?}");
            (loser, r.is_ok())
        });
        td.join().unwrap();
        let (mut loser, sent) = tl.join().unwrap();
        // Everything has settled: the consumer delivers what was committed
        // and skips the dead reservation, in a bounded number of looks.
        let mut got = Vec::new();
        for _ in 0..4 {
            if let Ok(f) = rx.try_read() {
                got.push(f[0]);
            }
        }
        assert_eq!(got, if sent { vec![1, 2] } else { vec![1] });
        // The room is free again: the loser's next frame gets through.
        loser.try_send(&[3; 24]).unwrap();
        assert_eq!(next_frame(&mut rx).1, [3; 24]);
        assert!(!rx.is_poisoned());
    });
}

/// Issue 9, hole 6: a producer attaching while the owner of an entry
/// claims and dies must not take the entry over on the strength of an
/// intent it read before the claim: erasing the intent of a live
/// reservation leaves the consumer a header nobody claims, and it poisons
/// the ring. Liveness first, then the record.
#[test]
fn a_new_producer_never_erases_a_dead_owners_pending_intent() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut dying = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        rx.set_claim_timeout(Duration::ZERO);
        let ring2 = ring.clone();
        let td = thread::spawn(move || {
            dying.reserve_and_vanish(8).unwrap();
            ring2.mark_dead(dying.id());
            std::mem::forget(dying);
        });
        let ring3 = ring.clone();
        let tn = thread::spawn(move || ring3.producer().unwrap());
        td.join().unwrap();
        let mut newcomer = tn.join().unwrap();
        // The dead reservation is skipped, not taken for corruption.
        for _ in 0..3 {
            assert!(matches!(
                rx.try_read().map(|f| f.to_vec()),
                Err(TryRecvError::Empty)
            ));
        }
        newcomer.try_send(b"after").unwrap();
        assert_eq!(next_frame(&mut rx).1, b"after");
        assert!(!rx.is_poisoned());
    });
}

/// Issue 9, hole 2: a consumer killed between zeroing the bytes it
/// releases and storing the head. Its successor takes the role over and
/// finishes the release (the zeroed header at the old head would otherwise
/// look like a reservation nobody made, and poison the ring), while a
/// producer that needs the released room sleeps for it.
#[test]
fn a_release_cut_short_is_finished_by_the_next_consumer() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(64).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        tx.set_wait_strategy(WaitStrategy::SLEEP);
        tx.try_send(&[1; 24]).unwrap();
        let producer = thread::spawn(move || {
            tx.send(&[2; 24]).unwrap();
            // Needs the room of the first frame.
            tx.send(&[3; 24]).unwrap();
            tx
        });
        let (_, first) = rx.consume_and_vanish().unwrap();
        assert_eq!(first, [1; 24]);
        ring.mark_dead(rx.id());
        std::mem::forget(rx);
        let mut next = ring.consumer().unwrap();
        next.set_claim_timeout(Duration::ZERO);
        assert_eq!(next_frame(&mut next).1, [2; 24]);
        assert_eq!(next_frame(&mut next).1, [3; 24]);
        drop(producer.join().unwrap());
        let mut buf = Vec::new();
        assert_eq!(next.try_recv(&mut buf), Err(TryRecvError::Empty));
        assert!(!next.is_poisoned());
    });
}

/// Lazy release: a consumer that read less than a quarter of the ring
/// keeps it unreleased, and gives it back before it sleeps. Frames of 24
/// bytes in a 128-byte ring: after two, the head is released at 48; a
/// third (48..72) is read and kept. A producer then needs 120 bytes (56
/// of padding to the end of the lap, a 64-byte frame), which fit only
/// with the kept 24 given back: it sleeps for room while the consumer
/// sleeps for data. The consumer must release before it sleeps, and ring
/// the producer, or neither moves.
#[test]
fn a_consumer_gives_back_what_it_read_before_it_sleeps() {
    loom::model(|| {
        let ring = mpsc::HeapRing::new(128).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        tx.set_wait_strategy(WaitStrategy::SLEEP);
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        let mut buf = Vec::new();
        for i in 1..=3u8 {
            tx.try_send(&[i; 16]).unwrap();
            assert_eq!(rx.try_recv(&mut buf), Ok(0));
            assert_eq!(buf, [i; 16]);
        }
        assert_eq!(
            tx.try_send(&[4; 56]),
            Err(TrySendError::Full),
            "the third frame is not released yet"
        );
        let producer = thread::spawn(move || {
            tx.send(&[4; 56]).unwrap();
            tx
        });
        rx.recv(&mut buf).unwrap();
        assert_eq!(buf, [4; 56]);
        drop(producer.join().unwrap());
        assert!(!rx.is_poisoned());
    });
}
