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
//! makes that pair sound, and the model without the flag deadlocks.
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
