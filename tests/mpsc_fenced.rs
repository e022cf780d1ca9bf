//! An MPSC consumer that sleeps for data issues no membarrier: its
//! producers ring the data bell with a full fence after their commit CAS
//! (`Doorbell::ring_fenced`), so its announcement needs only a fence of its
//! own. An SPSC consumer in the same exchange pays one membarrier per
//! sleep (where the kernel offers it), which shows the counter counts.
//! Alone in its test binary: the membarrier and futex counters are per
//! process.

use std::time::{Duration, Instant};

use polycephaly::region::{Region, SectionId};
use polycephaly::ring::{Receiver, Sender, mpsc, spsc};
use polycephaly::sync::{WaitStrategy, futex_calls, light_fence_active, membarrier_calls};

const ROUNDS: u64 = 200;

/// Polls `cond` until it holds; panics with `what` after 30 s (a hang
/// detector, not a speed assertion).
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < give_up, "{what}: not after 30 s");
        std::thread::yield_now();
    }
}

/// `ROUNDS` frames, each sent once the consumer thread has gone to sleep
/// for it (its futex wait counted); returns the membarrier calls made and
/// the sleeps taken meanwhile.
fn sleepy_exchange(
    mut send: impl FnMut(u64) + Send,
    mut recv: impl FnMut() -> u64 + Send,
) -> (u64, u64) {
    // Make sure this process registered its light fence (first ring).
    let before = membarrier_calls();
    let waits_before = futex_calls().waits;
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..ROUNDS {
                assert_eq!(recv(), i);
            }
        });
        for i in 0..ROUNDS {
            // The consumer's (i + 1)-th sleep began (or is about to).
            until("the consumer sleeps", || {
                futex_calls().waits - waits_before > i
            });
            send(i);
        }
    });
    (
        membarrier_calls() - before,
        futex_calls().waits - waits_before,
    )
}

#[test]
fn an_mpsc_consumer_sleeps_without_membarrier() {
    let r = Region::builder()
        .with(mpsc::Spec::new(4096).unwrap())
        .with(spsc::Spec::new(4096).unwrap())
        .build()
        .unwrap();
    let mut tx = mpsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = mpsc::Consumer::attach(&r, SectionId(0)).unwrap();
    rx.set_wait_strategy(WaitStrategy::SLEEP);
    let (calls, sleeps) = sleepy_exchange(
        |i| tx.send_value(&i).unwrap(),
        || rx.recv_value::<u64>().unwrap(),
    );
    assert!(sleeps >= ROUNDS, "{sleeps} sleeps");
    assert_eq!(calls, 0, "membarrier calls of a sleeping MPSC consumer");

    // The same exchange over an SPSC ring: a membarrier per sleep.
    let mut tx = spsc::Producer::attach(&r, SectionId(1)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(1)).unwrap();
    rx.set_wait_strategy(WaitStrategy::SLEEP);
    let (calls, sleeps) = sleepy_exchange(
        |i| tx.send_value(&i).unwrap(),
        || rx.recv_value::<u64>().unwrap(),
    );
    println!("SPSC: {calls} membarrier calls for {sleeps} sleeps");
    if light_fence_active() {
        assert!(calls >= ROUNDS, "{calls} membarrier calls");
    }
}
