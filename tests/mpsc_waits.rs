//! A consumer asleep behind a claim always wakes to look at it again: a
//! producer that dies while the consumer sleeps sends no wake-up, so the
//! consumer's own timer is what skips the dead claim.

use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use polycephaly::ring::{Receiver, Sender, mpsc};

/// The scheduler state of thread `tid` of this process (`/proc` stat
/// field 3: `R` running, `S` asleep, ...).
fn thread_state(tid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// A claimer dies (is declared dead) after the consumer, with a zero claim
/// timeout, found it alive and went to sleep: the consumer still wakes,
/// abandons the dead claim and delivers the frame behind it.
#[test]
fn a_claim_whose_owner_dies_while_the_consumer_sleeps_is_skipped() {
    let ring = mpsc::HeapRing::new(1024).unwrap();
    let mut dying = ring.producer().unwrap();
    let mut other = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_claim_timeout(Duration::ZERO);
    let dying_id = dying.id();
    let claim = dying.try_claim(16).unwrap();
    other.try_send(b"behind the claim").unwrap();

    let (tid_tx, tid_rx) = channel();
    let reader = std::thread::spawn(move || {
        tid_tx
            .send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        let mut buf = Vec::new();
        // The deadline is only a backstop: the reader must not need it
        // (a reader that never looks again wakes only at its deadline and
        // resolves the claim then).
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = rx.recv_deadline(&mut buf, Some(deadline));
        (got, buf, Instant::now() < deadline)
    });
    let tid = tid_rx.recv().unwrap();
    // Wait (without sleeping) until the reader is asleep in the kernel: it
    // has seen the claim, found its owner alive, and is waiting.
    let start = Instant::now();
    while thread_state(tid) != Some(b'S') {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the reader never slept"
        );
        std::thread::yield_now();
    }
    // The claimer "dies": no commit, no wake-up, its claim stays pending
    // (the handle is kept, untouched, until the reader is done).
    ring.mark_dead(dying_id);

    let (got, buf, before_deadline) = reader.join().unwrap();
    // The consumer abandoned the claim: dropping it now changes nothing.
    drop(claim);
    assert_eq!(got, Ok(0), "the tag of the frame behind the claim");
    assert!(before_deadline, "the reader slept until its deadline");
    assert_eq!(buf, b"behind the claim");
}
