//! The SPSC ring through its public API, between two real processes:
//! round trips (spinning, and waking a sleeping responder) and message
//! rates at three frame sizes.
//!
//! The region is a memfd made before the fork. The parent attaches with the
//! creating handle; the child opens its own handle from an inherited
//! descriptor, so each side has its own peer slot and the rings' liveness
//! checks see the real other process.

use std::time::Instant;

use super::floors::{open_stat, wait_until_sleeping};
use super::pair::{Pair, run_pair};
use super::{BenchError, Measurement, PinMode, Plan, Row, Timings, Unit, Wait};
use polycephaly::region::{OpenOptions, Region, SectionId};
use polycephaly::ring::spsc;
use polycephaly::ring::{Receiver, Sender};
use polycephaly::sync::WaitStrategy;

/// The SPSC rows, in table order within their groups.
pub const ROWS: &[Row] = &[
    Row {
        name: "spsc_spin_rtt",
        payload: "64 B cmd + 64 B reply",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: Some("floor_spin_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(20_000, 300_000, 1), Plan::new(5_000, 60_000, 1));
            Measurement::latency(&rtt(cfg.pin, &plan, RttMode::Spin)?)
        },
    },
    Row {
        name: "spsc_block_rtt",
        payload: "64 B cmd + 64 B reply",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_wake_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::latency(&rtt(cfg.pin, &plan, RttMode::WakeSleeper)?)
        },
    },
    Row {
        name: "spsc_8b_throughput",
        payload: "8 B",
        wait: Wait::Spin,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(10, 300, 200_000), Plan::new(5, 50, 100_000));
            Measurement::rate(&throughput(cfg.pin, &plan, 8)?, Unit::MsgPerSec, 1)
        },
    },
    Row {
        name: "spsc_64b_throughput",
        payload: "64 B",
        wait: Wait::Spin,
        unit: Unit::MsgPerSec,
        // The bare ring with its messages where a ring of frames puts
        // 64-byte payloads, 72 bytes apart. (Its target is against the
        // bare ring of 64-byte slots: see `TARGETS`.)
        floor: Some("floor_ring_64b_stride72_throughput"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(10, 300, 200_000), Plan::new(5, 50, 100_000));
            Measurement::rate(&throughput(cfg.pin, &plan, 64)?, Unit::MsgPerSec, 1)
        },
    },
    Row {
        name: "spsc_1kb_throughput",
        payload: "1 KiB",
        wait: Wait::Spin,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(10, 200, 50_000), Plan::new(5, 40, 25_000));
            Measurement::rate(&throughput(cfg.pin, &plan, 1024)?, Unit::MsgPerSec, 1)
        },
    },
];

/// The command and reply size of the round-trip rows.
const RTT_MSG: usize = 64;
/// Data bytes of each round-trip ring.
const RTT_CAPACITY: usize = 4096;
/// Data bytes of the throughput ring: 64 KiB, like the bare ring's slots.
const THROUGHPUT_CAPACITY: usize = 64 * 1024;

pub(crate) fn lib_err(what: &'static str) -> impl FnOnce(String) -> BenchError {
    move |e| BenchError::Library(format!("{what}: {e}"))
}

/// A memfd region with `rings` SPSC sections of `capacity` data bytes.
fn region_with_rings(rings: u16, capacity: usize) -> Result<Region, BenchError> {
    let spec = spsc::Spec::new(capacity).map_err(|e| lib_err("ring spec")(e.to_string()))?;
    let mut b = Region::builder().memfd();
    for _ in 0..rings {
        b = b.with(spec);
    }
    b.build()
        .map_err(|e| lib_err("create region")(e.to_string()))
}

/// In a forked child: its own handle on the parent's region (its own peer
/// slot); the copy it inherited is inert there.
pub(crate) fn child_handle(region: &Region) -> Result<Region, BenchError> {
    region
        .reopen(&OpenOptions::default())
        .map_err(|e| lib_err("open region")(e.to_string()))
}

fn producer(
    region: &Region,
    id: u16,
    strategy: WaitStrategy,
) -> Result<spsc::Producer, BenchError> {
    let mut p = spsc::Producer::attach(region, SectionId(id))
        .map_err(|e| lib_err("attach producer")(e.to_string()))?;
    p.set_wait_strategy(strategy);
    Ok(p)
}

fn consumer(
    region: &Region,
    id: u16,
    strategy: WaitStrategy,
) -> Result<spsc::Consumer, BenchError> {
    let mut c = spsc::Consumer::attach(region, SectionId(id))
        .map_err(|e| lib_err("attach consumer")(e.to_string()))?;
    c.set_wait_strategy(strategy);
    Ok(c)
}

/// Sends one frame: `msg` copied in whole, as the bare ring copies its
/// 64-byte slots, then `seq` written over its first 8 bytes in the claim;
/// waits as the producer's strategy says.
///
/// The number goes into the claim, not into `msg` before the copy: the
/// copy's wide load of `msg` cannot take its first bytes from that 8-byte
/// store still in flight, and waits until the store, and every ring store
/// queued before it, has reached the cache (measured: 64-byte frames at
/// 60-62 M msg/s so, 66-67 M now). The bare ring's compiler writes its
/// number straight into the slot.
///
/// Out of line, as is `recv_seq`: they had two callers until the round
/// trips took the typed forms, and the compiler then inlined them into
/// the throughput loops, which moved 8- and 64-byte streams up by a
/// sixth and 1 KiB ones down by an eighth (measured, 1 Dec 2026). So the
/// code measured stays the code earlier figures came from.
#[inline(never)]
fn send_seq(p: &mut spsc::Producer, seq: u64, msg: &[u8]) -> Result<(), BenchError> {
    let mut claim = p
        .claim(msg.len())
        .map_err(|e| lib_err("claim")(e.to_string()))?;
    claim.copy_from_slice(msg);
    if let Some(head) = claim.get_mut(..8) {
        head.copy_from_slice(&seq.to_le_bytes());
    }
    claim.commit();
    Ok(())
}

/// Receives one frame, copies it out whole into `out` (as the bare ring's
/// consumer does), and checks its length and that it carries `seq`. Out
/// of line (see `send_seq`).
#[inline(never)]
fn recv_seq(c: &mut spsc::Consumer, seq: u64, out: &mut [u8]) -> Result<(), BenchError> {
    let frame = c.read().map_err(|e| lib_err("read")(e.to_string()))?;
    let ok = frame.len() == out.len();
    if ok {
        out.copy_from_slice(&frame);
    }
    frame.release();
    if ok
        && out
            .get(..8)
            .is_some_and(|b| b == seq.to_le_bytes().as_slice())
    {
        Ok(())
    } else {
        Err(BenchError::Corrupt(format!("frame {seq}")))
    }
}

/// A round trip's command, and its reply: 64 bytes, the sequence number
/// in the first word.
type Command = [u64; RTT_MSG / 8];

/// Sends a command with `send_value`, the typed form a user's commands
/// take: its copy has a size known when compiling, and is inlined. (A
/// copy of a length known only at run time, as `send_seq` makes, calls
/// the C library's `memmove`: measured, four such copies a trip made the
/// spinning round trip 13-28 ns slower, medians of 5 interleaved runs per
/// placement, 1 Dec 2026.)
#[inline]
fn send_cmd(p: &mut spsc::Producer, cmd: &Command) -> Result<(), BenchError> {
    p.send_value(cmd)
        .map_err(|e| lib_err("send_value")(e.to_string()))
}

/// Receives a command with `recv_value` (see [`send_cmd`]) and checks
/// that it carries `seq`.
#[inline]
fn recv_cmd(c: &mut spsc::Consumer, seq: u64) -> Result<Command, BenchError> {
    let cmd: Command = c
        .recv_value()
        .map_err(|e| lib_err("recv_value")(e.to_string()))?;
    if cmd[0] == seq {
        Ok(cmd)
    } else {
        Err(BenchError::Corrupt(format!("command {seq}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RttMode {
    /// Both sides spin ([`WaitStrategy::SPIN`]).
    Spin,
    /// The responder sleeps in the ring's blocking read before each request
    /// (checked through `/proc`); the requester uses the default blocking
    /// strategy, whose spin phase catches the reply without sleeping.
    WakeSleeper,
}

/// 64-byte command and 64-byte reply ([`Command`], sent and read with the
/// typed forms) through two SPSC rings (section 0: requests, parent to
/// child; section 1: replies). Each trip is timed alone.
fn rtt(pin: PinMode, plan: &Plan, mode: RttMode) -> Result<Timings, BenchError> {
    let region = region_with_rings(2, RTT_CAPACITY)?;
    let total = plan.total_samples();
    let warmup = plan.warmup;
    let (parent_wait, child_wait) = match mode {
        RttMode::Spin => (WaitStrategy::SPIN, WaitStrategy::SPIN),
        RttMode::WakeSleeper => (WaitStrategy::BLOCK, WaitStrategy::SLEEP),
    };
    let (samples, placement) = run_pair(
        pin,
        |pair: &Pair<'_>| {
            let mut req = producer(&region, 0, parent_wait)?;
            let mut rsp = consumer(&region, 1, parent_wait)?;
            let stat = match mode {
                RttMode::WakeSleeper => Some(open_stat(pair)?),
                RttMode::Spin => None,
            };
            pair.barrier()?;
            let mut out = Vec::with_capacity(total.saturating_sub(warmup));
            let mut cmd: Command = [0x5A5A_5A5A_5A5A_5A5A; RTT_MSG / 8];
            for i in 0..total as u64 {
                if let Some(stat) = &stat {
                    wait_until_sleeping(pair, stat)?;
                }
                let t0 = Instant::now();
                cmd[0] = i;
                send_cmd(&mut req, &cmd)?;
                recv_cmd(&mut rsp, i)?;
                let d = t0.elapsed();
                if i as usize >= warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair: &Pair<'_>| {
            let mine = child_handle(&region)?;
            let mut req = consumer(&mine, 0, child_wait)?;
            let mut rsp = producer(&mine, 1, child_wait)?;
            pair.barrier()?;
            for i in 0..total as u64 {
                let cmd = recv_cmd(&mut req, i)?;
                send_cmd(&mut rsp, &cmd)?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}

/// Messages per second of `len` bytes through one ring, both sides
/// spinning, one commit (one Release store) per message; the producer
/// copies each message in whole, the consumer copies it out whole and
/// checks its sequence number. Samples time `plan.batch`
/// messages at the producer, in steady state.
fn throughput(pin: PinMode, plan: &Plan, len: usize) -> Result<Timings, BenchError> {
    let region = region_with_rings(1, THROUGHPUT_CAPACITY)?;
    let plan = *plan;
    let total = plan.total_ops();
    let (samples, placement) = run_pair(
        pin,
        |pair: &Pair<'_>| {
            let mut p = producer(&region, 0, WaitStrategy::SPIN)?;
            pair.barrier()?;
            let mut out = Vec::with_capacity(plan.samples);
            let mut seq = 0u64;
            let msg = vec![0xA5u8; len];
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    send_seq(&mut p, seq, &msg)?;
                    seq += 1;
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair: &Pair<'_>| {
            let mine = child_handle(&region)?;
            let mut c = consumer(&mine, 0, WaitStrategy::SPIN)?;
            pair.barrier()?;
            let mut out = vec![0u8; len];
            for seq in 0..total {
                recv_seq(&mut c, seq, &mut out)?;
                core::hint::black_box(&out);
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}
