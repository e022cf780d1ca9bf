//! A waiter killed while announced on a doorbell does not cost the
//! publishers a system call per `ring` for the life of the segment: after a
//! bounded run of wakes that find nobody asleep, a publisher repairs the
//! count. (Alone in its binary: the futex call counters are per process.)
//!
//! The segment is a plain file under /dev/shm mapped with memmap2, so this
//! test depends on nothing above the sync layer.

mod common;

use std::fs::OpenOptions;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polycephaly::sync::shim::AtomicU32;
use polycephaly::sync::{Doorbell, WaitStrategy, futex_calls};

/// The test's shared page: the sleeper's thread id, the doorbell, and the
/// value a live waiter waits for, 64 bytes apart.
#[repr(C)]
struct Page {
    tid: AtomicU32,
    _p0: [u8; 60],
    bell: Doorbell,
    _p1: [u8; 56],
    value: AtomicU32,
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

/// The scheduler state of thread `tid` of process `pid` (`/proc` stat
/// field 3: `R` running, `S` asleep, ...).
fn thread_state(pid: u32, tid: u32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// Polls `cond` until it holds; panics with `what` after 30 s (a hang
/// detector, not a speed assertion).
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < give_up, "{what}: not after 30 s");
        std::thread::yield_now();
    }
}

#[test]
fn a_waiter_killed_while_asleep_stops_costing_wake_calls() {
    const NAME: &str = "a_waiter_killed_while_asleep_stops_costing_wake_calls";
    if let Some(role) = common::role() {
        assert_eq!(role, "sleeper");
        let path = std::env::var("SEG").expect("SEG");
        let m = map(&path, false);
        let p = page(&m);
        // Release: the parent reads the tid and then watches this thread.
        p.tid.store(
            rustix::thread::gettid()
                .as_raw_nonzero()
                .get()
                .unsigned_abs(),
            Ordering::Release,
        );
        // Announce and sleep for as long as the parent lets us live.
        let long = WaitStrategy {
            slice: Duration::from_secs(60),
            ..WaitStrategy::SLEEP
        };
        let _ = p.bell.wait(|| None::<()>, &long, None, || true);
        unreachable!("the sleeper is killed before its slice ends");
    }
    let path = format!("/dev/shm/polycephaly-test-sleepers-{}", std::process::id());
    let m = map(&path, true);
    let p = page(&m);
    let mut child = common::spawn_self(NAME, "sleeper", &[("SEG", path.clone())]);
    let pid = child.id();
    let mut tid = 0;
    // Acquire: pairs with the child's Release store of its tid.
    until("the sleeper's tid", || {
        tid = p.tid.load(Ordering::Acquire);
        tid != 0
    });
    until("the sleeper announced and asleep", || {
        p.bell.announced().count == 1 && thread_state(pid, tid) == Some(b'S')
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        p.bell.announced().count,
        1,
        "the dead waiter is still counted"
    );

    // The dead waiter's count makes rings wake nobody; after a bounded run
    // of them the count is repaired and rings make no system call again.
    let before = futex_calls();
    let made = (0..1000).filter(|_| p.bell.ring()).count();
    let wakes = futex_calls().wakes - before.wakes;
    assert!(made <= 100, "{made} of 1000 rings made a wake call");
    assert!(wakes <= 101, "{wakes} wake calls for 1000 rings");
    assert_eq!(p.bell.announced().count, 0, "the count was repaired");
    let before = futex_calls();
    for _ in 0..1000 {
        assert!(!p.bell.ring(), "a ring with nobody announced made a call");
    }
    assert_eq!(futex_calls(), before);

    // A live waiter after the repair is woken as before.
    let waiter = std::thread::spawn({
        let path = path.clone();
        move || {
            let m = map(&path, false);
            let p = page(&m);
            p.bell.wait(
                || (p.value.load(Ordering::Acquire) == 1).then_some(()),
                &WaitStrategy::SLEEP,
                Some(Instant::now() + Duration::from_secs(30)),
                || true,
            )
        }
    });
    until("the live waiter announced", || {
        p.bell.announced().count == 1
    });
    // Release: pairs with the waiter's Acquire load in `ready`.
    p.value.store(1, Ordering::Release);
    p.bell.ring();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    std::fs::remove_file(&path).expect("remove segment");
}
