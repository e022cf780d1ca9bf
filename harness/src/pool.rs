//! The drone pool (issue 12) through its public API, and the same pool
//! protocol over a Unix socket, in the same run.
//!
//! - `pool_empty_task_rtt`: a pool of one drone; the master submits one
//!   empty task ([`EMPTY`]) and waits for its result. Every request finds
//!   the drone asleep (checked through `/proc`, untimed), as in
//!   `spsc_block_rtt`; the master waits with the pool's own wait (it spins
//!   briefly, then sleeps on the results ring).
//! - `pool_uds_empty_task_rtt`: the same exchange through a socket pair: the
//!   master writes a task frame (a 24-byte header: sequence number, task
//!   id, input length; then the 8-byte input), the drone (a forked process,
//!   asleep in `read` at every request) reads it, runs the same function,
//!   and writes a result frame back (the same header, then the output).
//! - `pool_array_task_rtt_<N>`: [`Pool::submit_slice_from_fn`] of N u64
//!   to [`SUM`] and the wait for the sum: the master builds the array in
//!   place in its arena lane (inputs above the inline limit; the task frame
//!   below), the drone sums it in place: one pass over the data on each
//!   side, as the twin's write and read.
//!   `pool_uds_array_task_rtt_<N>`: the socket twin, the array written
//!   whole through the socket and read whole into the drone's buffer.
//! - `pool_array_piped_task_rtt_<N>` (N = 10^5 and 10^6): the same job
//!   through [`Pool::map_chunks_from_fn`]: the array built in pieces of
//!   [`PIPED_PIECE`] elements, each in an arena block of its own handed to
//!   the drone as soon as it is built, so that the drone sums piece k while
//!   the master builds piece k+1; the master adds the pieces' sums up.
//!   Compared with the same socket twin.
//! - `pool_map_tiny_throughput`: [`Pool::map`] of [`TINY`] over 100,000
//!   items on a pool of the default size (one drone per CPU), in tasks per
//!   second.
//!
//! A pool starts a keeper thread, which lives until the pool is dropped
//! (its drop joins it). Every kernel here builds its pool, measures, drops
//! it, and checks that the process has as many threads as before, so the
//! fork of a later row ([`run_pair`]) still finds one thread. The drones
//! are this executable started again: its `main` calls
//! `polycephaly::pool::serve(&TASKS)` first.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use rustix::process::Pid;
use rustix::thread::CpuSet;

use super::floors::{open_stat, wait_until_sleeping};
use super::os::{Stream, read_exact, stream_ends, write_all};
use super::pair::{Pair, Placement, STUCK_AFTER, choose_cpus, current_cpu, pin_self, run_pair};
use super::spsc::lib_err;
use super::{BenchError, Measurement, PinMode, Plan, Row, Target, Timings, Unit, Wait};
use polycephaly::pool::{Pool, PoolBuilder, Registry, SliceTask, Task};

/// Returns its input: the empty task.
pub fn empty(x: u64) -> u64 {
    x
}

/// The wrapping sum of `xs`.
pub fn sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// A tiny task: its input plus one.
pub fn tiny(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The empty task.
pub static EMPTY: Task<u64, u64> = Task::new("empty", empty);
/// The sum of an array of u64.
pub static SUM: SliceTask<u64, u64> = SliceTask::new("sum", sum);
/// A tiny task, for the map's throughput.
pub static TINY: Task<u64, u64> = Task::new("tiny", tiny);

/// The tasks of the `polycephaly` command's drones: its `main` calls
/// `polycephaly::pool::serve(&TASKS)` first, and so must any program that
/// runs the kernels of this module.
pub static TASKS: Registry = Registry::new(&[&EMPTY, &SUM, &TINY]);

/// The socket protocol's task ids (the tasks' places in [`TASKS`], as the
/// pool's own frames name them).
const EMPTY_ID: u64 = 0;
const SUM_ID: u64 = 1;

/// Bytes of a socket frame's header: `[seq, task id or status, body
/// length in bytes]`, three little-endian u64.
const HEADER: usize = 24;
/// The status of a result frame whose task ran.
const STATUS_OK: u64 = 0;

/// The items of one map in `pool_map_tiny_throughput`.
const MAP_ITEMS: u64 = 100_000;

macro_rules! array_rows {
    ($(($p:literal, $u:literal, $payload:literal, $n:expr, $seed:expr, $full:expr, $quick:expr)),* $(,)?) => {
        &[$(
            Row {
                name: $p,
                payload: $payload,
                wait: Wait::Block,
                unit: Unit::Ns,
                floor: Some($u),
                run: |cfg| {
                    let t = array_task_rtt(cfg.pin, $n, &cfg.plan($full, $quick))?;
                    Ok(note(Measurement::latency(&t)?, $seed.map(|s: (&str, &str)| s.0)))
                },
            },
            Row {
                name: $u,
                payload: $payload,
                wait: Wait::Block,
                unit: Unit::Ns,
                floor: None,
                run: |cfg| {
                    let t = uds_array_task_rtt(cfg.pin, $n, &cfg.plan($full, $quick))?;
                    Ok(note(Measurement::latency(&t)?, $seed.map(|s: (&str, &str)| s.1)))
                },
            },
        )*]
    };
}

/// The pool rows' round trips, in table order. The seed's figures (the
/// Smalltalk system this library starts from) are noted beside ours where
/// the talk gave them.
pub const RTT_ROWS: &[Row] = &[
    Row {
        name: "pool_empty_task_rtt",
        payload: "u64 -> u64",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("spsc_block_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            let m = Measurement::latency(&empty_task_rtt(cfg.pin, &plan)?)?;
            Ok(note(m, Some("seed: 12,519 us (an empty remote request)")))
        },
    },
    Row {
        name: "pool_uds_empty_task_rtt",
        payload: "u64 -> u64",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::latency(&uds_empty_task_rtt(cfg.pin, &plan)?)
        },
    },
];

/// The array rows, in table order: each pool row beside its socket twin.
pub const ARRAY_ROWS: &[Row] = array_rows![
    (
        "pool_array_task_rtt_10",
        "pool_uds_array_task_rtt_10",
        "10 x u64",
        10,
        None::<(&str, &str)>,
        Plan::new(200, 20_000, 1),
        Plan::new(50, 2_000, 1)
    ),
    (
        "pool_array_task_rtt_100",
        "pool_uds_array_task_rtt_100",
        "100 x u64",
        100,
        None::<(&str, &str)>,
        Plan::new(200, 20_000, 1),
        Plan::new(50, 2_000, 1)
    ),
    (
        "pool_array_task_rtt_1000",
        "pool_uds_array_task_rtt_1000",
        "1000 x u64",
        1_000,
        None::<(&str, &str)>,
        Plan::new(200, 20_000, 1),
        Plan::new(50, 2_000, 1)
    ),
    (
        "pool_array_task_rtt_10000",
        "pool_uds_array_task_rtt_10000",
        "10^4 x u64",
        10_000,
        None::<(&str, &str)>,
        Plan::new(100, 10_000, 1),
        Plan::new(20, 1_000, 1)
    ),
    (
        "pool_array_task_rtt_100000",
        "pool_uds_array_task_rtt_100000",
        "10^5 x u64",
        100_000,
        None::<(&str, &str)>,
        Plan::new(50, 2_000, 1),
        Plan::new(20, 200, 1)
    ),
    (
        "pool_array_task_rtt_1000000",
        "pool_uds_array_task_rtt_1000000",
        "10^6 x u64",
        1_000_000,
        Some(("seed: 99 ms (shared memory)", "seed: 1.5 s (messages)")),
        Plan::new(20, 300, 1),
        Plan::new(5, 30, 1)
    ),
];

/// Elements per piece of `pool_array_piped_task_rtt_<N>`: 32 Ki u64
/// (256 KiB), chosen by measurement on the project's 2-vCPU guest, in
/// per-run ratios to the socket twin (medians of 7 interleaved runs, the
/// machine shared, load about 3). With one process per CPU (`--pin
/// split`), 8 Ki to 32 Ki are within noise of each other at 10^5 (0.36 to
/// 0.38) and 32 Ki is the best at 10^6 (0.23, 16 Ki 0.29, 64 Ki 0.30).
/// With the scheduler's placement (`--pin none`), which often puts master
/// and drone on one CPU, every hand-off of a piece may cost a switch
/// between them: 8 Ki then fell to 1.0 at 10^5 and 16 Ki to 0.69, while
/// 32 Ki held 0.42 (0.34 at 10^6). Larger pieces (64 Ki, the arena's 1 MiB
/// blocks) lose the overlap at 10^5: 4 pieces or fewer. (Table 4's note
/// in `tables` names this size.)
pub const PIPED_PIECE: usize = 1 << 15;

/// The piped array rows, each beside the socket twin of its size.
pub const PIPED_ROWS: &[Row] = &[
    Row {
        name: "pool_array_piped_task_rtt_100000",
        payload: "10^5 x u64",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("pool_uds_array_task_rtt_100000"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(50, 2_000, 1), Plan::new(20, 200, 1));
            let t = array_piped_task_rtt(cfg.pin, 100_000, PIPED_PIECE, &plan)?;
            Measurement::latency(&t)
        },
    },
    Row {
        name: "pool_array_piped_task_rtt_1000000",
        payload: "10^6 x u64",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("pool_uds_array_task_rtt_1000000"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(20, 300, 1), Plan::new(5, 30, 1));
            let t = array_piped_task_rtt(cfg.pin, 1_000_000, PIPED_PIECE, &plan)?;
            Measurement::latency(&t)
        },
    },
];

/// The map's throughput row.
pub const RATE_ROWS: &[Row] = &[Row {
    name: "pool_map_tiny_throughput",
    payload: "u64 -> u64",
    wait: Wait::Block,
    unit: Unit::TasksPerSec,
    floor: None,
    run: |cfg| {
        let plan = cfg.plan(Plan::new(3, 50, MAP_ITEMS), Plan::new(1, 10, MAP_ITEMS));
        let mut m = Measurement::rate(&map_tiny_throughput(&plan)?, Unit::TasksPerSec, 1)?;
        m.notes.push(format!(
            "one map of {MAP_ITEMS} items a sample, on one drone per CPU placed by the scheduler (--pin applies to the one-drone rows)"
        ));
        Ok(m)
    },
}];

/// Issue 12's speed targets: the median of per-run ratios of these
/// medians is to stay at or under `max`.
pub const TARGETS: &[Target] = &[
    Target {
        row: "pool_empty_task_rtt",
        vs: "spsc_block_rtt",
        max: 1.5,
    },
    Target {
        row: "pool_empty_task_rtt",
        vs: "pool_uds_empty_task_rtt",
        max: 0.3,
    },
    Target {
        row: "pool_array_task_rtt_100000",
        vs: "pool_uds_array_task_rtt_100000",
        max: 1.0 / 3.0,
    },
    Target {
        row: "pool_array_task_rtt_1000000",
        vs: "pool_uds_array_task_rtt_1000000",
        max: 1.0 / 3.0,
    },
    Target {
        row: "pool_array_piped_task_rtt_100000",
        vs: "pool_uds_array_task_rtt_100000",
        max: 1.0 / 3.0,
    },
    Target {
        row: "pool_array_piped_task_rtt_1000000",
        vs: "pool_uds_array_task_rtt_1000000",
        max: 1.0 / 3.0,
    },
];

fn note(mut m: Measurement, text: Option<&str>) -> Measurement {
    if let Some(t) = text {
        m.notes.push(t.to_owned());
    }
    m
}

fn pool_err(what: &'static str) -> impl FnOnce(polycephaly::pool::PoolError) -> BenchError {
    move |e| lib_err(what)(e.to_string())
}

/// Builds a pool from `builder`, runs `f` on it, drops it, and checks that
/// the pool's keeper thread is gone (joined by the drop): the process has
/// as many threads as before.
///
/// # Errors
/// The pool's start error, `f`'s error, or [`BenchError::Library`] when
/// the drop left a thread behind.
fn with_pool<R>(
    builder: PoolBuilder,
    f: impl FnOnce(&Pool) -> Result<R, BenchError>,
) -> Result<R, BenchError> {
    let before = super::thread_count();
    let pool = builder.build().map_err(pool_err("start the pool"))?;
    let result = f(&pool);
    drop(pool);
    let after = super::thread_count();
    if after != before {
        return Err(BenchError::Library(format!(
            "the pool left threads behind after its drop ({after:?} threads, {before:?} before it)"
        )));
    }
    result
}

/// The one drone of `pool`: its pid and its `/proc/<pid>/stat`.
fn the_drone(pool: &Pool) -> Result<(Pid, OwnedFd), BenchError> {
    let pid = pool
        .pids()
        .first()
        .and_then(|&p| Pid::from_raw(i32::try_from(p).ok()?))
        .ok_or_else(|| BenchError::Library("the pool has no live drone".into()))?;
    let path = format!("/proc/{}/stat", pid.as_raw_nonzero());
    let stat = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(BenchError::os("open /proc/<drone>/stat"))?;
    Ok((pid, stat))
}

/// Reads a process's `/proc/<pid>/stat` into `buf`; the bytes read.
fn read_stat<'b>(stat: &OwnedFd, buf: &'b mut [u8]) -> Result<&'b [u8], BenchError> {
    let n = rustix::io::pread(stat, &mut *buf, 0).map_err(BenchError::os("pread drone stat"))?;
    Ok(buf.get(..n).unwrap_or(&[]))
}

/// The fields of a `/proc/<pid>/stat` text after the command name, from
/// the state (field 3) on: the command name may hold anything,
/// parentheses and blanks included, so they start after the last `)`.
fn stat_fields(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let after = text
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|close| text.get(close + 1..))
        .unwrap_or(&[]);
    after
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

/// The CPU a process last ran on: field 39 (`processor`) of its stat.
fn stat_cpu(text: &[u8]) -> Option<u32> {
    let field = stat_fields(text).nth(39 - 3)?;
    core::str::from_utf8(field).ok()?.parse().ok()
}

/// Polls the drone's state until it is `S` (asleep: waiting for a task).
///
/// # Errors
/// [`BenchError::PeerDied`] when it died, [`BenchError::Stuck`] after
/// [`STUCK_AFTER`].
fn wait_drone_asleep(stat: &OwnedFd) -> Result<(), BenchError> {
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    loop {
        match stat_fields(read_stat(stat, &mut buf)?).next() {
            Some(b"S") => return Ok(()),
            Some(b"Z" | b"X") | None => return Err(BenchError::PeerDied),
            Some(_) => {}
        }
        if start.elapsed() > STUCK_AFTER {
            return Err(BenchError::Stuck("the drone to fall asleep"));
        }
        std::thread::yield_now();
    }
}

/// The master thread and the one drone placed as `pin` says (as
/// [`run_pair`] places its two processes); the master thread's CPU mask
/// is put back on drop.
#[derive(Debug)]
struct Placed {
    mask: CpuSet,
}

impl Placed {
    fn new(pin: PinMode, drone: Pid) -> Result<Self, BenchError> {
        let mask =
            rustix::thread::sched_getaffinity(None).map_err(BenchError::os("sched_getaffinity"))?;
        let placed = Self { mask };
        if let Some((mine, its)) = choose_cpus(pin, &mask)? {
            let mut set = CpuSet::new();
            set.set(its);
            rustix::thread::sched_setaffinity(Some(drone), &set)
                .map_err(BenchError::os("sched_setaffinity (drone)"))?;
            pin_self(Some(mine))?;
        }
        Ok(placed)
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let _ = rustix::thread::sched_setaffinity(None, &self.mask);
    }
}

/// Times `round(k)` for `k` in `1..=plan.total_samples()` on a pool of one
/// drone placed as `pin` says, each round starting with the drone asleep
/// (untimed); keeps the rounds after the warm-up.
///
/// The placement's start is where both ran in the first round: a drone
/// moved to another CPU while asleep shows its old CPU in `/proc` until it
/// runs again.
fn one_drone_rounds(
    pin: PinMode,
    plan: &Plan,
    mut round: impl FnMut(&Pool, u64) -> Result<(), BenchError>,
) -> Result<Timings, BenchError> {
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    with_pool(Pool::builder().drones(1), |pool| {
        let (pid, stat) = the_drone(pool)?;
        let _placed = Placed::new(pin, pid)?;
        let mut buf = [0u8; 1024];
        let mut start = None;
        let mut out = Vec::with_capacity(plan.samples);
        for k in 1..=rounds {
            wait_drone_asleep(&stat)?;
            let t0 = Instant::now();
            round(pool, k)?;
            let d = t0.elapsed();
            if k > warmup {
                out.push(d);
            }
            if start.is_none() {
                start = Some((current_cpu(), stat_cpu(read_stat(&stat, &mut buf)?)));
            }
        }
        let (master_start, drone_start) = start.unwrap_or((u32::MAX, None));
        let placement = Placement {
            parent: [master_start, current_cpu()],
            child: [
                drone_start.unwrap_or(u32::MAX),
                stat_cpu(read_stat(&stat, &mut buf)?).unwrap_or(u32::MAX),
            ],
        };
        Ok(Timings::new(out, 1).with_placement(placement))
    })
}

/// Submits [`EMPTY`] to a pool of one drone and waits for its result,
/// every round timed alone and starting with the drone asleep;
/// `plan.batch` is ignored.
///
/// # Errors
/// The pool's errors (as [`BenchError::Library`], and so is a drop that
/// leaves a thread behind); [`BenchError::Corrupt`] on a wrong result;
/// [`BenchError::PeerDied`] or [`BenchError::Stuck`] while waiting for
/// the drone to fall asleep; [`BenchError::Pin`] for an impossible `pin`.
pub fn empty_task_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    one_drone_rounds(pin, plan, |pool, k| {
        let got = pool
            .submit(&EMPTY, k)
            .and_then(|p| p.wait())
            .map_err(pool_err("empty task"))?;
        if got == k {
            Ok(())
        } else {
            Err(BenchError::Corrupt(format!("empty task {k} gave {got}")))
        }
    })
}

/// [`array_task_rtt`]'s job through [`Pool::map_chunks_from_fn`]: the
/// array of `n` u64 (1 to n) is built in pieces of `piece` elements, each
/// in a block of its own (in the frame when small), handed to the drone as
/// soon as it is built; the drone sums each piece as it comes, and the
/// master adds the pieces' sums up once all are in. Every round is timed
/// alone, from the first element built to that total, and starts with the
/// drone asleep; `plan.batch` is ignored.
///
/// # Errors
/// As [`empty_task_rtt`].
pub fn array_piped_task_rtt(
    pin: PinMode,
    n: usize,
    piece: usize,
    plan: &Plan,
) -> Result<Timings, BenchError> {
    let want = (1..=n as u64).fold(0u64, u64::wrapping_add);
    one_drone_rounds(pin, plan, |pool, k| {
        let sums = pool
            .map_chunks_from_fn(&SUM, n, piece, |i| i as u64 + 1)
            .map_err(pool_err("piped sum"))?;
        if sums.len() == n.div_ceil(piece.max(1)) && sum(&sums) == want {
            Ok(())
        } else {
            Err(BenchError::Corrupt(format!("piped sum in round {k}")))
        }
    })
}

/// Submits [`SUM`] over an array of `n` u64 (1 to n, built in place in
/// the arena each round) to a pool of one drone and waits for the sum,
/// every round timed alone and starting with the drone asleep;
/// `plan.batch` is ignored.
///
/// # Errors
/// As [`empty_task_rtt`].
pub fn array_task_rtt(pin: PinMode, n: usize, plan: &Plan) -> Result<Timings, BenchError> {
    let want = (1..=n as u64).fold(0u64, u64::wrapping_add);
    one_drone_rounds(pin, plan, |pool, k| {
        let got = pool
            .submit_slice_from_fn(&SUM, n, |i| i as u64 + 1)
            .and_then(|p| p.wait())
            .map_err(pool_err("sum task"))?;
        if got == want {
            Ok(())
        } else {
            Err(BenchError::Corrupt(format!("sum in round {k}")))
        }
    })
}

/// `map` of [`TINY`] over `plan.batch` items (built once) on a pool of one
/// drone per CPU; each sample times one map.
///
/// # Errors
/// As [`empty_task_rtt`].
pub fn map_tiny_throughput(plan: &Plan) -> Result<Timings, BenchError> {
    let items: Vec<u64> = (0..plan.batch).collect();
    with_pool(Pool::builder(), |pool| {
        let mut out = Vec::with_capacity(plan.samples);
        for s in 0..plan.total_samples() {
            let t0 = Instant::now();
            let got = pool.map(&TINY, &items).map_err(pool_err("map"))?;
            let d = t0.elapsed();
            let right =
                got.len() == items.len() && got.iter().zip(&items).all(|(&g, &x)| g == tiny(x));
            if !right {
                return Err(BenchError::Corrupt(format!("map outputs in sample {s}")));
            }
            if s >= plan.warmup {
                out.push(d);
            }
        }
        Ok(Timings::new(out, plan.batch))
    })
}

/// A socket frame's header.
fn header(seq: u64, kind: u64, body_len: usize) -> [u8; HEADER] {
    bytemuck::cast([seq, kind, body_len as u64].map(u64::to_le))
}

/// The header's `[seq, task id or status, body length]`.
fn parse_header(bytes: &[u8]) -> Option<[u64; 3]> {
    let bytes: [u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
    Some(bytemuck::cast::<_, [u64; 3]>(bytes).map(u64::from_le))
}

/// Writes `head` then `body` to `fd`: both in one `writev` when the socket
/// takes them, the rest with plain writes.
fn write_frame(fd: impl AsFd, head: &[u8], body: &[u8]) -> Result<(), BenchError> {
    use std::io::IoSlice;
    let n = loop {
        match rustix::io::writev(&fd, &[IoSlice::new(head), IoSlice::new(body)]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::PIPE) => return Err(BenchError::PeerDied),
            Err(e) => {
                return Err(BenchError::Os {
                    what: "writev",
                    errno: e,
                });
            }
        }
    };
    match n.checked_sub(head.len()) {
        Some(sent) => write_all(&fd, body.get(sent..).unwrap_or(&[])),
        None => {
            write_all(&fd, head.get(n..).unwrap_or(&[]))?;
            write_all(&fd, body)
        }
    }
}

/// Reads one frame into `buf`: at least its header in the first reads,
/// then the rest of its body. Returns the header and the body. One frame
/// is in flight at a time, so a read never holds the next one.
fn read_frame(fd: impl AsFd, buf: &mut [u8]) -> Result<([u64; 3], &[u8]), BenchError> {
    let mut got = 0;
    while got < HEADER {
        match rustix::io::read(&fd, buf.get_mut(got..).unwrap_or(&mut [])) {
            Ok(0) => return Err(BenchError::PeerDied),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(BenchError::Os {
                    what: "read",
                    errno: e,
                });
            }
        }
    }
    let head = parse_header(buf).ok_or_else(|| BenchError::Corrupt("frame header".into()))?;
    let end = usize::try_from(head[2])
        .ok()
        .and_then(|len| len.checked_add(HEADER))
        .filter(|&end| end <= buf.len() && end >= got)
        .ok_or_else(|| BenchError::Corrupt(format!("frame of {} body bytes", head[2])))?;
    read_exact(&fd, buf.get_mut(got..end).unwrap_or(&mut []))?;
    Ok((head, buf.get(HEADER..end).unwrap_or(&[])))
}

/// The drone's side of the socket protocol: reads task frames, runs the
/// task the frame names on its input, writes the result frame, `rounds`
/// times. Its buffer is made once, for the largest frame.
fn uds_drone(ends: &(OwnedFd, OwnedFd), max_input: usize, rounds: u64) -> Result<(), BenchError> {
    let (read_end, write_end) = ends;
    // u64s, so the body is aligned for them.
    let mut words = vec![0u64; (HEADER + max_input).div_ceil(8)];
    for _ in 0..rounds {
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let (head, body) = read_frame(read_end, buf)?;
        let input: &[u64] = bytemuck::try_cast_slice(body)
            .map_err(|_| BenchError::Corrupt("task input is not whole u64s".into()))?;
        let output = match (head[1], input) {
            (EMPTY_ID, [x]) => empty(*x),
            (SUM_ID, xs) => sum(xs),
            (task, _) => return Err(BenchError::Corrupt(format!("task {task} with this input"))),
        };
        let mut reply = [0u8; HEADER + 8];
        reply[..HEADER].copy_from_slice(&header(head[0], STATUS_OK, 8));
        reply[HEADER..].copy_from_slice(&output.to_le_bytes());
        write_all(write_end, &reply)?;
    }
    Ok(())
}

/// The master's side of one socket round: writes the task frame, waits
/// for the result frame, checks it and returns the output.
fn uds_call(
    ends: &(OwnedFd, OwnedFd),
    seq: u64,
    task: u64,
    input: &[u8],
) -> Result<u64, BenchError> {
    let (read_end, write_end) = ends;
    write_frame(write_end, &header(seq, task, input.len()), input)?;
    let mut reply = [0u8; HEADER + 8];
    read_exact(read_end, &mut reply)?;
    match parse_header(&reply) {
        Some([s, STATUS_OK, 8]) if s == seq => {
            let mut out = [0u8; 8];
            out.copy_from_slice(&reply[HEADER..]);
            Ok(u64::from_le_bytes(out))
        }
        _ => Err(BenchError::Corrupt(format!("result frame of task {seq}"))),
    }
}

/// Rounds of the socket protocol between this process (the master) and a
/// forked drone, each timed alone and starting with the drone asleep in
/// `read` (untimed); `call(ends, k)` is round `k`'s exchange.
fn uds_rounds(
    pin: PinMode,
    plan: &Plan,
    max_input: usize,
    call: impl Fn(&(OwnedFd, OwnedFd), u64) -> Result<(), BenchError>,
) -> Result<Timings, BenchError> {
    let (master, drone) = stream_ends(Stream::Uds)?;
    let rounds = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let (samples, placement) = run_pair(
        pin,
        move |pair: &Pair<'_>| {
            let stat = open_stat(pair)?;
            let mut out = Vec::with_capacity(plan.samples);
            for k in 1..=rounds {
                wait_until_sleeping(pair, &stat)?;
                let t0 = Instant::now();
                call(&master, k)?;
                let d = t0.elapsed();
                if k > warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        move |_| uds_drone(&drone, max_input, rounds),
    )?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}

/// [`empty_task_rtt`] over a Unix socket pair: a 32-byte task frame out,
/// a 32-byte result frame back, the drone a forked process asleep in
/// `read` at every request. Every round is timed alone; `plan.batch` is
/// ignored.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong result.
pub fn uds_empty_task_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    uds_rounds(pin, plan, 8, |ends, k| {
        let got = uds_call(ends, k, EMPTY_ID, &k.to_le_bytes())?;
        if got == k {
            Ok(())
        } else {
            Err(BenchError::Corrupt(format!("empty task {k} gave {got}")))
        }
    })
}

/// [`array_task_rtt`] over a Unix socket pair: the array (built once) is
/// written whole after the task header, the drone reads all of it into
/// its buffer (made once), sums it and writes the result frame back.
/// Every round is timed alone; `plan.batch` is ignored.
///
/// # Errors
/// As [`uds_empty_task_rtt`].
pub fn uds_array_task_rtt(pin: PinMode, n: usize, plan: &Plan) -> Result<Timings, BenchError> {
    let data: Vec<u64> = (1..=n as u64).collect();
    let want = sum(&data);
    uds_rounds(pin, plan, n * 8, move |ends, k| {
        let got = uds_call(ends, k, SUM_ID, bytemuck::cast_slice(&data))?;
        if got == want {
            Ok(())
        } else {
            Err(BenchError::Corrupt(format!("sum in round {k}")))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_odd_command_names() {
        let mut text = b"123 (a) b) S 1 2 3".to_vec();
        text.extend((4..=40).flat_map(|i| format!(" {i}").into_bytes()));
        let first: Vec<&[u8]> = stat_fields(&text).take(2).collect();
        assert_eq!(first, [b"S".as_slice(), b"1".as_slice()]);
        // Field 39 is the 37th after the name: our filler numbers it 36.
        assert_eq!(stat_cpu(&text), Some(36));
        assert_eq!(stat_cpu(b"1 (x) S"), None);
    }

    #[test]
    fn frame_headers_round_trip() {
        let h = header(7, SUM_ID, 80);
        assert_eq!(parse_header(&h), Some([7, SUM_ID, 80]));
        assert_eq!(parse_header(&h[..23]), None);
    }

    #[test]
    fn the_socket_drone_runs_what_the_pool_runs() {
        assert_eq!(TASKS.len(), 3);
        assert_eq!(sum(&[1, 2, u64::MAX]), 2);
        assert_eq!((empty(5), tiny(5)), (5, 6));
    }
}
