//! A doorbell wait ends at its deadline, and notices a dead peer, even while
//! a peer keeps ringing: the deadline is looked at after every round of the
//! wait, whatever the futex returned, and liveness once per slice of time.
//!
//! Also here: which waits a thread counts as begun (`waits_begun`).
//!
//! Each wait runs on its own thread and the test waits for its result with
//! a 30 s bound: that bound only turns a hang into a failure, it asserts no
//! speed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use polycephaly::sync::shim::AtomicBool;
use polycephaly::sync::{Doorbell, WaitError, WaitStrategy};

const HANG: Duration = Duration::from_secs(30);

/// Runs `f` on a thread; its result, or a panic naming `what` if it has not
/// returned within [`HANG`].
fn within_hang_bound<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still waiting after {HANG:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the waiting thread panicked"),
    }
}

const SHORT_SLICES: WaitStrategy = WaitStrategy {
    spin: Duration::ZERO,
    spin_only: false,
    slice: Duration::from_millis(5),
};

/// The peer rings exactly inside the waiter's window, between its
/// announcement and its sleep, on every round: `ready` (called by the
/// waiter right there) rings the bell itself. This is the interleaving a
/// peer calling `ring()` in a loop produces, made deterministic, so every
/// futex wait returns at once (the word changed) and never times out.
#[test]
fn a_peer_ringing_inside_every_round_cannot_hold_the_deadline_off() {
    let bell = Arc::new(Doorbell::new());
    let deadline = Instant::now() + Duration::from_millis(100);
    let got = within_hang_bound("deadline under a ringing peer", {
        let bell = bell.clone();
        move || {
            bell.wait(
                || {
                    bell.ring();
                    None::<()>
                },
                &SHORT_SLICES,
                Some(deadline),
                || true,
            )
        }
    });
    assert_eq!(got, Err(WaitError::TimedOut));
    assert!(Instant::now() >= deadline);
}

/// The same ringing peer, with a dead peer and no deadline: the wait ends
/// with `PeerDead` (liveness is asked once a slice has passed, not only
/// after a sleep that timed out).
#[test]
fn a_peer_ringing_inside_every_round_cannot_hide_a_dead_peer() {
    let bell = Arc::new(Doorbell::new());
    let got = within_hang_bound("liveness under a ringing peer", {
        let bell = bell.clone();
        move || {
            bell.wait(
                || {
                    bell.ring();
                    None::<()>
                },
                &SHORT_SLICES,
                None,
                || false,
            )
        }
    });
    assert_eq!(got, Err(WaitError::PeerDead));
}

/// Another thread calls `ring()` in a loop for as long as the waiter waits:
/// the waiter still returns `TimedOut` after its deadline.
#[test]
fn a_thread_ringing_in_a_loop_cannot_hold_the_deadline_off() {
    let bell = Arc::new(Doorbell::new());
    let stop = Arc::new(AtomicBool::new(false));
    let ringer = {
        let (bell, stop) = (bell.clone(), stop.clone());
        thread::spawn(move || {
            // Relaxed: a stop request, nothing is published through it.
            while !stop.load(Ordering::Relaxed) {
                bell.ring();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_millis(100);
    let got = within_hang_bound("deadline under a ringing thread", {
        let bell = bell.clone();
        move || bell.wait(|| None::<()>, &SHORT_SLICES, Some(deadline), || true)
    });
    stop.store(true, Ordering::Relaxed);
    ringer.join().unwrap();
    assert_eq!(got, Err(WaitError::TimedOut));
    assert!(Instant::now() >= deadline);
}

/// A strategy whose slices or spin last for ever (`Duration::MAX`) is a
/// valid input: every kind of wait still ends at its deadline, without an
/// overflow of the clock's arithmetic.
#[test]
fn endless_slices_and_spins_still_end_at_the_deadline() {
    let endless = [
        WaitStrategy {
            slice: Duration::MAX,
            ..WaitStrategy::SPIN
        },
        WaitStrategy {
            slice: Duration::MAX,
            ..WaitStrategy::BLOCK
        },
        WaitStrategy {
            spin: Duration::MAX,
            slice: Duration::MAX,
            ..WaitStrategy::BLOCK
        },
    ];
    for strategy in endless {
        let bell = Doorbell::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        let got = within_hang_bound("an endless strategy", move || {
            bell.wait(|| None::<()>, &strategy, Some(deadline), || true)
        });
        assert_eq!(got, Err(WaitError::TimedOut), "{strategy:?}");
        assert!(Instant::now() >= deadline);
    }
}

/// Waits are counted where they begin (`waits_begun`: how the SPSC
/// producer tells a stream from a request, see `spsc::Producer::publish`):
/// a doorbell wait that begins, and a read of a ring (either kind) that
/// finds it empty, also a polling one; not a wait whose condition holds at
/// once, nor a read that finds a frame.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[test]
fn waits_are_counted_where_they_begin() {
    use polycephaly::ring::{Receiver, Sender, TryRecvError, mpsc, spsc};
    use polycephaly::sync::shim::waits_begun;

    let bell = Doorbell::new();
    let before = waits_begun();
    assert_eq!(
        bell.wait(|| Some(()), &WaitStrategy::SPIN, None, || true),
        Ok(())
    );
    assert_eq!(waits_begun(), before);
    let mut polls = 0;
    let ready = || {
        polls += 1;
        (polls > 1).then_some(())
    };
    assert_eq!(bell.wait(ready, &WaitStrategy::SPIN, None, || true), Ok(()));
    assert_eq!(waits_begun(), before.wrapping_add(1));

    fn reads(what: &str, tx: &mut impl Sender, rx: &mut impl Receiver) {
        let mut buf = Vec::new();
        let before = waits_begun();
        tx.try_send(b"x").unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(0), "{what}");
        assert_eq!(waits_begun(), before, "{what}: a frame was there");
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty), "{what}");
        assert_eq!(waits_begun(), before.wrapping_add(1), "{what}: found empty");
    }
    let ring = spsc::HeapRing::new(256).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    reads("spsc", &mut tx, &mut rx);
    let before = waits_begun();
    assert_eq!(rx.try_read_batch(8, |_, _| {}), Ok(0));
    assert_eq!(
        waits_begun(),
        before.wrapping_add(1),
        "spsc batch found empty"
    );
    let ring = mpsc::HeapRing::new(4096).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    reads("mpsc", &mut tx, &mut rx);
}
