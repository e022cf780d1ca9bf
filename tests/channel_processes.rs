//! The channel between real processes: the test binary re-executes itself
//! (see `common`) as clients, a victim, or a server.
//!
//! - 4 client processes x 100,000 calls (4,000 in debug builds) to one
//!   server, payloads from 0 bytes to 16 MiB both ways, every reply checked
//!   against its request, tickets waited on out of order;
//! - a client SIGKILLed in the middle of a call with more requests queued:
//!   the server keeps serving another client, a new client gets the dead
//!   one's slot, reply ring and arena lane, and pushes many lanes' worth of
//!   data through both lanes (anything leaked would block it);
//! - a client killed while idle is found dead by the server's scan and its
//!   slot freed;
//! - a server SIGKILLed while clients wait on it: every wait ends with
//!   `PeerDead`; a new server takes the stale name over.
//!
//! No sleep synchronises: processes meet through atomic words in a region
//! of their own, and every wait has a deadline far above what it needs.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use polycephaly::channel::{CallError, ChannelSpec, Client, ConnectError, Out, Server};
use polycephaly::region::{OpenOptions, Region, SectionId, SectionKind};
use polycephaly::sync::shim::{AtomicU64, Ordering};

const STALL: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;
const INDEX_VAR: &str = "POLYCEPHALY_TEST_CHANNEL_INDEX";
const CALLS_VAR: &str = "POLYCEPHALY_TEST_CHANNEL_CALLS";
const NAME_VAR: &str = "POLYCEPHALY_TEST_CHANNEL_NAME";
const WORDS_VAR: &str = "POLYCEPHALY_TEST_CHANNEL_WORDS";
const XOR: u64 = 0x5DEE_CE66_D1CE_F00D;

/// Words shared with the children: flags they raise, counters.
const READY: usize = 0;
const SLOT: usize = 1;
const WAITING: usize = 2;
/// Waiters whose first call was answered (the server answers nothing once
/// one "hold" reaches it).
const CHECKED: usize = 5;

fn words_region() -> Region {
    Region::builder()
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

fn inherited_words() -> Region {
    Region::inherited_from(WORDS_VAR, &OpenOptions::default()).unwrap()
}

/// Waits (yielding, with a stall limit) until `cond`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < STALL, "stalled waiting for {what}");
        std::thread::yield_now();
    }
}

fn env_u64(var: &str) -> u64 {
    std::env::var(var).unwrap().parse().unwrap()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over 8-byte words, then the tail, then the length.
fn checksum(b: &[u8]) -> u64 {
    let mut c = 0xCBF2_9CE4_8422_2325u64;
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        c = (c ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x100_0000_01B3);
    }
    for &t in tail {
        c = (c ^ u64::from(t)).wrapping_mul(0x100_0000_01B3);
    }
    c ^ b.len() as u64
}

/// Deterministic bytes for (client, call).
fn fill(seed: u64, out: &mut [u8]) {
    let mut words = out.chunks_exact_mut(8);
    let mut k = seed;
    for w in &mut words {
        k = splitmix(k);
        w.copy_from_slice(&k.to_le_bytes());
    }
    for b in words.into_remainder() {
        *b = seed as u8;
    }
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(seed, &mut v);
    v
}

/// The payload size of call `i` of client `c`: mostly inline sizes, some
/// medium, a few megabytes, rarely up to 16 MiB; call 0 is 16 MiB exactly.
fn size_of_call(c: u64, i: u64) -> usize {
    if i == 0 {
        return 16 * MIB;
    }
    let r = splitmix(i ^ (c << 40));
    (match r % 1000 {
        0..900 => r % 4097,
        900..990 => 4097 + r % 200_000,
        990..999 => r % (2 * MIB as u64),
        _ => 16 * MIB as u64 - r % 4096,
    }) as usize
}

fn register(server: &mut Server) {
    server.method("checksum", |b: &[u8]| checksum(b)).unwrap();
    server.method_slice("echo", |b: &[u8]| b.to_vec()).unwrap();
    server
        .method_in_place("xor", |ws: &[u64], out: &mut Out<'_, u64>| {
            for (o, w) in out.alloc(ws.len())?.iter_mut().zip(ws) {
                *o = w ^ XOR;
            }
            Ok(())
        })
        .unwrap();
}

fn stream_spec() -> ChannelSpec {
    ChannelSpec::new()
        .with_clients(4)
        .with_max_in_flight(8)
        .with_lane_len(40 * MIB)
}

/// A client process: `n` calls, each checked.
fn stream_client(client: &Client, c: u64, n: u64) {
    let check = client.method::<[u8], u64>("checksum").unwrap();
    let echo = client.method::<[u8], [u8]>("echo").unwrap();
    let xor = client.method::<[u64], [u64]>("xor").unwrap();
    let deadline = || Some(Instant::now() + STALL);
    for i in 0..n {
        let len = size_of_call(c, i);
        let seed = splitmix(c << 48 | i);
        match i % 4 {
            0 => {
                let b = bytes(seed, len);
                let got = client.call_deadline(&check, &b[..], deadline()).unwrap();
                assert_eq!(got, checksum(&b), "client {c} call {i}: checksum");
            }
            1 => {
                let b = bytes(seed, len);
                let got = client.call_deadline(&echo, &b[..], deadline()).unwrap();
                assert!(got[..] == b[..], "client {c} call {i}: echo of {len}");
            }
            2 => {
                let t = client
                    .send_with_deadline(
                        &xor,
                        len / 8,
                        |ws| fill(seed, bytemuck::cast_slice_mut(ws)),
                        deadline(),
                    )
                    .unwrap();
                let got = t.wait_deadline(deadline()).unwrap();
                let mut want = vec![0u64; len / 8];
                fill(seed, bytemuck::cast_slice_mut(&mut want));
                assert_eq!(got.len(), want.len());
                assert!(
                    got.iter().zip(&want).all(|(g, w)| *g == w ^ XOR),
                    "client {c} call {i}: xor of {len}"
                );
            }
            _ => {
                // Three in flight, waited on last first.
                let sizes = [len, len / 2, 17];
                let payloads: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &l)| bytes(seed ^ k as u64, l))
                    .collect();
                let tickets: Vec<_> = payloads
                    .iter()
                    .map(|p| client.send_deadline(&check, &p[..], deadline()).unwrap())
                    .collect();
                for (t, p) in tickets.into_iter().zip(&payloads).rev() {
                    assert_eq!(
                        t.wait_deadline(deadline()).unwrap(),
                        checksum(p),
                        "client {c} call {i}: ticket"
                    );
                }
            }
        }
    }
}

#[test]
fn four_clients_stream_calls_of_every_size() {
    if common::role().as_deref() == Some("client") {
        let region = Region::inherited(&OpenOptions::default()).unwrap();
        let client = Client::attach_timeout(&region, STALL).unwrap();
        stream_client(&client, env_u64(INDEX_VAR), env_u64(CALLS_VAR));
        return;
    }
    let n: u64 = if cfg!(debug_assertions) {
        4_000
    } else {
        100_000
    };
    let mut server = Server::anonymous(stream_spec()).unwrap();
    server.set_stall_timeout(STALL);
    register(&mut server);
    let mut children: Vec<Child> = (0..4u64)
        .map(|c| {
            common::spawn_self_with(
                "four_clients_stream_calls_of_every_size",
                "client",
                &[(INDEX_VAR, c.to_string()), (CALLS_VAR, n.to_string())],
                server.region(),
            )
        })
        .collect();
    let mut done = vec![false; children.len()];
    let mut last_look = Instant::now();
    server
        .serve_until(|| {
            if last_look.elapsed() < Duration::from_millis(50) {
                return false;
            }
            last_look = Instant::now();
            for (child, d) in children.iter_mut().zip(&mut done) {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "a client failed: {status}");
                    *d = true;
                }
            }
            done.iter().all(|d| *d)
        })
        .unwrap();
    let stats = server.stats();
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.replies, stats.requests);
    // Each group of four calls is 6 requests (n is a multiple of 4).
    assert_eq!(stats.requests, 4 * n / 4 * 6);
}

fn kill(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
}

fn spawn_named(test: &str, role: &str, name: &str, words: &Region) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(common::ROLE_VAR, role)
    .env(NAME_VAR, name)
    .stdin(std::process::Stdio::null());
    words.share_with_var(&mut cmd, WORDS_VAR).unwrap();
    cmd.spawn().unwrap()
}

fn unique(what: &str) -> String {
    format!("polycephaly-test-chan-{what}-{}", std::process::id())
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + STALL)
}

/// The victim: holds a large reply in place, then sends a call the server
/// holds and two more that queue behind it, says so, and waits.
fn victim_mid_call() {
    let words = inherited_words();
    let client = Client::connect_timeout(&std::env::var(NAME_VAR).unwrap(), STALL).unwrap();
    word(&words, SLOT).store(client.slot() as u64, Ordering::Relaxed);
    let echo = client.method::<[u8], [u8]>("echo").unwrap();
    let hold = client.method::<[u8], u64>("hold").unwrap();
    let big = bytes(1, 12 * MIB);
    // A block of the server's lane, held in place until we die.
    let kept = client.call_deadline(&echo, &big[..], deadline()).unwrap();
    assert!(kept.is_in_place());
    let held = client.send(&hold, &bytes(2, 16 * MIB)[..]).unwrap();
    let q1 = client.send(&echo, &big[..]).unwrap();
    let q2 = client.send(&echo, &big[..]).unwrap();
    // Release: pairs with the parent's Acquire in `wait_until`.
    word(&words, READY).store(1, Ordering::Release);
    let _ = held.wait();
    drop((q1, q2, kept));
    unreachable!("the victim is killed while the server holds its call");
}

#[test]
fn a_client_killed_mid_call_leaks_nothing() {
    if common::role().as_deref() == Some("victim") {
        return victim_mid_call();
    }
    let name = unique("midcall");
    let words = words_region();
    let spec = ChannelSpec::new()
        .with_clients(2)
        .with_max_in_flight(4)
        .with_lane_len(48 * MIB);
    let mut server = Server::bind(&name, spec).unwrap();
    server.set_stall_timeout(STALL);
    register(&mut server);
    let gate = std::sync::Arc::new(polycephaly::sync::shim::AtomicBool::new(false));
    let entered = std::sync::Arc::new(polycephaly::sync::shim::AtomicBool::new(false));
    let (g, e) = (gate.clone(), entered.clone());
    server
        .method("hold", move |b: &[u8]| {
            // Release/Acquire: pair with the test thread's loads and store.
            e.store(true, Ordering::Release);
            while !g.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            checksum(b)
        })
        .unwrap();
    let stop = std::sync::Arc::new(polycephaly::sync::shim::AtomicBool::new(false));
    let flag = stop.clone();
    let serving = std::thread::spawn(move || {
        server.serve_until(|| flag.load(Ordering::Relaxed)).unwrap();
        server
    });
    let b = Client::connect_timeout(&name, STALL).unwrap();
    let check = b.method::<[u8], u64>("checksum").unwrap();
    assert_eq!(
        b.call_deadline(&check, &[1u8][..], deadline()).unwrap(),
        checksum(&[1])
    );
    let mut victim = spawn_named(
        "a_client_killed_mid_call_leaks_nothing",
        "victim",
        &name,
        &words,
    );
    // Acquire: pair with the victim's and the handler's Release stores.
    wait_until("the victim's requests", || {
        word(&words, READY).load(Ordering::Acquire) == 1
    });
    wait_until("the held call", || entered.load(Ordering::Acquire));
    let victim_slot = word(&words, SLOT).load(Ordering::Relaxed) as usize;
    // B's call queues behind the held one; the victim dies mid-call.
    let queued = b.send_deadline(&check, &[2u8][..], deadline()).unwrap();
    kill(&mut victim);
    // A new client takes the dead one's slot, reply ring and lane.
    let c = Client::connect_timeout(&name, STALL).unwrap();
    assert_eq!(c.slot(), victim_slot);
    gate.store(true, Ordering::Release);
    assert_eq!(queued.wait_deadline(deadline()).unwrap(), checksum(&[2]));
    // Four lanes' worth through C's lane (adopted from the victim) and
    // the server's (which held the victim's reply): a block left behind
    // by the dead client would make these wait for room until they fail.
    let check_c = c.method::<[u8], u64>("checksum").unwrap();
    let echo_c = c.method::<[u8], [u8]>("echo").unwrap();
    for i in 0..12u64 {
        let p = bytes(100 + i, 16 * MIB);
        assert_eq!(
            c.call_deadline(&check_c, &p[..], deadline()).unwrap(),
            checksum(&p)
        );
        let back = c.call_deadline(&echo_c, &p[..], deadline()).unwrap();
        assert!(back[..] == p[..]);
        assert_eq!(
            b.call_deadline(&check, &[i as u8][..], deadline()).unwrap(),
            checksum(&[i as u8])
        );
    }
    drop((b, c));
    stop.store(true, Ordering::Relaxed);
    let stats = serving.join().unwrap().stats();
    assert_eq!(stats.errors, 0);
    // The held call's reply (its client gone) and the two queued calls.
    assert_eq!(stats.dropped, 3, "{stats:?}");
}

/// A client that calls once, says so, and idles until killed.
fn victim_idle() {
    let words = inherited_words();
    let client = Client::connect_timeout(&std::env::var(NAME_VAR).unwrap(), STALL).unwrap();
    let check = client.method::<[u8], u64>("checksum").unwrap();
    assert_eq!(
        client
            .call_deadline(&check, &[7u8][..], deadline())
            .unwrap(),
        checksum(&[7])
    );
    // Release: pairs with the parent's Acquire in `wait_until`.
    word(&words, READY).store(1, Ordering::Release);
    loop {
        std::thread::park();
    }
}

#[test]
fn an_idle_client_killed_is_dropped_by_the_scan() {
    if common::role().as_deref() == Some("victim") {
        return victim_idle();
    }
    let name = unique("idle");
    let words = words_region();
    let mut server =
        Server::bind(&name, ChannelSpec::new().with_clients(1).with_lane_len(MIB)).unwrap();
    register(&mut server);
    let mut victim = spawn_named(
        "an_idle_client_killed_is_dropped_by_the_scan",
        "victim",
        &name,
        &words,
    );
    let start = Instant::now();
    // Acquire: pairs with the victim's Release store.
    while word(&words, READY).load(Ordering::Acquire) == 0 {
        assert!(start.elapsed() < STALL, "the victim never called");
        let _ = server.serve_one_timeout(Duration::from_millis(10));
    }
    assert_eq!(server.clients().len(), 1);
    kill(&mut victim);
    while !server.clients().is_empty() {
        assert!(start.elapsed() < STALL, "the dead client was never dropped");
        let _ = server.serve_one_timeout(Duration::from_millis(10));
    }
    assert_eq!(server.stats().clients_dropped, 1);
}

/// A server whose method "hold" never returns.
fn doomed_server() {
    let mut server = Server::bind(
        &std::env::var(NAME_VAR).unwrap(),
        ChannelSpec::new().with_lane_len(MIB),
    )
    .unwrap();
    register(&mut server);
    server
        .method("hold", |_: &u64| -> u64 {
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    server.serve().unwrap();
}

/// A client that calls "hold" and must see the server die.
fn waiter() {
    let words = inherited_words();
    let client = Client::connect_timeout(&std::env::var(NAME_VAR).unwrap(), STALL).unwrap();
    let hold = client.method::<u64, u64>("hold").unwrap();
    let check = client.method::<[u8], u64>("checksum").unwrap();
    assert_eq!(
        client
            .call_deadline(&check, &[1u8][..], deadline())
            .unwrap(),
        checksum(&[1])
    );
    // The server serves one call at a time and never ends a "hold": every
    // waiter's first call must be answered before any "hold" is sent.
    // Release: pairs with the other waiters' Acquire below.
    word(&words, CHECKED).fetch_add(1, Ordering::Release);
    wait_until("the other waiters' first calls", || {
        word(&words, CHECKED).load(Ordering::Acquire) == 3
    });
    let t = client.send_deadline(&hold, &1, deadline()).unwrap();
    // Release: pairs with the parent's Acquire in `wait_until`.
    word(&words, WAITING).fetch_add(1, Ordering::Release);
    assert_eq!(t.wait_deadline(deadline()), Err(CallError::PeerDead));
    // And every later call.
    assert_eq!(
        client.call_deadline(&check, &[1u8][..], deadline()),
        Err(CallError::PeerDead)
    );
}

#[test]
fn a_killed_server_ends_every_wait_with_peer_dead() {
    match common::role().as_deref() {
        Some("server") => return doomed_server(),
        Some("waiter") => return waiter(),
        _ => {}
    }
    let test = "a_killed_server_ends_every_wait_with_peer_dead";
    let name = unique("doomed");
    let words = words_region();
    let mut server = spawn_named(test, "server", &name, &words);
    let waiters: Vec<Child> = (0..3)
        .map(|_| spawn_named(test, "waiter", &name, &words))
        .collect();
    // Acquire: pairs with the waiters' Release increments.
    wait_until("the waiters", || {
        word(&words, WAITING).load(Ordering::Acquire) == 3
    });
    kill(&mut server);
    for w in waiters {
        common::expect_success(w);
    }
    // The name the dead server left is taken over by a new one.
    let server = Server::bind(&name, ChannelSpec::new().with_lane_len(MIB)).unwrap();
    drop(server);
    assert!(Region::open(&name).is_err(), "unlinked on drop");
}

/// A server that dies after creating its region and before formatting the
/// channel in it: the region is left with its control section in state
/// FORMATTING (here: a kept `/dev/shm` file, so that the name outlives it).
fn half_server() {
    Region::builder()
        .named(&std::env::var(NAME_VAR).unwrap())
        .keep(true)
        .section(polycephaly::channel::CONTROL_KIND, 4096)
        .build()
        .unwrap();
}

#[test]
fn a_server_dead_before_formatting_is_peer_dead_and_its_name_taken_over() {
    if common::role().as_deref() == Some("half") {
        return half_server();
    }
    let test = "a_server_dead_before_formatting_is_peer_dead_and_its_name_taken_over";
    let name = unique("half");
    // Whatever happens, the kept file goes.
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = rustix::shm::unlink(self.0.as_str());
        }
    }
    let _unlink = Unlink(name.clone());
    let words = words_region();
    common::expect_success(spawn_named(test, "half", &name, &words));
    // A wait without limit would never end; with one, it must not be what
    // ends it.
    let quick = Duration::from_secs(5);
    let region = Region::open(&name).unwrap();
    assert!(!region.creator().is_alive());
    assert!(matches!(
        Client::attach_timeout(&region, quick),
        Err(polycephaly::channel::ConnectError::PeerDead)
    ));
    assert!(matches!(
        Client::connect_timeout(&name, quick),
        Err(polycephaly::channel::ConnectError::PeerDead)
    ));
    drop(region);
    // The name is stale: a new server takes it over.
    let server = Server::bind(&name, ChannelSpec::new().with_lane_len(MIB)).unwrap();
    drop(server);
    assert!(Region::open(&name).is_err(), "unlinked on drop");
}

/// Words of the kill loops (after the ones above).
const CALLS: usize = 3;
const STOP: usize = 4;
const SERVED: usize = 5;
const RECONNECTS: usize = 6;
/// Where the callers of the kill loops stand: a victim (0) or a client
/// that lives through the loop (1, 2).
const WHO_VAR: &str = "POLYCEPHALY_TEST_CHANNEL_WHO";

/// The payload size of call `i` of caller `who`: mostly inline, some by
/// handle (up to 1 MiB).
fn size_of_kill_call(who: u64, i: u64) -> usize {
    let r = splitmix(i ^ who << 40 ^ 0xC0FFEE);
    (match r % 100 {
        0..80 => r % 4097,
        80..98 => 4097 + r % 100_000,
        _ => r % MIB as u64,
    }) as usize
}

/// One checked call: `checksum`, `echo` or `xor` of call `i`'s bytes.
/// Returns `Err` only when the server is dead (or gone with its name).
fn checked_call(client: &Client, who: u64, i: u64) -> Result<(), CallError> {
    let len = size_of_kill_call(who, i);
    let seed = splitmix(who << 48 | i);
    match i % 3 {
        0 => {
            let check = client.method::<[u8], u64>("checksum").unwrap();
            let b = bytes(seed, len);
            let got = common::fault::bounded("a call", STALL, || {
                client.call_deadline(&check, &b[..], deadline())
            })?;
            assert_eq!(got, checksum(&b), "caller {who} call {i}: checksum");
        }
        1 => {
            let echo = client.method::<[u8], [u8]>("echo").unwrap();
            let b = bytes(seed, len);
            let got = common::fault::bounded("a call", STALL, || {
                client.call_deadline(&echo, &b[..], deadline())
            })?;
            assert!(got[..] == b[..], "caller {who} call {i}: echo of {len}");
        }
        _ => {
            let xor = client.method::<[u64], [u64]>("xor").unwrap();
            let mut want = vec![0u64; len / 8];
            fill(seed, bytemuck::cast_slice_mut(&mut want));
            let got = common::fault::bounded("a call", STALL, || {
                client.call_deadline(&xor, &want[..], deadline())
            })?;
            assert_eq!(got.len(), want.len(), "caller {who} call {i}: xor");
            assert!(got.iter().zip(&want).all(|(g, w)| *g == w ^ XOR));
        }
    }
    Ok(())
}

/// A caller of the kill loops: calls until `STOP` (a victim until
/// killed), counting its calls in `CALLS`; when the server dies it
/// connects to the next one (the same name) and calls on.
fn kill_loop_caller() {
    let words = inherited_words();
    let name = std::env::var(NAME_VAR).unwrap();
    let who = env_u64(WHO_VAR);
    // Acquire: pairs with the conductor's Release store. A server stops
    // (and its callers' calls end with `PeerDead`) only after it saw STOP,
    // which it loads with Acquire before it stores CLOSED (Release), so a
    // caller told `PeerDead` by that CLOSED sees STOP here.
    let stopped = || word(&words, STOP).load(Ordering::Acquire) != 0;
    // The next server, or `None` once the conductor said stop (the last
    // server then goes for good).
    let connect = || {
        let start = Instant::now();
        loop {
            if stopped() {
                return None;
            }
            // Slices of a second, to see STOP while no server is bound.
            match common::fault::bounded("a connect", STALL, || {
                Client::connect_timeout(&name, Duration::from_secs(1))
            }) {
                Ok(client) => return Some(client),
                // The server died while we connected (or its socket went
                // with it), or the next one is not bound yet: it comes.
                Err(ConnectError::PeerDead | ConnectError::Open(_) | ConnectError::TimedOut)
                    if start.elapsed() < STALL =>
                {
                    std::thread::yield_now();
                }
                Err(e) => panic!("caller {who}: {e}"),
            }
        }
    };
    let Some(mut client) = connect() else { return };
    let mut i = 0u64;
    while !stopped() {
        match checked_call(&client, who, i) {
            Ok(()) => {
                i += 1;
                // Release: the conductor's Acquire load.
                word(&words, CALLS).fetch_add(1, Ordering::Release);
            }
            Err(CallError::PeerDead) => {
                drop(client);
                let Some(next) = connect() else { return };
                client = next;
                word(&words, RECONNECTS).fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("caller {who} call {i}: {e}"),
        }
    }
}

/// A server of the kill loops, bound to `NAME_VAR` (taking the name over
/// from a dead one), counting the requests it served; until killed (or
/// `STOP`).
fn kill_loop_server(name: &str, words: &Region) -> Server {
    let spec = ChannelSpec::new()
        .with_clients(3)
        .with_max_in_flight(4)
        .with_lane_len(8 * MIB);
    let mut server = common::fault::bounded("a bind", STALL, || {
        loop {
            match Server::bind(name, spec) {
                Ok(s) => break s,
                // The dead server's name is being freed: try again.
                Err(_) => std::thread::yield_now(),
            }
        }
    });
    server.set_stall_timeout(STALL);
    register(&mut server);
    let words = words.clone();
    server
        .method("count", move |x: &u64| {
            // Relaxed: a count.
            word(&words, SERVED).fetch_add(1, Ordering::Relaxed);
            *x
        })
        .unwrap();
    server
}

fn spawn_caller(test: &str, name: &str, words: &Region, who: u64) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(common::ROLE_VAR, "caller")
    .env(NAME_VAR, name)
    .env(WHO_VAR, who.to_string())
    .stdin(std::process::Stdio::null());
    words.share_with_var(&mut cmd, WORDS_VAR).unwrap();
    cmd.spawn().unwrap()
}

/// Waits until the callers made `more` calls beyond what they had made.
fn wait_calls(words: &Region, more: u64, child: &mut Child) {
    // Acquire: pairs with the callers' Release increments.
    let from = word(words, CALLS).load(Ordering::Acquire);
    wait_until("calls", || {
        assert!(child.try_wait().unwrap().is_none(), "a child exited early");
        word(words, CALLS).load(Ordering::Acquire) >= from + more
    });
}

/// Clients SIGKILLed at random points of their calls (inline and by
/// handle), `rounds` times, beside two clients that call all along: the
/// server goes on, each victim's successor gets a slot, every reply is
/// the right one, no call waits past its deadline, and the dead clients'
/// blocks come back (the survivors' large calls would wait for room
/// otherwise); nothing leaks.
fn client_kills(test: &str, rounds: u64) {
    if common::role().as_deref() == Some("caller") {
        return kill_loop_caller();
    }
    common::isolated(test, || {
        let prefix = common::fault::prefix("chan-client");
        let base = common::fault::Baseline::take(&prefix);
        let mut rng = common::fault::Rng::new(test);
        let name = format!("{prefix}{}", rng.next());
        let words = words_region();
        let mut server = kill_loop_server(&name, &words);
        let stop = std::sync::Arc::new(polycephaly::sync::shim::AtomicBool::new(false));
        let flag = stop.clone();
        let serving = std::thread::spawn(move || {
            server.serve_until(|| flag.load(Ordering::Relaxed)).unwrap();
            server.stats()
        });
        let survivors: Vec<Child> = (1..3)
            .map(|who| spawn_caller(test, &name, &words, who))
            .collect();
        let mut pids: Vec<u32> = survivors.iter().map(Child::id).collect();
        for round in 0..rounds {
            let mut victim = spawn_caller(test, &name, &words, 100 + round);
            wait_calls(&words, 1 + rng.below(8), &mut victim);
            rng.spin(Duration::from_millis(2));
            common::fault::kill_and_reap(&mut victim, "the victim");
            // The server's region keeps a pidfd per peer slot it watched
            // until the slot changes hands (at most one per slot: a bound
            // that does not grow with the rounds), besides its own few.
            let slots = polycephaly::region::layout::MAX_PEERS as usize;
            base.check_during(&format!("round {round}"), slots + 8, &pids);
        }
        // Release: pairs with the callers' Acquire loads.
        word(&words, STOP).store(1, Ordering::Release);
        for c in survivors {
            common::expect_success(c);
        }
        pids.clear();
        stop.store(true, Ordering::Relaxed);
        let stats = serving.join().unwrap();
        assert_eq!(stats.errors, 0, "{stats:?}");
        eprintln!(
            "{rounds} clients killed; {} requests, {} replies, {} dropped, {} clients dropped",
            stats.requests, stats.replies, stats.dropped, stats.clients_dropped
        );
        drop(words);
        base.check(test);
    });
}

#[test]
fn clients_killed_at_random_points() {
    client_kills("clients_killed_at_random_points", 10);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_clients_killed_at_random_points() {
    client_kills("long_clients_killed_at_random_points", 250);
}

/// Servers SIGKILLed at random points, `rounds` times, while two clients
/// call: each client's waits end (`PeerDead`) within their bound, it
/// connects to the next server (which takes the name over) and calls on;
/// every reply it gets is the right one; nothing leaks.
fn server_kills(test: &str, rounds: u64) {
    match common::role().as_deref() {
        Some("caller") => return kill_loop_caller(),
        Some("server") => {
            let words = inherited_words();
            let mut server = kill_loop_server(&std::env::var(NAME_VAR).unwrap(), &words);
            // Release: the conductor's Acquire load.
            word(&words, READY).fetch_add(1, Ordering::Release);
            // Acquire: pairs with the conductor's Release store; the drop
            // below (CLOSED, Release) then tells the callers, whose Acquire
            // load of the state makes them see STOP too.
            server
                .serve_until(|| word(&words, STOP).load(Ordering::Acquire) != 0)
                .unwrap();
            return;
        }
        _ => {}
    }
    common::isolated(test, || {
        let prefix = common::fault::prefix("chan-server");
        let base = common::fault::Baseline::take(&prefix);
        let mut rng = common::fault::Rng::new(test);
        let name = format!("{prefix}{}", rng.next());
        let words = words_region();
        let mut server = spawn_named(test, "server", &name, &words);
        wait_until("the first server", || {
            word(&words, READY).load(Ordering::Acquire) == 1
        });
        let callers: Vec<Child> = (1..3)
            .map(|who| spawn_caller(test, &name, &words, who))
            .collect();
        let mut pids: Vec<u32> = callers.iter().map(Child::id).collect();
        for round in 0..rounds {
            wait_calls(&words, 1 + rng.below(8), &mut server);
            rng.spin(Duration::from_millis(2));
            common::fault::kill_and_reap(&mut server, "the server");
            base.check_during(&format!("round {round}"), 8, &pids);
            server = spawn_named(test, "server", &name, &words);
        }
        wait_calls(&words, 10, &mut server);
        // Release: pairs with the Acquire loads of the server (which sees
        // it at its next slice) and of the callers.
        word(&words, STOP).store(1, Ordering::Release);
        for c in callers {
            common::expect_success(c);
        }
        common::expect_success(server);
        pids.clear();
        let calls = word(&words, CALLS).load(Ordering::Acquire);
        let reconnects = word(&words, RECONNECTS).load(Ordering::Relaxed);
        eprintln!("{rounds} servers killed; {calls} calls checked, {reconnects} reconnections");
        drop(words);
        base.check(test);
    });
}

#[test]
fn servers_killed_at_random_points() {
    server_kills("servers_killed_at_random_points", 10);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_servers_killed_at_random_points() {
    server_kills("long_servers_killed_at_random_points", 250);
}

/// A process that creates a channel's region (a control section, never
/// formatted: a server dies in `bind` between creating its region and
/// storing BOUND), says so, and waits to be killed.
fn half_bound_server() {
    let words = inherited_words();
    let _region = Region::builder()
        .named(&std::env::var(NAME_VAR).unwrap())
        .section(SectionKind::User(0x4348), 4096)
        .build()
        .unwrap();
    // Release: pairs with the parent's Acquire in `wait_until`.
    word(&words, READY).store(1, Ordering::Release);
    loop {
        std::thread::park();
    }
}

/// A client that opened the region of a server that died before it
/// finished binding (state still FORMATTING, the server's id not
/// published yet) is told `PeerDead` within a wait slice, not left
/// waiting until its deadline (or for ever, without one): found by
/// `long_servers_killed_at_random_points`, whose callers timed out.
#[test]
fn a_server_killed_while_binding_is_seen_dead() {
    let test = "a_server_killed_while_binding_is_seen_dead";
    if common::role().as_deref() == Some("server") {
        return half_bound_server();
    }
    let name = unique("halfbound");
    let words = words_region();
    let mut server = spawn_named(test, "server", &name, &words);
    wait_until("the server's region", || {
        word(&words, READY).load(Ordering::Acquire) == 1
    });
    let region = Region::open(&name).unwrap();
    kill(&mut server);
    let start = Instant::now();
    let r = Client::attach_timeout(&region, STALL);
    assert!(
        matches!(r, Err(ConnectError::PeerDead)),
        "{r:?} after {:?}",
        start.elapsed()
    );
}
