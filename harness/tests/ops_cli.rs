//! The operating commands run as a user would: `polycephaly inspect` on
//! regions this test builds (live rings with known contents, garbage, a
//! truncated file), `polycephaly clean` on a dead creator's file and a live
//! one, and `bench` printing the seed's tables.
//!
//! A creator that dies is this test binary started again
//! (`creator_child`, which does nothing unless `OPS_CLI_CHILD` names a
//! region): it builds a kept file region, says so, and waits to be killed.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};

use polycephaly::arena::{ArenaSpec, ArenaWriter, Readers};
use polycephaly::lock::{Event, EventMode, ShmMutex};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Sender, mpsc, spsc};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polycephaly"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A region with one of each kind of section, filled with known contents.
struct Live {
    region: Region,
    _spsc: spsc::Producer,
    _mpsc: mpsc::Producer,
    _arena: ArenaWriter,
    _event: Event,
    _mutex: ShmMutex<u64>,
}

/// Builds it: 5 frames of 100 bytes in the SPSC ring (112 bytes each with
/// header and padding), 3 of 10 bytes in the MPSC ring (24 each), one
/// published block of 1000 u64 in the arena, the event signalled.
fn live(name: &str, file: bool) -> Live {
    let arena = ArenaSpec::new(2, 1 << 16).with_blocks(8);
    let region = Region::builder()
        .named(name)
        .shm_file(file)
        .with(spsc::Spec::new(4096).unwrap())
        .with(mpsc::Spec::new(4096).unwrap())
        .with(arena)
        .with(Event::spec())
        .with(ShmMutex::<u64>::spec())
        .section(SectionKind::Raw, 100)
        .build()
        .unwrap();
    let mut tx = spsc::Producer::attach(&region, SectionId(0)).unwrap();
    for _ in 0..5 {
        tx.try_send(&[7u8; 100]).unwrap();
    }
    let mut mtx = mpsc::Producer::attach(&region, SectionId(1)).unwrap();
    for _ in 0..3 {
        mtx.try_send(&[1u8; 10]).unwrap();
    }
    arena.format(&region, SectionId(2)).unwrap();
    let mut w = ArenaWriter::attach(&region, SectionId(2)).unwrap();
    let block = w.alloc::<u64>(1000).unwrap();
    let _handle = block.publish(Readers::Count(1));
    let event = Event::attach(&region, SectionId(3), EventMode::ManualReset).unwrap();
    event.signal().unwrap();
    let mutex = ShmMutex::<u64>::attach(&region, SectionId(4)).unwrap();
    Live {
        region,
        _spsc: tx,
        _mpsc: mtx,
        _arena: w,
        _event: event,
        _mutex: mutex,
    }
}

fn inspect_live(file: bool) {
    let name = format!(
        "ops-inspect-{}-{}",
        if file { "file" } else { "sock" },
        std::process::id()
    );
    let live = live(&name, file);
    let before = live.region.peers();
    let out = run(&["inspect", &name]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The SPSC ring: 5 messages of 100 bytes, 5 x 112 bytes used.
    assert!(stdout.contains("#0 spsc ring"), "{stdout}");
    assert!(stdout.contains("head 0, tail 560; used 560 B"), "{stdout}");
    assert!(
        stdout.contains("frames: 5 message(s), 500 B payload"),
        "{stdout}"
    );
    // The MPSC ring: 3 messages of 10 bytes, 3 x 24 bytes.
    assert!(stdout.contains("head 0, tail 72; used 72 B"), "{stdout}");
    assert!(
        stdout.contains("frames: 3 message(s), 30 B payload"),
        "{stdout}"
    );
    // The arena's one published block, the event, the mutex.
    assert!(stdout.contains("blocks 0..1: 1 live, 8,000 B"), "{stdout}");
    assert!(
        stdout.contains("block 0: published, 8,000 B at 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("signalled, manual-reset, 0 waiting"),
        "{stdout}"
    );
    assert!(stdout.contains("unlocked; consistent"), "{stdout}");
    let me = std::process::id();
    assert!(
        stdout.contains(&format!("creator: pid {me} (alive)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("pid {me}, role 0, alive")),
        "{stdout}"
    );
    assert!(stdout.contains("problems: none"), "{stdout}");
    if file {
        assert!(
            stdout.contains(&format!("file /dev/shm/{name}")),
            "{stdout}"
        );
    } else {
        assert!(stdout.contains("served over a socket"), "{stdout}");
    }
    // Read-only: no slot was taken (nor left), the rings are as they were.
    assert_eq!(live.region.peers(), before);
    // --watch with a count: two views, both the same.
    let out = run(&[
        "inspect",
        &name,
        "--watch",
        "--interval",
        "10",
        "--count",
        "2",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("frames: 5 message(s)").count(),
        2,
        "{stdout}"
    );
    assert_eq!(live.region.peers(), before);
}

#[test]
fn inspect_shows_live_rings_of_a_socket_region() {
    inspect_live(false);
}

#[test]
fn inspect_shows_live_rings_of_a_file_region() {
    inspect_live(true);
}

#[test]
fn inspect_reports_garbage_truncation_and_absence_in_one_line() {
    let name = format!("ops-garbage-{}", std::process::id());
    let path = format!("/dev/shm/{name}");
    let one_line_failure = |o: &Output, needle: &str| {
        let (stdout, stderr) = text(o);
        assert!(!o.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle} in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    std::fs::write(&path, vec![0x5Au8; 3 * 4096]).unwrap();
    one_line_failure(&run(&["inspect", &name]), "magic");
    std::fs::write(&path, b"tiny").unwrap();
    one_line_failure(&run(&["inspect", &name]), "4096");
    if rustix::process::geteuid().is_root() {
        // Another user's file: refused before anything of it is read.
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        one_line_failure(&run(&["inspect", &name]), "belongs to uid 65534");
    }
    std::fs::remove_file(&path).unwrap();
    // A real region whose file lost its tail.
    let region = Region::builder()
        .named(&name)
        .shm_file(true)
        .with(spsc::Spec::new(1 << 16).unwrap())
        .build()
        .unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full / 2)
        .unwrap();
    one_line_failure(&run(&["inspect", &name]), "the file has");
    drop(region);
    one_line_failure(&run(&["inspect", &name]), "no shared memory segment");
}

#[test]
fn inspect_reports_a_corrupted_ring() {
    let name = format!("ops-corrupt-{}", std::process::id());
    let region = Region::builder()
        .named(&name)
        .with(spsc::Spec::new(4096).unwrap())
        .build()
        .unwrap();
    let s = region.section(SectionId(0)).unwrap();
    // A tail far past the head: more bytes than the ring holds.
    // SAFETY: the section is at least 320 bytes and 64-aligned; nothing
    // else uses the ring.
    unsafe { s.ptr.as_ptr().cast::<u64>().write_volatile(1 << 20) };
    let out = run(&["inspect", &name]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("problems (1):"), "{stdout}");
    assert!(stdout.contains("more than the capacity"), "{stdout}");
}

/// Not a test of its own: the creator that `clean` finds dead.
#[test]
fn creator_child() {
    let Ok(name) = std::env::var("OPS_CLI_CHILD") else {
        return;
    };
    let region = Region::builder()
        .named(&name)
        .keep(true)
        .with(spsc::Spec::new(4096).unwrap())
        .build()
        .unwrap();
    let _tx = spsc::Producer::attach(&region, SectionId(0)).unwrap();
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn clean_removes_a_dead_creators_file_and_keeps_a_live_one() {
    let prefix = format!("ops-clean-{}-", std::process::id());
    let dead = format!("{prefix}dead");
    let alive = format!("{prefix}alive");
    // The dead one: a child builds it (keep: the file outlives it) and is
    // killed holding its slot.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "creator_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("OPS_CLI_CHILD", &dead)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("ready"))),
        "the child never built its region"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let live = Region::builder()
        .named(&alive)
        .keep(true)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let dead_path = format!("/dev/shm/{dead}");
    let alive_path = format!("/dev/shm/{alive}");
    // Another file of ours with the prefix, not a region: not touched.
    let other = format!("/dev/shm/{prefix}not-a-region");
    std::fs::write(&other, b"hello").unwrap();
    // Another user's file that looks like a region: never touched.
    let foreign = format!("/dev/shm/{prefix}foreign");
    let root = rustix::process::geteuid().is_root();
    if root {
        let mut bytes = b"PLYCPHLY".to_vec();
        bytes.resize(4096, 0);
        std::fs::write(&foreign, bytes).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    }

    let only = format!("--only={prefix}");
    let out = run(&["clean", "--dry-run", &only]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("would remove {dead_path}")),
        "{stdout}"
    );
    assert!(
        std::path::Path::new(&dead_path).exists(),
        "dry run removed it"
    );

    let out = run(&["clean", &only]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("removed  {dead_path}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("creator pid") && stdout.contains("dead"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "kept     {alive_path}: creator pid {} alive",
            std::process::id()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 removed, 1 kept"), "{stdout}");
    assert!(!std::path::Path::new(&dead_path).exists());
    assert!(std::path::Path::new(&alive_path).exists());
    assert!(std::path::Path::new(&other).exists());
    if root {
        assert!(
            stdout.contains("1 file(s) of other users not looked at"),
            "{stdout}"
        );
        assert!(std::path::Path::new(&foreign).exists());
        std::fs::remove_file(&foreign).unwrap();
    }
    assert!(live.peers().iter().all(|p| p.alive));
    std::fs::remove_file(&other).unwrap();
    drop(live);
    let _ = std::fs::remove_file(&alive_path);
}

#[test]
fn quick_bench_prints_the_seed_tables() {
    let out = run(&[
        "bench",
        "--quick",
        "--only",
        "shm_write_1mb,shm_read_1mb,memcpy_1mb,spsc_block_rtt,spsc_spin_rtt,uds_rtt",
        "--json",
        "-",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // `--json -`: the JSON alone on stdout, the text on stderr.
    assert!(
        stdout.starts_with('{') && stdout.trim_end().ends_with('}'),
        "{stdout}"
    );
    assert!(stdout.contains("\"measurements\": {"), "{stdout}");
    assert!(stdout.contains("\"seed_tables\": ["), "{stdout}");
    assert!(stdout.contains("\"id\": \"raw_read_write\""), "{stdout}");
    assert!(
        stdout.contains("\"id\": \"semaphore_round_trip\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("\"id\": \"requests_with_arrays\""),
        "{stdout}"
    );
    assert!(
        stderr.contains("1. Shared memory raw read/write"),
        "{stderr}"
    );
    assert!(stderr.contains("2. Semaphore round trip"), "{stderr}");
    assert!(
        stderr.contains("=> 1 MB written and read: seed 343 us, ours "),
        "{stderr}"
    );
    assert!(
        stderr.contains("=> mutex round trip: seed 117 us with OS events"),
        "{stderr}"
    );
    assert!(!stderr.contains("4. Requests with arrays"), "{stderr}");
}
