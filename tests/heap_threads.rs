//! Rings, the mutex and the event on the heap, between threads of one
//! process: the same code as in a region, with every system call but the
//! futex out of the way, so that Miri can run it and check every unsafe
//! access the library makes (bounds, alignment, provenance, data races
//! between the threads).
//!
//! `cargo +nightly miri test --test heap_threads` (CI runs it when a
//! nightly with Miri is there); plain `cargo test` runs it too.

use std::sync::Arc;
use std::thread;

use polycephaly::lock::{Event, EventMode, LockStatus, OwnerCheck, ShmMutex};
use polycephaly::ring::{Receiver, Sender, TryRecvError, mpsc, spsc};
use polycephaly::sync::WaitStrategy;

/// Messages per test: small under Miri, which runs a few thousand times
/// slower than the machine.
const N: u64 = if cfg!(miri) { 200 } else { 20_000 };

#[test]
fn spsc_frames_cross_threads_in_order_through_a_wrapping_ring() {
    let ring = spsc::HeapRing::new(256).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    // Sleeping both ways exercises the futex path too.
    tx.set_wait_strategy(WaitStrategy::SLEEP);
    rx.set_wait_strategy(WaitStrategy::BLOCK);
    let producer = thread::spawn(move || {
        for i in 0..N {
            // Lengths that make frames wrap at every size.
            let len = (i % 40) as usize;
            let mut claim = tx.claim(len).unwrap();
            claim.fill(i as u8);
            claim.set_tag(i as u32);
            if i % 3 == 0 {
                claim.commit_deferred();
                tx.publish();
            } else {
                claim.commit();
            }
        }
    });
    for i in 0..N {
        let frame = rx.read().unwrap();
        assert_eq!(frame.tag(), i as u32);
        assert_eq!(frame.len(), (i % 40) as usize);
        assert!(frame.iter().all(|&b| b == i as u8));
    }
    producer.join().unwrap();
    assert_eq!(rx.try_read().err(), Some(TryRecvError::Empty));
}

#[test]
fn spsc_typed_values_and_batches() {
    let ring = spsc::HeapRing::new(1024).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let producer = thread::spawn(move || {
        for i in 0..N {
            tx.send_value(&[i, !i]).unwrap();
        }
    });
    let mut next = 0;
    while next < N {
        rx.read_batch_deadline(16, None, |_, bytes| {
            let v: [u64; 2] = bytemuck::pod_read_unaligned(bytes);
            assert_eq!(v, [next, !next]);
            next += 1;
        })
        .unwrap();
    }
    producer.join().unwrap();
}

#[test]
fn mpsc_two_producers_keep_their_order() {
    let ring = mpsc::HeapRing::new(512).unwrap();
    let mut rx = ring.consumer().unwrap();
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let mut tx = ring.producer().unwrap();
            thread::spawn(move || {
                for i in 0..N {
                    tx.send_value(&(p << 32 | i)).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u64; 2];
    for _ in 0..2 * N {
        let v: u64 = rx.recv_value().unwrap();
        let p = (v >> 32) as usize;
        assert_eq!(v & 0xFFFF_FFFF, next[p], "producer {p} out of order");
        next[p] += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
}

#[test]
fn mpsc_a_dead_claim_is_skipped() {
    let ring = mpsc::HeapRing::new(256).unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_claim_timeout(core::time::Duration::ZERO);
    let mut dying = ring.producer().unwrap();
    let id = dying.id();
    let mut other = ring.producer().unwrap();
    let claim = dying.try_claim(8).unwrap();
    other.try_send(b"after").unwrap();
    // The claimer dies holding its claim.
    ring.mark_dead(id);
    // Neither committed nor dropped (which would abandon it): vanished.
    std::mem::forget(claim);
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, b"after");
    // Only now: dropping the handle detaches, which a dead process never
    // does.
    drop(dying);
}

/// Lockers 1 and 2, always alive.
#[derive(Debug)]
struct Tag(u32);

impl OwnerCheck for Tag {
    fn my_tag(&self) -> u32 {
        self.0
    }
    fn is_valid(&self, tag: u32) -> bool {
        tag == 1 || tag == 2
    }
    fn is_alive(&self, _tag: u32) -> bool {
        true
    }
}

#[test]
fn the_mutex_excludes_and_the_event_hands_over() {
    let a = ShmMutex::<u64>::new_heap(Arc::new(Tag(1)))
        .unwrap()
        .with_strategy(WaitStrategy::SLEEP);
    let b = a.handle(Arc::new(Tag(2))).unwrap();
    let done = Event::new_heap(EventMode::AutoReset).with_strategy(WaitStrategy::SLEEP);
    let signal = done.clone();
    let t = thread::spawn(move || {
        for _ in 0..N / 10 {
            let mut g = b.lock().unwrap();
            assert_eq!(g.status(), LockStatus::Consistent);
            *g += 1;
        }
        signal.signal().unwrap();
    });
    for _ in 0..N / 10 {
        *a.lock().unwrap() += 1;
    }
    done.wait().unwrap();
    t.join().unwrap();
    assert_eq!(*a.lock().unwrap(), 2 * (N / 10));
}
