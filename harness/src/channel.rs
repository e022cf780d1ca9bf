//! The channel between two real processes, and the same protocol through
//! a Unix stream socket.
//!
//! - `channel_empty_rtt_spin` / `_block`: an empty request (method
//!   `() -> ()`) and its empty reply, through the library's channel (the
//!   parent is the client, the forked child binds a named channel and
//!   serves). Spin: both sides spin ([`WaitStrategy::SPIN`]). Block: the
//!   server sleeps before each request (checked through `/proc`), the
//!   client uses the default blocking strategy, whose spin phase catches
//!   the reply.
//! - `uds_channel_empty_rtt`: the same frames (32-byte headers encoded and
//!   checked with [`polycephaly::channel::wire`]) through a Unix stream
//!   socket, both sides blocking in `read`.
//! - `channel_bytes_rtt_<N>` / `uds_channel_bytes_rtt_<N>`: a request of N
//!   bytes (copied from the client's buffer: `call(&m, &bytes[..])`; by
//!   handle above 4 KiB) answered with their checksum (8 bytes), which the
//!   client checks; both sides of the channel spin (as the arena rows do:
//!   a megabyte takes longer than the blocking strategy's spin phase, and
//!   each side would otherwise fall asleep while the other copies or
//!   sums). The socket twin writes the frame and the bytes, the server
//!   reads them whole into its buffer and answers the same way.
//!
//! Each round trip is timed alone (`plan.batch` is ignored).

use std::time::Instant;

use super::floors::{open_stat, wait_until_sleeping};
use super::os::{Stream, read_exact, stream_ends, write_all};
use super::pair::{Pair, STUCK_AFTER, run_pair};
use super::spsc::lib_err;
use super::{BenchError, Measurement, PinMode, Plan, Row, Timings, Unit, Wait};
use polycephaly::channel::wire::{self, Body, FrameHeader, HEADER_LEN, Head};
use polycephaly::channel::{ChannelSpec, Client, Server};
use polycephaly::sync::WaitStrategy;

/// The round-trip rows of an empty request.
pub const EMPTY_ROWS: &[Row] = &[
    Row {
        name: "channel_empty_rtt_spin",
        payload: "empty request + reply",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: Some("spsc_spin_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(20_000, 300_000, 1), Plan::new(5_000, 60_000, 1));
            Measurement::latency(&channel_rtt(cfg.pin, 0, &plan, Mode::Spin)?)
        },
    },
    Row {
        name: "channel_empty_rtt_block",
        payload: "empty request + reply",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("spsc_block_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::latency(&channel_rtt(cfg.pin, 0, &plan, Mode::WakeSleeper)?)
        },
    },
    Row {
        name: "uds_channel_empty_rtt",
        payload: "empty request + reply",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(500, 40_000, 1), Plan::new(100, 5_000, 1));
            Measurement::latency(&uds_rtt(cfg.pin, 0, &plan)?)
        },
    },
];

macro_rules! bytes_rows {
    ($(($c:literal, $u:literal, $payload:literal, $n:expr, $full:expr, $quick:expr)),* $(,)?) => {
        &[$(
            Row {
                name: $c,
                payload: $payload,
                wait: Wait::Spin,
                unit: Unit::Ns,
                floor: Some($u),
                run: |cfg| {
                    let plan = cfg.plan($full, $quick);
                    Measurement::latency(&channel_rtt(cfg.pin, $n, &plan, Mode::Spin)?)
                },
            },
            Row {
                name: $u,
                payload: $payload,
                wait: Wait::Block,
                unit: Unit::Ns,
                floor: None,
                run: |cfg| {
                    let plan = cfg.plan($full, $quick);
                    Measurement::latency(&uds_rtt(cfg.pin, $n, &plan)?)
                },
            },
        )*]
    };
}

/// The round-trip rows of an N-byte request, each with its socket twin.
pub const BYTES_ROWS: &[Row] = bytes_rows![
    (
        "channel_bytes_rtt_10",
        "uds_channel_bytes_rtt_10",
        "10 B",
        10,
        Plan::new(2_000, 100_000, 1),
        Plan::new(500, 10_000, 1)
    ),
    (
        "channel_bytes_rtt_100",
        "uds_channel_bytes_rtt_100",
        "100 B",
        100,
        Plan::new(2_000, 100_000, 1),
        Plan::new(500, 10_000, 1)
    ),
    (
        "channel_bytes_rtt_1000",
        "uds_channel_bytes_rtt_1000",
        "1000 B",
        1_000,
        Plan::new(2_000, 50_000, 1),
        Plan::new(500, 5_000, 1)
    ),
    (
        "channel_bytes_rtt_10000",
        "uds_channel_bytes_rtt_10000",
        "10^4 B",
        10_000,
        Plan::new(1_000, 20_000, 1),
        Plan::new(200, 2_000, 1)
    ),
    (
        "channel_bytes_rtt_100000",
        "uds_channel_bytes_rtt_100000",
        "10^5 B",
        100_000,
        Plan::new(200, 5_000, 1),
        Plan::new(50, 500, 1)
    ),
    (
        "channel_bytes_rtt_1000000",
        "uds_channel_bytes_rtt_1000000",
        "10^6 B",
        1_000_000,
        Plan::new(50, 1_000, 1),
        Plan::new(10, 100, 1)
    ),
];

/// How the two sides of a channel row wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Both spin.
    Spin,
    /// The server sleeps (checked through `/proc`) before each request;
    /// the client uses the default blocking strategy.
    WakeSleeper,
}

/// The checksum both servers answer with: the sum of the little-endian
/// words, the tail bytes added one by one, plus the length.
#[inline]
fn checksum(b: &[u8]) -> u64 {
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    let mut s = words.fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
    });
    for &t in tail {
        s = s.wrapping_add(u64::from(t));
    }
    s.wrapping_add(b.len() as u64)
}

/// The request of round `k`: `n` bytes, the first 8 (if there are 8)
/// holding `k`. Returns the buffer and its checksum with `k = 0`; the
/// checksum of round `k` is that plus `k` (little-endian word 0 grows by
/// `k`).
fn request(n: usize) -> (Vec<u8>, u64) {
    let buf: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let mut zeroed = buf.clone();
    if let Some(w) = zeroed.get_mut(..8) {
        w.fill(0);
    }
    (buf, checksum(&zeroed))
}

fn stamp(buf: &mut [u8], k: u64) {
    if let Some(w) = buf.get_mut(..8) {
        w.copy_from_slice(&k.to_le_bytes());
    }
}

fn want(base: u64, n: usize, k: u64) -> u64 {
    if n >= 8 { base.wrapping_add(k) } else { base }
}

/// Round trips through a named channel: the child binds it and serves,
/// the parent connects and times each call (an empty request for `n ==
/// 0`, else `n` bytes answered with their checksum, checked).
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong reply.
pub fn channel_rtt(pin: PinMode, n: usize, plan: &Plan, mode: Mode) -> Result<Timings, BenchError> {
    let name = format!("polycephaly-bench-channel-{}", std::process::id());
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let (client_wait, server_wait) = match mode {
        Mode::Spin => (WaitStrategy::SPIN, WaitStrategy::SPIN),
        Mode::WakeSleeper => (WaitStrategy::BLOCK, WaitStrategy::SLEEP),
    };
    // Lanes of two requests (as the arena rows), so that a request's block
    // reuses the bytes of the one before last, still in the caches.
    let spec = ChannelSpec::new()
        .with_clients(1)
        .with_lane_len((2 * n + 4096).max(64 << 10));
    let (samples, placement) = run_pair(
        pin,
        |pair: &Pair<'_>| {
            let mut client = Client::connect_timeout(&name, STUCK_AFTER)
                .map_err(|e| lib_err("connect")(e.to_string()))?;
            client.set_wait_strategy(client_wait);
            let empty = client
                .method::<(), ()>("empty")
                .map_err(|e| lib_err("lookup")(e.to_string()))?;
            let sum = client
                .method::<[u8], u64>("checksum")
                .map_err(|e| lib_err("lookup")(e.to_string()))?;
            let stat = match mode {
                Mode::WakeSleeper => Some(open_stat(pair)?),
                _ => None,
            };
            let (mut buf, base) = request(n);
            pair.barrier()?;
            let mut out = Vec::with_capacity(plan.samples);
            let deadline = || Some(Instant::now() + STUCK_AFTER);
            for k in 1..=rounds {
                if let Some(stat) = &stat {
                    wait_until_sleeping(pair, stat)?;
                }
                stamp(&mut buf, k);
                let t0 = Instant::now();
                if n == 0 {
                    client
                        .call(&empty, &())
                        .map_err(|e| lib_err("call")(e.to_string()))?;
                } else {
                    let got = client
                        .call_deadline(&sum, &buf[..], deadline())
                        .map_err(|e| lib_err("call")(e.to_string()))?;
                    if got != want(base, n, k) {
                        return Err(BenchError::Corrupt(format!("checksum in round {k}")));
                    }
                }
                let d = t0.elapsed();
                if k > warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair: &Pair<'_>| {
            let mut server =
                Server::bind(&name, spec).map_err(|e| lib_err("bind")(e.to_string()))?;
            server.set_wait_strategy(server_wait);
            server
                .method("empty", |_: &()| ())
                .map_err(|e| lib_err("register")(e.to_string()))?;
            server
                .method("checksum", |b: &[u8]| checksum(b))
                .map_err(|e| lib_err("register")(e.to_string()))?;
            // Opens the channel to the client (nothing is waiting yet).
            let _ = server.try_serve_one();
            pair.barrier()?;
            // Without a deadline: a client that dies takes this process
            // with it (run_pair's parent-death signal).
            for _ in 0..rounds {
                server
                    .serve_one()
                    .map_err(|e| lib_err("serve")(e.to_string()))?;
            }
            let s = server.stats();
            if s.replies != rounds || s.errors != 0 {
                return Err(BenchError::Corrupt(format!("server stats {s:?}")));
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}

/// The same protocol through a Unix stream socket: the client writes a
/// request frame (header and `n` bytes), the server reads it whole,
/// decodes it, and writes a reply frame (empty, or the checksum).
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong reply.
pub fn uds_rtt(pin: PinMode, n: usize, plan: &Plan) -> Result<Timings, BenchError> {
    let ((p_read, p_write), (c_read, c_write)) = stream_ends(Stream::Uds)?;
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let reply_len = if n == 0 { HEADER_LEN } else { HEADER_LEN + 8 };
    let (samples, placement) = run_pair(
        pin,
        move |_| {
            let (mut buf, base) = request(n);
            let mut frame = vec![0u8; HEADER_LEN + n];
            let mut reply = vec![0u8; reply_len];
            let mut out = Vec::with_capacity(plan.samples);
            for k in 1..=rounds {
                stamp(&mut buf, k);
                let t0 = Instant::now();
                // The frame is built in the client's buffer (as the
                // channel builds it in the ring), then written.
                wire::encode_inline(&mut frame, &Head::request(1, 0, k));
                frame[HEADER_LEN..].copy_from_slice(&buf);
                write_all(&p_write, &frame)?;
                read_exact(&p_read, &mut reply)?;
                let m = wire::decode(&reply).map_err(|e| BenchError::Corrupt(e.to_string()))?;
                let ok = m.head.correlation == k
                    && match m.body {
                        Body::Inline(b) if n == 0 => b.is_empty(),
                        Body::Inline(b) => {
                            b.try_into().map(u64::from_le_bytes).ok() == Some(want(base, n, k))
                        }
                        Body::Block(_) => false,
                    };
                let d = t0.elapsed();
                if !ok {
                    return Err(BenchError::Corrupt(format!("reply in round {k}")));
                }
                if k > warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        move |_| {
            let mut frame = vec![0u8; HEADER_LEN + n];
            let mut reply = vec![0u8; reply_len];
            for _ in 0..rounds {
                read_exact(&c_read, &mut frame[..HEADER_LEN])?;
                let h: FrameHeader = bytemuck::pod_read_unaligned(&frame[..HEADER_LEN]);
                if h.len != n as u64 {
                    return Err(BenchError::Corrupt(format!("a request of {} bytes", h.len)));
                }
                read_exact(&c_read, &mut frame[HEADER_LEN..])?;
                let m = wire::decode(&frame).map_err(|e| BenchError::Corrupt(e.to_string()))?;
                let Body::Inline(body) = m.body else {
                    return Err(BenchError::Corrupt("a handle".into()));
                };
                wire::encode_inline(&mut reply, &m.head.reply());
                if n > 0 {
                    reply[HEADER_LEN..].copy_from_slice(&checksum(body).to_le_bytes());
                }
                write_all(&c_write, &reply)?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}
