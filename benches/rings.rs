//! Criterion benches of the library's own API on rings on the heap: two
//! threads of one process, so what is measured is the ring (claim, commit,
//! read, release, the copying and typed forms), not the operating system.
//! The measurements between real processes, with their baselines, are the
//! harness's (`cargo run --release -- bench`, `harness/benches`).
//!
//! `cargo test --benches` runs each once.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use polycephaly::ring::{Receiver, Sender, mpsc, spsc};
use polycephaly::sync::WaitStrategy;

const CAPACITY: usize = 1 << 16;

/// `iters` 64-byte frames through an SPSC ring, claimed and committed in
/// place, read in place on another thread. Returns the producer's time.
fn spsc_zero_copy(iters: u64) -> Duration {
    let ring = spsc::HeapRing::new(CAPACITY).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    tx.set_wait_strategy(WaitStrategy::SPIN);
    rx.set_wait_strategy(WaitStrategy::SPIN);
    let reader = thread::spawn(move || {
        let mut sum = 0u64;
        for _ in 0..iters {
            let frame = rx.read().unwrap();
            sum = sum.wrapping_add(u64::from(frame[0]));
        }
        sum
    });
    let start = Instant::now();
    for i in 0..iters {
        let mut claim = tx.claim(64).unwrap();
        claim[0] = i as u8;
        claim.commit();
    }
    black_box(reader.join().unwrap());
    start.elapsed()
}

/// `iters` 64-byte frames written and read back by one thread: the cost of
/// the two code paths with no other core involved (and with the producer's
/// demotes skipped, as for any consumer on the producer's CPU).
fn spsc_one_thread(iters: u64) -> Duration {
    let ring = spsc::HeapRing::new(CAPACITY).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let mut sum = 0u64;
    let start = Instant::now();
    for i in 0..iters {
        let mut claim = tx.try_claim(64).unwrap();
        claim[0] = i as u8;
        claim.commit();
        let frame = rx.try_read().unwrap();
        sum = sum.wrapping_add(u64::from(frame[0]));
    }
    black_box(sum);
    start.elapsed()
}

/// `iters` `u64` values through an SPSC ring with the typed forms.
fn spsc_typed(iters: u64) -> Duration {
    let ring = spsc::HeapRing::new(CAPACITY).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    tx.set_wait_strategy(WaitStrategy::SPIN);
    rx.set_wait_strategy(WaitStrategy::SPIN);
    let reader = thread::spawn(move || {
        let mut sum = 0u64;
        for _ in 0..iters {
            sum = sum.wrapping_add(rx.recv_value::<u64>().unwrap());
        }
        sum
    });
    let start = Instant::now();
    for i in 0..iters {
        tx.send_value(&i).unwrap();
    }
    assert_eq!(reader.join().unwrap(), (0..iters).sum::<u64>());
    start.elapsed()
}

/// `iters` 64-byte frames from each of `producers` threads through one
/// MPSC ring, read by the main thread. Returns the consumer's time.
fn mpsc_copy(producers: u64, iters: u64) -> Duration {
    let ring = mpsc::HeapRing::new(CAPACITY).unwrap();
    let mut rx = ring.consumer().unwrap();
    let writers: Vec<_> = (0..producers)
        .map(|_| {
            let mut tx = ring.producer().unwrap();
            thread::spawn(move || {
                let msg = [7u8; 64];
                for _ in 0..iters {
                    tx.send(&msg).unwrap();
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut left = producers * iters;
    while left > 0 {
        let n = rx
            .read_batch_deadline(256, None, |_, bytes| {
                black_box(bytes);
            })
            .unwrap();
        left -= n as u64;
    }
    let elapsed = start.elapsed();
    for w in writers {
        w.join().unwrap();
    }
    elapsed
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("heap_rings");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spsc_claim_commit_64b", |b| b.iter_custom(spsc_zero_copy));
    g.bench_function("spsc_send_value_u64", |b| b.iter_custom(spsc_typed));
    g.bench_function("spsc_one_thread_64b", |b| b.iter_custom(spsc_one_thread));
    g.bench_function("mpsc2_send_64b", |b| {
        b.iter_custom(|iters| mpsc_copy(2, iters.div_ceil(2)))
    });
    g.finish();
    c.final_summary();
}
