//! A hostile process writes random bytes into a live region while the
//! others run: the region's header and peer table, ring control words
//! and frames, arena lane headers and descriptors, the mutex and event
//! words, a snapshot cell; and, in a channel's region, its control
//! section (state, slots, method table), its rings and lanes. The others
//! get errors and go on, or stop cleanly: none dies of a signal or a
//! panic, none waits past its bound (every wait has a short timeout, and
//! the fault helpers assert each returned within it plus a margin).
//!
//! Participants are this test binary started again with a role (see
//! `common`). Their bookkeeping words (start, stop, counts) live in a
//! region of their own, out of the scribbler's reach. The `long_` forms
//! (`--ignored`) scribble for 30 s instead of 3.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::fault::{Rng, bounded};
use polycephaly::arena::{
    ArenaReader, ArenaSpec, ArenaWriter, BlockHandle, SnapshotReader, SnapshotWriter,
    snapshot_section_len,
};
use polycephaly::channel::{ChannelSpec, Client, Server};
use polycephaly::lock::{Event, EventMode, LockStatus, ShmMutex};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, Sender, mpsc, spsc};
use polycephaly::sync::shim::{AtomicU64, Ordering};

const REGION_VAR: &str = "POLYCEPHALY_TEST_SCRIBBLE_REGION";
const WORDS_VAR: &str = "POLYCEPHALY_TEST_SCRIBBLE_WORDS";
const SECONDS_VAR: &str = "POLYCEPHALY_TEST_SCRIBBLE_SECONDS";
/// Set for the scribbler of a channel: it follows the name to the
/// region of the server that replaced a failed one.
const FOLLOW_VAR: &str = "POLYCEPHALY_TEST_SCRIBBLE_FOLLOW";
/// Every wait of a participant: short, so that scribbles land among
/// waits of every kind.
const WAIT: Duration = Duration::from_millis(20);
/// A bound that only detects hangs.
const STALL: Duration = Duration::from_secs(60);

/// Words of the bookkeeping region: participants ready, stop, operations
/// that succeeded, errors seen, scribbles written.
const READY: usize = 0;
const STOP: usize = 1;
const OPS: usize = 2;
const ERRORS: usize = 3;
const SCRIBBLES: usize = 4;

const SPSC: SectionId = SectionId(0);
const MPSC: SectionId = SectionId(1);
const ARENA: SectionId = SectionId(2);
const HANDLES: SectionId = SectionId(3);
const MUTEX: SectionId = SectionId(4);
const EVENT: SectionId = SectionId(5);
const SNAPSHOT: SectionId = SectionId(6);

type Cell = [u64; 4];

fn words_region() -> Region {
    Region::builder()
        .named_random("polycephaly-test-scribble-words-")
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap()
}

fn word(region: &Region, i: usize) -> &AtomicU64 {
    let s = region.section(SectionId(0)).unwrap();
    assert!((i + 1) * 8 <= s.len);
    // SAFETY: in bounds, 8-aligned (the section is 64-aligned), zero-filled
    // at creation (a valid AtomicU64), and alive as long as `region`.
    unsafe { &*s.ptr.as_ptr().add(i * 8).cast::<AtomicU64>() }
}

fn arena_spec() -> ArenaSpec {
    ArenaSpec::new(1, 1 << 16).with_blocks(8)
}

fn target_region() -> Region {
    let spec = arena_spec();
    let region = Region::builder()
        .named_random("polycephaly-test-scribble-")
        .with(spsc::Spec::new(4096).unwrap())
        .with(mpsc::Spec::new(4096).unwrap())
        .section(SectionKind::Arena, spec.section_len().unwrap())
        .with(spsc::Spec::new(4096).unwrap())
        .with(ShmMutex::<Cell>::spec())
        .with(Event::spec())
        .section(SectionKind::Arena, snapshot_section_len::<Cell>())
        .build()
        .unwrap();
    spec.format(&region, ARENA).unwrap();
    region
}

/// The handles a participant holds (re-made after an error).
struct Env {
    region: Region,
    words: Region,
}

impl Env {
    fn from_env() -> Self {
        let words = Region::open(&std::env::var(WORDS_VAR).unwrap()).unwrap();
        let region = Region::open(&std::env::var(REGION_VAR).unwrap()).unwrap();
        Self { region, words }
    }

    fn stopped(&self) -> bool {
        // Relaxed: a stop request.
        word(&self.words, STOP).load(Ordering::Relaxed) != 0
    }

    /// Counts the outcome of one operation.
    fn count<T, E>(&self, r: Result<T, E>) -> Option<T> {
        // Relaxed: counts, read once everyone exited.
        match r {
            Ok(v) => {
                word(&self.words, OPS).fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(_) => {
                word(&self.words, ERRORS).fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Runs a participant: `attach` makes its handle (again after an error),
/// `step` does one operation with a bounded wait (`Err(())` drops the
/// handle). Stops when told; says it is ready first.
fn participate<H>(
    env: &Env,
    mut attach: impl FnMut(&Region) -> Option<H>,
    mut step: impl FnMut(&mut H, &Env) -> Result<(), ()>,
) {
    let mut handle = attach(&env.region);
    // Release: pairs with the conductor's Acquire.
    word(&env.words, READY).fetch_add(1, Ordering::Release);
    while !env.stopped() {
        match handle.as_mut() {
            None => {
                handle = attach(&env.region);
                if handle.is_none() {
                    env.count::<(), ()>(Err(()));
                    std::thread::sleep(WAIT);
                }
            }
            Some(h) => {
                if bounded("a step", WAIT * 2, || step(h, env)).is_err() {
                    handle = None;
                }
            }
        }
    }
}

/// The participants: `role` names the handle and what it does.
fn participant(role: &str) {
    let env = Env::from_env();
    let mut seq = 0u64;
    match role {
        "spsc_tx" => participate(
            &env,
            |r| spsc::Producer::attach(r, SPSC).ok(),
            |tx, env| {
                seq += 1;
                let r = env.count(tx.send_timeout(&seq.to_le_bytes(), WAIT));
                ok_or_corrupted(r.is_some(), tx.is_poisoned())
            },
        ),
        "spsc_rx" => {
            let mut buf = Vec::new();
            participate(
                &env,
                |r| spsc::Consumer::attach(r, SPSC).ok(),
                |rx, env| {
                    let r = env.count(rx.recv_timeout(&mut buf, WAIT));
                    ok_or_corrupted(r.is_some(), rx.is_poisoned())
                },
            );
        }
        "mpsc_tx" => participate(
            &env,
            |r| mpsc::Producer::attach(r, MPSC).ok(),
            |tx, env| {
                seq += 1;
                let r = env.count(tx.send_timeout(&seq.to_le_bytes(), WAIT));
                ok_or_corrupted(r.is_some(), tx.is_poisoned())
            },
        ),
        "mpsc_rx" => {
            let mut buf = Vec::new();
            participate(
                &env,
                |r| {
                    let mut c = mpsc::Consumer::attach(r, MPSC).ok()?;
                    c.set_claim_timeout(WAIT);
                    Some(c)
                },
                |rx, env| {
                    let r = env.count(rx.recv_timeout(&mut buf, WAIT));
                    ok_or_corrupted(r.is_some(), rx.is_poisoned())
                },
            );
        }
        "arena_w" => participate(
            &env,
            |r| {
                let w = ArenaWriter::attach_lane(r, ARENA, 0).ok()?;
                let tx = spsc::Producer::attach(r, HANDLES).ok()?;
                Some((w, tx))
            },
            |(w, tx), env| {
                seq += 1;
                let n = (seq % 2000) as usize;
                let published = w
                    .alloc_uninit_timeout::<u64>(n, WAIT)
                    .map(|block| block.fill(seq).publish_for(1));
                let h = match published {
                    Ok(h) => h,
                    Err(e) => {
                        env.count::<(), _>(Err(e));
                        return ok_or_corrupted(false, w.is_poisoned());
                    }
                };
                env.count::<(), ()>(Ok(()));
                let r = env.count(tx.send_timeout(bytemuck::bytes_of(&h), WAIT));
                ok_or_corrupted(r.is_some(), tx.is_poisoned())
            },
        ),
        "arena_r" => participate(
            &env,
            |r| {
                let reader = ArenaReader::attach(r, ARENA).ok()?;
                let rx = spsc::Consumer::attach(r, HANDLES).ok()?;
                Some((reader, rx))
            },
            |(reader, rx), env| {
                let mut raw = [0u8; 32];
                let got = rx.read_timeout(WAIT).map(|frame| {
                    let n = frame.len().min(32);
                    raw[..n].copy_from_slice(&frame[..n]);
                    frame.len()
                });
                let Some(len) = env.count(got) else {
                    return ok_or_corrupted(false, rx.is_poisoned());
                };
                if len == 32 {
                    let h: BlockHandle = bytemuck::pod_read_unaligned(&raw);
                    // Values may be wrong (a scribbled block): only read.
                    if let Some(g) = env.count(reader.read::<u64>(&h)) {
                        std::hint::black_box(g.iter().fold(0u64, |a, &x| a ^ x));
                    }
                }
                Ok(())
            },
        ),
        "locker" => participate(
            &env,
            |r| ShmMutex::<Cell>::attach(r, MUTEX).ok(),
            |m, env| {
                let Some(mut g) = env.count(m.lock_timeout(WAIT)) else {
                    return Ok(());
                };
                if g.status() != LockStatus::Consistent {
                    g.mark_consistent();
                }
                g[0] = g[0].wrapping_add(1);
                g[1] = g[0].wrapping_mul(3);
                env.count(g.unlock());
                Ok(())
            },
        ),
        "event_sig" => participate(
            &env,
            |r| Event::attach(r, EVENT, EventMode::AutoReset).ok(),
            |e, env| {
                env.count(e.signal());
                std::thread::sleep(WAIT / 4);
                Ok(())
            },
        ),
        "event_wait" => participate(
            &env,
            |r| Event::attach(r, EVENT, EventMode::AutoReset).ok(),
            |e, env| {
                env.count(e.wait_timeout(WAIT));
                Ok(())
            },
        ),
        "snap_w" => participate(
            &env,
            |r| SnapshotWriter::<Cell>::attach(r, SNAPSHOT).ok(),
            |w, env| {
                seq += 1;
                w.write(&[seq, seq * 2, seq * 3, seq * 4]);
                env.count::<(), ()>(Ok(()));
                std::thread::sleep(WAIT / 4);
                Ok(())
            },
        ),
        "snap_r" => participate(
            &env,
            |r| SnapshotReader::<Cell>::attach(r, SNAPSHOT).ok(),
            |rd, env| {
                env.count(rd.read_timeout(WAIT));
                Ok(())
            },
        ),
        other => panic!("unknown role {other}"),
    }
}

/// `Ok` unless the handle saw its structure corrupted (then it is made
/// again): a failed operation on a sound handle is only counted.
fn ok_or_corrupted(_ok: bool, poisoned: bool) -> Result<(), ()> {
    if poisoned { Err(()) } else { Ok(()) }
}

/// The scribbler: random words over the target region (its header page
/// half the time, the sections' control lines and first frames mostly,
/// anywhere sometimes) for `SECONDS_VAR` seconds, in bursts.
fn scribbler() {
    let env = Env::from_env();
    let seconds: u64 = std::env::var(SECONDS_VAR).unwrap().parse().unwrap();
    let follow = std::env::var_os(FOLLOW_VAR).is_some();
    let mut region = env.region.clone();
    let mut rng = Rng::new("scribbler");
    word(&env.words, READY).fetch_add(1, Ordering::Release);
    let start = Instant::now();
    let mut n = 0u64;
    let mut bursts = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        bursts += 1;
        if follow && bursts % 64 == 0 {
            // The name may belong to a new region now (a server that
            // failed was replaced): scribble over that one.
            if let Ok(r) = Region::open(&std::env::var(REGION_VAR).unwrap()) {
                region = r;
            }
        }
        let len = region.len();
        let sections = region.sections();
        // The first section starts right after the header page.
        let base = sections[0].ptr.as_ptr() as usize - polycephaly::region::layout::HEADER_LEN;
        let offset_of = |s: &polycephaly::region::Section| s.ptr.as_ptr() as usize - base;
        for _ in 0..32 {
            let r = rng.next();
            let at = match r % 8 {
                // The header page: fixed part, section table, peer table.
                0..=3 => (r >> 8) as usize % 4096,
                // A section's first 8 KiB: control words, first frames,
                // lane headers and descriptors.
                4..=6 => {
                    let s = &sections[(r >> 8) as usize % sections.len()];
                    offset_of(s) + (r >> 16) as usize % s.len.min(8192)
                }
                _ => (r >> 8) as usize % len,
            } & !7;
            let at = at.min(len - 8);
            let value = rng.next();
            // SAFETY: `at + 8 <= len`, inside the live mapping, 8-aligned.
            // Racing the other processes' atomics is the point: it is
            // what a hostile peer can do, and they must cope.
            unsafe {
                ((base + at) as *mut u64).write_volatile(value);
            }
            n += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    word(&env.words, SCRIBBLES).store(n, Ordering::Relaxed);
}

/// Starts the participants and the scribbler, waits for the scribbler,
/// stops the rest, and checks that each exited on its own, successfully.
fn scribble(
    test: &str,
    seconds: u64,
    region: &Region,
    roles: &[&str],
    follow: bool,
) -> (u64, u64, u64) {
    let words = words_region();
    let mut env = vec![
        (REGION_VAR, region.name().unwrap().to_string()),
        (WORDS_VAR, words.name().unwrap().to_string()),
        (SECONDS_VAR, seconds.to_string()),
    ];
    if follow {
        env.push((FOLLOW_VAR, "1".to_string()));
    }
    let mut children: Vec<(String, Child)> = roles
        .iter()
        .map(|r| (r.to_string(), common::spawn_self(test, r, &env)))
        .collect();
    let start = Instant::now();
    // Acquire: pairs with the participants' Release increments.
    while word(&words, READY).load(Ordering::Acquire) < roles.len() as u64 {
        assert!(start.elapsed() < STALL, "the participants never started");
        std::thread::yield_now();
    }
    let mut scribbler = common::spawn_self(test, "scribbler", &env);
    let start = Instant::now();
    while scribbler.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds) + STALL,
            "the scribbler never ended"
        );
        for (role, c) in &mut children {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("{role} ended under the scribbles: {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    common::expect_success(scribbler);
    // Relaxed: a stop request.
    word(&words, STOP).store(1, Ordering::Relaxed);
    for (role, mut c) in children {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = c.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > STALL {
                let _ = c.kill();
                panic!("{role} did not stop");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(status.success(), "{role}: {status}");
    }
    let get = |i| word(&words, i).load(Ordering::Relaxed);
    (get(OPS), get(ERRORS), get(SCRIBBLES))
}

fn scribble_primitives(test: &str, seconds: u64) {
    match common::role().as_deref() {
        Some("scribbler") => return scribbler(),
        Some(role) => return participant(role),
        None => {}
    }
    let region = target_region();
    let roles = [
        "spsc_tx",
        "spsc_rx",
        "mpsc_tx",
        "mpsc_tx",
        "mpsc_rx",
        "arena_w",
        "arena_r",
        "locker",
        "locker",
        "event_sig",
        "event_wait",
        "snap_w",
        "snap_r",
    ];
    let (ops, errors, scribbles) = scribble(test, seconds, &region, &roles, false);
    eprintln!("{scribbles} scribbles; {ops} operations succeeded, {errors} failed");
    assert!(
        ops > 0 && errors > 0,
        "the scribbles landed among real traffic"
    );
}

#[test]
fn scribbles_over_every_primitive_give_errors_not_crashes() {
    scribble_primitives("scribbles_over_every_primitive_give_errors_not_crashes", 3);
}

#[test]
#[ignore = "long (30 s of scribbles): cargo test --release -- --ignored long_"]
fn long_scribbles_over_every_primitive_give_errors_not_crashes() {
    scribble_primitives(
        "long_scribbles_over_every_primitive_give_errors_not_crashes",
        30,
    );
}

/// A client of the scribbled channel: calls with a deadline, whatever
/// comes back; connects again when its client fails for good.
fn channel_client() {
    let env = Env::from_env();
    let name = std::env::var(REGION_VAR).unwrap();
    let mut seq = 0u64;
    participate(
        &env,
        |_| Client::connect_timeout(&name, WAIT).ok(),
        |c, env| {
            seq += 1;
            let Ok(echo) = c.method::<[u8], [u8]>("echo") else {
                return Err(());
            };
            let len = (seq % 9000) as usize;
            let payload = vec![seq as u8; len];
            match env.count(c.call_timeout(&echo, &payload[..], WAIT)) {
                Some(_) => Ok(()),
                None => {
                    // A dead or broken server: connect again.
                    if seq % 16 == 0 { Err(()) } else { Ok(()) }
                }
            }
        },
    );
}

fn scribble_channel(test: &str, seconds: u64) {
    match common::role().as_deref() {
        Some("scribbler") => return scribbler(),
        Some("client") => return channel_client(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let name = format!("polycephaly-test-scribble-chan-{}", std::process::id());
    let spec = ChannelSpec::new()
        .with_clients(3)
        .with_inline_max(1024)
        .with_lane_len(1 << 20);
    let stop = std::sync::Arc::new(polycephaly::sync::shim::AtomicBool::new(false));
    // The server serves in a thread of the conductor until stopped; a
    // server error (a corrupted request ring) ends its `serve`, and a new
    // server takes the name over.
    let serving = {
        let (stop, name) = (stop.clone(), name.clone());
        std::thread::spawn(move || {
            let mut servers = 0u64;
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut server) = Server::bind(&name, spec) else {
                    errors += 1;
                    std::thread::sleep(WAIT);
                    continue;
                };
                servers += 1;
                server.method_slice("echo", |b: &[u8]| b.to_vec()).unwrap();
                server.set_stall_timeout(WAIT);
                if server.serve_until(|| stop.load(Ordering::Relaxed)).is_err() {
                    errors += 1;
                }
            }
            (servers, errors)
        })
    };
    let start = Instant::now();
    let region = loop {
        if let Ok(r) = Region::open(&name) {
            break r;
        }
        assert!(start.elapsed() < STALL, "the server never bound");
        std::thread::sleep(Duration::from_millis(1));
    };
    let (ops, errors, scribbles) = scribble(test, seconds, &region, &["client", "client"], true);
    stop.store(true, Ordering::Relaxed);
    let (servers, server_errors) = serving.join().expect("the server thread panicked");
    eprintln!(
        "{scribbles} scribbles; {ops} calls succeeded, {errors} failed; \
         {servers} servers, {server_errors} server errors"
    );
    assert!(ops > 0, "calls went through before the scribbles");
}

#[test]
fn scribbles_over_a_channel_give_errors_not_crashes() {
    scribble_channel("scribbles_over_a_channel_give_errors_not_crashes", 3);
}

#[test]
#[ignore = "long (30 s of scribbles): cargo test --release -- --ignored long_"]
fn long_scribbles_over_a_channel_give_errors_not_crashes() {
    scribble_channel("long_scribbles_over_a_channel_give_errors_not_crashes", 30);
}
