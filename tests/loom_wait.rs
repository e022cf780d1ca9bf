//! Loom models of the doorbell wait protocol (src/sync/wait.rs): a waiter
//! that announces itself and sleeps is never left asleep once the state it
//! waits for is published. A lost wakeup shows as a loom deadlock.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! LOOM_MAX_PREEMPTIONS=3 cargo test --release --test 'loom_*'`.
//! With `--cfg polycephaly_broken_wait` added, the waiter skips its re-check
//! after announcing, and these models must fail (CI checks that they do).
//!
//! Also modelled: a publisher's repair of the sleeper count (after K = 2
//! wakes that found nobody, under loom) racing a live waiter's
//! announcement, and a waiter without membarrier against a publisher in a
//! "registered" process, which uses no CPU fence at all: the fallback flag
//! makes that pair sound, and the model without the flag deadlocks; and the
//! fenced pair (`wait_fenced` with `ring_fenced`, no membarrier), sound,
//! and unsound when the publisher rings with the light fence.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use polycephaly::sync::barrier::testing;
use polycephaly::sync::{Doorbell, WaitStrategy};

fn wait_for(bell: &Doorbell, flag: &AtomicU32, at_least: u32) -> u32 {
    bell.wait(
        || {
            let v = flag.load(Ordering::Acquire);
            (v >= at_least).then_some(v)
        },
        &WaitStrategy::SLEEP,
        None,
        || true,
    )
    .expect("a live peer, no deadline")
}

/// One publisher, one waiter: the waiter always gets the value.
#[test]
fn one_publication_is_never_lost() {
    loom::model(|| {
        let shared = Arc::new((Doorbell::new(), AtomicU32::new(0)));
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                shared.1.store(1, Ordering::Release);
                shared.0.ring();
            })
        };
        assert_eq!(wait_for(&shared.0, &shared.1, 1), 1);
        publisher.join().unwrap();
    });
}

/// Two rounds: the waiter sleeps again after the first value; a second
/// publication that races with its re-announcement still wakes it.
#[test]
fn two_rounds_never_lose_the_second_wake() {
    loom::model(|| {
        let shared = Arc::new((Doorbell::new(), AtomicU32::new(0)));
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                for v in 1..=2 {
                    shared.1.store(v, Ordering::Release);
                    shared.0.ring();
                }
            })
        };
        assert!(wait_for(&shared.0, &shared.1, 1) >= 1);
        assert_eq!(wait_for(&shared.0, &shared.1, 2), 2);
        publisher.join().unwrap();
    });
}

/// Two waiters on one doorbell, one publication: both wake.
#[test]
fn every_sleeper_is_woken() {
    loom::model(|| {
        let shared = Arc::new((Doorbell::new(), AtomicU32::new(0)));
        let other = {
            let shared = shared.clone();
            thread::spawn(move || wait_for(&shared.0, &shared.1, 1))
        };
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                shared.1.store(1, Ordering::Release);
                shared.0.ring();
            })
        };
        assert_eq!(wait_for(&shared.0, &shared.1, 1), 1);
        assert_eq!(other.join().unwrap(), 1);
        publisher.join().unwrap();
    });
}

/// Waits (yielding to the model) until somebody is announced on `bell`.
fn until_announced(bell: &Doorbell) {
    while bell.announced().count == 0 {
        thread::yield_now();
    }
}

/// The publisher rings twice while the waiter is announced, with nothing
/// published: when both wakes find nobody asleep (the waiter is between its
/// announcement and its sleep), the second repairs the count, clearing the
/// live waiter's announcement. The waiter must notice (the repair's bump
/// of `seq` ends its sleep, the epoch tells it why) and announce again, or
/// the real publication after the repair finds a zero count and the model
/// deadlocks.
#[test]
fn a_repair_never_loses_a_live_waiter() {
    loom::model(|| {
        let shared = Arc::new((Doorbell::new(), AtomicU32::new(0)));
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                until_announced(&shared.0);
                shared.0.ring();
                shared.0.ring();
                shared.1.store(1, Ordering::Release);
                shared.0.ring();
            })
        };
        assert_eq!(wait_for(&shared.0, &shared.1, 1), 1);
        publisher.join().unwrap();
    });
}

/// A waiter denied membarrier and a publisher that uses no CPU fence (its
/// process registered for membarrier, so its light fence is a compiler
/// fence). Round 1 sets the fallback flag; the publisher learns of it
/// through the waiter's acknowledgement. In round 2 the publisher's store
/// and its load of the sleeper word are ordered only if it honours the
/// flag (`fence(SeqCst)` against the waiter's).
fn fallback_rounds(honour_flag: bool) {
    loom::model(move || {
        let shared = Arc::new((Doorbell::new(), AtomicU32::new(0), AtomicU32::new(0)));
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                testing::model_registered_publisher_on_this_thread(true);
                testing::ignore_fallback_flag_on_this_thread(!honour_flag);
                // Round 1: ring once the waiter is visibly announced.
                until_announced(&shared.0);
                shared.1.store(1, Ordering::Release);
                shared.0.ring();
                // Acquire: pairs with the waiter's Release acknowledgement.
                while shared.2.load(Ordering::Acquire) == 0 {
                    thread::yield_now();
                }
                shared.1.store(2, Ordering::Release);
                shared.0.ring();
            })
        };
        testing::deny_membarrier_on_this_thread(true);
        assert!(wait_for(&shared.0, &shared.1, 1) >= 1);
        assert!(
            shared.0.announced().fallback,
            "the waiter flagged the doorbell"
        );
        shared.2.store(1, Ordering::Release);
        assert_eq!(wait_for(&shared.0, &shared.1, 2), 2);
        publisher.join().unwrap();
    });
}

/// With the flag, a fenceless publisher and a waiter without membarrier
/// never lose a wake.
#[test]
fn a_waiter_without_membarrier_flags_the_fenceless_publisher() {
    fallback_rounds(true);
}

/// The teeth of the model above: the same rounds with a publisher that
/// ignores the flag lose the second wake, and loom reports the deadlock.
#[test]
#[should_panic(expected = "deadlock")]
fn without_the_flag_a_fenceless_publisher_loses_the_wake() {
    fallback_rounds(false);
}

/// `wait_fenced` against `ring_fenced` (the MPSC data bell): the waiter
/// issues no membarrier, the publisher a full fence; two rounds, the
/// second racing the waiter's re-announcement. The publisher's process is
/// modelled as registered, so nothing but `ring_fenced`'s own fence orders
/// its load of the sleeper word.
fn fenced_rounds(publisher_fences: bool) {
    loom::model(move || {
        let shared = Arc::new((Doorbell::new(), AtomicU32::new(0)));
        let publisher = {
            let shared = shared.clone();
            thread::spawn(move || {
                testing::model_registered_publisher_on_this_thread(true);
                for v in 1..=2 {
                    shared.1.store(v, Ordering::Release);
                    if publisher_fences {
                        shared.0.ring_fenced();
                    } else {
                        shared.0.ring();
                    }
                }
            })
        };
        let wait = |at_least| {
            shared
                .0
                .wait_fenced(
                    || {
                        let v = shared.1.load(Ordering::Acquire);
                        (v >= at_least).then_some(v)
                    },
                    &WaitStrategy::SLEEP,
                    None,
                    || true,
                )
                .expect("a live peer, no deadline")
        };
        assert!(wait(1) >= 1);
        assert_eq!(wait(2), 2);
        publisher.join().unwrap();
    });
}

/// A fenced waiter and a fenced publisher never lose a wake.
#[test]
fn a_fenced_waiter_and_a_fenced_publisher_never_lose_a_wake() {
    fenced_rounds(true);
}

/// The teeth: a fenced waiter (no membarrier) against a publisher that
/// rings with the light fence of a registered process loses a wake, and
/// loom reports the deadlock. Every publisher of a doorbell waited on with
/// `wait_fenced` must ring it with `ring_fenced`.
#[test]
#[should_panic(expected = "deadlock")]
fn a_fenced_waiter_with_a_light_publisher_loses_the_wake() {
    fenced_rounds(false);
}
