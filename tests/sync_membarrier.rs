//! The waiter's heavy fence: a peer ringing in a loop cannot make a waiter
//! issue membarriers at its pace. (Alone in its binary: the membarrier call
//! counter is per process.)

use std::time::{Duration, Instant};

use polycephaly::sync::{Doorbell, WaitStrategy, membarrier_calls};

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
