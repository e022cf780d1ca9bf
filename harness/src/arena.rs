//! The bulk arena between two real processes, and the same exchange
//! through a Unix socket.
//!
//! - "Shared memory raw read/write": `shm_write_<N>` and `shm_read_<N>`:
//!   the parent writes N bytes into a block and publishes it (timed: the
//!   write), the child reads all of them in place and releases the block
//!   (timed: the read); the handle and the acknowledgement travel through
//!   SPSC rings, untimed.
//! - "Shared memory command with arrays": `arena_array_rtt_<N>`: the
//!   parent (the master) builds an array of N u64 in a block and sends its
//!   handle through a ring; the child (a drone) sums all of it, releases
//!   it and answers the sum through a ring; timed from the allocation to
//!   the answer. `arena_array_piped_rtt_<N>`: the same array in blocks of
//!   [`PIECE`] elements (1 MiB), each handed over as soon as it is built,
//!   so that the drone sums one while the master builds the next (the
//!   socket pipelines through the kernel the same way). `uds_array_rtt_<N>`: the same exchange through a Unix
//!   stream socket (the array copied in and out of the kernel).
//!
//! The region is a memfd made before the fork; the child opens its own
//! handle from an inherited descriptor, as in `spsc.rs`.

use std::time::Instant;

use super::os::{Stream, read_exact, stream_ends, write_all};
use super::pair::{Pair, run_pair};
use super::spsc::{child_handle, lib_err};
use super::{BenchError, Measurement, PinMode, Plan, Row, Timings, Unit, Wait};
use polycephaly::arena::{ArenaReader, ArenaSpec, ArenaWriter, BlockHandle, shared_huge_pages};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, Sender, spsc};
use polycephaly::sync::WaitStrategy;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

const ARENA: SectionId = SectionId(0);
const TO_CHILD: SectionId = SectionId(1);
const TO_PARENT: SectionId = SectionId(2);

macro_rules! shm_rows {
    ($(($w:literal, $r:literal, $payload:literal, $len:expr, $floor:expr, $full:expr, $quick:expr)),* $(,)?) => {
        &[$(
            Row {
                name: $w,
                payload: $payload,
                wait: Wait::Spin,
                unit: Unit::BytesPerSec,
                floor: $floor,
                run: |cfg| {
                    let (w, _) = shm_write_read(cfg.pin, $len, &cfg.plan($full, $quick))?;
                    Ok(note_huge(Measurement::rate(&w, Unit::BytesPerSec, $len as u64)?, $len))
                },
            },
            Row {
                name: $r,
                payload: $payload,
                wait: Wait::Spin,
                unit: Unit::BytesPerSec,
                floor: $floor,
                run: |cfg| {
                    let (_, r) = shm_write_read(cfg.pin, $len, &cfg.plan($full, $quick))?;
                    Ok(note_huge(Measurement::rate(&r, Unit::BytesPerSec, $len as u64)?, $len))
                },
            },
        )*]
    };
}

/// The raw read/write rows, in table order.
pub const SHM_ROWS: &[Row] = shm_rows![
    (
        "shm_write_1kb",
        "shm_read_1kb",
        "1 KiB",
        KIB,
        None,
        Plan::new(1_000, 50_000, 1),
        Plan::new(200, 5_000, 1)
    ),
    (
        "shm_write_10kb",
        "shm_read_10kb",
        "10 KiB",
        10 * KIB,
        None,
        Plan::new(1_000, 30_000, 1),
        Plan::new(200, 3_000, 1)
    ),
    (
        "shm_write_100kb",
        "shm_read_100kb",
        "100 KiB",
        100 * KIB,
        None,
        Plan::new(300, 10_000, 1),
        Plan::new(50, 1_000, 1)
    ),
    (
        "shm_write_1mb",
        "shm_read_1mb",
        "1 MiB",
        MIB,
        Some("memcpy_1mb"),
        Plan::new(100, 3_000, 1),
        Plan::new(20, 300, 1)
    ),
    (
        "shm_write_8mb",
        "shm_read_8mb",
        "8 MiB",
        8 * MIB,
        Some("memcpy_8mb"),
        Plan::new(20, 400, 1),
        Plan::new(5, 40, 1)
    ),
];

macro_rules! array_rows {
    ($(($a:literal, $u:literal, $payload:literal, $n:expr, $seed:expr, $full:expr, $quick:expr)),* $(,)?) => {
        &[$(
            Row {
                name: $a,
                payload: $payload,
                wait: Wait::Spin,
                unit: Unit::Ns,
                floor: Some($u),
                run: |cfg| {
                    let t = arena_array_rtt(cfg.pin, $n, &cfg.plan($full, $quick))?;
                    let m = note_huge(Measurement::latency(&t)?, $n * 8);
                    Ok(note_seed(m, $seed.map(|s: (&str, &str)| s.0)))
                },
            },
            Row {
                name: $u,
                payload: $payload,
                wait: Wait::Block,
                unit: Unit::Ns,
                floor: None,
                run: |cfg| {
                    let t = uds_array_rtt(cfg.pin, $n, &cfg.plan($full, $quick))?;
                    Ok(note_seed(Measurement::latency(&t)?, $seed.map(|s: (&str, &str)| s.1)))
                },
            },
        )*]
    };
}

/// The array round-trip rows, in table order. The seed's figures (the
/// Smalltalk system this library starts from: shared memory, messages)
/// are noted beside ours where the talk gave them.
pub const ARRAY_ROWS: &[Row] = array_rows![
    (
        "arena_array_rtt_10",
        "uds_array_rtt_10",
        "10 x u64",
        10,
        Some(("seed: 307 us", "seed: 8 ms")),
        Plan::new(5_000, 100_000, 1),
        Plan::new(1_000, 10_000, 1)
    ),
    (
        "arena_array_rtt_100",
        "uds_array_rtt_100",
        "100 x u64",
        100,
        None,
        Plan::new(5_000, 100_000, 1),
        Plan::new(1_000, 10_000, 1)
    ),
    (
        "arena_array_rtt_1000",
        "uds_array_rtt_1000",
        "1000 x u64",
        1_000,
        None,
        Plan::new(2_000, 50_000, 1),
        Plan::new(500, 5_000, 1)
    ),
    (
        "arena_array_rtt_10000",
        "uds_array_rtt_10000",
        "10^4 x u64",
        10_000,
        None,
        Plan::new(500, 10_000, 1),
        Plan::new(100, 1_000, 1)
    ),
    (
        "arena_array_rtt_100000",
        "uds_array_rtt_100000",
        "10^5 x u64",
        100_000,
        None,
        Plan::new(100, 2_000, 1),
        Plan::new(20, 200, 1)
    ),
    (
        "arena_array_rtt_1000000",
        "uds_array_rtt_1000000",
        "10^6 x u64",
        1_000_000,
        Some(("seed: 99 ms", "seed: 1.5 s")),
        Plan::new(20, 300, 1),
        Plan::new(5, 30, 1)
    ),
];

/// Large arrays handed over in 1 MiB blocks as they are built
/// ([`PIECE`]), beside the socket twin of the same size.
pub const PIPED_ROWS: &[Row] = &[
    Row {
        name: "arena_array_piped_rtt_100000",
        payload: "10^5 x u64",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: Some("uds_array_rtt_100000"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(100, 2_000, 1), Plan::new(20, 200, 1));
            let t = arena_array_rtt_in(cfg.pin, 100_000, PIECE, &plan)?;
            Measurement::latency(&t)
        },
    },
    Row {
        name: "arena_array_piped_rtt_1000000",
        payload: "10^6 x u64",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: Some("uds_array_rtt_1000000"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(20, 300, 1), Plan::new(5, 30, 1));
            let t = arena_array_rtt_in(cfg.pin, 1_000_000, PIECE, &plan)?;
            Ok(note_huge(Measurement::latency(&t)?, 8_000_000))
        },
    },
];

fn note_seed(mut m: Measurement, seed: Option<&str>) -> Measurement {
    if let Some(s) = seed {
        m.notes.push(s.to_owned());
    }
    m
}

/// Notes, on rows of a lane large enough for them, whether this machine
/// backs shared memory with transparent huge pages.
fn note_huge(mut m: Measurement, bytes: usize) -> Measurement {
    if bytes >= 2 * MIB {
        m.notes.push(format!(
            "transparent huge pages for shared memory: {}",
            if shared_huge_pages() {
                "on (madvise)"
            } else {
                "off on this machine (shmem_enabled)"
            }
        ));
    }
    m
}

/// A memfd region holding a formatted arena of one lane of `lane` bytes
/// and the two SPSC rings.
fn region_with_arena(lane: usize) -> Result<Region, BenchError> {
    let spec = ArenaSpec::new(1, lane).with_blocks(16);
    let err = |e: String| lib_err("arena region")(e);
    let region = Region::builder()
        .memfd()
        .section(
            SectionKind::Arena,
            spec.section_len().map_err(|e| err(e.to_string()))?,
        )
        .with(spsc::Spec::new(4096).map_err(|e| err(e.to_string()))?)
        .with(spsc::Spec::new(4096).map_err(|e| err(e.to_string()))?)
        .build()
        .map_err(|e| err(e.to_string()))?;
    spec.format(&region, ARENA)
        .map_err(|e| err(e.to_string()))?;
    Ok(region)
}

/// The parent's side: the lane's writer, the handle ring's producer, the
/// reply ring's consumer, all spinning.
fn parent_side(
    region: &Region,
) -> Result<(ArenaWriter, spsc::Producer, spsc::Consumer), BenchError> {
    let mut w =
        ArenaWriter::attach(region, ARENA).map_err(|e| lib_err("attach writer")(e.to_string()))?;
    w.set_wait_strategy(WaitStrategy::SPIN);
    let mut tx = spsc::Producer::attach(region, TO_CHILD)
        .map_err(|e| lib_err("attach producer")(e.to_string()))?;
    tx.set_wait_strategy(WaitStrategy::SPIN);
    let mut rx = spsc::Consumer::attach(region, TO_PARENT)
        .map_err(|e| lib_err("attach consumer")(e.to_string()))?;
    rx.set_wait_strategy(WaitStrategy::SPIN);
    Ok((w, tx, rx))
}

/// The child's side, on its own region handle: a reader and the rings.
fn child_side(
    region: &Region,
) -> Result<(ArenaReader, spsc::Consumer, spsc::Producer), BenchError> {
    let r =
        ArenaReader::attach(region, ARENA).map_err(|e| lib_err("attach reader")(e.to_string()))?;
    let mut rx = spsc::Consumer::attach(region, TO_CHILD)
        .map_err(|e| lib_err("attach consumer")(e.to_string()))?;
    rx.set_wait_strategy(WaitStrategy::SPIN);
    let mut tx = spsc::Producer::attach(region, TO_PARENT)
        .map_err(|e| lib_err("attach producer")(e.to_string()))?;
    tx.set_wait_strategy(WaitStrategy::SPIN);
    Ok((r, rx, tx))
}

fn send<T: bytemuck::Pod>(tx: &mut spsc::Producer, v: &T) -> Result<(), BenchError> {
    tx.send_value(v).map_err(|e| lib_err("send")(e.to_string()))
}

fn recv<T: bytemuck::Pod>(rx: &mut spsc::Consumer) -> Result<T, BenchError> {
    rx.recv_value::<T>()
        .map_err(|e| lib_err("recv")(e.to_string()))
}

/// The sum of a block's words.
#[inline]
fn sum(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

/// One block of `len` bytes (a multiple of 8) per round: the parent
/// allocates it, fills it with the round number and publishes it (its
/// timed part), the child reads all of it in place, checks the sum and
/// releases it (its timed part, sent back with the acknowledgement).
/// Returns (write timings, read timings); `plan.batch` is ignored.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong sum.
pub fn shm_write_read(
    pin: PinMode,
    len: usize,
    plan: &Plan,
) -> Result<(Timings, Timings), BenchError> {
    let words = len / 8;
    let region = region_with_arena(2 * len.max(4 * KIB))?;
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let ((writes, reads), placement) = run_pair(
        pin,
        |pair: &Pair<'_>| {
            let (mut w, mut tx, mut rx) = parent_side(&region)?;
            pair.barrier()?;
            let (mut writes, mut reads) = (Vec::new(), Vec::new());
            for k in 1..=rounds {
                let t0 = Instant::now();
                let block = w
                    .alloc_uninit::<u64>(words)
                    .map_err(|e| lib_err("alloc")(e.to_string()))?
                    .fill(k);
                let h = block.publish_for(1);
                let write = t0.elapsed();
                send(&mut tx, &h)?;
                let [got, read_ns]: [u64; 2] = recv(&mut rx)?;
                if got != k {
                    return Err(BenchError::Corrupt(format!(
                        "round {k} acknowledged as {got}"
                    )));
                }
                if k > warmup {
                    writes.push(write);
                    reads.push(core::time::Duration::from_nanos(read_ns));
                }
            }
            Ok((writes, reads))
        },
        |pair: &Pair<'_>| {
            let mine = child_handle(&region)?;
            let (r, mut rx, mut tx) = child_side(&mine)?;
            pair.barrier()?;
            for k in 1..=rounds {
                let h: BlockHandle = recv(&mut rx)?;
                let t0 = Instant::now();
                let g = r
                    .read::<u64>(&h)
                    .map_err(|e| lib_err("read")(e.to_string()))?;
                let s = sum(&g);
                drop(g);
                let ns = t0.elapsed().as_nanos() as u64;
                if s != k.wrapping_mul(words as u64) {
                    return Err(BenchError::Corrupt(format!("block sum in round {k}")));
                }
                send(&mut tx, &[k, ns])?;
            }
            Ok(())
        },
    )?;
    Ok((
        Timings::new(writes, 1).with_placement(placement),
        Timings::new(reads, 1).with_placement(placement),
    ))
}

/// The master builds `n` u64 (all `k` in round `k`) in a block and sends
/// its handle through a ring; the drone sums the block in place, releases
/// it and answers the sum through a ring. Each round is timed alone, from
/// the allocation to the answer; `plan.batch` is ignored.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong sum.
pub fn arena_array_rtt(pin: PinMode, n: usize, plan: &Plan) -> Result<Timings, BenchError> {
    arena_array_rtt_in(pin, n, usize::MAX, plan)
}

/// Elements per block of `arena_array_piped_rtt_<N>` (1 MiB of `u64`):
/// the master publishes each piece as soon as it is built, so the drone
/// sums one while the master builds the next (both CPUs at work, as the
/// kernel's socket pipeline has them).
pub const PIECE: usize = 1 << 17;

/// [`arena_array_rtt`] with the array cut into blocks of `piece` elements
/// (`usize::MAX`: one block).
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong sum.
pub fn arena_array_rtt_in(
    pin: PinMode,
    n: usize,
    piece: usize,
    plan: &Plan,
) -> Result<Timings, BenchError> {
    let piece = piece.clamp(1, n.max(1));
    let pieces = n.div_ceil(piece).max(1);
    let region = region_with_arena(2 * (n * 8).max(4 * KIB))?;
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let (samples, placement) = run_pair(
        pin,
        |pair: &Pair<'_>| {
            let (mut w, mut tx, mut rx) = parent_side(&region)?;
            pair.barrier()?;
            let mut out = Vec::with_capacity(plan.samples);
            for k in 1..=rounds {
                let t0 = Instant::now();
                for p in 0..pieces {
                    let len = piece.min(n - p * piece);
                    let h = w
                        .alloc_uninit::<u64>(len)
                        .map_err(|e| lib_err("alloc")(e.to_string()))?
                        .fill(k)
                        .publish_for(1);
                    send(&mut tx, &h)?;
                }
                let got: u64 = recv(&mut rx)?;
                let d = t0.elapsed();
                if got != k.wrapping_mul(n as u64) {
                    return Err(BenchError::Corrupt(format!("sum in round {k}")));
                }
                if k > warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair: &Pair<'_>| {
            let mine = child_handle(&region)?;
            let (r, mut rx, mut tx) = child_side(&mine)?;
            pair.barrier()?;
            for _ in 0..rounds {
                let mut s = 0u64;
                for _ in 0..pieces {
                    let h: BlockHandle = recv(&mut rx)?;
                    let g = r
                        .read::<u64>(&h)
                        .map_err(|e| lib_err("read")(e.to_string()))?;
                    s = s.wrapping_add(sum(&g));
                    // Released at once: the master's next pieces reuse
                    // the bytes.
                    drop(g);
                }
                send(&mut tx, &s)?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}

/// The same exchange as [`arena_array_rtt`] through a Unix stream socket:
/// the master builds the array in its memory and writes it, the drone
/// reads all of it into its buffer, sums it and writes the sum back.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong sum.
pub fn uds_array_rtt(pin: PinMode, n: usize, plan: &Plan) -> Result<Timings, BenchError> {
    let ((p_read, p_write), (c_read, c_write)) = stream_ends(Stream::Uds)?;
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let (samples, placement) = run_pair(
        pin,
        move |_| {
            let mut array = vec![0u64; n];
            let mut out = Vec::with_capacity(plan.samples);
            for k in 1..=rounds {
                let t0 = Instant::now();
                array.fill(k);
                write_all(&p_write, bytemuck::cast_slice(&array))?;
                let mut reply = [0u8; 8];
                read_exact(&p_read, &mut reply)?;
                let d = t0.elapsed();
                if u64::from_le_bytes(reply) != k.wrapping_mul(n as u64) {
                    return Err(BenchError::Corrupt(format!("sum in round {k}")));
                }
                if k > warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        move |_| {
            let mut buf = vec![0u64; n];
            for _ in 0..rounds {
                read_exact(&c_read, bytemuck::cast_slice_mut(&mut buf))?;
                write_all(&c_write, &sum(&buf).to_le_bytes())?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}
