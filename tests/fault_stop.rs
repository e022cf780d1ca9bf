//! Stopped is not dead: a peer SIGSTOPped for longer than every timeout
//! that could mistake it for dead (wait slices of 50 ms with a liveness
//! check after each, the MPSC claim timeout, the arena's slow pass, the
//! channel's scan of its clients every 100 ms and its stall timeout), then
//! SIGCONTinued. Meanwhile every wait on it times out (`TimedOut`, never
//! `PeerDead`), nothing it holds is taken from it; afterwards everything
//! goes on where it stopped. (The mutex's owner and the MPSC producer
//! holding a claim are in `lock_process.rs` and `mpsc_processes.rs`; a
//! drone and a master in `pool.rs`.)
//!
//! The test binary re-executes itself (see `common`); processes meet
//! through words in a raw section.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::fault::{bounded, cont, stop};
use polycephaly::arena::{AllocError, ArenaReader, ArenaSpec, ArenaWriter, BlockHandle};
use polycephaly::channel::{CallError, ChannelSpec, Client, ConnectError, Server};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{ClaimError, Receiver, RecvError, SendError, Sender, mpsc, spsc};
use polycephaly::sync::shim::{AtomicU64, Ordering};

const REGION_VAR: &str = "POLYCEPHALY_TEST_STOP_REGION";
const NAME_VAR: &str = "POLYCEPHALY_TEST_STOP_NAME";
/// How long a peer stays stopped: far longer than every timeout above.
const STOPPED: Duration = Duration::from_millis(1500);
/// One wait while the peer is stopped: a few slices.
const WAIT: Duration = Duration::from_millis(200);
/// A bound that only detects hangs.
const STALL: Duration = Duration::from_secs(30);

/// Raw words: the child is ready, the parent says go on, a count.
const READY: usize = 0;
const GO: usize = 1;
const COUNT: usize = 2;

fn word(region: &Region, section: SectionId, i: usize) -> &AtomicU64 {
    let s = region.section(section).unwrap();
    assert!((i + 1) * 8 <= s.len);
    // SAFETY: in bounds, 8-aligned (sections are 64-aligned), zero-filled
    // at creation (a valid AtomicU64), and alive as long as `region`.
    unsafe { &*s.ptr.as_ptr().add(i * 8).cast::<AtomicU64>() }
}

/// A deadline `t` from now.
fn within(t: Duration) -> Option<Instant> {
    Some(Instant::now() + t)
}

fn open_from_env() -> Region {
    Region::open(&std::env::var(REGION_VAR).unwrap()).unwrap()
}

fn spawn(test: &str, role: &str, region: &Region) -> Child {
    common::spawn_self(
        test,
        role,
        &[(REGION_VAR, region.name().unwrap().to_string())],
    )
}

/// Waits (yielding) until `cond`, failing after `STALL` or if `child`
/// exited.
fn wait_until(what: &str, child: &mut Child, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < STALL, "stalled waiting for {what}");
        if let Some(status) = child.try_wait().unwrap() {
            assert!(cond(), "the child exited ({status}) before {what}");
        }
        std::thread::yield_now();
    }
}

/// Repeats `f` (one bounded wait on the stopped peer) until `STOPPED` has
/// passed; each must end within its bound, timed out (`timed_out`).
fn while_stopped<E: std::fmt::Debug>(
    timed_out: impl Fn(&E) -> bool,
    mut f: impl FnMut() -> Result<(), E>,
) {
    let start = Instant::now();
    let mut waits = 0;
    while start.elapsed() < STOPPED {
        match bounded("a wait on a stopped peer", WAIT, &mut f) {
            Err(e) if timed_out(&e) => {}
            r => panic!("wait {waits} on a stopped peer: {r:?}"),
        }
        waits += 1;
    }
    assert!(waits >= 3);
}

const RING: SectionId = SectionId(0);
const WORDS: SectionId = SectionId(1);

fn spsc_region() -> Region {
    Region::builder()
        .named_random("polycephaly-test-stop-")
        .with(spsc::Spec::new(4096).unwrap())
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap()
}

/// An SPSC producer stopped, then a consumer: the other side's waits
/// time out, the peer stays alive, and the stream goes on without a gap
/// after SIGCONT.
#[test]
fn a_stopped_spsc_peer_is_waited_for() {
    let test = "a_stopped_spsc_peer_is_waited_for";
    match common::role().as_deref() {
        Some("producer") => {
            let region = open_from_env();
            let mut tx = spsc::Producer::attach(&region, RING).unwrap();
            // Relaxed: a stop request.
            for seq in 0u64.. {
                if word(&region, WORDS, GO).load(Ordering::Relaxed) != 0 {
                    return;
                }
                match tx.send_value_deadline(&seq, within(WAIT)) {
                    Ok(()) => {}
                    Err(SendError::TimedOut) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            return;
        }
        Some("consumer") => {
            let region = open_from_env();
            let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
            let mut next = 0u64;
            loop {
                let v: u64 = rx.recv_value_deadline(within(STALL)).unwrap();
                if v == u64::MAX {
                    return;
                }
                assert_eq!(v, next, "a gap");
                next += 1;
                // Relaxed: a progress count.
                word(&region, WORDS, COUNT).store(next, Ordering::Relaxed);
            }
        }
        _ => {}
    }
    // The producer stopped.
    let region = spsc_region();
    let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
    let child = spawn(test, "producer", &region);
    let mut next = 0u64;
    let take = |rx: &mut spsc::Consumer, next: &mut u64| {
        let v: u64 = rx.recv_value_deadline(within(STALL)).unwrap();
        assert_eq!(v, *next, "a gap");
        *next += 1;
    };
    while next < 1000 {
        take(&mut rx, &mut next);
    }
    stop(child.id());
    // Drain what it sent before it stopped, then time out.
    while let Ok(v) = rx.try_recv_value::<u64>() {
        assert_eq!(v, next, "a gap");
        next += 1;
    }
    while_stopped(
        |e| *e == RecvError::TimedOut,
        || {
            rx.recv_value_deadline::<u64>(within(WAIT))
                .map(|v| panic!("a value ({v}) from a stopped producer"))
        },
    );
    assert!(rx.is_peer_alive());
    cont(child.id());
    let until = next + 1000;
    while next < until {
        take(&mut rx, &mut next);
    }
    word(&region, WORDS, GO).store(1, Ordering::Relaxed);
    common::expect_success(child);
    drop(rx);

    // The consumer stopped.
    let region = spsc_region();
    let mut tx = spsc::Producer::attach(&region, RING).unwrap();
    let mut child = spawn(test, "consumer", &region);
    let mut seq = 0u64;
    while seq < 1000 {
        tx.send_value_deadline(&seq, within(STALL)).unwrap();
        seq += 1;
    }
    wait_until("the consumer's reads", &mut child, || {
        word(&region, WORDS, COUNT).load(Ordering::Relaxed) >= 500
    });
    stop(child.id());
    // Fill the ring, then time out.
    while tx.try_send(&seq.to_ne_bytes()).is_ok() {
        seq += 1;
    }
    while_stopped(
        |e| *e == SendError::TimedOut,
        || tx.send_value_deadline(&seq, within(WAIT)),
    );
    assert!(tx.is_peer_alive());
    cont(child.id());
    for _ in 0..1000 {
        tx.send_value_deadline(&seq, within(STALL)).unwrap();
        seq += 1;
    }
    tx.send_value_deadline(&u64::MAX, within(STALL)).unwrap();
    common::expect_success(child);
    assert_eq!(word(&region, WORDS, COUNT).load(Ordering::Relaxed), seq);
}

/// A stopped MPSC consumer: producers' claims time out (the ring is
/// full), never `PeerDead`; after SIGCONT it reads everything.
#[test]
fn a_stopped_mpsc_consumer_is_waited_for() {
    let test = "a_stopped_mpsc_consumer_is_waited_for";
    if common::role().as_deref() == Some("consumer") {
        let region = open_from_env();
        let mut rx = mpsc::Consumer::attach(&region, RING).unwrap();
        // Release: pairs with the parent's Acquire.
        word(&region, WORDS, READY).store(1, Ordering::Release);
        let mut next = 0u64;
        loop {
            let v: u64 = rx.recv_value_deadline(within(STALL)).unwrap();
            if v == u64::MAX {
                word(&region, WORDS, COUNT).store(next, Ordering::Relaxed);
                return;
            }
            assert_eq!(v, next, "a gap");
            next += 1;
        }
    }
    let region = Region::builder()
        .named_random("polycephaly-test-stop-")
        .with(mpsc::Spec::new(4096).unwrap())
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let mut child = spawn(test, "consumer", &region);
    wait_until("the consumer", &mut child, || {
        word(&region, WORDS, READY).load(Ordering::Acquire) == 1
    });
    let mut tx = mpsc::Producer::attach(&region, RING).unwrap();
    let mut seq = 0u64;
    while seq < 1000 {
        tx.send_value_deadline(&seq, within(STALL)).unwrap();
        seq += 1;
    }
    stop(child.id());
    while tx.try_send(&seq.to_ne_bytes()).is_ok() {
        seq += 1;
    }
    while_stopped(
        |e| *e == ClaimError::TimedOut,
        || tx.claim_timeout(8, WAIT).map(drop),
    );
    assert!(tx.is_peer_alive());
    cont(child.id());
    for _ in 0..1000 {
        tx.send_value_deadline(&seq, within(STALL)).unwrap();
        seq += 1;
    }
    tx.send_value_deadline(&u64::MAX, within(STALL)).unwrap();
    common::expect_success(child);
    assert_eq!(word(&region, WORDS, COUNT).load(Ordering::Relaxed), seq);
}

const ARENA: SectionId = SectionId(0);
const HANDLES: SectionId = SectionId(1);
const ARENA_WORDS: SectionId = SectionId(2);
const LANE: usize = 1 << 16;

/// Arena readers stopped holding a block, and owing a read (named for
/// it, not read yet): the writer's allocations that need that room time
/// out, the block is not reclaimed; after SIGCONT the reader reads and
/// releases, and the room comes back.
#[test]
fn a_stopped_arena_reader_keeps_its_blocks() {
    let test = "a_stopped_arena_reader_keeps_its_blocks";
    if common::role().as_deref() == Some("reader") {
        let region = open_from_env();
        let reader = ArenaReader::attach(&region, ARENA).unwrap();
        let mut rx = spsc::Consumer::attach(&region, HANDLES).unwrap();
        // Release: pairs with the parent's Acquire (our peer id).
        word(&region, ARENA_WORDS, READY)
            .store(u64::from(reader.peer_id().to_raw()), Ordering::Release);
        let held: BlockHandle = rx.recv_value_deadline(within(STALL)).unwrap();
        let guard = reader.read::<u8>(&held).unwrap();
        assert!(guard.iter().all(|&b| b == 1));
        word(&region, ARENA_WORDS, COUNT).store(1, Ordering::Release);
        // Acquire: pairs with the parent's Release (after SIGCONT).
        while word(&region, ARENA_WORDS, GO).load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        drop(guard);
        let owed: BlockHandle = rx.recv_value_deadline(within(STALL)).unwrap();
        assert!(reader.read::<u8>(&owed).unwrap().iter().all(|&b| b == 2));
        return;
    }
    let spec = ArenaSpec::new(1, LANE).with_blocks(8);
    let region = Region::builder()
        .named_random("polycephaly-test-stop-")
        .section(SectionKind::Arena, spec.section_len().unwrap())
        .with(spsc::Spec::new(4096).unwrap())
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    spec.format(&region, ARENA).unwrap();
    let mut w = ArenaWriter::attach(&region, ARENA).unwrap();
    let mut tx = spsc::Producer::attach(&region, HANDLES).unwrap();
    let mut child = spawn(test, "reader", &region);
    wait_until("the reader", &mut child, || {
        word(&region, ARENA_WORDS, READY).load(Ordering::Acquire) != 0
    });
    let id = polycephaly::region::PeerId::from_raw(
        word(&region, ARENA_WORDS, READY).load(Ordering::Acquire) as u32,
    )
    .unwrap();
    let mut b = w.alloc::<u8>(LANE / 2).unwrap();
    b.fill(1);
    tx.send_value(&b.publish_for(1)).unwrap();
    wait_until("the reader's hold", &mut child, || {
        word(&region, ARENA_WORDS, COUNT).load(Ordering::Acquire) == 1
    });
    // Held by a stopped reader: its half of the lane stays taken.
    stop(child.id());
    while_stopped(
        |e| *e == AllocError::TimedOut,
        || w.alloc_timeout::<u8>(LANE, WAIT).map(drop),
    );
    assert_eq!(w.reclaim().unwrap(), 1);
    // Owed by the stopped reader: the other half too.
    let mut b = w.alloc::<u8>(LANE / 2).unwrap();
    b.fill(2);
    let owed = b.publish_to(id);
    while_stopped(
        |e| *e == AllocError::TimedOut,
        || w.alloc_timeout::<u8>(LANE / 2, WAIT).map(drop),
    );
    assert_eq!(w.reclaim().unwrap(), 2);
    cont(child.id());
    word(&region, ARENA_WORDS, GO).store(1, Ordering::Release);
    tx.send_value(&owed).unwrap();
    common::expect_success(child);
    assert!(
        w.alloc_timeout::<u8>(LANE, STALL).is_ok(),
        "the room came back"
    );
}

fn server_spec() -> ChannelSpec {
    ChannelSpec::new().with_clients(2).with_lane_len(1 << 20)
}

fn register(server: &mut Server) {
    server.method("double", |x: &u64| 2 * x).unwrap();
}

/// A stopped channel server: calls time out (`TimedOut`, not `PeerDead`),
/// a new client's connect times out rather than hanging; after SIGCONT
/// calls succeed again and the late replies of the timed-out calls are
/// dropped (each call gets its own reply).
#[test]
fn a_stopped_channel_server_is_waited_for() {
    let test = "a_stopped_channel_server_is_waited_for";
    if common::role().as_deref() == Some("server") {
        let words = Region::open(&std::env::var(REGION_VAR).unwrap()).unwrap();
        let mut server = Server::bind(&std::env::var(NAME_VAR).unwrap(), server_spec()).unwrap();
        register(&mut server);
        word(&words, RING, READY).store(1, Ordering::Release);
        server
            .serve_until(|| word(&words, RING, GO).load(Ordering::Relaxed) != 0)
            .unwrap();
        return;
    }
    let words = Region::builder()
        .named_random("polycephaly-test-stop-")
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let name = format!("polycephaly-test-stop-chan-{}", std::process::id());
    let mut child = common::spawn_self(
        test,
        "server",
        &[
            (REGION_VAR, words.name().unwrap().to_string()),
            (NAME_VAR, name.clone()),
        ],
    );
    wait_until("the server", &mut child, || {
        word(&words, RING, READY).load(Ordering::Acquire) == 1
    });
    let client = Client::connect_timeout(&name, STALL).unwrap();
    let double = client.method::<u64, u64>("double").unwrap();
    assert_eq!(client.call_timeout(&double, &21, STALL).unwrap(), 42);
    stop(child.id());
    let mut x = 0u64;
    while_stopped(
        |e| *e == CallError::TimedOut,
        || {
            x += 1;
            client.call_timeout(&double, &x, WAIT).map(drop)
        },
    );
    // A new client meets a server that does not answer: a bounded wait.
    let r = bounded("a connect to a stopped server", WAIT, || {
        Client::connect_timeout(&name, WAIT)
    });
    assert!(
        matches!(r, Err(ConnectError::TimedOut | ConnectError::Open(_))),
        "{r:?}"
    );
    cont(child.id());
    for y in 1000..1100u64 {
        assert_eq!(client.call_timeout(&double, &y, STALL).unwrap(), 2 * y);
    }
    word(&words, RING, GO).store(1, Ordering::Relaxed);
    drop(client);
    common::expect_success(child);
}

/// A stopped channel client: the server's scans (every 100 ms while
/// busy, every slice while idle) do not drop it; after SIGCONT it calls
/// on in the same slot.
#[test]
fn a_stopped_channel_client_keeps_its_slot() {
    let test = "a_stopped_channel_client_keeps_its_slot";
    if common::role().as_deref() == Some("client") {
        let words = Region::open(&std::env::var(REGION_VAR).unwrap()).unwrap();
        let client = Client::connect_timeout(&std::env::var(NAME_VAR).unwrap(), STALL).unwrap();
        let double = client.method::<u64, u64>("double").unwrap();
        assert_eq!(client.call_timeout(&double, &1, STALL).unwrap(), 2);
        word(&words, RING, READY).store(1, Ordering::Release);
        while word(&words, RING, GO).load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        for y in 0..100u64 {
            assert_eq!(client.call_timeout(&double, &y, STALL).unwrap(), 2 * y);
        }
        return;
    }
    let words = Region::builder()
        .named_random("polycephaly-test-stop-")
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let name = format!("polycephaly-test-stop-client-{}", std::process::id());
    let mut server = Server::bind(&name, server_spec()).unwrap();
    register(&mut server);
    let mut child = common::spawn_self(
        test,
        "client",
        &[
            (REGION_VAR, words.name().unwrap().to_string()),
            (NAME_VAR, name.clone()),
        ],
    );
    let start = Instant::now();
    while word(&words, RING, READY).load(Ordering::Acquire) == 0 {
        assert!(start.elapsed() < STALL, "the client never called");
        let _ = server.serve_one_timeout(Duration::from_millis(10));
    }
    stop(child.id());
    let start = Instant::now();
    while start.elapsed() < STOPPED {
        let _ = server.serve_one_timeout(Duration::from_millis(10));
    }
    assert_eq!(server.clients().len(), 1, "a stopped client was dropped");
    assert_eq!(server.stats().clients_dropped, 0);
    cont(child.id());
    word(&words, RING, GO).store(1, Ordering::Release);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < STALL, "the client never finished");
        let _ = server.serve_one_timeout(Duration::from_millis(10));
    }
    common::expect_success(child);
    assert_eq!(server.stats().replies, 101);
    assert_eq!(server.stats().clients_dropped, 0);
}
