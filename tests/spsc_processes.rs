//! SPSC rings between real processes: the test binary re-executes itself
//! (see `common`) and the processes meet in a named region.
//!
//! - 10,000,000 frames of random lengths (200,000 in debug builds) with a
//!   running checksum, blocking and spinning;
//! - the consumer killed with SIGKILL: the producer gets `PeerDead` once it
//!   blocks;
//! - the producer killed: the consumer gets every committed frame, then
//!   `PeerDead`;
//! - a hostile process writing random bytes over the live ring: the other
//!   sides get errors, never a crash or a hang;
//! - producers, then consumers, SIGKILLed at random points one after
//!   another (10 of each; 250 in the `long_` forms, `--ignored`): each
//!   successor takes the role over; every committed frame arrives once,
//!   checked byte for byte; no wait overruns its bound; nothing leaks.

mod common;

use std::time::Duration;

use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, RecvError, SendError, Sender, TryRecvError, spsc};
use polycephaly::sync::WaitStrategy;
use polycephaly::sync::shim::{AtomicU64, Ordering};

const RING: SectionId = SectionId(0);
/// A raw section for the test's own words (not part of the ring).
const WORDS: SectionId = SectionId(1);
const REGION_VAR: &str = "POLYCEPHALY_TEST_SPSC_REGION";
const STRATEGY_VAR: &str = "POLYCEPHALY_TEST_SPSC_STRATEGY";
const FRAMES_VAR: &str = "POLYCEPHALY_TEST_SPSC_FRAMES";
const NEXT_VAR: &str = "POLYCEPHALY_TEST_SPSC_NEXT";

/// Word 0 of the raw section: frames the producer committed (kill test);
/// word 1: stop flag, word 2: the hostile process has been writing for a
/// while (hostile test).
const COMMITTED: usize = 0;
const STOP: usize = 1;
const ATTACKING: usize = 2;
/// Kill loops: consumers attached so far; the next frame a consumer is
/// owed (every frame before it was read and its release published).
const ATTACHED: usize = 3;
const OWED: usize = 4;

/// The longest random frame.
const MAX_LEN: u64 = 128;
/// The tag of the final frame carrying (count, checksum).
const END_TAG: u32 = u32::MAX;

fn create(capacity: usize) -> Region {
    create_with_prefix("polycephaly-test-spsc-", capacity)
}

fn create_with_prefix(prefix: &str, capacity: usize) -> Region {
    Region::builder()
        .named_random(prefix)
        .with(spsc::Spec::new(capacity).unwrap())
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap()
}

fn open_from_env() -> Region {
    Region::open(&std::env::var(REGION_VAR).unwrap()).unwrap()
}

/// Word `i` of the raw section.
fn word(region: &Region, i: usize) -> &AtomicU64 {
    let s = region.section(WORDS).unwrap();
    assert!((i + 1) * 8 <= s.len);
    // SAFETY: in bounds, 8-aligned (the section is 64-aligned), zero-filled
    // at creation (a valid AtomicU64), and alive as long as `region`.
    unsafe { &*s.ptr.as_ptr().add(i * 8).cast::<AtomicU64>() }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The length of frame `seq`: random in 0..=MAX_LEN, the same on both sides.
fn len_of(seq: u64) -> usize {
    (splitmix(seq) % (MAX_LEN + 1)) as usize
}

fn fill(seq: u64, out: &mut [u8]) {
    let x = splitmix(!seq);
    for (i, b) in out.iter_mut().enumerate() {
        *b = (x >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
}

fn checksum(mut c: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        c = c.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    c
}

fn strategy_from_env() -> WaitStrategy {
    match std::env::var(STRATEGY_VAR).as_deref() {
        Ok("spin") => WaitStrategy::SPIN,
        _ => WaitStrategy::BLOCK,
    }
}

/// Sends `n` frames of random lengths in place, then (count, checksum).
fn produce(region: &Region, n: u64) {
    let mut tx = spsc::Producer::attach(region, RING).unwrap();
    tx.set_wait_strategy(strategy_from_env());
    let mut sum = 0u64;
    for seq in 0..n {
        let mut claim = tx.claim(len_of(seq)).unwrap();
        fill(seq, &mut claim);
        sum = checksum(sum, &claim);
        claim.set_tag(seq as u32);
        claim.commit();
    }
    let mut end = [0u8; 16];
    end[..8].copy_from_slice(&n.to_le_bytes());
    end[8..].copy_from_slice(&sum.to_le_bytes());
    let mut claim = tx.claim(16).unwrap();
    claim.copy_from_slice(&end);
    claim.set_tag(END_TAG);
    claim.commit();
}

/// The consumer's running state: next sequence number, checksum, and the
/// producer's (count, checksum) once its final frame arrived.
#[derive(Default)]
struct Checker {
    seq: u64,
    sum: u64,
    end: Option<(u64, u64)>,
}

impl Checker {
    fn check(&mut self, tag: u32, bytes: &[u8]) {
        if tag == END_TAG && bytes.len() == 16 && self.end.is_none() {
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            let s = u64::from_le_bytes(bytes[8..].try_into().unwrap());
            self.end = Some((n, s));
            return;
        }
        assert!(self.end.is_none(), "frame after the end");
        assert_eq!(tag, self.seq as u32, "frame out of order");
        assert_eq!(
            bytes.len(),
            len_of(self.seq),
            "frame {} has the wrong length",
            self.seq
        );
        self.sum = checksum(self.sum, bytes);
        self.seq += 1;
    }
}

/// Receives and checks every frame: order (tag), count, length and the
/// running checksum against the producer's.
fn consume(rx: &mut spsc::Consumer, batch: bool) -> u64 {
    let mut c = Checker::default();
    while c.end.is_none() {
        if batch {
            rx.read_batch_deadline(64, None, |tag, bytes| c.check(tag, bytes))
                .unwrap();
        } else {
            let frame = rx.read().unwrap();
            c.check(frame.tag(), &frame);
        }
    }
    let (n, s) = c.end.unwrap();
    assert_eq!(c.seq, n, "frame count");
    assert_eq!(c.sum, s, "checksum");
    n
}

fn stream(test_name: &str, strategy: &str) {
    let n: u64 = if cfg!(debug_assertions) {
        200_000
    } else {
        10_000_000
    };
    if common::role().as_deref() == Some("producer") {
        let n = std::env::var(FRAMES_VAR).unwrap().parse().unwrap();
        produce(&open_from_env(), n);
        return;
    }
    let region = create(1 << 16);
    let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
    rx.set_wait_strategy(if strategy == "spin" {
        WaitStrategy::SPIN
    } else {
        WaitStrategy::BLOCK
    });
    let child = common::spawn_self(
        test_name,
        "producer",
        &[
            (REGION_VAR, region.name().unwrap().to_string()),
            (STRATEGY_VAR, strategy.to_string()),
            (FRAMES_VAR, n.to_string()),
        ],
    );
    assert_eq!(consume(&mut rx, strategy == "spin"), n);
    common::expect_success(child);
    // The producer detached after its last frame.
    assert_eq!(rx.read().err(), Some(RecvError::PeerDead));
}

#[test]
fn stream_blocking() {
    stream("stream_blocking", "block");
}

#[test]
fn stream_spinning() {
    stream("stream_spinning", "spin");
}

#[test]
fn consumer_killed_producer_gets_peer_dead() {
    if common::role().as_deref() == Some("consumer") {
        let region = open_from_env();
        let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
        // Consume until killed.
        while rx.read().is_ok() {}
        return;
    }
    let region = create(4096);
    let mut tx = spsc::Producer::attach(&region, RING).unwrap();
    let mut child = common::spawn_self(
        "consumer_killed_producer_gets_peer_dead",
        "consumer",
        &[(REGION_VAR, region.name().unwrap().to_string())],
    );
    // 20,000 frames through a 4 KiB ring: the consumer is attached and
    // reading (the sends block until it frees room).
    let mut buf = [0u8; MAX_LEN as usize];
    for seq in 0..20_000 {
        let b = &mut buf[..len_of(seq)];
        fill(seq, b);
        tx.send(b).unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut sent_after = 0u64;
    let err = loop {
        match tx.send_timeout(&buf, Duration::from_secs(60)) {
            Ok(()) => sent_after += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, SendError::PeerDead);
    // Only what fit in the ring went out after the kill.
    assert!(sent_after <= 4096 / 8);
    assert!(!tx.is_peer_alive());
}

#[test]
fn producer_killed_consumer_gets_every_committed_frame() {
    if common::role().as_deref() == Some("producer") {
        let region = open_from_env();
        let mut tx = spsc::Producer::attach(&region, RING).unwrap();
        let committed = word(&region, COMMITTED);
        // Send until killed, counting commits after each one.
        for seq in 0u64.. {
            tx.send_value(&seq).unwrap();
            // Release: pairs with the test's Acquire load; the count never
            // runs ahead of what was committed.
            committed.store(seq + 1, Ordering::Release);
        }
        return;
    }
    let region = create(4096);
    let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
    let mut child = common::spawn_self(
        "producer_killed_consumer_gets_every_committed_frame",
        "producer",
        &[(REGION_VAR, region.name().unwrap().to_string())],
    );
    let mut next = 0u64;
    while next < 50_000 {
        assert_eq!(rx.recv_value::<u64>(), Ok(next));
        next += 1;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let err = loop {
        match rx.recv_value::<u64>() {
            Ok(v) => {
                assert_eq!(v, next, "a contiguous sequence");
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, RecvError::PeerDead);
    // Acquire: pairs with the producer's Release store.
    let committed = word(&region, COMMITTED).load(Ordering::Acquire);
    // Every frame counted as committed arrived; at most the one being
    // counted when the kill landed arrived beyond the count.
    assert!(
        next >= committed && next <= committed + 1,
        "{next} vs {committed}"
    );
}

/// xorshift64*: the hostile process's random bytes.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn a_hostile_process_gets_errors_not_crashes() {
    match common::role().as_deref() {
        Some("producer") => {
            let region = open_from_env();
            let stop = word(&region, STOP);
            // Attach may already fail on a trashed ring: that is an error,
            // which is fine.
            let Ok(mut tx) = spsc::Producer::attach(&region, RING) else {
                return;
            };
            let mut seq = 0u64;
            // Relaxed: only a request to stop.
            while stop.load(Ordering::Relaxed) == 0 {
                if tx
                    .send_timeout(&seq.to_le_bytes(), Duration::from_secs(5))
                    .is_err()
                {
                    break;
                }
                seq += 1;
            }
            return;
        }
        Some("hostile") => {
            let region = open_from_env();
            let stop = word(&region, STOP);
            let ring = region.section(RING).unwrap();
            let mut state = u64::from(std::process::id()) | 1;
            let mut rounds = 0u64;
            // Relaxed: only a request to stop. Bounded as well.
            while stop.load(Ordering::Relaxed) == 0 && rounds < 50_000_000 {
                let r = next_random(&mut state);
                // Mostly the control block (positions, headers' home), also
                // the data bytes.
                let limit = if r & 3 == 0 { ring.len } else { 4096 + 320 };
                let at = (r >> 8) as usize % (limit.min(ring.len) - 8);
                let value = next_random(&mut state);
                // SAFETY: `at + 8 <= ring.len`: inside the live mapping.
                // Racing other processes' atomics is the point: it is what
                // a hostile peer can do, and they must cope.
                unsafe {
                    ring.ptr
                        .as_ptr()
                        .add(at)
                        .cast::<[u8; 8]>()
                        .write_volatile(value.to_ne_bytes());
                }
                rounds += 1;
                if rounds == 10_000 {
                    // Release: pairs with the test's Acquire load; the first
                    // writes are done.
                    word(&region, ATTACKING).store(1, Ordering::Release);
                }
            }
            return;
        }
        _ => {}
    }
    let region = create(4096);
    let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
    let env = [(REGION_VAR, region.name().unwrap().to_string())];
    let name = "a_hostile_process_gets_errors_not_crashes";
    let producer = common::spawn_self(name, "producer", &env);
    let mut buf = Vec::new();
    // Frames flow first; then the hostile process starts writing.
    for seq in 0..1000u64 {
        assert_eq!(rx.recv_value::<u64>(), Ok(seq));
    }
    let mut hostile = common::spawn_self(name, "hostile", &env);
    // Acquire: pairs with the hostile process's Release store.
    while word(&region, ATTACKING).load(Ordering::Acquire) == 0 {
        assert!(
            hostile.try_wait().unwrap().is_none(),
            "the hostile process ended early"
        );
        std::thread::yield_now();
    }
    let mut corrupted = false;
    let mut received = 0u64;
    // Bounded: every call returns within its timeout, and the hostile
    // process writes millions of random words a second.
    for _ in 0..1_000_000 {
        match rx.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) => received += 1,
            Err(RecvError::Corrupted) => {
                corrupted = true;
                break;
            }
            Err(RecvError::TimedOut | RecvError::PeerDead) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(corrupted, "random writes over the ring were never detected");
    assert!(rx.is_poisoned());
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Corrupted));
    // Relaxed: a request to stop; the children also stop on their own.
    word(&region, STOP).store(1, Ordering::Relaxed);
    common::expect_success(hostile);
    common::expect_success(producer);
    eprintln!("received {received} frames under attack before the corruption was seen");
}

/// How long a read or send may wait in the kill loops: far above what a
/// dead peer takes to be noticed, so that only a hang reaches it.
const STALL: Duration = Duration::from_secs(20);

fn env_u64(var: &str) -> u64 {
    std::env::var(var).unwrap().parse().unwrap()
}

/// Checks frame `*next` byte for byte (tag, length, contents), then
/// advances `next`.
fn check_exact(next: &mut u64, tag: u32, bytes: &[u8]) {
    let seq = *next;
    assert_eq!(tag, seq as u32, "frame {seq}: lost or repeated (tag {tag})");
    assert_eq!(bytes.len(), len_of(seq), "frame {seq}: length");
    let mut want = vec![0u8; bytes.len()];
    fill(seq, &mut want);
    assert_eq!(bytes, &want[..], "frame {seq}: contents");
    *next += 1;
}

/// A producer that continues the sequence at `NEXT_VAR` until killed,
/// storing in `COMMITTED` how far its commits got.
fn producer_forever(region: &Region) {
    let mut tx = spsc::Producer::attach(region, RING).expect("take the producer role over");
    // Release: the conductor's Acquire load; it may kill us from now on.
    word(region, ATTACHED).fetch_add(1, Ordering::Release);
    let committed = word(region, COMMITTED);
    for seq in env_u64(NEXT_VAR).. {
        let mut claim = tx.claim_timeout(len_of(seq), STALL).unwrap();
        fill(seq, &mut claim);
        claim.set_tag(seq as u32);
        claim.commit();
        // Release: pairs with the conductor's Acquire load after the kill.
        committed.store(seq + 1, Ordering::Release);
    }
}

/// The conductor of the producer kills: one consumer (here) for the whole
/// loop; each round a producer takes the role over from the dead one and
/// continues the sequence, is killed at a random point, and every frame
/// it committed must arrive, exactly once, before `PeerDead`.
fn kill_producers(test: &str, rounds: u64) {
    let prefix = common::fault::prefix("spsc-producer");
    let base = common::fault::Baseline::take(&prefix);
    let mut rng = common::fault::Rng::new(test);
    {
        let region = create_with_prefix(&prefix, 1 << 12);
        let name = region.name().unwrap().to_string();
        let mut rx = spsc::Consumer::attach(&region, RING).unwrap();
        let mut buf = Vec::new();
        let mut next = 0u64;
        for round in 0..rounds {
            // Relaxed: the producer is not started yet.
            word(&region, COMMITTED).store(next, Ordering::Relaxed);
            let mut child = common::spawn_self(
                test,
                "producer",
                &[(REGION_VAR, name.clone()), (NEXT_VAR, next.to_string())],
            );
            // Once it holds the role (killed before, it would leave the
            // consumer nothing to tell it ever came: a ring whose producer
            // never attached is waited for), after a random number of its
            // frames arrived (0..300), at a random instant (0..300 us).
            wait_attached(&region, round, &mut child);
            let target = next + rng.below(300);
            while next < target {
                let tag =
                    common::fault::bounded("a read", STALL, || rx.recv_timeout(&mut buf, STALL))
                        .unwrap_or_else(|e| panic!("round {round}: {e}"));
                check_exact(&mut next, tag, &buf);
            }
            rng.spin(Duration::from_micros(300));
            common::fault::kill_and_reap(&mut child, "the producer");
            // Every committed frame, then PeerDead.
            loop {
                match common::fault::bounded("a read after the kill", STALL, || {
                    rx.recv_timeout(&mut buf, STALL)
                }) {
                    Ok(tag) => check_exact(&mut next, tag, &buf),
                    Err(RecvError::PeerDead) => break,
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            // Acquire: the producer is dead and reaped; its stores are final.
            let committed = word(&region, COMMITTED).load(Ordering::Acquire);
            // The frame whose count the kill cut off arrived too.
            assert!(
                next == committed || next == committed + 1,
                "round {round}: {next} frames arrived, {committed} committed"
            );
            base.check_during(&format!("round {round}"), 8, &[]);
        }
        eprintln!("{rounds} producers killed; {next} frames, each once");
    }
    base.check(test);
}

/// Waits until the child has attached its `round + 1`-th time.
fn wait_attached(region: &Region, round: u64, child: &mut std::process::Child) {
    let start = std::time::Instant::now();
    // Acquire: pairs with the child's Release increment.
    while word(region, ATTACHED).load(Ordering::Acquire) <= round {
        assert!(start.elapsed() < STALL, "round {round}: no attach");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("round {round}: the child exited early: {status}");
        }
        std::thread::yield_now();
    }
}

fn producers_killed(test: &str, rounds: u64) {
    if common::role().as_deref() == Some("producer") {
        return producer_forever(&open_from_env());
    }
    common::isolated(test, || kill_producers(test, rounds));
}

#[test]
fn producers_killed_at_random_points() {
    producers_killed("producers_killed_at_random_points", 10);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_producers_killed_at_random_points() {
    producers_killed("long_producers_killed_at_random_points", 250);
}

/// A producer that sends until `STOP`, waiting out the gaps between a
/// killed consumer and its successor, then its end frame (its count).
fn producer_until_stopped(region: &Region) {
    let mut tx = spsc::Producer::attach(region, RING).unwrap();
    let mut buf = [0u8; MAX_LEN as usize];
    let mut seq = 0u64;
    // Relaxed: a stop request; nothing is published with it.
    while word(region, STOP).load(Ordering::Relaxed) == 0 {
        let b = &mut buf[..len_of(seq)];
        fill(seq, b);
        send_retrying(&mut tx, seq as u32, b);
        seq += 1;
    }
    send_retrying(&mut tx, END_TAG, &seq.to_le_bytes());
}

/// Sends one frame, waiting out a full ring whose consumer is dead (its
/// successor comes).
fn send_retrying(tx: &mut spsc::Producer, tag: u32, bytes: &[u8]) {
    let start = std::time::Instant::now();
    loop {
        match tx.claim_timeout(bytes.len(), STALL) {
            Ok(mut claim) => {
                claim.copy_from_slice(bytes);
                claim.set_tag(tag);
                claim.commit();
                return;
            }
            Err(polycephaly::ring::ClaimError::PeerDead) => {
                assert!(start.elapsed() < STALL, "no consumer came");
                std::thread::yield_now();
            }
            Err(e) => panic!("producer: {e}"),
        }
    }
}

/// A consumer that takes the role over from its killed predecessor and
/// reads on. Before it publishes the release of frame `n` it stores
/// `n + 1` in `OWED`: its successor's first frame is then `OWED` (the
/// release was published) or `OWED - 1` (it was not: that one frame is
/// delivered again, as the ring promises: at least once across a
/// consumer's death), never another; every later frame follows exactly.
/// Returns at the producer's end frame (only the last consumer gets
/// there).
fn consumer_after_kills(region: &Region) {
    let mut rx = spsc::Consumer::attach(region, RING).expect("take the consumer role over");
    // Relaxed: written by predecessors that are dead and reaped.
    let owed = word(region, OWED).load(Ordering::Relaxed);
    // Release: the conductor's Acquire load starts its count-down to the kill.
    word(region, ATTACHED).fetch_add(1, Ordering::Release);
    let mut buf = Vec::new();
    let mut next: Option<u64> = None;
    loop {
        let tag = rx
            .recv_timeout(&mut buf, STALL)
            .expect("the consumer stalled");
        if tag == END_TAG {
            let n = u64::from_le_bytes(buf[..8].try_into().unwrap());
            match next {
                Some(got) => assert_eq!(got, n, "frame count"),
                // Nothing read since the last kill.
                None => assert!(n == owed || n + 1 == owed, "{n} sent, {owed} owed"),
            }
            return;
        }
        // (Sequence numbers stay far below 2^32 here: a tag is one.)
        let n = next.get_or_insert_with(|| {
            let first = u64::from(tag);
            assert!(
                first == owed || first + 1 == owed,
                "first frame {first}, owed {owed}: lost or repeated"
            );
            first
        });
        check_exact(n, tag, &buf);
        // Relaxed: read by a successor once we are dead and reaped.
        word(region, OWED).store(*n, Ordering::Relaxed);
        rx.flush_releases();
    }
}

/// The conductor of the consumer kills: a producer child sends all along;
/// each round a consumer child takes the role over, and is killed at a
/// random point of its reading.
fn kill_consumers(test: &str, rounds: u64) {
    let prefix = common::fault::prefix("spsc-consumer");
    let base = common::fault::Baseline::take(&prefix);
    let mut rng = common::fault::Rng::new(test);
    {
        let region = create_with_prefix(&prefix, 1 << 12);
        let env = [(REGION_VAR, region.name().unwrap().to_string())];
        let producer = common::spawn_self(test, "producer", &env);
        for round in 0..rounds {
            let mut consumer = common::spawn_self(test, "consumer", &env);
            let start = std::time::Instant::now();
            // Acquire: pairs with the consumer's Release increment.
            while word(&region, ATTACHED).load(Ordering::Acquire) <= round {
                assert!(start.elapsed() < STALL, "round {round}: no attach");
                if let Some(status) = consumer.try_wait().unwrap() {
                    panic!("round {round}: the consumer exited early: {status}");
                }
                std::thread::yield_now();
            }
            rng.spin(Duration::from_millis(2));
            common::fault::kill_and_reap(&mut consumer, "the consumer");
            base.check_during(&format!("round {round}"), 8, &[producer.id()]);
        }
        // Relaxed: a stop request.
        word(&region, STOP).store(1, Ordering::Relaxed);
        common::expect_success(common::spawn_self(test, "consumer", &env));
        common::expect_success(producer);
        // Relaxed: the last consumer exited.
        let owed = word(&region, OWED).load(Ordering::Relaxed);
        eprintln!("{rounds} consumers killed; {owed} frames read");
    }
    base.check(test);
}

fn consumers_killed(test: &str, rounds: u64) {
    match common::role().as_deref() {
        Some("producer") => return producer_until_stopped(&open_from_env()),
        Some("consumer") => return consumer_after_kills(&open_from_env()),
        _ => {}
    }
    common::isolated(test, || kill_consumers(test, rounds));
}

#[test]
fn consumers_killed_at_random_points() {
    consumers_killed("consumers_killed_at_random_points", 10);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_consumers_killed_at_random_points() {
    consumers_killed("long_consumers_killed_at_random_points", 250);
}
