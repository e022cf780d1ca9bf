//! Loom models of the SPSC ring: the same code as a ring in a region, on a
//! heap ring (loom atomics cannot live in a mapping), with the futex
//! modelled by a mutex and condition variable so that a lost wakeup
//! deadlocks the model.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! LOOM_MAX_PREEMPTIONS=3 cargo test --release --test 'loom_*'`
#![cfg(loom)]

use loom::thread;
use polycephaly::ring::{Receiver, Sender, TryRecvError, TrySendError, spsc};
use polycephaly::sync::WaitStrategy;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// Three frames through a 64-byte ring: the third does not fit before the
/// end of the lap and is preceded by a padding frame; the producer blocks
/// (sleeps) for room and the consumer sleeps for data.
#[test]
fn push_pop_across_wrap_with_padding() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_pair(64);
        tx.set_wait_strategy(WaitStrategy::SLEEP);
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        // 24 + 8 = 32 bytes, 16 + 8 = 24 bytes (tail at 56), then 24 + 8:
        // padding of 8, frame at index 0 (needs both frames released: a
        // frame ends at least 8 bytes before the head's next lap).
        let lens = [24usize, 16, 24];
        let producer = thread::spawn(move || {
            for (i, &len) in lens.iter().enumerate() {
                tx.send(&payload(len, i as u8)).unwrap();
            }
        });
        let mut buf = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            rx.recv(&mut buf).unwrap();
            assert_eq!(buf, payload(len, i as u8));
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    });
}

/// Two deferred commits published with one store are seen together, in
/// order, and nothing is visible before the publish.
#[test]
fn batched_publish() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_pair(128);
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        let producer = thread::spawn(move || {
            for i in 0..2u8 {
                let mut claim = tx.try_claim(8).unwrap();
                claim.copy_from_slice(&payload(8, i));
                claim.set_tag(u32::from(i));
                claim.commit_deferred();
            }
            tx.publish();
            tx
        });
        let mut tags = Vec::new();
        // Blocks (sleeps) until the publish, then takes both at once: the
        // single header store makes them visible together.
        let n = rx
            .read_batch_deadline(8, None, |tag, bytes| {
                assert_eq!(bytes, &payload(8, tag as u8)[..]);
                tags.push(tag);
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(tags, [0, 1]);
        drop(producer.join().unwrap());
    });
}

/// The consumer sleeps on an empty ring while the producer publishes: the
/// wakeup is never lost (a lost one deadlocks the model).
#[test]
fn consumer_sleep_wake() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_pair(64);
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        let producer = thread::spawn(move || {
            tx.try_send_value(&7u64).unwrap();
            tx
        });
        assert_eq!(rx.recv_value::<u64>(), Ok(7));
        drop(producer.join().unwrap());
    });
}

/// The producer sleeps on a full ring while the consumer releases: the
/// wakeup is never lost.
#[test]
fn producer_sleep_wake() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_pair(64);
        tx.set_wait_strategy(WaitStrategy::SLEEP);
        // Fill: 8-byte payloads take 16 bytes; three fill the ring (one
        // word stays free: the zero after the last frame).
        for i in 1..=3 {
            tx.try_send(&[i; 8]).unwrap();
        }
        assert_eq!(tx.try_send(&[4; 8]), Err(TrySendError::Full));
        let consumer = thread::spawn(move || {
            let frame = rx.try_read().unwrap();
            assert_eq!(frame[0], 1);
            // A quarter of the ring released: published at once.
            drop(frame);
            rx
        });
        tx.send(&[4; 8]).unwrap();
        let mut rx = consumer.join().unwrap();
        let mut buf = Vec::new();
        for i in 2..=4 {
            rx.try_recv(&mut buf).unwrap();
            assert_eq!(buf, [i; 8]);
        }
    });
}

/// Lazy releases: a producer blocked on a frame that needs almost the whole
/// ring (padding included) is unblocked by the consumer's flush when it
/// finds the ring empty and goes to sleep, below the quarter-ring
/// threshold.
#[test]
fn release_flushed_when_the_consumer_finds_the_ring_empty() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_pair(128);
        tx.set_wait_strategy(WaitStrategy::SLEEP);
        rx.set_wait_strategy(WaitStrategy::SLEEP);
        // Three 16-byte frames (24 bytes each): tail at 72. The consumer's
        // releases reach the producer at 48 (a quarter ring pending), the
        // third stays pending. A 56-byte payload (64 bytes) does not fit in
        // the 56 bytes left of the lap: it needs 56 of padding plus 64 plus
        // the free word, so the whole ring must be released, the third
        // frame included.
        for i in 0..3 {
            tx.try_send(&[i; 16]).unwrap();
        }
        let consumer = thread::spawn(move || {
            for i in 0..3 {
                assert_eq!(rx.try_read().map(|f| f[0]), Ok(i));
            }
            // Empty now: this read flushes the last release, then sleeps.
            let frame = rx.read().unwrap();
            assert_eq!(&frame[..], &[5; 56][..]);
        });
        tx.send(&[5; 56]).unwrap();
        consumer.join().unwrap();
    });
}

/// Frames in a later lap start where frames of the lap before started, so
/// the consumer, reaching a position before the producer publishes there,
/// finds the old header in place unless the producer zeroed that word
/// before publishing the frame that ends there. Without the zero (`--cfg
/// polycephaly_broken_spsc_zero`) the consumer takes the old frame for a new
/// one and reads its payload while the producer rewrites it: the model
/// fails.
#[test]
fn a_header_from_the_lap_before_is_never_read_as_new() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_pair(64);
        // Frames of 16 bytes at 0, 16, 32, then 48 and 64 (index 0 again)
        // once the first ones are released.
        let producer = thread::spawn(move || {
            for i in 0..5u8 {
                loop {
                    match tx.try_send(&[i; 8]) {
                        Ok(()) => break,
                        Err(TrySendError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut buf = Vec::new();
        for i in 0..5u8 {
            loop {
                match rx.try_recv(&mut buf) {
                    Ok(_) => break,
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(buf, [i; 8]);
        }
        producer.join().unwrap();
    });
}

/// A fresh SPSC ring on the heap and both of its handles.
fn spsc_pair(capacity: usize) -> (spsc::Producer, spsc::Consumer) {
    let ring = spsc::HeapRing::new(capacity).unwrap();
    (ring.producer().unwrap(), ring.consumer().unwrap())
}
