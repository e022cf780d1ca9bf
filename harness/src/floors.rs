//! The floors: the least two processes can do through shared memory, which
//! every later figure is compared with.
//!
//! - [`spin_rtt`]: one cache line each way, both spinning.
//! - [`frame_rtt`]: a 64-byte command and its reply in the rings' frame
//!   format (72-byte frames, headers polled, lines demoted), with no
//!   library code: what the format itself costs over [`spin_rtt`].
//! - [`wake_rtt`]: the same, but the responder is asleep in a shared futex
//!   at every request.
//! - [`ring_64b_throughput`]: the barest ring (64-byte slots, two counters).
//! - `ring_64b_throughput_at`: the same messages 72 bytes apart (an
//!   8-byte header's room before each), where a byte ring of frames puts
//!   64-byte payloads.
//! - [`memcpy`]: one warm copy in one process.
//! - [`shm_transfer`]: one process writes N bytes, the other reads them all.

use core::hint::black_box;
use core::time::Duration;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::pair::{Pair, ShmArea, run_pair};
use super::{BenchError, Measurement, Plan, Row, Timings, Unit, Wait};
use crate::PinMode;
use polycephaly::sync::Futex;
use polycephaly::sync::futex::WaitOutcome;
use polycephaly::sync::shim::{AtomicU64, Ordering};

const MIB: usize = 1 << 20;

/// The floor rows, in table order.
pub const ROWS: &[Row] = &[
    Row {
        name: "floor_spin_rtt",
        payload: "8 B / line",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(20_000, 500_000, 1), Plan::new(5_000, 100_000, 1));
            Measurement::latency(&spin_rtt(cfg.pin, &plan)?)
        },
    },
    Row {
        name: "floor_frame_rtt",
        payload: "64 B cmd + 64 B reply",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: Some("floor_spin_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(20_000, 300_000, 1), Plan::new(5_000, 60_000, 1));
            Measurement::latency(&frame_rtt(cfg.pin, &plan)?)
        },
    },
    Row {
        name: "floor_wake_rtt",
        payload: "8 B / line",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_spin_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::latency(&wake_rtt(cfg.pin, &plan)?)
        },
    },
    Row {
        name: "floor_ring_64b_throughput",
        payload: "64 B",
        wait: Wait::Spin,
        unit: Unit::MsgPerSec,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(10, 300, 200_000), Plan::new(5, 50, 100_000));
            Measurement::rate(&ring_64b_throughput(cfg.pin, &plan)?, Unit::MsgPerSec, 1)
        },
    },
    Row {
        name: "floor_ring_64b_stride72_throughput",
        payload: "64 B / 72 B",
        wait: Wait::Spin,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(10, 300, 200_000), Plan::new(5, 50, 100_000));
            let t = ring_64b_throughput_at(cfg.pin, &plan, FRAMED_STRIDE)?;
            Measurement::rate(&t, Unit::MsgPerSec, 1)
        },
    },
    Row {
        name: "memcpy_1mb",
        payload: "1 MiB",
        wait: Wait::Local,
        unit: Unit::BytesPerSec,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::rate(&memcpy(MIB, &plan)?, Unit::BytesPerSec, MIB as u64)
        },
    },
    Row {
        name: "memcpy_8mb",
        payload: "8 MiB",
        wait: Wait::Local,
        unit: Unit::BytesPerSec,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(30, 3_000, 1), Plan::new(10, 300, 1));
            Measurement::rate(&memcpy(8 * MIB, &plan)?, Unit::BytesPerSec, 8 * MIB as u64)
        },
    },
    Row {
        name: "floor_shm_transfer_1mb",
        payload: "1 MiB",
        wait: Wait::Spin,
        unit: Unit::BytesPerSec,
        floor: Some("memcpy_1mb"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            let t = shm_transfer(cfg.pin, MIB, &plan)?;
            Measurement::rate(&t, Unit::BytesPerSec, MIB as u64)
        },
    },
    Row {
        name: "floor_shm_transfer_8mb",
        payload: "8 MiB",
        wait: Wait::Spin,
        unit: Unit::BytesPerSec,
        floor: Some("memcpy_8mb"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(30, 3_000, 1), Plan::new(10, 300, 1));
            let t = shm_transfer(cfg.pin, 8 * MIB, &plan)?;
            Measurement::rate(&t, Unit::BytesPerSec, 8 * MIB as u64)
        },
    },
];

/// Two counters on their own cache lines: `ping` written by the parent
/// (the request number), `pong` by the child (the last request answered).
/// Both only grow; zero-initialized.
#[repr(C)]
#[derive(Debug, Default)]
struct PingPong {
    ping: CachePadded<AtomicU64>,
    pong: CachePadded<AtomicU64>,
}

const _: () = {
    assert!(size_of::<PingPong>() == 256);
    assert!(core::mem::offset_of!(PingPong, pong) == 128);
};

/// Round trips of one cache line each way between two spinning processes:
/// the parent stores request `n` and spins until the child has stored `n`
/// back. Each sample times `plan.batch` trips.
///
/// # Errors
/// Those of [`run_pair`].
pub fn spin_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new(PingPong::default(), 0)?;
    let st = area.get();
    let plan = *plan;
    let (samples, placement) = run_pair(
        pin,
        |pair| {
            let mut out = Vec::with_capacity(plan.samples);
            let mut seq = 0u64;
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    seq += 1;
                    // Release: pairs with the child's Acquire load of ping.
                    st.ping.store(seq, Ordering::Release);
                    // Acquire: pairs with the child's Release store of pong.
                    pair.spin_until(|| st.pong.load(Ordering::Acquire) == seq)?;
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair| {
            for seq in 1..=plan.total_ops() {
                // Acquire: pairs with the parent's Release store of ping.
                pair.spin_until(|| st.ping.load(Ordering::Acquire) == seq)?;
                // Release: pairs with the parent's Acquire load of pong.
                st.pong.store(seq, Ordering::Release);
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}

/// A command of [`frame_rtt`]: 64 bytes, its number in the first word.
type Command = [u64; 8];
/// Frames of [`frame_rtt`]: an 8-byte header, then a [`Command`].
const FRAME: usize = 8 + size_of::<Command>();
/// Frames in a lap of one of [`frame_rtt`]'s rings (4 KiB each, as the
/// SPSC round-trip rows use).
const FRAMES_PER_LAP: u64 = (4096 / FRAME) as u64;

/// One ring of [`frame_rtt`]: frames of [`FRAME`] bytes from `base`, one
/// after the other, [`FRAMES_PER_LAP`] to a lap. Frame `k`'s header is
/// `k + 1` once it is published; only its producer writes it. The frame
/// after a published one has a zero header (stored before the
/// publication, as the library's producer does), or one from a lap ago.
#[derive(Debug, Clone, Copy)]
struct FrameRing {
    /// The ring's first byte, 8-aligned, in a shared mapping that outlives
    /// both processes' use (an address, so that both closures may hold it).
    base: usize,
}

impl FrameRing {
    /// Frame `k`'s first byte (its header).
    fn at(self, k: u64) -> *mut u8 {
        (self.base + (k % FRAMES_PER_LAP) as usize * FRAME) as *mut u8
    }

    /// Frame `k`'s header word.
    fn header<'a>(self, k: u64) -> &'a AtomicU64 {
        // SAFETY: 8-aligned (base and FRAME are) and inside the ring;
        // the mapping outlives the reference (see `base`). Both processes
        // access the word only as an atomic.
        unsafe { &*self.at(k).cast::<AtomicU64>() }
    }

    /// Writes command `k`, zeroes the next header and publishes `k` with
    /// one Release store; then hands the frame's lines to the shared cache,
    /// as the library's producer does before it waits for a reply.
    fn send(self, k: u64, cmd: &Command) {
        let p = self.at(k);
        // SAFETY: the payload lies inside the ring, 8-aligned. The consumer
        // does not read it before the header below is published, and has
        // read frame `k` of the last lap: the protocol has one command (or
        // reply) in flight.
        unsafe { p.add(8).cast::<Command>().write(*cmd) };
        // Relaxed: ordered before the consumer's view of frame `k` by the
        // Release store below.
        self.header(k + 1).store(0, Ordering::Relaxed);
        // Release: publishes the command; pairs with the Acquire load in
        // `recv`.
        self.header(k).store(k + 1, Ordering::Release);
        polycephaly::sync::shim::demote(p);
        polycephaly::sync::shim::demote(p.wrapping_add(FRAME - 1));
    }

    /// Spins until frame `k` is published, then copies its command out and
    /// checks that it carries `k`.
    fn recv(self, pair: &Pair<'_>, k: u64) -> Result<Command, BenchError> {
        let header = self.header(k);
        // Acquire: pairs with the Release store in `send`.
        pair.spin_until(|| header.load(Ordering::Acquire) == k + 1)?;
        // SAFETY: published above (inside the ring, 8-aligned); the producer
        // does not write it again before we answer (see `send`).
        let cmd = unsafe { self.at(k).add(8).cast::<Command>().read() };
        if cmd[0] == k {
            Ok(cmd)
        } else {
            Err(BenchError::Corrupt(format!("frame {k}")))
        }
    }
}

/// Round trips of a 64-byte command and its reply in the rings' frame
/// format, with no library code: the parent writes command `n` behind an
/// 8-byte header in one ring and spins on the next header of the other;
/// the child spins on the command's header, copies the command out and
/// sends it back. Both copy fixed-size commands, store the zero word ahead
/// and demote their frame's lines, as the library's round trip does. What
/// the SPSC round trip costs over this is the library's own code; what
/// this costs over [`spin_rtt`], the second line of every frame. Each
/// trip is timed alone.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] if a command carries the
/// wrong number.
pub fn frame_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new((), 2 * 4096)?;
    let base = area.bulk_ptr() as usize;
    let (requests, replies) = (FrameRing { base }, FrameRing { base: base + 4096 });
    let plan = *plan;
    let total = plan.total_samples() as u64;
    let (samples, placement) = run_pair(
        pin,
        |pair| {
            let mut out = Vec::with_capacity(plan.samples);
            let mut cmd: Command = [0x5A5A_5A5A_5A5A_5A5A; 8];
            for k in 0..total {
                let t0 = Instant::now();
                cmd[0] = k;
                requests.send(k, &cmd);
                replies.recv(pair, k)?;
                let d = t0.elapsed();
                if k as usize >= plan.warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair| {
            for k in 0..total {
                let cmd = requests.recv(pair, k)?;
                replies.send(k, &cmd);
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}

/// The wake floor's shared words. `req` (a shared futex word, written by
/// the parent) holds the request number; `asleep` (written by the child)
/// the request the child is about to sleep for; `rsp` (written by the
/// child) the last request answered. All only grow; zero-initialized.
#[repr(C)]
#[derive(Debug)]
struct WakeState {
    req: CachePadded<Futex>,
    asleep: CachePadded<AtomicU64>,
    rsp: CachePadded<AtomicU64>,
}

const _: () = {
    assert!(size_of::<WakeState>() == 384);
    assert!(core::mem::offset_of!(WakeState, asleep) == 128);
    assert!(core::mem::offset_of!(WakeState, rsp) == 256);
};

/// Round trips that must wake a sleeping responder. For every request the
/// child announces that it is going to sleep and sleeps in `FUTEX_WAIT`;
/// the parent, untimed, waits for the announcement and then polls
/// `/proc/<child>/stat` until the child is in state `S`; then it times:
/// store the request, `FUTEX_WAKE`, spin until the reply. A trip whose
/// `FUTEX_WAKE` woke nobody is dropped and counted in
/// [`Timings::dropped`]. Every trip is timed alone: `plan.batch` is ignored.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Os`] if `/proc/<child>/stat`
/// cannot be read.
pub fn wake_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new(
        WakeState {
            req: CachePadded::new(Futex::new(0)),
            asleep: CachePadded::new(AtomicU64::new(0)),
            rsp: CachePadded::new(AtomicU64::new(0)),
        },
        0,
    )?;
    let st = area.get();
    let total = u32::try_from(plan.total_samples()).unwrap_or(u32::MAX);
    let warmup = plan.warmup;
    let ((samples, dropped), placement) = run_pair(
        pin,
        |pair| {
            let stat = open_stat(pair)?;
            let mut out = Vec::with_capacity(plan.samples);
            let mut dropped = 0u64;
            for i in 1..=total {
                // Acquire: pairs with the child's Release store of asleep.
                pair.spin_until(|| st.asleep.load(Ordering::Acquire) == u64::from(i))?;
                wait_until_sleeping(pair, &stat)?;
                let t0 = Instant::now();
                // Release: pairs with the child's Acquire load of req.
                st.req.word().store(i, Ordering::Release);
                let woken = st.req.wake_one();
                // Acquire: pairs with the child's Release store of rsp.
                pair.spin_until(|| st.rsp.load(Ordering::Acquire) == u64::from(i))?;
                let d = t0.elapsed();
                if i as usize <= warmup {
                    continue;
                }
                if woken == 0 {
                    dropped += 1;
                } else {
                    out.push(d);
                }
            }
            Ok((out, dropped))
        },
        |pair| {
            for i in 1..=total {
                // Release: pairs with the parent's Acquire load of asleep.
                st.asleep.store(u64::from(i), Ordering::Release);
                loop {
                    // Acquire: pairs with the parent's Release store of req.
                    let cur = st.req.word().load(Ordering::Acquire);
                    if cur == i {
                        break;
                    }
                    let outcome = st.req.wait(cur, Some(Duration::from_millis(200)));
                    if outcome == WaitOutcome::TimedOut && !pair.peer_alive() {
                        return Err(BenchError::PeerDied);
                    }
                }
                // Release: pairs with the parent's Acquire load of rsp.
                st.rsp.store(u64::from(i), Ordering::Release);
            }
            Ok(())
        },
    )?;
    let mut t = Timings::new(samples, 1).with_placement(placement);
    t.dropped = dropped;
    Ok(t)
}

pub(crate) fn open_stat(pair: &Pair<'_>) -> Result<OwnedFd, BenchError> {
    let path = format!("/proc/{}/stat", pair.peer_pid().as_raw_nonzero());
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(BenchError::os("open /proc/<child>/stat"))
}

/// The scheduler state letter of a process from its `/proc/<pid>/stat`
/// text: the first non-blank after the last `)` (the command name may hold
/// anything, parentheses included).
fn stat_state(text: &[u8]) -> Option<u8> {
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 1..)?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

/// Polls the peer's state until it is `S` (interruptibly asleep).
pub(crate) fn wait_until_sleeping(pair: &Pair<'_>, stat: &OwnedFd) -> Result<(), BenchError> {
    let mut buf = [0u8; 512];
    let start = Instant::now();
    loop {
        let n = rustix::io::pread(stat, &mut buf[..], 0).map_err(BenchError::os("pread stat"))?;
        if stat_state(buf.get(..n).unwrap_or(&[])) == Some(b'S') {
            return Ok(());
        }
        if !pair.peer_alive() {
            return Err(BenchError::PeerDied);
        }
        if start.elapsed() > super::pair::STUCK_AFTER {
            return Err(BenchError::Stuck("the child to fall asleep"));
        }
        std::thread::yield_now();
    }
}

/// Bytes of the bare ring's slots: 64 KiB, like the SPSC rows' ring.
const RING_BYTES: usize = 64 * 1024;
/// Bytes of a bare ring message.
const SLOT: usize = 64;
/// Where a ring of frames puts 64-byte payloads: 72 bytes apart (8 bytes
/// of header before each), so that each message spans two cache lines and
/// shares each with a neighbour.
const FRAMED_STRIDE: usize = 72;
const _: () = assert!(FRAMED_STRIDE >= SLOT);

/// The bare ring's counters: `head` (messages consumed, written by the
/// consumer) and `tail` (messages produced, written by the producer), each
/// on its own cache line; `tail - head` is at most the number of slots.
/// The slots live in the area's bulk bytes: slot `p % slots` holds message
/// `p`.
#[repr(C)]
#[derive(Debug, Default)]
struct RingCounters {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
}

const _: () = assert!(size_of::<RingCounters>() == 256);

/// Messages per second through the barest ring: the parent produces
/// 64-byte messages (its sequence number in the first 8 bytes), publishing
/// the tail after each; the child consumes each, checks the number and
/// publishes the head. Each sample times `plan.batch` messages at the
/// producer, in steady state (no pause between samples).
///
/// # Errors
/// Those of [`run_pair`]; the child fails with [`BenchError::Corrupt`] if a
/// message carries the wrong number.
pub fn ring_64b_throughput(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    ring_64b_throughput_at(pin, plan, SLOT)
}

/// As [`ring_64b_throughput`], with the messages `stride` bytes apart
/// (at least 64: [`SLOT`] and [`FRAMED_STRIDE`] only): at 72 a message
/// spans two cache lines, each shared with a neighbour, as a 64-byte
/// payload does behind its 8-byte header in a ring of frames. The ring
/// keeps 64 KiB.
///
/// # Errors
/// As [`ring_64b_throughput`].
fn ring_64b_throughput_at(pin: PinMode, plan: &Plan, stride: usize) -> Result<Timings, BenchError> {
    let ring_slots = (RING_BYTES / stride) as u64;
    let area = ShmArea::new(RingCounters::default(), ring_slots as usize * stride)?;
    let st = area.get();
    let slots = area.bulk_ptr();
    let plan = *plan;
    let total = plan.total_ops();
    let slot_ptr = |pos: u64| {
        // SAFETY: (pos % ring_slots) * stride + SLOT <= ring_slots * stride,
        // the bulk length (SLOT <= stride).
        unsafe { slots.add((pos % ring_slots) as usize * stride) }
    };
    let (samples, placement) = run_pair(
        pin,
        |pair| {
            let mut out = Vec::with_capacity(plan.samples);
            let mut tail = 0u64;
            let mut head_cache = 0u64;
            let mut msg = [0xA5u8; SLOT];
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    if tail - head_cache == ring_slots {
                        pair.spin_until(|| {
                            // Acquire: pairs with the consumer's Release
                            // store of head; its reads of the slot are done.
                            head_cache = st.head.load(Ordering::Acquire);
                            tail - head_cache < ring_slots
                        })?;
                    }
                    msg[..8].copy_from_slice(&tail.to_le_bytes());
                    // SAFETY: the slot is free (tail - head < ring_slots):
                    // the consumer does not touch it until we publish.
                    unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), slot_ptr(tail), SLOT) };
                    tail += 1;
                    // Release: pairs with the consumer's Acquire load of
                    // tail; publishes the slot's bytes.
                    st.tail.store(tail, Ordering::Release);
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair| {
            let mut head = 0u64;
            let mut tail_cache = 0u64;
            let mut msg = [0u8; SLOT];
            while head < total {
                if head == tail_cache {
                    pair.spin_until(|| {
                        // Acquire: pairs with the producer's Release store.
                        tail_cache = st.tail.load(Ordering::Acquire);
                        tail_cache > head
                    })?;
                }
                // SAFETY: head < tail: the producer published this slot and
                // does not reuse it until we publish a later head.
                unsafe { core::ptr::copy_nonoverlapping(slot_ptr(head), msg.as_mut_ptr(), SLOT) };
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&msg[..8]);
                if u64::from_le_bytes(seq) != head {
                    return Err(BenchError::Corrupt(format!("ring message {head}")));
                }
                black_box(&msg);
                head += 1;
                // Release: pairs with the producer's Acquire load of head.
                st.head.store(head, Ordering::Release);
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}

/// One warm copy of `len` bytes in this process, each copy timed alone
/// (`plan.batch` is ignored). The copy is checked once before timing.
///
/// # Errors
/// [`BenchError::Corrupt`] if the check fails.
pub fn memcpy(len: usize, plan: &Plan) -> Result<Timings, BenchError> {
    let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src);
    if dst != src {
        return Err(BenchError::Corrupt("memcpy".into()));
    }
    let mut out = Vec::with_capacity(plan.samples);
    for s in 0..plan.total_samples() {
        let t0 = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        let d = t0.elapsed();
        if s >= plan.warmup {
            out.push(d);
        }
    }
    Ok(Timings::new(out, 1))
}

/// The transfer floor's handshake: `go` (written by the writer, the parent)
/// is the number of the round whose bytes are in place; `done` (written by
/// the reader) the last round read. Both only grow; zero-initialized.
#[repr(C)]
#[derive(Debug, Default)]
struct Handshake {
    go: CachePadded<AtomicU64>,
    done: CachePadded<AtomicU64>,
}

const _: () = assert!(size_of::<Handshake>() == 256);

/// Moving `len` bytes (a multiple of 8) from one process to another through
/// a shared mapping: the parent fills the bulk area with the round number
/// (as u64 words) and publishes the round; the child sums every word,
/// checks the sum and acknowledges. Each sample times one round, from the
/// first write to the acknowledgement (`plan.batch` is ignored).
///
/// # Errors
/// Those of [`run_pair`]; the child fails with [`BenchError::Corrupt`] if a
/// sum is wrong.
pub fn shm_transfer(pin: PinMode, len: usize, plan: &Plan) -> Result<Timings, BenchError> {
    let words = len / 8;
    let area = ShmArea::new(Handshake::default(), words * 8)?;
    let st = area.get();
    let bulk = area.bulk_ptr().cast::<u64>();
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let (samples, placement) = run_pair(
        pin,
        |pair| {
            let mut out = Vec::with_capacity(plan.samples);
            for k in 1..=rounds {
                let t0 = Instant::now();
                {
                    // SAFETY: the bulk area is page-aligned and holds
                    // `words` u64s; the reader acknowledged round k-1 and
                    // reads again only after we publish round k, so this
                    // process has the bytes to itself for now.
                    let data = unsafe { core::slice::from_raw_parts_mut(bulk, words) };
                    data.fill(k);
                }
                // Release: pairs with the reader's Acquire load of go;
                // publishes the bytes.
                st.go.store(k, Ordering::Release);
                // Acquire: pairs with the reader's Release store of done.
                pair.spin_until(|| st.done.load(Ordering::Acquire) == k)?;
                let d = t0.elapsed();
                if k > warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair| {
            for k in 1..=rounds {
                // Acquire: pairs with the writer's Release store of go.
                pair.spin_until(|| st.go.load(Ordering::Acquire) == k)?;
                // SAFETY: round k is published and the writer does not
                // write again until we acknowledge it.
                let data = unsafe { core::slice::from_raw_parts(bulk, words) };
                let sum = data.iter().fold(0u64, |a, &w| a.wrapping_add(w));
                if sum != k.wrapping_mul(words as u64) {
                    return Err(BenchError::Corrupt(format!("transfer round {k}")));
                }
                // Release: pairs with the writer's Acquire load of done.
                st.done.store(k, Ordering::Release);
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_skips_odd_command_names() {
        assert_eq!(stat_state(b"42 (a) b) S 1 2 3"), Some(b'S'));
        assert_eq!(stat_state(b"42 (x) R 1"), Some(b'R'));
        assert_eq!(stat_state(b"garbage"), None);
        assert_eq!(stat_state(b"1 (x)"), None);
    }
}
