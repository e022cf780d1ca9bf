//! The waiter's heavy fence: a waiter denied membarrier (as under a seccomp
//! filter) flags the doorbell and is still woken by a publisher whose
//! process uses the light fence; and a peer ringing in a loop cannot make a
//! waiter issue membarriers at its pace. (Alone in its binary: the
//! membarrier call counter is per process.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polycephaly::sync::barrier::testing;
use polycephaly::sync::shim::AtomicU32;
use polycephaly::sync::{Doorbell, WaitStrategy, light_fence_active, membarrier_calls};

/// Polls `cond` until it holds; panics with `what` after 30 s (a hang
/// detector, not a speed assertion).
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < give_up, "{what}: not after 30 s");
        std::thread::yield_now();
    }
}

/// A waiter thread denied membarrier, a publisher on this thread (whose
/// process registers for membarrier on its first ring where the kernel
/// offers it): every round is delivered, the doorbell carries the flag,
/// and rings with nobody announced still make no system call.
#[test]
fn a_waiter_without_membarrier_is_woken_by_a_light_fence_publisher() {
    const ROUNDS: u32 = 200;
    let shared = Arc::new((Doorbell::new(), AtomicU32::new(0), AtomicU32::new(0)));
    // Register this process for the light fence first (where possible).
    assert!(!shared.0.ring());
    eprintln!("light fence active: {}", light_fence_active());
    let waiter = std::thread::spawn({
        let shared = shared.clone();
        move || {
            testing::deny_membarrier_on_this_thread(true);
            for round in 1..=ROUNDS {
                let got = shared.0.wait(
                    // Acquire: pairs with the publisher's Release store.
                    || (shared.1.load(Ordering::Acquire) >= round).then_some(()),
                    &WaitStrategy::SLEEP,
                    Some(Instant::now() + Duration::from_secs(30)),
                    || true,
                );
                assert_eq!(got, Ok(()), "round {round}");
                // Release: the publisher goes on only after this round.
                shared.2.store(round, Ordering::Release);
            }
        }
    });
    for round in 1..=ROUNDS {
        // Publish only once the waiter sleeps (announced), so the wake is
        // what delivers the value.
        until("the waiter announced", || shared.0.announced().count == 1);
        assert!(
            shared.0.announced().fallback,
            "the waiter flagged the doorbell"
        );
        // Release: pairs with the waiter's Acquire load.
        shared.1.store(round, Ordering::Release);
        shared.0.ring();
        // Acquire: pairs with the waiter's acknowledgement.
        until("the round acknowledged", || {
            shared.2.load(Ordering::Acquire) == round
        });
    }
    waiter.join().unwrap();
    until("the waiter retracted", || shared.0.announced().count == 0);
    assert!(shared.0.announced().fallback, "the flag is sticky");
    assert!(!shared.0.ring(), "the flag alone costs a fence, not a call");
}

/// A peer that rings inside every round of a wait (`ready` rings the bell
/// itself): the waiter pays a membarrier only when it announces again (after
/// a repair, 64 rings that woke nobody), and never twice within 250 us; it
/// polls `ready` in between. Before, it paid one per round.
#[test]
fn a_ringing_peer_cannot_drive_the_membarrier_rate() {
    let bell = Doorbell::new();
    let polls = std::cell::Cell::new(0u64);
    let start = Instant::now();
    let before = membarrier_calls();
    let got = bell.wait(
        || {
            polls.set(polls.get() + 1);
            bell.ring();
            None::<()>
        },
        &WaitStrategy::SLEEP,
        Some(start + Duration::from_millis(200)),
        || true,
    );
    let calls = membarrier_calls() - before;
    let elapsed = start.elapsed();
    eprintln!("{} polls, {calls} membarriers in {elapsed:?}", polls.get());
    assert!(got.is_err());
    // At most one membarrier per 250 us of waiting, plus the first.
    let paced = 1 + elapsed.as_micros() / 250;
    assert!(
        u128::from(calls) <= paced,
        "{calls} membarriers, pacing allows {paced}"
    );
}
