//! Peer liveness from pidfds: a killed peer is seen dead (a zombie and once
//! reaped), a slot naming a live pid with another start time (a reused pid)
//! is seen dead, a handle keeps at most one pidfd per slot and closes the
//! old one when a slot changes hands; and the same answers from `/proc`
//! where pidfds are unavailable (`set_pidfds_disabled`, a `testing` hook).
//!
//! The pidfd counts are taken in a child process of their own: the other
//! tests of this binary open pidfds on their threads meanwhile. (The case of
//! a leader that called `pthread_exit` is in `tests/region_liveness.rs`.)

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use polycephaly::region::layout::{PEER_TABLE_OFFSET, PeerSlot};
use polycephaly::region::{OpenOptions, PeerId, Region, SectionId, SectionKind};
use polycephaly::sync::ProcessId;
use polycephaly::sync::shim::{AtomicU32, Ordering};

/// Only detects a hang: every wait below ends on an observable state.
const HANG: Duration = Duration::from_secs(60);

/// This test binary again, running only `test` in the role `role`.
fn child(test: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, role)
        .stdin(Stdio::null());
    cmd
}

fn expect_success(mut child: Child) {
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child failed: {status}");
}

/// Word `i` of the raw section 0.
fn word(region: &Region, i: usize) -> &AtomicU32 {
    let s = region.section(SectionId(0)).expect("the raw section");
    assert!((i + 1) * 4 <= s.len);
    // SAFETY: in bounds (checked), 4-aligned (sections are 64-aligned),
    // zero at creation; an atomic over shared bytes is valid for any bits
    // and `region` keeps the mapping as long as the reference.
    unsafe { &*s.ptr.as_ptr().add(i * 4).cast::<AtomicU32>() }
}

/// How many pidfds this process has open.
fn open_pidfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_str() == Some("anon_inode:[pidfd]"))
        .count()
}

/// The peer's side: opens the inherited region, says who it is, and waits
/// to be killed (or for the parent to go: end of stdin).
fn run_peer() {
    let region = Region::inherited(&OpenOptions::default()).expect("inherited region");
    // Release: pairs with the parent's Acquire load.
    word(&region, 0).store(region.peer_id().to_raw(), Ordering::Release);
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// A peer in another process is alive, then killed with SIGKILL: dead as a
/// zombie (not reaped: its pid is still its own) and once reaped. With
/// `pidfds` set, checks that one pidfd was open for the peer (`Some(true)`)
/// or none (`Some(false)`) while it lived.
fn killed_peer_is_seen_dead(test: &str, pidfds: Option<bool>) {
    let region = Region::builder()
        .section(SectionKind::Raw, 64)
        .max_peers(4)
        .build()
        .unwrap();
    let mut cmd = child(test, "peer");
    cmd.stdin(Stdio::piped());
    region.share_with(&mut cmd).unwrap();
    let mut peer = cmd.spawn().unwrap();
    let start = Instant::now();
    let id = loop {
        // Acquire: pairs with the peer's Release store.
        if let Some(id) = PeerId::from_raw(word(&region, 0).load(Ordering::Acquire)) {
            break id;
        }
        assert!(start.elapsed() < HANG, "the peer never said who it is");
        assert!(peer.try_wait().unwrap().is_none(), "the peer ended early");
        std::thread::sleep(Duration::from_millis(1));
    };
    let before = open_pidfds();
    assert!(region.peer_alive(id));
    assert!(region.peer_alive(id), "asked twice: the pidfd is kept");
    match pidfds {
        Some(true) => assert_eq!(open_pidfds(), before + 1, "one pidfd for the peer"),
        Some(false) => assert_eq!(open_pidfds(), before, "no pidfd without pidfds"),
        None => {}
    }
    peer.kill().unwrap();
    // Wait for the exit without reaping: the pid stays the peer's.
    let pid = rustix::process::Pid::from_raw(peer.id() as i32).unwrap();
    let options = rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT;
    rustix::process::waitid(rustix::process::WaitId::Pid(pid), options).unwrap();
    assert!(!region.peer_alive(id), "a killed peer (a zombie) is alive");
    if pidfds.is_some() {
        assert_eq!(open_pidfds(), before, "a dead peer's pidfd is closed");
    }
    peer.wait().unwrap();
    assert!(!region.peer_alive(id), "a killed peer (reaped) is alive");
    assert!(region.peer_alive(region.peer_id()));
}

/// The peer table of `region`, mapped a second time, to forge slots.
struct Table {
    map: MmapRaw,
}

impl Table {
    fn of(region: &Region) -> Table {
        let fd = region.duplicate_fd().unwrap();
        Table {
            map: MmapRaw::map_raw(&fd).unwrap(),
        }
    }

    fn slot(&self, i: usize) -> &PeerSlot {
        assert!(PEER_TABLE_OFFSET + (i + 1) * size_of::<PeerSlot>() <= self.map.len());
        // SAFETY: in bounds (checked), 64-aligned (the mapping is page
        // aligned and PEER_TABLE_OFFSET and PeerSlot's size are multiples of
        // 64); PeerSlot is all atomics and bytes, valid for any bits, and
        // `self` keeps the mapping as long as the reference.
        unsafe {
            &*self
                .map
                .as_mut_ptr()
                .add(PEER_TABLE_OFFSET + i * size_of::<PeerSlot>())
                .cast::<PeerSlot>()
        }
    }

    /// Makes slot `i` held by `who` in `generation`, published; its id.
    fn forge(&self, i: usize, generation: u32, who: ProcessId) -> PeerId {
        let id = PeerId::from_raw(generation << 8 | (i as u32 + 1)).unwrap();
        let slot = self.slot(i);
        // Relaxed: this test's own thread reads them after, in program order.
        slot.word.store(
            u64::from(who.pid) << 32 | u64::from(id.to_raw()),
            Ordering::Relaxed,
        );
        slot.start_time.store(who.start_time, Ordering::Relaxed);
        slot.published.store(id.to_raw(), Ordering::Relaxed);
        id
    }
}

/// Slots naming our own (live) pid: with our start time alive, with another
/// (a reused pid) dead, however the slot changes hands.
fn reused_pid_is_seen_dead(count_pidfds: bool) {
    let region = Region::builder()
        .section(SectionKind::Raw, 64)
        .max_peers(4)
        .build()
        .unwrap();
    let table = Table::of(&region);
    let me = ProcessId::current();
    let other = ProcessId {
        start_time: me.start_time + 1,
        ..me
    };
    let base = open_pidfds();
    let count = |n: usize, at: &str| {
        if count_pidfds {
            assert_eq!(open_pidfds(), base + n, "pidfds open {at}");
        }
    };
    // Slot 1: a reused pid from the start.
    let reused = table.forge(1, 1, other);
    assert!(!region.peer_alive(reused));
    count(0, "at step 1");
    // The same slot, taken by the live process (a new generation).
    let live = table.forge(1, 2, me);
    assert!(region.peer_alive(live));
    assert!(!region.peer_alive(reused), "the old id is gone");
    count(1, "at step 2");
    // Taken again by "another process" with our pid: the old pidfd must not
    // answer for it.
    let reused_again = table.forge(1, 3, other);
    assert!(!region.peer_alive(reused_again));
    assert!(!region.peer_alive(live));
    count(0, "at step 3");
    // A forged slot that keeps its word but changes the start time.
    let live = table.forge(2, 1, me);
    assert!(region.peer_alive(live));
    count(1, "at step 4");
    table
        .slot(2)
        .start_time
        .store(other.start_time, Ordering::Relaxed);
    assert!(!region.peer_alive(live));
    count(0, "at step 5");
    // At most one pidfd per slot, however often asked.
    let ids: Vec<PeerId> = (1..4).map(|i| table.forge(i, 9, me)).collect();
    for _ in 0..10 {
        for &id in &ids {
            assert!(region.peer_alive(id));
        }
        assert!(region.peer_alive(region.peer_id()));
    }
    count(4, "at step 6");
    for (i, id) in (1..4).zip(&ids) {
        table.forge(i, 10, other);
        assert!(!region.peer_alive(*id));
    }
    count(1, "at step 7");
    drop(region);
    count(0, "at step 8");
}

#[test]
fn a_killed_peer_is_seen_dead() {
    match common::role().as_deref() {
        Some("peer") => run_peer(),
        _ => killed_peer_is_seen_dead("a_killed_peer_is_seen_dead", None),
    }
}

#[test]
fn a_reused_pid_is_seen_dead() {
    reused_pid_is_seen_dead(false);
}

/// Counts pidfds: in a process of its own.
#[test]
fn pidfds_are_opened_once_and_closed_with_their_slot() {
    match common::role().as_deref() {
        Some("count") => {
            assert!(polycephaly::sync::process::pidfds_available());
            reused_pid_is_seen_dead(true);
            killed_peer_is_seen_dead(
                "pidfds_are_opened_once_and_closed_with_their_slot",
                Some(true),
            );
        }
        Some("peer") => run_peer(),
        _ => expect_success(
            child("pidfds_are_opened_once_and_closed_with_their_slot", "count")
                .spawn()
                .unwrap(),
        ),
    }
}

/// Where pidfds are unavailable, `/proc` gives the same answers.
#[test]
fn without_pidfds_proc_gives_the_same_answers() {
    match common::role().as_deref() {
        Some("no-pidfd") => {
            polycephaly::sync::process::set_pidfds_disabled(true);
            assert!(!polycephaly::sync::process::pidfds_available());
            killed_peer_is_seen_dead("without_pidfds_proc_gives_the_same_answers", Some(false));
            // No pidfd is ever opened: every count stays where it was.
            let base = open_pidfds();
            reused_pid_is_seen_dead(false);
            assert_eq!(open_pidfds(), base);
        }
        Some("peer") => run_peer(),
        _ => expect_success(
            child("without_pidfds_proc_gives_the_same_answers", "no-pidfd")
                .spawn()
                .unwrap(),
        ),
    }
}
