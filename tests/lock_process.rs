//! The mutex and the event across real processes: an exact shared count,
//! owners killed with SIGKILL while holding the lock (100 times), a
//! stopped owner that keeps its lock, an event ping-pong.
//!
//! Children are this test binary re-executed (tests/common); they inherit
//! the region's memfd, whose number travels in `REGION_FD`.

mod common;

use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polycephaly::lock::{Event, EventMode, LockError, LockStatus, ShmMutex};
use polycephaly::region::{OpenOptions, Region, SectionId, SectionKind};
use polycephaly::sync::WaitStrategy;
use polycephaly::sync::shim::AtomicU32;

/// The value under the lock.
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Shared {
    count: u64,
    marker: u64,
}

const MUTEX: SectionId = SectionId(0);
const FLAGS: SectionId = SectionId(1);
const PING: SectionId = SectionId(2);
const PONG: SectionId = SectionId(3);

/// Handshake words outside the lock, in the raw section: `locked` (the
/// child holds the lock, for round n), `release` (the parent lets it go).
const LOCKED: usize = 0;
const RELEASE: usize = 64;
/// Start gate of the counting test: children count themselves in `READY`
/// and start on `GO`.
const READY: usize = 128;
const GO: usize = 192;

/// Short slices: a dead owner is noticed within a few milliseconds.
const QUICK: WaitStrategy = WaitStrategy {
    spin: Duration::from_micros(20),
    spin_only: false,
    slice: Duration::from_millis(5),
};

fn new_region() -> Region {
    Region::builder()
        .with(ShmMutex::<Shared>::spec())
        .section(SectionKind::Raw, 4096)
        .with(Event::spec())
        .with(Event::spec())
        .build()
        .expect("create region")
}

fn child_region() -> Region {
    Region::inherited(&OpenOptions::default()).expect("open inherited region")
}

fn flag(region: &Region, offset: usize) -> &AtomicU32 {
    let s = region.section(FLAGS).expect("flags section");
    assert!(offset + 4 <= s.len);
    // SAFETY: inside the raw section, 4-aligned (sections are 64-aligned);
    // an atomic laid over shared bytes, valid for any bits.
    unsafe { &*s.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
}

fn spawn(region: &Region, test: &str, role: &str, round: u32) -> Child {
    let env = [("ROUND", round.to_string())];
    common::spawn_self_with(test, role, &env, region)
}

/// Waits (yielding) until `cond`, for at most 60 s, failing early if
/// `child` (when given) exits first.
fn wait_until(what: &str, mut child: Option<&mut Child>, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if let Some(c) = child.as_mut() {
            let exited = c.try_wait().expect("try_wait");
            assert!(
                exited.is_none() || cond(),
                "the child exited ({exited:?}) before {what}"
            );
        }
        std::thread::yield_now();
    }
}

const PROCS: u64 = 4;
const TOTAL: u64 = 1_000_000;

/// N processes increment a shared counter under the mutex, 1,000,000 times
/// in all: the count is exact.
#[test]
fn processes_count_exactly_under_the_mutex() {
    const NAME: &str = "processes_count_exactly_under_the_mutex";
    if let Some(role) = common::role() {
        assert_eq!(role, "counter");
        let region = child_region();
        let index: u32 = std::env::var("ROUND").expect("ROUND").parse().expect("n");
        // Half the children sleep at once when the lock is held (no
        // spinning), so the futex path is exercised hard.
        let strategy = if index % 2 == 1 {
            WaitStrategy::SLEEP
        } else {
            WaitStrategy::BLOCK
        };
        let m = ShmMutex::<Shared>::attach(&region, MUTEX)
            .expect("attach")
            .with_strategy(strategy);
        // Start together, so the processes really contend.
        // Release/Acquire: pair with the parent's loads and store.
        flag(&region, READY).fetch_add(1, Ordering::Release);
        wait_until("the start", None, || {
            flag(&region, GO).load(Ordering::Acquire) == 1
        });
        for _ in 0..TOTAL / PROCS {
            let mut g = m.lock().expect("lock");
            assert_eq!(g.status(), LockStatus::Consistent);
            g.count += 1;
        }
        return;
    }
    let region = new_region();
    let mut children: Vec<Child> = (0..PROCS as u32)
        .map(|i| spawn(&region, NAME, "counter", i))
        .collect();
    wait_until("the counters to start", children.first_mut(), || {
        // Acquire: pairs with the children's Release increments.
        flag(&region, READY).load(Ordering::Acquire) == PROCS as u32
    });
    // Release: pairs with the children's Acquire loads.
    flag(&region, GO).store(1, Ordering::Release);
    for c in children {
        common::expect_success(c);
    }
    let m = ShmMutex::<Shared>::attach(&region, MUTEX).expect("attach");
    let g = m.lock().expect("lock");
    assert_eq!(g.status(), LockStatus::Consistent);
    assert_eq!(g.count, TOTAL);
}

/// A child locks, says so, and is killed with SIGKILL holding the lock; the
/// parent's `lock_timeout` gets the lock with `OwnerDied` and sees what the
/// child wrote. 100 times in a row, alternately marking the value
/// consistent or leaving it poisoned (the next child is told).
#[test]
fn a_killed_owner_is_taken_over_100_times() {
    const NAME: &str = "a_killed_owner_is_taken_over_100_times";
    if let Some(role) = common::role() {
        assert_eq!(role, "holder");
        let region = child_region();
        let round: u32 = std::env::var("ROUND").expect("ROUND").parse().expect("n");
        let m = ShmMutex::<Shared>::attach(&region, MUTEX).expect("attach");
        let mut g = m.lock_timeout(Duration::from_secs(60)).expect("lock");
        // The parent left it poisoned after odd rounds.
        let expect = if round % 2 == 0 {
            LockStatus::Poisoned
        } else {
            LockStatus::Consistent
        };
        if round > 1 {
            assert_eq!(g.status(), expect, "round {round}");
        }
        g.marker = u64::from(round);
        // Release: pairs with the parent's Acquire load: it kills us only
        // once we hold the lock.
        flag(&region, LOCKED).store(round, Ordering::Release);
        loop {
            // Killed here; park until then (a spurious return parks again).
            std::thread::park();
        }
    }
    let region = new_region();
    let m = ShmMutex::<Shared>::attach(&region, MUTEX)
        .expect("attach")
        .with_strategy(QUICK);
    for round in 1..=100u32 {
        let mut child = spawn(&region, NAME, "holder", round);
        let child_pid = child.id();
        wait_until("the child to lock", Some(&mut child), || {
            // Acquire: pairs with the child's Release store.
            flag(&region, LOCKED).load(Ordering::Acquire) == round
        });
        assert_eq!(m.owner().expect("locked").pid, child_pid);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let mut g = m
            .lock_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(g.status(), LockStatus::OwnerDied, "round {round}");
        assert_eq!(g.marker, u64::from(round));
        g.count += 1;
        if round % 2 == 0 {
            g.mark_consistent();
        }
    }
    let g = m.lock().expect("lock");
    assert_eq!(g.status(), LockStatus::Consistent);
    assert_eq!(g.count, 100);
}

fn proc_state(pid: u32) -> Option<u8> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// A stopped owner is alive: the parent's `lock_timeout` times out (it is
/// not robbed); after SIGCONT the child releases and the parent locks
/// normally.
#[test]
fn a_stopped_owner_keeps_its_lock() {
    const NAME: &str = "a_stopped_owner_keeps_its_lock";
    if let Some(role) = common::role() {
        assert_eq!(role, "stopped");
        let region = child_region();
        let m = ShmMutex::<Shared>::attach(&region, MUTEX).expect("attach");
        let mut g = m.lock().expect("lock");
        g.marker = 7;
        // Release: pairs with the parent's Acquire load.
        flag(&region, LOCKED).store(1, Ordering::Release);
        // Acquire: pairs with the parent's Release store.
        wait_until("the parent's release", None, || {
            flag(&region, RELEASE).load(Ordering::Acquire) == 1
        });
        g.marker = 8;
        g.unlock().expect("still ours");
        return;
    }
    let region = new_region();
    let m = ShmMutex::<Shared>::attach(&region, MUTEX)
        .expect("attach")
        .with_strategy(QUICK);
    let mut child = spawn(&region, NAME, "stopped", 0);
    let pid = child.id();
    wait_until("the child to lock", Some(&mut child), || {
        flag(&region, LOCKED).load(Ordering::Acquire) == 1
    });
    signal(pid, rustix::process::Signal::STOP);
    wait_until("the child to stop", None, || proc_state(pid) == Some(b'T'));
    // Release: pairs with the child's Acquire load, once it runs again.
    flag(&region, RELEASE).store(1, Ordering::Release);
    // Many slices, each followed by a liveness check: never a takeover.
    assert_eq!(
        m.lock_timeout(Duration::from_millis(300)).unwrap_err(),
        LockError::TimedOut
    );
    assert_eq!(m.try_lock().unwrap_err().to_string(), "the lock is held");
    assert_eq!(m.owner().expect("held").pid, pid);
    signal(pid, rustix::process::Signal::CONT);
    let g = m.lock_timeout(Duration::from_secs(60)).expect("lock");
    assert_eq!(g.status(), LockStatus::Consistent);
    assert_eq!(g.marker, 8);
    drop(g);
    common::expect_success(child);
}

/// Auto-reset events between two processes: 500 rounds of ping and pong,
/// the child sleeping in `wait` each time.
#[test]
fn events_ping_pong_between_processes() {
    const NAME: &str = "events_ping_pong_between_processes";
    const ROUNDS: u32 = 500;
    if let Some(role) = common::role() {
        assert_eq!(role, "echo");
        let region = child_region();
        let ping = Event::attach(&region, PING, EventMode::AutoReset)
            .expect("attach")
            .with_strategy(WaitStrategy::SLEEP);
        let pong = Event::attach(&region, PONG, EventMode::AutoReset).expect("attach");
        for _ in 0..ROUNDS {
            ping.wait_timeout(Duration::from_secs(60)).expect("ping");
            pong.signal().expect("signal");
        }
        return;
    }
    let region = new_region();
    let ping = Event::attach(&region, PING, EventMode::AutoReset).expect("attach");
    let pong = Event::attach(&region, PONG, EventMode::AutoReset).expect("attach");
    let child = spawn(&region, NAME, "echo", 0);
    for _ in 0..ROUNDS {
        ping.signal().expect("signal");
        pong.wait_timeout(Duration::from_secs(60)).expect("pong");
    }
    common::expect_success(child);
    assert!(!ping.is_signalled().expect("state"));
}

/// A waiter tied to its signaller with `wait_while` learns that the
/// signaller died (SIGKILL while the waiter sleeps, nothing signalled): it
/// gets `PeerDead` at the end of a sleep slice, long before its deadline,
/// instead of waiting until the deadline as `wait` would.
#[test]
fn a_waiter_learns_that_its_signaller_died() {
    const NAME: &str = "a_waiter_learns_that_its_signaller_died";
    if let Some(role) = common::role() {
        assert_eq!(role, "silent");
        let region = child_region();
        // Attached, and about to never signal.
        let _ping = Event::attach(&region, PING, EventMode::AutoReset).expect("attach");
        flag(&region, LOCKED).store(region.peer_id().to_raw(), Ordering::Release);
        loop {
            std::thread::park();
        }
    }
    let region = new_region();
    let ping = Event::attach(&region, PING, EventMode::AutoReset)
        .expect("attach")
        .with_strategy(QUICK);
    let mut child = spawn(&region, NAME, "silent", 0);
    wait_until("the child to attach", Some(&mut child), || {
        flag(&region, LOCKED).load(Ordering::Acquire) != 0
    });
    let peer = polycephaly::region::PeerId::from_raw(flag(&region, LOCKED).load(Ordering::Acquire))
        .expect("a peer id");
    assert!(region.peer_alive(peer));

    // The killer waits until this thread sleeps in the kernel, then kills.
    let me = rustix::thread::gettid().as_raw_nonzero().get();
    let killer = std::thread::spawn(move || {
        let stat = format!("/proc/self/task/{me}/stat");
        wait_until("the waiter to sleep", None, || {
            std::fs::read(&stat).ok().is_some_and(|s| {
                s.iter()
                    .rposition(|&b| b == b')')
                    .and_then(|i| s.get(i + 2))
                    == Some(&b'S')
            })
        });
        child.kill().expect("kill");
        child.wait().expect("reap")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = ping.wait_while(Some(deadline), || region.peer_alive(peer));
    let ended_before_deadline = Instant::now() < deadline;
    let status = killer.join().expect("killer");
    assert_eq!(got, Err(polycephaly::lock::WaitEventError::PeerDead));
    assert!(ended_before_deadline);
    assert!(status.code().is_none(), "the child was killed: {status:?}");
    assert!(!region.peer_alive(peer));
}

/// The value under the lock in the random-kill loop: each process's own
/// count of increments (0: the victims, one after another; 1: a rival
/// that runs all along), and a mark that is a function of both, written
/// after them (so a holder killed between the two writes leaves it
/// stale: a half-updated value).
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Tally {
    by: [u64; 2],
    mark: u64,
}

/// The mark of a value: 0 for the zeroed value the region starts with.
fn mark_of(by: [u64; 2]) -> u64 {
    by[0].wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ by[1].wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// Raw words of the random-kill loop (after the handshake flags): each
/// process's count as of its last unlock; the rival's stop flag; the
/// number of takeovers each saw.
const DONE: [usize; 2] = [256, 264];
const STOP: usize = 272;
const TAKEOVERS: usize = 280;

fn word64(region: &Region, offset: usize) -> &polycephaly::sync::shim::AtomicU64 {
    let s = region.section(FLAGS).expect("flags section");
    assert!(offset + 8 <= s.len && offset % 8 == 0);
    // SAFETY: inside the raw section, 8-aligned (sections are 64-aligned);
    // an atomic laid over shared bytes, valid for any bits.
    unsafe {
        &*s.ptr
            .as_ptr()
            .add(offset)
            .cast::<polycephaly::sync::shim::AtomicU64>()
    }
}

fn tally_region() -> Region {
    Region::builder()
        .with(ShmMutex::<Tally>::spec())
        .section(SectionKind::Raw, 4096)
        .build()
        .expect("create region")
}

/// Locks with a bound (asserted), checks the value, repairs it if its
/// last owner died inside, and returns the guard.
fn lock_and_check<'a>(
    m: &'a ShmMutex<Tally>,
    region: &Region,
    who: usize,
) -> polycephaly::lock::MutexGuard<'a, Tally> {
    let bound = Duration::from_secs(30);
    let mut g = common::fault::bounded("lock_timeout", bound, || m.lock_timeout(bound))
        .unwrap_or_else(|e| panic!("process {who}: {e}"));
    match g.status() {
        LockStatus::Consistent => assert_eq!(g.mark, mark_of(g.by), "a consistent value"),
        LockStatus::OwnerDied | LockStatus::Poisoned => {
            // Only a victim dies: its count is at most one ahead of what
            // it stored after its last unlock; the rival's is exact.
            let done = word64(region, DONE[0]).load(Ordering::Acquire);
            assert!(
                g.by[0] == done || g.by[0] == done + 1,
                "the victims' count {} vs {done} done",
                g.by[0]
            );
            g.mark = mark_of(g.by);
            g.mark_consistent();
            word64(region, TAKEOVERS).fetch_add(1, Ordering::Relaxed);
        }
    }
    g
}

/// A process of the random-kill loop: increments its count under the
/// lock, writes the mark, unlocks, records its count; a victim until
/// killed, the rival until told to stop.
fn tally_loop(who: usize) {
    let region = child_region();
    let m = ShmMutex::<Tally>::attach(&region, MUTEX)
        .expect("attach")
        .with_strategy(QUICK);
    let mut mine = None;
    // Relaxed: a stop request.
    while word64(&region, STOP).load(Ordering::Relaxed) == 0 {
        let mut g = lock_and_check(&m, &region, who);
        // Nobody else changes our count (a victim's predecessor is dead).
        let n = *mine.get_or_insert(g.by[who]);
        assert_eq!(g.by[who], n, "process {who}: its own count changed");
        g.by[who] += 1;
        // Linger between the two writes: kills land here too.
        for _ in 0..64 {
            std::hint::black_box(&mut g.by);
        }
        g.mark = mark_of(g.by);
        let n = g.by[who];
        mine = Some(n);
        g.unlock().expect("ours");
        // Release: read by the conductor (or the rival) once we are dead.
        word64(&region, DONE[who]).store(n, Ordering::Release);
        if who == 0 {
            flag(&region, LOCKED).fetch_add(1, Ordering::Release);
        }
    }
}

/// Mutex holders SIGKILLed at random points (inside the lock or outside,
/// between the two writes, while waiting), `rounds` times, with a rival
/// process contending all along: every next locker gets the lock within
/// its bound; a takeover is reported (`OwnerDied`) and repaired; no
/// increment is lost or counted twice; nothing leaks.
fn holder_kills(test: &str, rounds: u32) {
    match common::role().as_deref() {
        Some("victim") => return tally_loop(0),
        Some("rival") => return tally_loop(1),
        _ => {}
    }
    common::isolated(test, || {
        let base = common::fault::Baseline::take(&common::fault::prefix("lock"));
        let mut rng = common::fault::Rng::new(test);
        let region = tally_region();
        let m = ShmMutex::<Tally>::attach(&region, MUTEX)
            .expect("attach")
            .with_strategy(QUICK);
        let rival = spawn(&region, test, "rival", 0);
        for round in 0..rounds {
            let mut victim = spawn(&region, test, "victim", round);
            // Kill once it made a few increments, at a random instant.
            let seen = flag(&region, LOCKED).load(Ordering::Acquire);
            wait_until("the victim to count", Some(&mut victim), || {
                flag(&region, LOCKED).load(Ordering::Acquire) > seen
            });
            rng.spin(Duration::from_micros(500));
            common::fault::kill_and_reap(&mut victim, "the victim");
            // The conductor checks (and repairs) the value too.
            drop(lock_and_check(&m, &region, 2));
            base.check_during(&format!("round {round}"), 8, &[rival.id()]);
        }
        // Relaxed: a stop request.
        word64(&region, STOP).store(1, Ordering::Relaxed);
        common::expect_success(rival);
        let g = lock_and_check(&m, &region, 2);
        assert_eq!(g.by[1], word64(&region, DONE[1]).load(Ordering::Acquire));
        let takeovers = word64(&region, TAKEOVERS).load(Ordering::Relaxed);
        eprintln!(
            "{rounds} holders killed, {takeovers} of them holding the lock; {} + {} increments",
            g.by[0], g.by[1]
        );
        drop(g);
        drop(m);
        drop(region);
        base.check(test);
    });
}

#[test]
fn holders_killed_at_random_points() {
    holder_kills("holders_killed_at_random_points", 20);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_holders_killed_at_random_points() {
    holder_kills("long_holders_killed_at_random_points", 250);
}
