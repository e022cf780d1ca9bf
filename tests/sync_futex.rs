//! The shared futex and the doorbell across real processes.
//!
//! The segment here is a plain file under /dev/shm mapped with memmap2, so
//! this test depends on nothing above the sync layer.

mod common;

use std::fs::OpenOptions;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use polycephaly::sync::{Doorbell, Futex, WaitError, WaitOutcome, WaitStrategy};

/// The futex call counters are per process and the tests of this binary
/// run on threads of one process: a test that makes wake calls and one that
/// counts them take this lock, so that neither sees the other's calls (the
/// count once read 102 for 100 rounds).
static SERIAL: Mutex<()> = Mutex::new(());

/// Layout of the test's shared page: three words, 64 bytes apart.
#[repr(C)]
struct Page {
    futex: Futex,
    _p0: [u8; 60],
    ready: Futex,
    _p1: [u8; 60],
    bell: Doorbell,
    _p2: [u8; 56],
    value: Futex,
}

fn map(path: &str, create: bool) -> memmap2::MmapMut {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .expect("open test segment");
    if create {
        file.set_len(4096).expect("size test segment");
    }
    // SAFETY: the file is ours for the test's lifetime; nobody truncates it.
    unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map test segment")
}

fn page(map: &memmap2::MmapMut) -> &Page {
    assert!(size_of::<Page>() <= map.len());
    // SAFETY: the mapping is page-aligned and at least size_of::<Page>()
    // long; Page holds only atomics and bytes, valid for any bit pattern.
    unsafe { &*(map.as_ptr().cast::<Page>()) }
}

fn seg_path(test: &str) -> String {
    format!("/dev/shm/polycephaly-test-{test}-{}", std::process::id())
}

/// A child sleeps in FUTEX_WAIT on a word of a shared mapping; the parent's
/// FUTEX_WAKE on its own mapping of that word wakes it. A private-flag wake
/// (what the `atomic-wait` crate issues) finds no sleeper.
#[test]
fn futex_wake_crosses_processes() {
    if let Some(role) = common::role() {
        assert_eq!(role, "sleeper");
        let path = std::env::var("SEG").expect("SEG");
        let m = map(&path, false);
        let p = page(&m);
        p.ready
            .word()
            .store(1, std::sync::atomic::Ordering::Release);
        // The timeout only bounds a failing test; success is a wake.
        let outcome = p.futex.wait(0, Some(Duration::from_secs(30)));
        assert_eq!(outcome, WaitOutcome::Woken, "the sleeper was not woken");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = seg_path("futex");
    let m = map(&path, true);
    let p = page(&m);
    let child = common::spawn_self(
        "futex_wake_crosses_processes",
        "sleeper",
        &[("SEG", path.clone())],
    );
    // Wait until the child announced itself, then wake until a wake reports
    // that it found a sleeper: the child may not be in the kernel yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.ready.word().load(std::sync::atomic::Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "child never started");
        std::hint::spin_loop();
    }
    let mut private_found = 0;
    let woken = loop {
        // A private wake is keyed by our address space: it must never find
        // the other process's sleeper.
        private_found +=
            rustix::thread::futex::wake(p.futex.word(), rustix::thread::futex::Flags::PRIVATE, 1)
                .expect("private wake");
        let n = p.futex.wake_one();
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "no sleeper found to wake");
        std::thread::yield_now();
    };
    assert_eq!(woken, 1);
    assert_eq!(private_found, 0, "a private wake reached another process");
    common::expect_success(child);
    std::fs::remove_file(&path).expect("remove segment");
}

/// The doorbell protocol across processes: a child blocks (sleeping at
/// once) until the parent publishes a value and rings.
#[test]
fn doorbell_wakes_a_sleeping_process() {
    use std::sync::atomic::Ordering;
    if let Some(role) = common::role() {
        assert_eq!(role, "waiter");
        let path = std::env::var("SEG").expect("SEG");
        let m = map(&path, false);
        let p = page(&m);
        for round in 1..=100u32 {
            let got = p.bell.wait(
                || {
                    let v = p.value.word().load(Ordering::Acquire);
                    (v >= round).then_some(v)
                },
                &WaitStrategy::SLEEP,
                Some(Instant::now() + Duration::from_secs(30)),
                || true,
            );
            assert_eq!(got, Ok(round));
            // Acknowledge, so the parent publishes the next round only
            // after this one arrived.
            p.ready.word().store(round, Ordering::Release);
        }
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = seg_path("doorbell");
    let m = map(&path, true);
    let p = page(&m);
    let child = common::spawn_self(
        "doorbell_wakes_a_sleeping_process",
        "waiter",
        &[("SEG", path.clone())],
    );
    let before = polycephaly::sync::futex_calls();
    for round in 1..=100u32 {
        p.value.word().store(round, Ordering::Release);
        p.bell.ring();
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.ready.word().load(Ordering::Acquire) != round {
            assert!(
                Instant::now() < deadline,
                "round {round} never acknowledged"
            );
            std::thread::yield_now();
        }
    }
    common::expect_success(child);
    // The child slept at least sometimes, so at least one ring made a wake
    // call; never more than one per round.
    let wakes = polycephaly::sync::futex_calls().wakes - before.wakes;
    assert!((1..=100).contains(&wakes), "wakes = {wakes}");
    std::fs::remove_file(&path).expect("remove segment");
}

/// With nobody announced, `ring` makes no system call (it reports whether
/// it made one).
#[test]
fn ring_without_sleepers_makes_no_system_call() {
    let bell = Doorbell::new();
    for _ in 0..1000 {
        assert!(!bell.ring());
    }
}

#[test]
fn a_deadline_gives_timed_out_and_a_dead_peer_gives_peer_dead() {
    let bell = Doorbell::new();
    let never = || None::<()>;
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert_eq!(
        bell.wait(never, &WaitStrategy::BLOCK, soon, || true),
        Err(WaitError::TimedOut)
    );
    let strategy = WaitStrategy {
        slice: Duration::from_millis(5),
        ..WaitStrategy::SLEEP
    };
    assert_eq!(
        bell.wait(never, &strategy, None, || false),
        Err(WaitError::PeerDead)
    );
    let spin = WaitStrategy {
        slice: Duration::from_millis(5),
        ..WaitStrategy::SPIN
    };
    assert_eq!(
        bell.wait(never, &spin, None, || false),
        Err(WaitError::PeerDead)
    );
    assert_eq!(
        bell.wait(never, &spin, soon, || true),
        Err(WaitError::TimedOut)
    );
}

/// A peer that published and then died: the waiter still gets the value,
/// because the state is looked at once more after the liveness check.
#[test]
fn what_a_dead_peer_published_is_delivered() {
    use std::cell::Cell;
    let bell = Doorbell::new();
    let dead = Cell::new(false);
    for strategy in [WaitStrategy::SLEEP, WaitStrategy::SPIN] {
        dead.set(false);
        let got = bell.wait(
            || dead.get().then_some(7),
            &WaitStrategy {
                slice: Duration::from_millis(1),
                ..strategy
            },
            None,
            || {
                dead.set(true);
                false
            },
        );
        assert_eq!(got, Ok(7));
    }
}
