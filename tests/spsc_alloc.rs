//! A counting global allocator shows that the zero-copy path (and the
//! copying path into a reused buffer) allocates nothing per message.
//!
//! One test in this binary, so no other test thread allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};

use polycephaly::region::{Region, SectionId};
use polycephaly::ring::{Receiver, Sender, spsc};

/// Counts allocations (not frees) made through the global allocator.
struct Counting;

#[allow(clippy::disallowed_types)]
static ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; the counter is a plain
// atomic increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(std::sync::atomic::Ordering::Relaxed)
}

fn traffic(tx: &mut spsc::Producer, rx: &mut spsc::Consumer, buf: &mut Vec<u8>) -> u64 {
    let mut sum = 0u64;
    for i in 0..10_000u32 {
        let len = (i % 97) as usize;
        // Zero-copy: claim, write in place, commit; read in place, release.
        let mut claim = tx.try_claim(len).unwrap();
        claim.fill(i as u8);
        claim.set_tag(i);
        claim.commit();
        let frame = rx.try_read().unwrap();
        assert_eq!((frame.len(), frame.tag()), (len, i));
        sum += frame.iter().map(|&b| u64::from(b)).sum::<u64>();
        frame.release();
        // Batched publish and batch read.
        for _ in 0..4 {
            tx.try_claim(8).unwrap().commit_deferred();
        }
        tx.publish();
        assert_eq!(rx.try_read_batch(8, |_, b| sum += b.len() as u64), Ok(4));
        // Copying and typed forms, into a buffer that is already big enough.
        tx.try_send(&[7; 64]).unwrap();
        rx.try_recv(buf).unwrap();
        tx.send_value(&u64::from(i)).unwrap();
        assert_eq!(rx.recv_value::<u64>(), Ok(u64::from(i)));
    }
    sum
}

#[test]
fn no_allocation_per_message() {
    let (mut tx, mut rx) = spsc_pair(4096);
    let mut buf = Vec::with_capacity(4096);
    // Warm up (lazy statics, first-use allocations), then count.
    traffic(&mut tx, &mut rx, &mut buf);
    let before = allocs();
    std::hint::black_box(traffic(&mut tx, &mut rx, &mut buf));
    assert_eq!(allocs() - before, 0, "heap ring");

    let region = Region::builder()
        .with(spsc::Spec::new(4096).unwrap())
        .build()
        .unwrap();
    let mut tx = spsc::Producer::attach(&region, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&region, SectionId(0)).unwrap();
    traffic(&mut tx, &mut rx, &mut buf);
    let before = allocs();
    std::hint::black_box(traffic(&mut tx, &mut rx, &mut buf));
    assert_eq!(allocs() - before, 0, "region ring");
}

/// A fresh SPSC ring on the heap and both of its handles.
fn spsc_pair(capacity: usize) -> (spsc::Producer, spsc::Consumer) {
    let ring = spsc::HeapRing::new(capacity).unwrap();
    (ring.producer().unwrap(), ring.consumer().unwrap())
}
