//! The arena between real processes: the test binary re-executes itself
//! (see `common`) and the processes meet in a named region holding the
//! arena, two SPSC rings (handles to the reader, replies back) and a few
//! raw words.
//!
//! - arrays of 1 KB to 64 MB written by one process and checksummed by
//!   another, released, the lane reused thousands of times;
//! - forged handles sent by the writer are refused by the reader;
//! - a reader SIGKILLed holding blocks, and a named reader killed before it
//!   read its block, leak nothing: the writer reclaims the room;
//! - a hostile process scribbling over the lanes' bookkeeping makes
//!   operations fail, never crash;
//! - a writer SIGKILLed mid-lane (with published and unpublished blocks):
//!   its lane is taken over, the published blocks stay readable;
//! - writers, then readers, SIGKILLed at random points one after another
//!   (10 of each; 250 in the `long_` forms, `--ignored`): every array a
//!   writer handed on arrives whole and once, blocks of the dead are
//!   reclaimed (the lane never fills up), nothing leaks.
//!
//! No sleep synchronises anything: processes meet through raw words and
//! the rings; every wait has a generous bound that only detects hangs.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use polycephaly::AttachError;
use polycephaly::arena::{ArenaReader, ArenaSpec, ArenaWriter, BlockHandle, ReadError, Readers};
use polycephaly::region::PeerId;
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, RecvError, Sender, spsc};
use polycephaly::sync::shim::{AtomicU64, Ordering};

const ARENA: SectionId = SectionId(0);
const TO_READER: SectionId = SectionId(1);
const TO_WRITER: SectionId = SectionId(2);
const WORDS: SectionId = SectionId(3);
const REGION_VAR: &str = "POLYCEPHALY_TEST_ARENA_REGION";
const COUNT_VAR: &str = "POLYCEPHALY_TEST_ARENA_COUNT";
/// Raw words: the reader's raw peer id, "holding", "done", the writer's
/// attempts so far.
const READER_ID: usize = 0;
const HOLDING: usize = 1;
const DONE: usize = 2;
const ATTEMPTS: usize = 3;
/// A generous bound that only detects hangs.
const HANG: Duration = Duration::from_secs(60);
const MB: usize = 1_000_000;

fn create(spec: ArenaSpec) -> Region {
    create_with_prefix("polycephaly-test-arena-", spec)
}

fn create_with_prefix(prefix: &str, spec: ArenaSpec) -> Region {
    let region = Region::builder()
        .named_random(prefix)
        .section(SectionKind::Arena, spec.section_len().unwrap())
        .with(spsc::Spec::new(4096).unwrap())
        .with(spsc::Spec::new(4096).unwrap())
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    spec.format(&region, ARENA).unwrap();
    region
}

fn open_from_env() -> Region {
    Region::open(&std::env::var(REGION_VAR).unwrap()).unwrap()
}

fn env_u64(var: &str) -> u64 {
    std::env::var(var).unwrap().parse().unwrap()
}

fn spawn(test: &str, role: &str, region: &Region, count: u64) -> Child {
    common::spawn_self(
        test,
        role,
        &[
            (REGION_VAR, region.name().unwrap().to_string()),
            (COUNT_VAR, count.to_string()),
        ],
    )
}

fn word(region: &Region, i: usize) -> &AtomicU64 {
    let s = region.section(WORDS).unwrap();
    assert!((i + 1) * 8 <= s.len);
    // SAFETY: in bounds, 8-aligned (the section is 64-aligned), zero-filled
    // at creation (a valid AtomicU64), and alive as long as `region`.
    unsafe { &*s.ptr.as_ptr().add(i * 8).cast::<AtomicU64>() }
}

/// Waits (yielding, with a hang bound) until word `i` is non-zero.
fn wait_word(region: &Region, i: usize) -> u64 {
    let start = Instant::now();
    loop {
        // Acquire: pairs with the other process's Release store.
        let v = word(region, i).load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        assert!(start.elapsed() < HANG, "the other process never got there");
        std::thread::yield_now();
    }
}

fn kill(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
}

fn send<T: Pod>(tx: &mut spsc::Producer, v: &T) {
    tx.send_timeout(bytemuck::bytes_of(v), HANG).unwrap();
}

fn recv<T: Pod>(rx: &mut spsc::Consumer) -> T {
    let frame = rx.read_timeout(HANG).expect("nothing came");
    bytemuck::pod_read_unaligned(&frame)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The checksum of a block's words: order-sensitive.
fn checksum(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |c, &w| {
        c.rotate_left(5) ^ w.wrapping_mul(0x100_0000_01B3)
    })
}

/// The size of array `i` in bytes: mostly small, every 10th 1 MB, every
/// 100th 8 MB, three of 64 MB.
fn size_of_array(i: u64, count: u64) -> usize {
    if i == count / 4 || i == count / 2 || i == count - 1 {
        64 * MB
    } else if i % 100 == 99 {
        8 * MB
    } else if i % 10 == 9 {
        MB
    } else {
        [1_000, 10_000, 100_000][(i % 3) as usize]
    }
}

/// The reader process: reads every handle, checksums it, releases it,
/// answers (generation, checksum).
fn checksum_reader(region: &Region) {
    let reader = ArenaReader::attach(region, ARENA).unwrap();
    let mut rx = spsc::Consumer::attach(region, TO_READER).unwrap();
    let mut tx = spsc::Producer::attach(region, TO_WRITER).unwrap();
    // Release: pairs with the writer's Acquire in `wait_word`.
    word(region, READER_ID).store(u64::from(reader.peer_id().to_raw()), Ordering::Release);
    for _ in 0..env_u64(COUNT_VAR) {
        let h: BlockHandle = recv(&mut rx);
        let sum = checksum(&reader.read::<u64>(&h).unwrap());
        send(&mut tx, &[h.generation(), sum]);
    }
}

#[test]
fn arrays_cross_processes_and_the_lane_is_reused() {
    if common::role().as_deref() == Some("reader") {
        return checksum_reader(&open_from_env());
    }
    let count: u64 = if cfg!(debug_assertions) { 2_000 } else { 5_000 };
    // Room for a 64 MB array and a few more behind it.
    let region = create(ArenaSpec::new(1, 80 * MB).with_blocks(64));
    let mut w = ArenaWriter::attach(&region, ARENA).unwrap();
    let mut tx = spsc::Producer::attach(&region, TO_READER).unwrap();
    let mut rx = spsc::Consumer::attach(&region, TO_WRITER).unwrap();
    let child = spawn(
        "arrays_cross_processes_and_the_lane_is_reused",
        "reader",
        &region,
        count,
    );
    let reader_id = PeerId::from_raw(wait_word(&region, READER_ID) as u32).unwrap();
    let mut in_flight = std::collections::VecDeque::new();
    let mut wraps = 0;
    let mut last_offset = 0;
    for i in 0..count {
        let n = size_of_array(i, count) / 8;
        let seed = splitmix(i);
        let block = w
            .alloc_uninit_timeout::<u64>(n, HANG)
            .unwrap()
            .init_with(|k| seed ^ k as u64);
        let sum = checksum(&block);
        let h = if i % 2 == 0 {
            block.publish_to(reader_id)
        } else {
            block.publish(Readers::Count(1))
        };
        wraps += u64::from(h.offset() < last_offset);
        last_offset = h.offset();
        send(&mut tx, &h);
        in_flight.push_back((h.generation(), sum));
        // Up to 4 arrays in flight: the lane wraps with live blocks in it.
        while in_flight.len() > 4 || (i == count - 1 && !in_flight.is_empty()) {
            let [generation, got]: [u64; 2] = recv(&mut rx);
            let (want_gen, want) = in_flight.pop_front().unwrap();
            assert_eq!((generation, got), (want_gen, want), "array {i}");
        }
    }
    common::expect_success(child);
    assert!(wraps > 10, "the lane wrapped {wraps} times");
    assert_eq!(w.reclaim().unwrap(), 0, "every block came back");
}

/// The reader of forged handles: tries each, answers how many were
/// refused and the checksum of the one that was not.
fn forgery_reader(region: &Region) {
    let reader = ArenaReader::attach(region, ARENA).unwrap();
    let mut rx = spsc::Consumer::attach(region, TO_READER).unwrap();
    let mut tx = spsc::Producer::attach(region, TO_WRITER).unwrap();
    let n = env_u64(COUNT_VAR);
    let (mut refused, mut sum) = (0u64, 0u64);
    for _ in 0..n {
        let h: BlockHandle = recv(&mut rx);
        match reader.read::<u64>(&h) {
            Ok(g) => {
                assert_eq!(g.len() as u64, h.len());
                sum = checksum(&g);
            }
            Err(ReadError::TooManyHolds) => panic!("one guard at a time"),
            Err(_) => refused += 1,
        }
    }
    send(&mut tx, &[refused, sum]);
}

#[test]
fn forged_handles_are_refused_in_another_process() {
    if common::role().as_deref() == Some("reader") {
        return forgery_reader(&open_from_env());
    }
    let region = create(ArenaSpec::new(2, 1 << 20).with_blocks(8));
    let mut w = ArenaWriter::attach(&region, ARENA).unwrap();
    let mut tx = spsc::Producer::attach(&region, TO_READER).unwrap();
    let mut rx = spsc::Consumer::attach(&region, TO_WRITER).unwrap();
    let block = w.alloc_uninit::<u64>(1000).unwrap().init_with(|k| k as u64);
    let want = checksum(&block);
    let h = block.publish_for(1);
    let (g, o, n) = (h.generation(), h.offset(), h.len());
    let f = BlockHandle::from_parts;
    let mut forged = vec![
        f(1, g, o, n, 8, 8),
        f(2, g, o, n, 8, 8),
        f(0, g + 1, o, n, 8, 8),
        f(0, g + 8, o, n, 8, 8),
        f(0, g, o + 64, n, 8, 8),
        f(0, g, o + 8, n, 8, 8),
        f(0, g, o, n + 1, 8, 8),
        f(0, g, o, n * 2, 4, 4),
        f(0, g, 1 << 20, 1, 8, 8),
        f(0, g, 0, u64::MAX / 4, 8, 8),
    ];
    let mut rng = 7u64;
    for _ in 0..200 {
        rng = splitmix(rng);
        let mut raw: [u8; 32] = bytemuck::cast(h);
        raw[(rng % 32) as usize] ^= (rng >> 8) as u8 | 1;
        forged.push(bytemuck::cast(raw));
    }
    let count = forged.len() as u64 + 1;
    let child = spawn(
        "forged_handles_are_refused_in_another_process",
        "reader",
        &region,
        count,
    );
    for bad in &forged {
        send(&mut tx, bad);
    }
    send(&mut tx, &h);
    let [refused, sum]: [u64; 2] = recv(&mut rx);
    assert_eq!(refused, forged.len() as u64, "every forgery refused");
    assert_eq!(sum, want);
    common::expect_success(child);
}

/// A reader that reads `COUNT` handles, keeps every guard, says so, and
/// waits to be killed. With `COUNT` 0 it only registers its peer id.
fn holding_reader(region: &Region) {
    let reader = ArenaReader::attach(region, ARENA).unwrap();
    let mut rx = spsc::Consumer::attach(region, TO_READER).unwrap();
    // Release: pairs with the writer's Acquire in `wait_word`.
    word(region, READER_ID).store(u64::from(reader.peer_id().to_raw()), Ordering::Release);
    let mut guards = Vec::new();
    for _ in 0..env_u64(COUNT_VAR) {
        let h: BlockHandle = recv(&mut rx);
        guards.push(reader.read::<u8>(&h).unwrap());
    }
    // Release: pairs with the writer's Acquire in `wait_word`.
    word(region, HOLDING).store(1, Ordering::Release);
    loop {
        std::thread::park();
    }
}

#[test]
fn readers_killed_holding_or_owing_blocks_leak_nothing() {
    if common::role().as_deref() == Some("reader") {
        return holding_reader(&open_from_env());
    }
    let test = "readers_killed_holding_or_owing_blocks_leak_nothing";
    let lane = 1 << 20;
    let region = create(ArenaSpec::new(1, lane).with_blocks(16));
    let mut w = ArenaWriter::attach(&region, ARENA).unwrap();
    let mut tx = spsc::Producer::attach(&region, TO_READER).unwrap();
    // A reader holding four blocks (two counted, two named).
    let mut child = spawn(test, "reader", &region, 4);
    let id = PeerId::from_raw(wait_word(&region, READER_ID) as u32).unwrap();
    for i in 0..4 {
        let b = w.alloc::<u8>(lane / 4).unwrap();
        let h = if i % 2 == 0 {
            b.publish_for(1)
        } else {
            b.publish_to(id)
        };
        send(&mut tx, &h);
    }
    wait_word(&region, HOLDING);
    assert_eq!(w.reclaim().unwrap(), 4, "held by a live reader");
    assert!(w.try_alloc::<u8>(1).is_err());
    kill(&mut child);
    let b = w
        .alloc_timeout::<u8>(lane, HANG)
        .expect("the dead reader's blocks are reclaimed");
    drop(b);
    assert_eq!(w.reclaim().unwrap(), 0);
    drop(tx);
    // A named reader killed before it read its block.
    word(&region, READER_ID).store(0, Ordering::Relaxed);
    let mut tx = spsc::Producer::attach(&region, TO_READER).unwrap();
    let mut child = spawn(test, "reader", &region, 0);
    let id = PeerId::from_raw(wait_word(&region, READER_ID) as u32).unwrap();
    let h = w.alloc::<u8>(lane).unwrap().publish_to(id);
    send(&mut tx, &h);
    wait_word(&region, HOLDING);
    assert_eq!(w.reclaim().unwrap(), 1, "owed to a live reader");
    kill(&mut child);
    assert!(
        w.alloc_timeout::<u8>(lane, HANG).is_ok(),
        "nothing is owed by the dead"
    );
}

/// Scribbles random words over every lane's control lines and
/// descriptors `COUNT` times, two per attempt of the writer (so that the
/// scribbles land among its allocations and the reader's reads), then
/// says so.
fn vandal(region: &Region) {
    let s = region.section(ARENA).unwrap();
    let spec = ArenaSpec::new(2, 1 << 16).with_blocks(8);
    let stride = (spec.section_len().unwrap() - 4096) / 2;
    let bookkeeping = 192 + 8 * 256;
    let mut rng = 99u64;
    for i in 0..env_u64(COUNT_VAR) {
        let start = Instant::now();
        // Acquire: pairs with the writer's Release increment.
        while word(region, ATTEMPTS).load(Ordering::Acquire) < i / 2 {
            assert!(start.elapsed() < HANG, "the writer stopped trying");
            std::thread::yield_now();
        }
        rng = splitmix(rng);
        let lane = (rng & 1) as usize;
        let off = 4096 + lane * stride + ((rng >> 8) as usize % bookkeeping) / 8 * 8;
        // SAFETY: inside the section, 8-aligned. The other processes access
        // these bytes atomically; a plain store from another process is,
        // to them, another process's write (the hostile peer of the test).
        unsafe {
            s.ptr
                .as_ptr()
                .add(off)
                .cast::<u64>()
                .write_volatile(splitmix(rng))
        };
    }
    // Release: pairs with the writer's Acquire.
    word(region, DONE).store(1, Ordering::Release);
}

/// A reader that reads whatever handles come, until the writer's end
/// marker (a zeroed handle), tolerating every error.
fn tolerant_reader(region: &Region) {
    let reader = ArenaReader::attach(region, ARENA).unwrap();
    let mut rx = spsc::Consumer::attach(region, TO_READER).unwrap();
    let mut tx = spsc::Producer::attach(region, TO_WRITER).unwrap();
    let (mut ok, mut refused) = (0u64, 0u64);
    loop {
        let h: BlockHandle = recv(&mut rx);
        if h == bytemuck::Zeroable::zeroed() {
            break;
        }
        match reader.read::<u64>(&h) {
            Ok(g) => {
                assert_eq!(g.len() as u64, h.len());
                std::hint::black_box(checksum(&g));
                ok += 1;
            }
            Err(_) => refused += 1,
        }
    }
    send(&mut tx, &[ok, refused]);
}

#[test]
fn a_hostile_process_scribbling_over_lanes_gives_errors_not_crashes() {
    match common::role().as_deref() {
        Some("vandal") => return vandal(&open_from_env()),
        Some("reader") => return tolerant_reader(&open_from_env()),
        _ => {}
    }
    let test = "a_hostile_process_scribbling_over_lanes_gives_errors_not_crashes";
    let region = create(ArenaSpec::new(2, 1 << 16).with_blocks(8));
    let mut tx = spsc::Producer::attach(&region, TO_READER).unwrap();
    let mut rx = spsc::Consumer::attach(&region, TO_WRITER).unwrap();
    let reader = spawn(test, "reader", &region, 0);
    let vandal = spawn(test, "vandal", &region, 4_000);
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut w = ArenaWriter::attach_lane(&region, ARENA, 0).ok();
    // Acquire: pairs with the vandal's Release store.
    while word(&region, DONE).load(Ordering::Acquire) == 0 {
        // Release: pairs with the vandal's Acquire.
        word(&region, ATTEMPTS).fetch_add(1, Ordering::Release);
        let Some(wr) = w.as_mut() else {
            // Lost the lane (its owner word was scribbled to a live peer's
            // id, or it was poisoned): attach again.
            w = ArenaWriter::attach_lane(&region, ARENA, (sent % 2) as u16).ok();
            errors += 1;
            continue;
        };
        let got = wr
            .alloc_uninit_timeout::<u64>(64, Duration::from_millis(20))
            .map(|b| b.fill(sent).publish_for(1));
        match got {
            Ok(h) => {
                send(&mut tx, &h);
                sent += 1;
            }
            Err(_) => {
                errors += 1;
                w = None;
            }
        }
    }
    send(&mut tx, &<BlockHandle as bytemuck::Zeroable>::zeroed());
    let [ok, refused]: [u64; 2] = recv(&mut rx);
    assert_eq!(ok + refused, sent);
    println!("sent {sent}, read {ok}, refused {refused}, writer errors {errors}");
    // The vandal scribbled only while this writer kept trying (it waits on
    // ATTEMPTS), so its scribbles landed among real traffic. Whether one of
    // them hit a word in use at that moment (a live descriptor's tag) is
    // chance: the writer never re-reads what only it writes, so a scribble
    // over a free descriptor is simply overwritten. What must hold is above:
    // every handle read or refused, no crash, no wait past its bound.
    assert!(sent > 100, "the writer kept publishing under the scribbles");
    common::expect_success(vandal);
    common::expect_success(reader);
}

/// A writer that publishes `COUNT` blocks (byte `i` of block `i`...),
/// sends their handles, allocates one more and leaves it unpublished,
/// says so, and waits to be killed.
fn doomed_writer(region: &Region) {
    let mut w = ArenaWriter::attach_lane(region, ARENA, 0).unwrap();
    let mut tx = spsc::Producer::attach(region, TO_READER).unwrap();
    for i in 0..env_u64(COUNT_VAR) {
        let h = w
            .alloc_uninit::<u64>(1000)
            .unwrap()
            .init_with(|k| i * 1000 + k as u64)
            .publish_for(1);
        send(&mut tx, &h);
    }
    let mut half_built = w.alloc::<u64>(1000).unwrap();
    half_built[0] = 1;
    // Release: pairs with the parent's Acquire in `wait_word`.
    word(region, HOLDING).store(1, Ordering::Release);
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_writers_lane_is_taken_over() {
    if common::role().as_deref() == Some("writer") {
        return doomed_writer(&open_from_env());
    }
    let region = create(ArenaSpec::new(1, 1 << 20).with_blocks(32));
    let reader = ArenaReader::attach(&region, ARENA).unwrap();
    let mut rx = spsc::Consumer::attach(&region, TO_READER).unwrap();
    let mut child = spawn("a_killed_writers_lane_is_taken_over", "writer", &region, 10);
    let handles: Vec<BlockHandle> = (0..10).map(|_| recv(&mut rx)).collect();
    wait_word(&region, HOLDING);
    for h in &handles[..5] {
        drop(reader.read::<u64>(h).unwrap());
    }
    assert!(matches!(
        ArenaWriter::attach_lane(&region, ARENA, 0).unwrap_err(),
        AttachError::RoleTaken { holder: Some(_) }
    ));
    kill(&mut child);
    let mut w = ArenaWriter::attach_lane(&region, ARENA, 0).expect("taken over");
    assert_eq!(
        w.live_blocks(),
        11,
        "5 read (not reclaimed yet), 5 unread, 1 unpublished"
    );
    for (i, h) in handles.iter().enumerate().skip(5) {
        let g = reader.read::<u64>(h).unwrap();
        assert!(
            g.iter()
                .enumerate()
                .all(|(k, &x)| x == i as u64 * 1000 + k as u64)
        );
    }
    assert_eq!(w.reclaim().unwrap(), 0);
    assert!(
        w.alloc::<u8>(1 << 20).is_ok(),
        "the whole lane is free again"
    );
}

/// A frame of the kill loops: a handle, the array's sequence number and
/// its element count.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Sent {
    handle: BlockHandle,
    seq: u64,
    len: u64,
}

/// Raw words of the kill loops: arrays handed on (the writer), the next
/// array owed (the reader), processes attached, stop.
const SENT: usize = 4;
const OWED: usize = 5;
const ATTACHED: usize = 6;
const STOP: usize = 7;
const NEXT_VAR: &str = "POLYCEPHALY_TEST_ARENA_NEXT";
/// A bound on any one wait of the kill loops: only a hang reaches it.
const STALL: Duration = Duration::from_secs(20);

/// The length of array `seq` in words: up to 16 KB, a few times 64 KB.
fn words_of(seq: u64) -> usize {
    let r = splitmix(seq);
    if r % 16 == 0 {
        8192
    } else {
        (r % 2048) as usize
    }
}

fn word_of(seq: u64, k: usize) -> u64 {
    splitmix(seq << 20 ^ k as u64)
}

/// Checks array `seq` word for word.
fn check_array(seq: u64, words: &[u64]) {
    assert_eq!(words.len(), words_of(seq), "array {seq}: length");
    for (k, &w) in words.iter().enumerate() {
        assert_eq!(w, word_of(seq, k), "array {seq}: word {k}");
    }
}

fn kill_loop_spec() -> ArenaSpec {
    ArenaSpec::new(1, 1 << 20).with_blocks(64)
}

/// Sends `v` through `tx`, waiting out a full ring whose consumer is dead
/// (its successor comes).
fn send_retrying<T: Pod>(tx: &mut spsc::Producer, v: &T) {
    let start = Instant::now();
    loop {
        match tx.send_timeout(bytemuck::bytes_of(v), STALL) {
            Ok(()) => return,
            Err(polycephaly::ring::SendError::PeerDead) => {
                assert!(start.elapsed() < STALL, "no reader came");
                std::thread::yield_now();
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// A writer that takes lane 0 (and the ring) over from its dead
/// predecessor and writes arrays from `NEXT_VAR` on, each published for
/// one read and handed on, storing in `SENT` how far it got; until
/// `STOP` (then an end frame), or until killed.
fn array_writer(region: &Region, stop_too: bool) {
    let mut w = ArenaWriter::attach_lane(region, ARENA, 0).expect("take the lane over");
    let mut tx = spsc::Producer::attach(region, TO_READER).expect("take the ring over");
    // Release: the conductor's Acquire load starts its count-down.
    word(region, ATTACHED).fetch_add(1, Ordering::Release);
    let mut seq = env_u64(NEXT_VAR);
    // Relaxed: a stop request.
    while !(stop_too && word(region, STOP).load(Ordering::Relaxed) != 0) {
        let got = common::fault::bounded("an allocation", STALL, || {
            w.alloc_uninit_timeout::<u64>(words_of(seq), STALL)
                .map(|b| b.init_with(|k| word_of(seq, k)).publish_for(1))
        });
        let h = got.unwrap_or_else(|e| {
            panic!(
                "array {seq}: {e} (a block of the dead never reclaimed?) {w:?}, {:?}\n{}",
                w.reclaim(),
                lane_dump(region)
            )
        });
        send_retrying(
            &mut tx,
            &Sent {
                handle: h,
                seq,
                len: words_of(seq) as u64,
            },
        );
        seq += 1;
        // Release: read after our death (or at the end).
        word(region, SENT).store(seq, Ordering::Release);
    }
    send_retrying(
        &mut tx,
        &Sent {
            handle: bytemuck::Zeroable::zeroed(),
            seq: u64::MAX,
            len: seq,
        },
    );
}

/// Lane 0's bookkeeping, read raw (for a failure message): progress,
/// each descriptor's tag (sequence number and state), mode, remaining
/// reads and non-zero hold words; the region's peers.
fn lane_dump(region: &Region) -> String {
    let s = region.section(ARENA).unwrap();
    let at = |off: usize| -> u64 {
        // SAFETY: inside the section (the offsets below stay within lane
        // 0's control lines and descriptors), 8-aligned; a racy read of
        // atomics for a diagnostic.
        unsafe { s.ptr.as_ptr().add(off).cast::<u64>().read_volatile() }
    };
    let lane = 4096;
    let mut out = format!("head_seq {} next_seq {}\n", at(lane + 64), at(lane + 72));
    for i in 0..64 {
        let d = lane + 192 + i * 256;
        let tag = at(d);
        let shape_rem = at(d + 24);
        let rem = at(d + 32) as u32;
        let holds: Vec<String> = (0..24)
            .flat_map(|k| {
                let w = at(d + 64 + k * 8);
                [(2 * k, w as u32), (2 * k + 1, (w >> 32) as u32)]
            })
            .filter(|(_, h)| *h != 0)
            .map(|(slot, h)| format!("{slot}:{h:#x}"))
            .collect();
        out += &format!(
            "desc {i}: seq {} state {} mode {} remaining {rem} holds {holds:?}\n",
            tag >> 2,
            tag & 3,
            (shape_rem >> 32) as u32 >> 8
        );
    }
    out += &format!("peers {:?}", region.peers());
    out
}

/// The conductor of the writer kills: the reader (here) stays; each round
/// a writer takes the lane and the ring over, is killed at a random
/// point, and every array it handed on must arrive whole, exactly once,
/// before the ring says `PeerDead`.
fn kill_writers(test: &str, rounds: u64) {
    let prefix = common::fault::prefix("arena-writer");
    let base = common::fault::Baseline::take(&prefix);
    let mut rng = common::fault::Rng::new(test);
    {
        let region = create_with_prefix(&prefix, kill_loop_spec());
        let name = region.name().unwrap().to_string();
        let reader = ArenaReader::attach(&region, ARENA).unwrap();
        let mut rx = spsc::Consumer::attach(&region, TO_READER).unwrap();
        let mut next = 0u64;
        let take = |rx: &mut spsc::Consumer, next: &mut u64| -> Result<(), RecvError> {
            let frame = common::fault::bounded("a read", STALL, || rx.read_timeout(STALL))?;
            let sent: Sent = bytemuck::pod_read_unaligned(&frame);
            drop(frame);
            assert_eq!(sent.seq, *next, "an array lost or repeated");
            let g = reader
                .read::<u64>(&sent.handle)
                .unwrap_or_else(|e| panic!("array {}: {e}", sent.seq));
            check_array(sent.seq, &g);
            *next += 1;
            Ok(())
        };
        for round in 0..rounds {
            // Relaxed: the writer is not started yet.
            word(&region, SENT).store(next, Ordering::Relaxed);
            let mut writer = common::spawn_self(
                test,
                "writer",
                &[(REGION_VAR, name.clone()), (NEXT_VAR, next.to_string())],
            );
            // Once it holds the ring (see the SPSC loop: a ring whose
            // producer never attached is waited for), after a random
            // number of its arrays arrived (0..100), at a random instant.
            let start = Instant::now();
            // Acquire: pairs with the writer's Release increment.
            while word(&region, ATTACHED).load(Ordering::Acquire) <= round {
                assert!(start.elapsed() < STALL, "round {round}: no attach");
                if let Some(status) = writer.try_wait().unwrap() {
                    panic!("round {round}: the writer exited early: {status}");
                }
                std::thread::yield_now();
            }
            let target = next + rng.below(100);
            while next < target {
                if let Err(e) = take(&mut rx, &mut next) {
                    let status = writer.wait().unwrap();
                    panic!("round {round}: {e}; the writer ended: {status}");
                }
            }
            rng.spin(Duration::from_micros(300));
            common::fault::kill_and_reap(&mut writer, "the writer");
            loop {
                match take(&mut rx, &mut next) {
                    Ok(()) => {}
                    Err(RecvError::PeerDead) => break,
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            // Acquire: the writer is dead and reaped; its stores are final.
            let sent = word(&region, SENT).load(Ordering::Acquire);
            assert!(
                next == sent || next == sent + 1,
                "round {round}: {next} arrays arrived, {sent} handed on"
            );
            base.check_during(&format!("round {round}"), 8, &[]);
        }
        eprintln!("{rounds} writers killed; {next} arrays, each once");
    }
    base.check(test);
}

fn writers_killed(test: &str, rounds: u64) {
    if common::role().as_deref() == Some("writer") {
        return array_writer(&open_from_env(), false);
    }
    common::isolated(test, || kill_writers(test, rounds));
}

#[test]
fn writers_killed_at_random_points() {
    writers_killed("writers_killed_at_random_points", 10);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_writers_killed_at_random_points() {
    writers_killed("long_writers_killed_at_random_points", 250);
}

/// A reader that takes the ring over from its killed predecessor and
/// reads on, holding each array while it checks it. Before it reads the
/// array of frame `n` it stores `n + 1` in `OWED`: its first frame is
/// `OWED` (that array was never read: it arrives whole) or `OWED - 1`
/// (delivered again: its predecessor may have read the array, which was
/// published for one read, so it may be gone: `Stale`); every later array
/// arrives whole. Returns at the writer's end frame.
fn array_reader(region: &Region) {
    let reader = ArenaReader::attach(region, ARENA).unwrap();
    let mut rx = spsc::Consumer::attach(region, TO_READER).expect("take the ring over");
    // Relaxed: written by predecessors that are dead and reaped.
    let owed = word(region, OWED).load(Ordering::Relaxed);
    // Release: the conductor's Acquire load starts its count-down.
    word(region, ATTACHED).fetch_add(1, Ordering::Release);
    let mut next: Option<u64> = None;
    loop {
        let frame = rx.read_timeout(STALL).expect("the reader stalled");
        let sent: Sent = bytemuck::pod_read_unaligned(&frame);
        if sent.seq == u64::MAX {
            let n = sent.len;
            match next {
                Some(got) => assert_eq!(got, n, "array count"),
                None => assert!(n == owed || n + 1 == owed, "{n} sent, {owed} owed"),
            }
            return;
        }
        let first = next.is_none();
        let n = next.get_or_insert_with(|| {
            assert!(
                sent.seq == owed || sent.seq + 1 == owed,
                "first array {}, owed {owed}: lost or repeated",
                sent.seq
            );
            sent.seq
        });
        assert_eq!(sent.seq, *n, "an array lost or repeated");
        *n += 1;
        // Relaxed: read by a successor once we are dead and reaped.
        word(region, OWED).store(*n, Ordering::Relaxed);
        match reader.read::<u64>(&sent.handle) {
            Ok(g) => check_array(sent.seq, &g),
            Err(ReadError::Stale) if first && sent.seq + 1 == owed => {}
            Err(e) => panic!("array {}: {e}", sent.seq),
        }
        drop(frame);
        rx.flush_releases();
    }
}

/// The conductor of the reader kills: a writer child writes all along
/// (an allocation that waits past its bound fails it: a block a dead
/// reader held and never got back); each round a reader child takes the
/// ring over and is killed at a random point of its reading.
fn kill_readers(test: &str, rounds: u64) {
    let prefix = common::fault::prefix("arena-reader");
    let base = common::fault::Baseline::take(&prefix);
    let mut rng = common::fault::Rng::new(test);
    {
        let region = create_with_prefix(&prefix, kill_loop_spec());
        let env = [
            (REGION_VAR, region.name().unwrap().to_string()),
            (NEXT_VAR, "0".to_string()),
        ];
        let writer = common::spawn_self(test, "writer", &env);
        for round in 0..rounds {
            let mut reader = common::spawn_self(test, "reader", &env);
            let start = Instant::now();
            // Acquire: pairs with the reader's Release increment (the
            // writer's counts as the first).
            while word(&region, ATTACHED).load(Ordering::Acquire) <= round + 1 {
                assert!(start.elapsed() < STALL, "round {round}: no attach");
                if let Some(status) = reader.try_wait().unwrap() {
                    panic!("round {round}: the reader exited early: {status}");
                }
                std::thread::yield_now();
            }
            rng.spin(Duration::from_millis(10));
            common::fault::kill_and_reap(&mut reader, "the reader");
            base.check_during(&format!("round {round}"), 8, &[writer.id()]);
        }
        // Relaxed: a stop request.
        word(&region, STOP).store(1, Ordering::Relaxed);
        common::expect_success(common::spawn_self(test, "reader", &env));
        common::expect_success(writer);
        // Relaxed: both exited.
        let owed = word(&region, OWED).load(Ordering::Relaxed);
        eprintln!("{rounds} readers killed; {owed} arrays read");
    }
    base.check(test);
}

fn readers_killed(test: &str, rounds: u64) {
    match common::role().as_deref() {
        Some("writer") => return array_writer(&open_from_env(), true),
        Some("reader") => return array_reader(&open_from_env()),
        _ => {}
    }
    common::isolated(test, || kill_readers(test, rounds));
}

#[test]
fn readers_killed_at_random_points() {
    readers_killed("readers_killed_at_random_points", 10);
}

#[test]
#[ignore = "long (250 kills): cargo test --release -- --ignored long_"]
fn long_readers_killed_at_random_points() {
    readers_killed("long_readers_killed_at_random_points", 250);
}
