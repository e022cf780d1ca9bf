//! The `polycephaly` command's library: the measurement harness behind
//! `polycephaly bench` and its criterion benches (`harness/benches`): a
//! registry of measurement rows, the kernels that measure them between two
//! real processes, and the statistics and report they end in; and the
//! commands built on the drone pool: [`demo`], [`fractal`] and [`assess`],
//! whose pool tasks are listed in [`tasks::TASKS`] (the registry `main`
//! serves first thing).
//!
//! # Pieces
//!
//! - [`Row`]: one named measurement (`floor_spin_rtt`, `uds_rtt`, ...) with
//!   its payload, how its waiting side waits ([`Wait`]), its unit and the
//!   floor it is compared with. [`rows`] lists them all, in table order.
//! - [`pair`]: [`run_pair`] forks a second process that shares an anonymous
//!   mapping ([`ShmArea`]) with the first, pins both as `--pin` says, starts
//!   them on a barrier, reaps the child and turns its failure into an error.
//! - [`floors`] and [`os`]: the baselines (kernels and their rows).
//! - [`pool`]: the drone pool's rows, each beside the same protocol over a
//!   Unix socket; [`Target`]s name the ratios between rows that issue 12
//!   sets, and the report prints them.
//! - [`report`]: machine details, the text table and the JSON file.
//! - [`tables`]: the seed's five tables (the talk's figures beside this
//!   run's rows and their baselines), as text and JSON.
//!
//! # Adding a row (for the next topic, e.g. `harness/src/spsc.rs`)
//!
//! A row is a name, a few labels and a `run` function; the kernel behind it
//! makes its shared state, hands one closure to each process and times in
//! the parent. This one (compiled and run as a doctest) is the spin floor
//! again, in 30 lines:
//!
//! ```
//! use std::time::Instant;
//! use polycephaly_harness::{
//!     BenchError, Measurement, PinMode, Plan, Row, ShmArea, Timings, Unit, Wait, run_pair,
//! };
//! use polycephaly::sync::shim::{AtomicU64, Ordering};
//!
//! pub const ROWS: &[Row] = &[Row {
//!     name: "example_spin_rtt",      // snake_case and stable: the JSON key
//!     payload: "8 B",
//!     wait: Wait::Spin,              // both sides busy-poll
//!     unit: Unit::Ns,
//!     floor: Some("floor_spin_rtt"), // the ratio column divides by this row
//!     run: |cfg| {
//!         let plan = cfg.plan(Plan::new(1_000, 50_000, 1), Plan::new(100, 5_000, 1));
//!         Measurement::latency(&example_rtt(cfg.pin, &plan)?)
//!     },
//! }];
//!
//! /// Also what `benches/*.rs` calls, with `Plan::one_batch(iters)`.
//! pub fn example_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
//!     // [request, reply]: made before the fork, so both processes share it.
//!     let area = ShmArea::new([AtomicU64::new(0), AtomicU64::new(0)], 0)?;
//!     let [req, rep] = area.get();
//!     let (samples, placement) = run_pair(
//!         pin,
//!         |pair| {
//!             let (mut out, mut n) = (Vec::new(), 0);
//!             for s in 0..plan.total_samples() {
//!                 let t0 = Instant::now();
//!                 for _ in 0..plan.batch {
//!                     n += 1;
//!                     req.store(n, Ordering::Release); // pairs with the child's Acquire
//!                     pair.spin_until(|| rep.load(Ordering::Acquire) == n)?;
//!                 }
//!                 if s >= plan.warmup { out.push(t0.elapsed()); }
//!             }
//!             Ok(out)
//!         },
//!         |pair| {
//!             for n in 1..=plan.total_ops() {
//!                 pair.spin_until(|| req.load(Ordering::Acquire) == n)?;
//!                 rep.store(n, Ordering::Release); // pairs with the parent's Acquire
//!             }
//!             Ok(())
//!         },
//!     )?;
//!     Ok(Timings::new(samples, plan.batch).with_placement(placement))
//! }
//!
//! let m = (ROWS[0].run)(&polycephaly_harness::Config { quick: true, ..Default::default() })?;
//! assert!(m.median() > 0.0 && m.p99() >= m.median());
//! # Ok::<(), BenchError>(())
//! ```
//!
//! Then add `pub mod spsc;` below and `spsc::ROWS` to [`rows`]. Kernels take
//! a [`Plan`] so that `benches/*.rs` can drive them through criterion's
//! `iter_custom` (one batch of `iters` operations) as well.
//!
//! The bench process stays single-threaded (so that `fork` is safe and the
//! child runs exactly one closure); progress is printed by the caller
//! between rows. The pool rows are the exception while they run: a pool
//! has a keeper thread, joined when the pool is dropped, and each pool
//! kernel drops its pool and checks the thread count before it returns.
//! A program that runs them calls `polycephaly::pool::serve(&pool::TASKS)`
//! first in `main` (the drones are that program started again).
//!
//! The pool commands are other processes of the same command: a pool
//! starts a keeper thread, and `run_pair` refuses a process with more than
//! one thread, so no command runs a bench kernel while it holds a pool.

use core::time::Duration;

pub mod arena;
pub mod assess;
pub mod channel;
pub mod demo;
pub mod floors;
pub mod fractal;
pub mod hog;
pub mod human;
pub mod lock;
pub mod mpsc;
pub mod os;
pub mod pair;
pub mod pool;
pub mod report;
pub mod soak;
pub mod spsc;
pub mod tables;
pub mod tasks;

pub use pair::{Pair, Placement, Role, ShmArea, run_pair, thread_count};

/// How the two processes of a pair are placed on CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinMode {
    /// Leave placement to the scheduler (the CPUs they ran on are recorded).
    #[default]
    None,
    /// One process per CPU: the first two CPUs this process may run on.
    Split,
    /// Both processes on the first CPU this process may run on.
    Same,
}

impl PinMode {
    /// The name used on the command line and in the JSON: `none`, `split`,
    /// `same`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Split => "split",
            Self::Same => "same",
        }
    }
}

/// What a run of the harness was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// Fewer samples: the whole quick run stays well under 30 s.
    pub quick: bool,
    /// CPU placement of the two processes of every pair.
    pub pin: PinMode,
    /// Busy processes running beside the bench ([`hog::Hogs`]).
    pub hogs: u32,
}

impl Config {
    /// The plan for this run: `full` normally, `quick` under `--quick`.
    pub fn plan(&self, full: Plan, quick: Plan) -> Plan {
        if self.quick { quick } else { full }
    }
}

/// How much a kernel measures: `warmup` untimed samples, then `samples`
/// timed ones, each of `batch` operations (a round trip, a message, a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Samples run and discarded before timing starts.
    pub warmup: usize,
    /// Samples timed; at least one.
    pub samples: usize,
    /// Operations per sample; at least one. Kernels that time every
    /// operation alone (documented on each) ignore it.
    pub batch: u64,
}

impl Plan {
    /// A plan; `samples` and `batch` are raised to at least one.
    pub const fn new(warmup: usize, samples: usize, batch: u64) -> Self {
        Self {
            warmup,
            samples: if samples == 0 { 1 } else { samples },
            batch: if batch == 0 { 1 } else { batch },
        }
    }

    /// One timed batch of `iters` operations and no warm-up: what
    /// criterion's `iter_custom` asks for.
    pub const fn one_batch(iters: u64) -> Self {
        Self::new(0, 1, iters)
    }

    /// `iters` timed samples of one operation each, after `warmup`: for
    /// kernels that time every operation alone, under `iter_custom`.
    pub fn singles(warmup: usize, iters: u64) -> Self {
        Self::new(warmup, usize::try_from(iters).unwrap_or(usize::MAX), 1)
    }

    /// Warm-up plus timed samples.
    pub fn total_samples(&self) -> usize {
        self.warmup.saturating_add(self.samples)
    }

    /// Operations over the whole plan, warm-up included.
    pub fn total_ops(&self) -> u64 {
        (self.total_samples() as u64).saturating_mul(self.batch)
    }
}

/// The unit of a row's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds per operation (lower is better).
    Ns,
    /// Messages per second (higher is better).
    MsgPerSec,
    /// Tasks per second (higher is better).
    TasksPerSec,
    /// Bytes per second (higher is better).
    BytesPerSec,
}

impl Unit {
    /// The name used in the table and the JSON: `ns`, `msg/s`, `B/s`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ns => "ns",
            Self::MsgPerSec => "msg/s",
            Self::TasksPerSec => "task/s",
            Self::BytesPerSec => "B/s",
        }
    }

    /// Whether higher figures are better (a rate) rather than lower (a time).
    pub fn is_rate(self) -> bool {
        !matches!(self, Self::Ns)
    }
}

/// How the waiting side of a row waits: what the figure is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Both processes busy-poll shared memory: no system call, two busy CPUs.
    Spin,
    /// The waiting side sleeps in the kernel (futex, socket, pipe, condvar)
    /// and must be woken.
    Block,
    /// One process alone (memcpy).
    Local,
}

impl Wait {
    /// `spin`, `block` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spin => "spin",
            Self::Block => "block",
            Self::Local => "local",
        }
    }
}

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A system call failed.
    #[error("{what} failed: {errno}")]
    Os {
        /// The call.
        what: &'static str,
        /// Its error.
        errno: rustix::io::Errno,
    },
    /// The requested CPU placement is impossible here.
    #[error("cannot pin: {0}")]
    Pin(String),
    /// The child process of a pair failed or died.
    #[error("the child process failed ({status}): {message}")]
    ChildFailed {
        /// How it ended (exit code or signal).
        status: String,
        /// The error it reported, if any.
        message: String,
    },
    /// The peer process died while this one waited for it.
    #[error("the peer process died")]
    PeerDied,
    /// Nothing happened for a long time while the peer was alive.
    #[error("stuck waiting for {0}")]
    Stuck(&'static str),
    /// The data that arrived was not the data that was sent.
    #[error("wrong data received: {0}")]
    Corrupt(String),
    /// A library call (region, ring, lock) failed.
    #[error("{0}")]
    Library(String),
    /// A kernel produced no usable sample (empty, negative or not finite).
    #[error("no usable samples: {0}")]
    NoSamples(&'static str),
    /// [`run_pair`] forks, which it does only in a single-threaded process.
    #[error(
        "a measurement forks, which is sound only in a single-threaded process (this one has {})",
        match threads { Some(n) => format!("{n} threads"), None => "an unknown number of threads".into() }
    )]
    MultiThreaded {
        /// How many threads the process has (`None`: unknown).
        threads: Option<usize>,
    },
}

impl BenchError {
    /// A failed system call named `what`.
    pub fn os(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> Self {
        move |errno| Self::Os { what, errno }
    }

    /// A failed libc call named `what` (such as `fork`), with the calling
    /// thread's `errno`.
    pub(crate) fn last_os(what: &'static str) -> Self {
        let errno = rustix::io::Errno::from_io_error(&std::io::Error::last_os_error());
        Self::Os {
            what,
            errno: errno.unwrap_or(rustix::io::Errno::IO),
        }
    }
}

/// What a kernel measured: the duration of each timed sample, the
/// operations in each, and where the processes ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// One duration per timed sample (warm-up excluded).
    pub samples: Vec<Duration>,
    /// Operations in each sample.
    pub ops_per_sample: u64,
    /// The CPUs of the pair, if the kernel ran two processes.
    pub placement: Option<Placement>,
    /// Samples thrown away because they did not measure what they should
    /// (e.g. a wake that found nobody asleep).
    pub dropped: u64,
}

impl Timings {
    /// Timings of `samples`, each of `ops_per_sample` operations.
    pub fn new(samples: Vec<Duration>, ops_per_sample: u64) -> Self {
        Self {
            samples,
            ops_per_sample: ops_per_sample.max(1),
            placement: None,
            dropped: 0,
        }
    }

    /// The same, recording the pair's placement.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// The sum of all samples: what criterion's `iter_custom` returns.
    pub fn total(&self) -> Duration {
        self.samples.iter().sum()
    }
}

/// The figures of one row: samples in its unit, summarized by the median
/// and the 99th percentile.
///
/// # Invariants
/// `samples` is non-empty and every sample is finite and non-negative.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    unit: Unit,
    samples: Vec<f64>,
    /// Where the two processes ran, for the JSON `machine` section.
    pub placement: Option<Placement>,
    /// Remarks for the reader (dropped samples and why).
    pub notes: Vec<String>,
}

impl Measurement {
    /// A measurement of `samples` in `unit`.
    ///
    /// # Errors
    /// [`BenchError::NoSamples`] when `samples` is empty or holds a negative
    /// or non-finite value.
    pub fn new(unit: Unit, samples: Vec<f64>) -> Result<Self, BenchError> {
        if samples.is_empty() {
            return Err(BenchError::NoSamples("no sample was taken"));
        }
        if samples.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(BenchError::NoSamples("a sample is negative or not finite"));
        }
        Ok(Self {
            unit,
            samples,
            placement: None,
            notes: Vec::new(),
        })
    }

    /// Nanoseconds per operation, one figure per sample of `timings`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn latency(timings: &Timings) -> Result<Self, BenchError> {
        let per = timings.ops_per_sample.max(1) as f64;
        let ns = timings
            .samples
            .iter()
            .map(|d| d.as_nanos() as f64 / per)
            .collect();
        Ok(Self::new(Unit::Ns, ns)?.annotate(timings))
    }

    /// A rate in `unit`: `amount_per_op` (1 for messages, the byte count for
    /// transfers) times the operations of a sample, over its duration.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn rate(timings: &Timings, unit: Unit, amount_per_op: u64) -> Result<Self, BenchError> {
        let amount = timings.ops_per_sample.max(1) as f64 * amount_per_op as f64;
        let rates = timings
            .samples
            .iter()
            // A zero duration cannot be timed: count it as one nanosecond.
            .map(|d| amount / d.as_secs_f64().max(1e-9))
            .collect();
        Ok(Self::new(unit, rates)?.annotate(timings))
    }

    fn annotate(mut self, timings: &Timings) -> Self {
        self.placement = timings.placement;
        if timings.dropped > 0 {
            self.notes.push(format!(
                "{} sample(s) dropped (did not measure what they should)",
                timings.dropped
            ));
        }
        self
    }

    /// The unit of the figures.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The samples, in the order they were taken.
    pub fn samples(&self) -> &[f64] {
        &self.samples
    }

    /// The median sample.
    pub fn median(&self) -> f64 {
        percentile(&self.samples, 0.5)
    }

    /// The 99th percentile on the bad side: the time that 99 % of the
    /// samples beat, or for a rate the rate that 99 % of them exceed (the
    /// 1st percentile of the rates).
    pub fn p99(&self) -> f64 {
        if self.unit.is_rate() {
            percentile(&self.samples, 0.01)
        } else {
            percentile(&self.samples, 0.99)
        }
    }

    /// The median as a cost (lower is better): the time itself, or the
    /// inverse of a rate. `cost(row) / cost(floor)` is the table's ratio.
    pub fn cost(&self) -> f64 {
        let m = self.median();
        if self.unit.is_rate() {
            if m > 0.0 { 1.0 / m } else { f64::INFINITY }
        } else {
            m
        }
    }
}

/// The nearest-rank percentile `q` (0..=1) of `samples`; 0 for none.
fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(idx).copied().unwrap_or(0.0)
}

/// One row of the bench table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Stable snake_case name: the JSON key and what `--only` matches.
    pub name: &'static str,
    /// What one operation carries, for the table (`64 B`, `1 MiB`, ...).
    pub payload: &'static str,
    /// How the waiting side waits.
    pub wait: Wait,
    /// The unit `run` measures in.
    pub unit: Unit,
    /// The row whose median this one is compared with (same unit), if any.
    pub floor: Option<&'static str>,
    /// Measures the row.
    pub run: fn(&Config) -> Result<Measurement, BenchError>,
}

/// Every row, in table order: round trips, then message rates, then bulk
/// rates; within each group, in registry order (floors first).
pub fn rows() -> Vec<Row> {
    let mut all = [
        floors::ROWS,
        os::ROWS,
        spsc::ROWS,
        lock::ROWS,
        mpsc::ROWS,
        arena::ARRAY_ROWS,
        arena::PIPED_ROWS,
        arena::SHM_ROWS,
        channel::EMPTY_ROWS,
        channel::BYTES_ROWS,
        pool::RTT_ROWS,
        pool::ARRAY_ROWS,
        pool::PIPED_ROWS,
        pool::RATE_ROWS,
    ]
    .concat();
    // Stable: keeps the registry order inside each group.
    all.sort_by_key(|r| match r.unit {
        Unit::Ns => 0,
        Unit::MsgPerSec | Unit::TasksPerSec => 1,
        Unit::BytesPerSec => 2,
    });
    all
}

/// A ratio between two rows' medians that an issue sets a limit on:
/// `cost(row) / cost(vs)` (times, or inverse rates, as in the table's
/// `x floor` column) is to stay at or under `max`. The report prints each
/// whose two rows were measured; the limit holds for the median of the
/// ratios of several runs, so one run's ratio is a sample of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The row measured.
    pub row: &'static str,
    /// The row it is divided by (same unit).
    pub vs: &'static str,
    /// The largest ratio the target allows.
    pub max: f64,
}

/// The issues' targets on rows outside the pool, as ratios of costs in
/// one run (judged on the median over several runs: `--repeat`).
pub const TARGETS: &[Target] = &[
    // SPSC and MPSC at the floor (issue 15).
    Target {
        row: "spsc_spin_rtt",
        vs: "floor_spin_rtt",
        max: 1.3,
    },
    Target {
        row: "spsc_64b_throughput",
        vs: "floor_ring_64b_throughput",
        max: 1.25,
    },
    Target {
        row: "spsc_block_rtt",
        vs: "floor_wake_rtt",
        max: 1.3,
    },
    Target {
        row: "mpsc_block_rtt",
        vs: "floor_wake_rtt",
        max: 1.5,
    },
    // The arena's arrays (issue 10).
    Target {
        row: "arena_array_rtt_1000000",
        vs: "uds_array_rtt_1000000",
        max: 0.2,
    },
    Target {
        row: "arena_array_rtt_10",
        vs: "uds_array_rtt_10",
        max: 0.05,
    },
    Target {
        row: "arena_array_rtt_100",
        vs: "uds_array_rtt_100",
        max: 0.05,
    },
    Target {
        row: "arena_array_rtt_1000",
        vs: "uds_array_rtt_1000",
        max: 0.05,
    },
    // The channel (issue 11).
    Target {
        row: "channel_empty_rtt_spin",
        vs: "spsc_spin_rtt",
        max: 1.5,
    },
    Target {
        row: "channel_empty_rtt_block",
        vs: "spsc_block_rtt",
        max: 1.3,
    },
    Target {
        row: "channel_empty_rtt_block",
        vs: "uds_channel_empty_rtt",
        max: 0.3,
    },
    Target {
        row: "channel_bytes_rtt_100000",
        vs: "uds_channel_bytes_rtt_100000",
        max: 1.0 / 3.0,
    },
    Target {
        row: "channel_bytes_rtt_1000000",
        vs: "uds_channel_bytes_rtt_1000000",
        max: 1.0 / 3.0,
    },
];

/// Every target, in report order.
pub fn targets() -> Vec<Target> {
    [TARGETS, pool::TARGETS].concat()
}

/// The rows whose names start with one of `prefixes` (all rows when
/// `prefixes` is empty), in table order.
pub fn select(rows: &[Row], prefixes: &[String]) -> Vec<Row> {
    rows.iter()
        .filter(|r| prefixes.is_empty() || prefixes.iter().any(|p| r.name.starts_with(p.as_str())))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_on_known_data() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let m = Measurement::new(Unit::Ns, samples.clone()).unwrap();
        assert_eq!(m.median(), 50.0);
        assert_eq!(m.p99(), 99.0);
        let r = Measurement::new(Unit::MsgPerSec, samples).unwrap();
        assert_eq!(r.p99(), 1.0, "a rate's bad tail is its low end");
        assert_eq!(r.cost(), 1.0 / 50.0);
        let one = Measurement::new(Unit::Ns, vec![7.0]).unwrap();
        assert_eq!((one.median(), one.p99()), (7.0, 7.0));
    }

    #[test]
    fn bad_samples_are_rejected() {
        assert!(Measurement::new(Unit::Ns, vec![]).is_err());
        assert!(Measurement::new(Unit::Ns, vec![1.0, f64::NAN]).is_err());
        assert!(Measurement::new(Unit::Ns, vec![-1.0]).is_err());
    }

    #[test]
    fn latency_and_rate_divide_by_the_batch() {
        let t = Timings::new(vec![Duration::from_micros(1); 3], 10);
        let l = Measurement::latency(&t).unwrap();
        assert_eq!(l.median(), 100.0);
        let r = Measurement::rate(&t, Unit::BytesPerSec, 64).unwrap();
        assert!((r.median() - 640e6).abs() < 1.0);
    }

    #[test]
    fn registry_is_consistent() {
        let all = rows();
        for (i, r) in all.iter().enumerate() {
            assert!(
                r.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{} is not snake_case",
                r.name
            );
            assert!(
                all.iter().skip(i + 1).all(|o| o.name != r.name),
                "{} twice",
                r.name
            );
            if let Some(f) = r.floor {
                let floor = all.iter().find(|o| o.name == f);
                let floor = floor.unwrap_or_else(|| panic!("{}: no floor row {f}", r.name));
                assert_eq!(floor.unit, r.unit, "{} and its floor {f}", r.name);
            }
        }
        for t in targets() {
            let find = |n: &str| all.iter().find(|r| r.name == n);
            let (Some(row), Some(vs)) = (find(t.row), find(t.vs)) else {
                panic!("target {} / {}: no such row", t.row, t.vs);
            };
            assert_eq!(row.unit, vs.unit, "target {} / {}", t.row, t.vs);
            assert!(t.max > 0.0 && t.max.is_finite());
        }
    }

    #[test]
    fn select_keeps_prefix_matches_in_order() {
        let all = rows();
        let names = |v: Vec<Row>| v.iter().map(|r| r.name).collect::<Vec<_>>();
        let got = names(select(&all, &["memcpy".into(), "floor_spin".into()]));
        assert_eq!(got, ["floor_spin_rtt", "memcpy_1mb", "memcpy_8mb"]);
        assert_eq!(select(&all, &[]).len(), all.len());
        assert!(select(&all, &["nothing".into()]).is_empty());
    }
}
