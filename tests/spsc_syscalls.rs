//! While the peer keeps up, the ring makes no system call: counted with
//! the process-local futex call counters. And when a side does sleep, the
//! other side's publish wakes it (one FUTEX_WAKE).
//!
//! The counters are per process, so the tests in this binary take a lock
//! to run one at a time.

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use polycephaly::ring::{Receiver, Sender, spsc};
use polycephaly::sync::{WaitStrategy, futex_calls};

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn no_syscall_while_the_peer_is_awake() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut tx, mut rx) = spsc_pair(1 << 12);
    let (mut back_tx, mut back_rx) = spsc_pair(1 << 12);
    // Spinning waits: both sides stay awake, as a busy peer does.
    for s in [&mut tx, &mut back_tx] {
        s.set_wait_strategy(WaitStrategy::SPIN);
    }
    rx.set_wait_strategy(WaitStrategy::SPIN);
    back_rx.set_wait_strategy(WaitStrategy::SPIN);
    let before = futex_calls();
    let n = if cfg!(debug_assertions) {
        20_000u64
    } else {
        200_000
    };
    let echo = thread::spawn(move || {
        for _ in 0..n {
            let v = rx.recv_value::<u64>().unwrap();
            back_tx.send_value(&(v + 1)).unwrap();
        }
    });
    // A stream that fills the ring now and then (blocking claims), plus
    // round trips.
    for i in 0..n {
        tx.send_value(&i).unwrap();
        assert_eq!(back_rx.recv_value::<u64>(), Ok(i + 1));
    }
    echo.join().unwrap();
    let after = futex_calls();
    assert_eq!(
        after, before,
        "futex calls made while both sides were awake"
    );
}

#[test]
fn a_sleeping_consumer_is_woken() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut tx, mut rx) = spsc_pair(256);
    // Sleep at once, in one long slice: the consumer stays announced until
    // it is woken, so the publish below must make the wake call.
    rx.set_wait_strategy(WaitStrategy {
        slice: Duration::from_secs(3600),
        ..WaitStrategy::SLEEP
    });
    let (mut ready_tx, mut ready_rx) = spsc_pair(64);
    let before = futex_calls();
    let consumer = thread::spawn(move || {
        ready_tx.try_send(&[]).unwrap();
        rx.recv_value::<u32>()
    });
    ready_rx.set_wait_strategy(WaitStrategy::SPIN);
    ready_rx.read().unwrap().release();
    // Wait until the consumer announced itself as a sleeper: then the
    // publish below must wake it with a system call. (Polling a counter is
    // not timing: it ends as soon as the consumer is announced.)
    while futex_calls().waits == before.waits {
        thread::yield_now();
    }
    tx.try_send_value(&42u32).unwrap();
    assert_eq!(consumer.join().unwrap(), Ok(42));
    let after = futex_calls();
    assert!(after.waits > before.waits);
    assert!(after.wakes > before.wakes);
}

#[test]
fn a_consumer_that_caught_up_with_a_stream_still_sleeps_and_is_woken() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut tx, mut rx) = spsc_pair(1 << 12);
    // A strategy that spins (for a nanosecond), so that the gentle looks
    // run; then one long sleep.
    rx.set_wait_strategy(WaitStrategy {
        spin: Duration::from_nanos(1),
        spin_only: false,
        slice: Duration::from_secs(3600),
    });
    // A stream first: 64 frames, more than a request and its reply, so
    // that the consumer's next wait begins by looking gently.
    const STREAM: u64 = 64;
    for i in 0..STREAM {
        tx.try_send_value(&i).unwrap();
    }
    let (mut ready_tx, mut ready_rx) = spsc_pair(64);
    let before = futex_calls();
    let consumer = thread::spawn(move || {
        let stream: Vec<u64> = (0..STREAM).map(|_| rx.recv_value().unwrap()).collect();
        ready_tx.try_send(&[]).unwrap();
        (stream, rx.recv_value::<u64>())
    });
    ready_rx.set_wait_strategy(WaitStrategy::SPIN);
    ready_rx.read().unwrap().release();
    // The gentle looks find nothing; the consumer then sleeps as any
    // waiting consumer does, and the publish below must wake it.
    while futex_calls().waits == before.waits && !consumer.is_finished() {
        thread::yield_now();
    }
    assert!(
        !consumer.is_finished(),
        "the consumer ended without waiting"
    );
    tx.try_send_value(&STREAM).unwrap();
    let (stream, last) = consumer.join().unwrap();
    assert_eq!(stream, (0..STREAM).collect::<Vec<_>>());
    assert_eq!(last, Ok(STREAM));
    let after = futex_calls();
    assert!(after.wakes > before.wakes);
}

/// A fresh SPSC ring on the heap and both of its handles.
fn spsc_pair(capacity: usize) -> (spsc::Producer, spsc::Consumer) {
    let ring = spsc::HeapRing::new(capacity).unwrap();
    (ring.producer().unwrap(), ring.consumer().unwrap())
}
