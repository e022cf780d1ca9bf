//! Fault injection between real processes: random points, signals, the
//! checks that follow every kill (nothing leaked: descriptors, children,
//! `/dev/shm` entries), and bounded waits.
//!
//! Included by `common` (libtest targets) and by path from the targets
//! with their own runner (`tests/pool.rs`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long a wait may overrun the bound its API promises before a test
/// calls it a hang: generous, since the machine is shared and loaded.
/// (A bound, never a speed: no test asserts how fast anything is.)
pub const MARGIN: Duration = Duration::from_secs(5);

/// splitmix64: the tests' random numbers, reproducible from a seed.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A small random source for kill points, seeded from the time unless
/// `POLYCEPHALY_FAULT_SEED` is set (the seed is printed, so a failing run
/// can be repeated).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Self {
        let seed = std::env::var("POLYCEPHALY_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{what}: POLYCEPHALY_FAULT_SEED={seed}");
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Spins for a random time below `max`: where a kill lands.
    pub fn spin(&mut self, max: Duration) {
        let d = Duration::from_nanos(self.below(max.as_nanos().max(1) as u64));
        let start = Instant::now();
        while start.elapsed() < d {
            std::hint::spin_loop();
        }
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, sig).expect("kill(2)");
}

/// SIGKILLs `child` and reaps it; asserts that the signal is what ended
/// it (a child that failed on its own first is a test failure, not a
/// kill).
pub fn kill_and_reap(child: &mut Child, what: &str) -> ExitStatus {
    if let Some(status) = child.try_wait().expect("try_wait") {
        panic!("{what}: exited before the kill: {status}");
    }
    signal(child.id(), rustix::process::Signal::KILL);
    let status = child.wait().expect("reap");
    // A child that exited on its own between the look and the kill must
    // have exited successfully.
    assert!(
        status.code().is_none() || status.success(),
        "{what}: failed before the kill: {status}"
    );
    status
}

/// The state letter of `pid` in `/proc/PID/stat` (`R`, `S`, `T`, `Z`...).
pub fn proc_state(pid: u32) -> Option<u8> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

/// SIGSTOPs `pid` and waits until the kernel reports it stopped (kill(2)
/// returns before the stop takes effect).
pub fn stop(pid: u32) {
    signal(pid, rustix::process::Signal::STOP);
    let start = Instant::now();
    while proc_state(pid) != Some(b'T') {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{pid} never stopped"
        );
        std::thread::yield_now();
    }
}

/// SIGCONTs `pid`.
pub fn cont(pid: u32) {
    signal(pid, rustix::process::Signal::CONT);
}

/// Runs `f`, which waits at most `bound` by its API's promise, and
/// asserts that it returned within `bound` plus [`MARGIN`].
pub fn bounded<R>(what: &str, bound: Duration, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(
        took <= bound + MARGIN,
        "{what}: a wait bounded by {bound:?} took {took:?}"
    );
    r
}

/// This process's descriptors.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// What this process's descriptors point at (for failure messages).
pub fn fd_targets() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!("{}->{target}", e.file_name().to_string_lossy())
        })
        .collect();
    out.sort();
    out
}

/// This process's children, from every thread's `children` list (a child
/// is listed under the thread that forked it), zombies included.
pub fn children() -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// Entries of `/dev/shm` whose names start with `prefix`.
pub fn shm_entries(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A name prefix for this process's regions, so that `/dev/shm` can be
/// searched for what it left (other processes of the machine create
/// their own).
pub fn prefix(what: &str) -> String {
    format!("polycephaly-fault-{what}-{}-", std::process::id())
}

/// What this process holds before a fault loop: descriptors and
/// children. [`Baseline::check`] asserts nothing was left behind.
#[derive(Debug)]
pub struct Baseline {
    fds: usize,
    children: BTreeSet<u32>,
    prefix: String,
}

impl Baseline {
    /// Takes the baseline; `prefix` names the regions the loop creates.
    pub fn take(prefix: &str) -> Self {
        Self {
            fds: fd_count(),
            children: children(),
            prefix: prefix.to_owned(),
        }
    }

    /// Inside a loop, with the loop's own handles alive: at most `extra`
    /// descriptors above the baseline (a count that does not grow with
    /// the rounds), and the children are `alive` (no zombie).
    pub fn check_during(&self, what: &str, extra: usize, alive: &[u32]) {
        let fds = fd_count();
        assert!(
            fds <= self.fds + extra,
            "{what}: {fds} descriptors, {} before the loop: {:?}",
            self.fds,
            fd_targets()
        );
        let mut expect = self.children.clone();
        expect.extend(alive);
        assert_eq!(children(), expect, "{what}: children (zombies?)");
    }

    /// After the loop, its handles dropped: the same descriptors, no
    /// child left, nothing in `/dev/shm` under the prefix.
    pub fn check(&self, what: &str) {
        assert_eq!(
            fd_count(),
            self.fds,
            "{what}: descriptors leaked: {:?}",
            fd_targets()
        );
        assert_eq!(children(), self.children, "{what}: children left");
        assert_eq!(
            shm_entries(&self.prefix),
            Vec::<String>::new(),
            "{what}: segments left in /dev/shm"
        );
    }
}
