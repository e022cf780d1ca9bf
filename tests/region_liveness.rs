//! Peer liveness against the shapes a process can take that libtest cannot
//! host: a process whose main thread exited while another thread runs, and
//! a handle copied into a child by `fork`.
//!
//! This target has no libtest harness (`harness = false`), for two reasons:
//! - the child of the first test must end its *main* thread with
//!   `pthread_exit`, and libtest runs every test on a thread of its own;
//!   under Rust's own `main` the unwind that `pthread_exit` starts would be
//!   caught (and the process aborted) by the runtime, so this binary has
//!   `#![no_main]` and a C-ABI `main` whose frame holds nothing to drop;
//! - the second test forks, which is only safe in a single-threaded
//!   process: without libtest, the test process has a single thread.
//!
//! A small runner below speaks enough of libtest's command line for
//! `cargo test` and `cargo nextest` (`--list`, `--exact`, filters).
#![no_main]

mod common;

use core::ffi::{c_char, c_int, c_void};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use polycephaly::AttachError;
use polycephaly::region::{OpenOptions, PeerId, Region, SectionError, SectionId, SectionKind};
use polycephaly::ring::spsc;
use polycephaly::sync::ProcessId;
use polycephaly::sync::shim::{AtomicU32, Ordering};

/// The tests of this binary, in the order they run.
const TESTS: &[(&str, fn())] = &[
    (
        "a_thread_group_outlives_its_leader",
        a_thread_group_outlives_its_leader,
    ),
    (
        "a_forked_copy_of_a_handle_is_inert",
        a_forked_copy_of_a_handle_is_inert,
    ),
    (
        "a_forked_copy_of_a_serving_handle_stops_nothing",
        a_forked_copy_of_a_serving_handle_stops_nothing,
    ),
];

/// The role of the child whose main thread exits first.
const LEADERLESS: &str = "leaderless-child";

/// Only detects a hang: every wait below ends on an observable state.
const HANG: Duration = Duration::from_secs(60);

unsafe extern "C-unwind" {
    /// glibc's `pthread_exit`, declared `C-unwind` (libc's `C` declaration
    /// says it never unwinds): it ends the calling thread by a forced
    /// unwind, which crosses `main`'s frame (a plain old frame, so allowed)
    /// up to glibc's start code, which then ends only the main thread. A
    /// `C` `main` would abort the process there instead (seen on 1.95).
    fn pthread_exit(retval: *mut c_void) -> !;
}

/// The entry point, in place of Rust's: a leaderless child ends its main
/// thread here; any other run is the test runner.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let leaderless = common::role().as_deref() == Some(LEADERLESS);
    if leaderless {
        start_leaderless_child();
        // SAFETY: called on the main thread, whose frames up to here hold
        // nothing with a destructor (a bool and the two arguments), so the
        // forced unwind skips no drop; the worker thread started above owns
        // everything it uses and ends the process itself.
        unsafe { pthread_exit(core::ptr::null_mut()) }
    }
    // A panic must not unwind out of `main` into C.
    std::panic::catch_unwind(run_tests).unwrap_or(101)
}

/// Runs the selected tests, each under `catch_unwind`, and prints a
/// libtest-like report. Understands `--list` (with `--ignored`: none here),
/// `--exact`, `--skip NAME` and name filters; other flags are ignored.
fn run_tests() -> c_int {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--skip" => skips.extend(it.next().cloned()),
            "--format" | "--test-threads" | "--color" | "--logfile" | "--shuffle-seed" | "-Z" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_owned()),
        }
    }
    let exact = has("--exact");
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| {
            let matches = |f: &String| {
                if exact {
                    *name == f.as_str()
                } else {
                    name.contains(f.as_str())
                }
            };
            (filters.is_empty() || filters.iter().any(matches)) && !skips.iter().any(matches)
        })
        .collect();
    if has("--list") {
        if !has("--ignored") {
            for (name, _) in &selected {
                println!("{name}: test");
            }
        }
        return 0;
    }
    if has("--ignored") {
        println!("test result: ok. 0 passed; 0 failed (no ignored tests)");
        return 0;
    }
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed\n");
        0
    } else {
        println!(
            "\nfailures: {failed:?}\ntest result: FAILED. {passed} passed; {} failed\n",
            failed.len()
        );
        101
    }
}

/// Polls `done` until it holds; panics with `what` after [`HANG`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The state (field 3) and thread count (field 20) of `/proc/PID/stat`.
fn proc_state(pid: u32) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some((fields.first()?.to_string(), fields.get(17)?.parse().ok()?))
}

/// Word `i` of the raw section 0 of `region`, a handshake word.
fn word(region: &Region, i: usize) -> &AtomicU32 {
    let s = region.section(SectionId(0)).expect("the raw section");
    assert!((i + 1) * 4 <= s.len);
    // SAFETY: inside the section (checked), 4-aligned (sections are
    // 64-aligned), zero at creation; an atomic over shared bytes is valid
    // for any bits, and `region` keeps the mapping alive as long as `&`.
    unsafe { &*s.ptr.as_ptr().add(i * 4).cast::<AtomicU32>() }
}

/// Handshake words of the first test.
const CHILD_ID: usize = 0;
const CHILD_READY: usize = 1;
const CHILD_RELEASE: usize = 2;
/// 2 if the child, leaderless, judges itself alive, 1 if dead.
const CHILD_SELF: usize = 3;

/// The child's main thread: opens the inherited region, hands it to a
/// worker thread, and returns (to `pthread_exit`).
fn start_leaderless_child() {
    let region = Region::inherited(&OpenOptions::default()).expect("open the inherited region");
    std::thread::spawn(move || leaderless_worker(region));
}

/// The child's worker: once the main thread is gone, checks it still counts
/// as alive, says so to the parent, waits to be released, and ends the whole
/// process (`_exit`, i.e. exit_group) without dropping its handle, so its
/// slot is left held by a process that is dead.
fn leaderless_worker(region: Region) -> ! {
    let run = || {
        let me = std::process::id();
        wait_for("our main thread to exit", || {
            proc_state(me).is_some_and(|(state, _)| state == "Z")
        });
        // How this process judges itself, for the parent to check.
        let alive = region.peer_alive(region.peer_id()) && ProcessId::current().is_alive();
        // Relaxed: published by the Release store of CHILD_READY.
        word(&region, CHILD_ID).store(region.peer_id().to_raw(), Ordering::Relaxed);
        word(&region, CHILD_SELF).store(u32::from(alive) + 1, Ordering::Relaxed);
        // Release: pairs with the parent's Acquire load of CHILD_READY.
        word(&region, CHILD_READY).store(1, Ordering::Release);
        wait_for("the parent's release", || {
            // Relaxed: a plain signal, nothing to acquire with it.
            word(&region, CHILD_RELEASE).load(Ordering::Relaxed) == 1
        });
    };
    let code = match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: ends the whole process at once, as a crash would: `region` is
    // never dropped, so its peer slot stays held.
    unsafe { libc::_exit(code) }
}

/// A process whose main thread called `pthread_exit` while another thread
/// runs is alive (its leader shows as a zombie in /proc); once its last
/// thread is gone it is dead, before and after it is reaped.
fn a_thread_group_outlives_its_leader() {
    let region = Region::builder()
        .section(SectionKind::Raw, 64)
        .max_peers(4)
        .build()
        .expect("create region");
    let child = common::spawn_self_with(
        "a_thread_group_outlives_its_leader",
        LEADERLESS,
        &[],
        &region,
    );
    let mut child = KillOnDrop(child);
    let pid = child.0.id();

    wait_for(
        "the child's main thread to exit, its worker running",
        || {
            assert!(
                child.0.try_wait().expect("try_wait").is_none(),
                "the child ended early"
            );
            // Acquire: pairs with the worker's Release store.
            word(&region, CHILD_READY).load(Ordering::Acquire) == 1
        },
    );
    let id = PeerId::from_raw(word(&region, CHILD_ID).load(Ordering::Relaxed))
        .expect("the child wrote its peer id");
    let (state, threads) = proc_state(pid).expect("the child's stat");
    assert_eq!(state, "Z", "the leader of the child shows as a zombie");
    assert!(threads >= 2, "its worker thread still counts: {threads}");
    assert!(
        region.peer_alive(id),
        "a process with a running thread is judged dead"
    );
    let info = region
        .peers()
        .into_iter()
        .find(|p| p.id == id)
        .expect("the child's slot is listed");
    assert!(info.alive);
    let process = ProcessId {
        pid,
        start_time: info.start_time,
    };
    assert!(process.is_alive());
    assert_eq!(ProcessId::of(pid), Some(process));
    assert!(process.pidfd().is_some());
    assert_eq!(
        word(&region, CHILD_SELF).load(Ordering::Relaxed),
        2,
        "the child judges itself dead"
    );

    // Let the worker end the process; we have not reaped it, so its pid is
    // still its own and the pidfd refers to it.
    let raw_pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let pidfd = rustix::process::pidfd_open(raw_pid, rustix::process::PidfdFlags::empty())
        .expect("pidfd_open");
    // Relaxed: a plain signal.
    word(&region, CHILD_RELEASE).store(1, Ordering::Relaxed);
    // A pidfd polls readable once every thread of the process has exited.
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::time::Timespec {
        tv_sec: HANG.as_secs() as i64,
        tv_nsec: 0,
    };
    let ready = rustix::event::poll(&mut fds, Some(&timeout)).expect("poll the pidfd");
    assert_eq!(ready, 1, "the child did not exit");
    // Now a real zombie: one (exited) thread, not reaped yet.
    assert_eq!(proc_state(pid), Some(("Z".to_owned(), 1)));
    assert!(!region.peer_alive(id), "an exited process is judged alive");
    assert!(!process.is_alive());
    assert_eq!(ProcessId::of(pid), None);

    let status = child.0.wait().expect("wait for the child");
    assert!(status.success(), "the child's checks failed: {status}");
    assert!(!region.peer_alive(id));
}

/// Kills and reaps a child left running by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

/// Removes `/dev/shm/NAME` when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

/// A `fork` child holds a copy of its parent's handle: using it is refused,
/// dropping it releases nothing and unlinks nothing; the child gets a handle
/// of its own by reopening.
fn a_forked_copy_of_a_handle_is_inert() {
    let threads = proc_state(std::process::id()).expect("our stat").1;
    assert_eq!(
        threads, 1,
        "fork needs a single-threaded process; run alone"
    );
    let name = format!("polyc-test-{}-fork", std::process::id());
    let _cleanup = Cleanup(name.clone());
    // The file form: the unlinking is what is checked.
    let region = Region::builder()
        .named(&name)
        .shm_file(true)
        .section(SectionKind::Raw, 64)
        .with(spsc::Spec::new(4096).expect("ring size"))
        .max_peers(4)
        .build()
        .expect("create region");
    let parent_id = region.peer_id();
    assert!(region.opened_by_current_process());
    let heartbeat = || {
        region
            .peers()
            .into_iter()
            .find(|p| p.id == parent_id)
            .map(|p| p.heartbeat)
    };
    let beat = heartbeat();
    let name_ref = name.as_str();

    // SAFETY: this process has one thread (checked above), so the child's
    // copy of every lock and allocator state is consistent; the child ends
    // with `_exit` and never returns into the runner.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The child's copy of `region` is its only handle: the drop in
        // `forked_child` is the last one, which used to release the slot.
        let run = move || forked_child(region, name_ref, parent_id);
        let code = match std::panic::catch_unwind(AssertUnwindSafe(run)) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        // SAFETY: ends the forked child without running the parent's exit
        // handlers or returning into the test runner.
        unsafe { libc::_exit(code) }
    }
    let child = rustix::process::Pid::from_raw(pid).expect("a child pid");
    let (_, status) = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty())
        .expect("waitpid")
        .expect("a status");
    assert_eq!(status.exit_status(), Some(0), "the child's checks failed");

    assert!(
        region.peer_alive(parent_id),
        "the child's drop freed our slot"
    );
    let peers = region.peers();
    assert_eq!(
        peers.len(),
        1,
        "the child's own handles were released: {peers:?}"
    );
    assert_eq!(heartbeat(), beat, "the child wrote into our slot");
    assert!(
        shm_path(&name).exists(),
        "the child's drop unlinked the segment"
    );
    let other = Region::open(&name).expect("reopen by name");
    assert_ne!(other.peer_id(), parent_id);
    assert!(other.peer_alive(parent_id));
    drop(other);
    drop(region);
    assert!(
        !shm_path(&name).exists(),
        "the creator's drop still unlinks"
    );
}

/// The forked child's checks, on `copy`, its copy of the parent's handle.
fn forked_child(copy: Region, name: &str, parent_id: PeerId) {
    assert!(!copy.opened_by_current_process());
    assert_eq!(copy.peer_id(), parent_id);
    let e = copy.section(SectionId(0)).unwrap_err();
    assert!(
        matches!(e, SectionError::ForeignHandle { opener, caller }
            if opener != caller && caller == std::process::id()),
        "{e:?}"
    );
    assert!(copy.sections().is_empty());
    // No ring role can be claimed under the parent's id.
    let e = spsc::Producer::attach(&copy, SectionId(1)).unwrap_err();
    assert!(
        matches!(e, AttachError::Section(SectionError::ForeignHandle { .. })),
        "{e:?}"
    );
    copy.heartbeat(); // a no-op: the parent checks its heartbeat is unchanged
    // Reading the peer table stays allowed.
    assert!(copy.peer_alive(parent_id));

    // A handle of our own, two ways.
    let own = copy.reopen(&OpenOptions::default()).expect("reopen");
    assert!(own.opened_by_current_process());
    assert_ne!(own.peer_id(), parent_id);
    assert_eq!(own.name(), Some(name));
    own.section(SectionId(0))
        .expect("our own handle gives sections");
    let by_name = Region::open(name).expect("open by name");
    assert!(by_name.opened_by_current_process());
    drop(own);
    drop(by_name);

    // The point: the last clone of the copy drops here. The parent checks
    // its slot and its segment once we have exited.
    drop(copy);
}

/// Handshake words of the serving-handle fork test.
const FORK_DROPPED: usize = 0;
const FORK_GO: usize = 1;

/// A `fork` child holds a copy of the creator's handle of a socket-served
/// region, and so copies of its listening socket and of the eventfd that
/// stops its accept thread. Dropping the copy must neither stop the
/// parent's server (the eventfd is shared) nor keep the name bound after the
/// parent stops serving (the child closes its copy of the socket).
fn a_forked_copy_of_a_serving_handle_stops_nothing() {
    let threads = proc_state(std::process::id()).expect("our stat").1;
    assert_eq!(
        threads, 1,
        "fork needs a single-threaded process; run alone"
    );
    let name = format!("polyc-test-{}-fork-serving", std::process::id());
    let region = Region::builder()
        .named(&name)
        .section(SectionKind::Raw, 64)
        .max_peers(8)
        .build()
        .expect("create region");
    assert!(region.serves_name());
    // The words, through a handle that does not serve.
    let words = region.reopen(&OpenOptions::default()).expect("reopen");

    // SAFETY: besides this thread, the process runs only the region's
    // accept thread, blocked in poll(2) and holding no lock (it allocates
    // nothing while idle); the child ends with `_exit` and never returns
    // into the runner.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let run = move || {
            assert!(!region.serves_name(), "the copy serves nothing");
            let own = region.reopen(&OpenOptions::default()).expect("reopen");
            // The parent's thread serves the child too.
            drop(Region::open(&name).expect("open by name through the parent"));
            drop(region);
            drop(words);
            // Release: pairs with the parent's Acquire load.
            word(&own, FORK_DROPPED).store(1, Ordering::Release);
            wait_for("the parent's go", || {
                // Relaxed: a plain signal.
                word(&own, FORK_GO).load(Ordering::Relaxed) == 1
            });
        };
        let code = match std::panic::catch_unwind(AssertUnwindSafe(run)) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        // SAFETY: ends the forked child without running the parent's exit
        // handlers or returning into the test runner.
        unsafe { libc::_exit(code) }
    }
    let child = rustix::process::Pid::from_raw(pid).expect("a child pid");
    wait_for("the child to drop its copy", || {
        // Acquire: pairs with the child's Release store.
        word(&words, FORK_DROPPED).load(Ordering::Acquire) == 1
    });
    // Still served: the child's drop did not stop our thread.
    let opener = Region::open(&name).expect("still served after the child's drop");
    drop(opener);
    drop(region);
    // Free at once, though the child (which had a copy of the socket) runs.
    let e = Region::open(&name).expect_err("the name outlived its server");
    assert!(
        matches!(e, polycephaly::region::OpenError::NotFound { .. }),
        "{e:?}"
    );
    let again = Region::builder()
        .named(&name)
        .build()
        .expect("the name is free for a new creator");
    drop(again);
    // Relaxed: a plain signal.
    word(&words, FORK_GO).store(1, Ordering::Relaxed);
    let (_, status) = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty())
        .expect("waitpid")
        .expect("a status");
    assert_eq!(status.exit_status(), Some(0), "the child's checks failed");
}
