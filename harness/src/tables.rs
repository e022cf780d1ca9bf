//! The seed's five tables, with this run's figures beside the seed's own.
//!
//! The seed is the talk this library starts from (Holger Guhl, "Shared
//! Memory Management for VisualWorks": Polycephaly, a Smalltalk master
//! image handing work to drone images). Its figures are quoted here as its
//! text gives them; a size for which it gave no figure shows `-`. They come
//! from another machine and another decade: the fair comparison is with the
//! baselines of the same run (the Unix socket twins, memcpy), which every
//! table carries beside our figures.
//!
//! | table | seed | our rows |
//! | --- | --- | --- |
//! | 1. raw read/write by size | read, write, read+write of 1 KB .. 1 MB | `shm_write_<N>`, `shm_read_<N>`; `memcpy_1mb`, `memcpy_8mb` |
//! | 2. semaphore round trip | 117 us (OS events), 399 us (UDP) | `spsc_block_rtt`, `spsc_spin_rtt`, `event_wake_rtt`, `mutex_event_rtt`; `uds_rtt`, `pshared_mutex_rtt`, `floor_wake_rtt` |
//! | 3. request overhead by bytes | 12,519 us for an empty request | `channel_empty_rtt_*`, `pool_empty_task_rtt`, `channel_bytes_rtt_<N>`; their `uds_` twins |
//! | 4. requests with arrays | 99 ms (shared memory), 1.5 s (messages) for 10^6 | `pool_array_task_rtt_<N>`, `pool_array_piped_task_rtt_<N>`; `pool_uds_array_task_rtt_<N>` |
//! | 5. shared-memory command vs messages | 307 us / 8 ms for 10, 99 ms / 1.5 s for 10^6 | `arena_array_rtt_<N>`, `arena_array_piped_rtt_<N>`; `uds_array_rtt_<N>` |
//!
//! A table is printed when at least one of its rows was measured (so
//! `--only` keeps the output short). Figures are the rows' medians, or
//! over repeated runs the median of the per-run medians; every time is in
//! microseconds, and "x faster" divides the slower time by ours.

use core::fmt::Write as _;

use super::Unit;
use super::report::{Outcome, json_string};

/// The seed's round trip of a mutex between two images through OS event
/// messages, in microseconds.
pub const SEED_MUTEX_EVENTS_US: f64 = 117.0;
/// The same over UDP socket messages.
pub const SEED_MUTEX_UDP_US: f64 = 399.0;
/// The seed's request to evaluate the empty block in a drone.
pub const SEED_EMPTY_REQUEST_US: f64 = 12_519.0;

/// Each row's figure in this run (or the median over repeated runs).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    rows: Vec<(&'static str, Unit, f64)>,
}

impl Figures {
    /// The figures of `runs` (the same rows run in turn; one run is a slice
    /// of one): each row's median, or the median of its per-run medians
    /// (the mean of the middle two for an even count). Rows that failed in
    /// every run are left out.
    pub fn from_runs(runs: &[Vec<Outcome>]) -> Self {
        let mut rows: Vec<(&'static str, Unit, f64)> = Vec::new();
        for run in runs {
            for o in run {
                if rows.iter().any(|(n, _, _)| *n == o.row.name) {
                    continue;
                }
                let mut meds: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.iter().find(|x| x.row.name == o.row.name))
                    .filter_map(|x| x.result.as_ref().ok())
                    .map(|m| m.median())
                    .filter(|v| v.is_finite())
                    .collect();
                if meds.is_empty() {
                    continue;
                }
                meds.sort_by(f64::total_cmp);
                let n = meds.len();
                let mid = if n % 2 == 1 {
                    meds[n / 2]
                } else {
                    (meds[n / 2 - 1] + meds[n / 2]) / 2.0
                };
                rows.push((o.row.name, o.row.unit, mid));
            }
        }
        Self { rows }
    }

    /// A figure set from `(name, unit, median)` triples (for tests and
    /// tools that read a JSON file back).
    pub fn from_medians(rows: Vec<(&'static str, Unit, f64)>) -> Self {
        Self { rows }
    }

    /// The row's median in its own unit.
    pub fn median(&self, name: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, v)| *v)
    }

    /// The row's time per operation in microseconds: a latency row's
    /// median, or for a byte rate the time `bytes` take at that rate.
    pub fn us(&self, name: &str, bytes: u64) -> Option<f64> {
        let (_, unit, v) = self.rows.iter().find(|(n, _, _)| *n == name)?;
        let us = match unit {
            Unit::Ns => v / 1e3,
            Unit::BytesPerSec if *v > 0.0 => bytes as f64 / v * 1e6,
            _ => return None,
        };
        us.is_finite().then_some(us)
    }
}

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A label.
    Text(String),
    /// A time in microseconds (`None`: not measured, or no seed figure).
    Us(Option<f64>),
    /// A factor ("x faster"; `None`: one side is missing).
    Times(Option<f64>),
}

impl Cell {
    fn text(s: &str) -> Self {
        Self::Text(s.to_owned())
    }

    fn render(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Us(Some(v)) => us_text(*v),
            Self::Times(Some(v)) => format!("{} x", times_text(*v)),
            Self::Us(None) | Self::Times(None) => "-".to_owned(),
        }
    }

    fn json(&self) -> String {
        match self {
            Self::Text(s) => json_string(s),
            Self::Us(Some(v)) | Self::Times(Some(v)) if v.is_finite() => format!("{v:.3}"),
            _ => "null".to_owned(),
        }
    }
}

/// Microseconds for the table: two decimals under 10, one under 100,
/// whole ones with thousands separators above.
fn us_text(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        group(v.round() as u64)
    }
}

/// A factor: one decimal under 100, whole above (with separators).
fn times_text(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        group(v.round() as u64)
    }
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `slow / fast` when both are known and positive.
fn factor(slow: Option<f64>, fast: Option<f64>) -> Option<f64> {
    match (slow, fast) {
        (Some(s), Some(f)) if f > 0.0 && s.is_finite() && f.is_finite() => Some(s / f),
        _ => None,
    }
}

/// One of the seed's tables with this run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedTable {
    /// Stable snake_case key (the JSON's `id`).
    pub id: &'static str,
    /// The title, numbered as in the issue.
    pub title: &'static str,
    /// Column headings.
    pub columns: Vec<&'static str>,
    /// The lines, one cell per column.
    pub lines: Vec<Vec<Cell>>,
    /// Remarks printed under the table.
    pub notes: Vec<&'static str>,
    /// The one-line summary.
    pub summary: String,
    /// Whether any of our rows in it was measured.
    pub measured: bool,
}

impl SeedTable {
    /// The table as aligned text, its notes and its summary.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .lines
            .iter()
            .map(|l| l.iter().map(Cell::render).collect())
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, h)| {
                cells
                    .iter()
                    .filter_map(|l| l.get(i))
                    .map(|c| c.chars().count())
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.title);
        let line = |s: &mut String, items: &[String]| {
            let mut text = String::new();
            for (i, (c, w)) in items.iter().zip(&widths).enumerate() {
                if i == 0 {
                    let _ = write!(text, "  {c:<w$}");
                } else {
                    let _ = write!(text, "  {c:>w$}");
                }
            }
            let _ = writeln!(s, "{}", text.trim_end());
        };
        let head: Vec<String> = self.columns.iter().map(|c| (*c).to_owned()).collect();
        line(&mut s, &head);
        for l in &cells {
            line(&mut s, l);
        }
        for n in &self.notes {
            let _ = writeln!(s, "  ({n})");
        }
        let _ = writeln!(s, "  => {}", self.summary);
        s
    }

    /// The table as a JSON object: `id`, `title`, `columns`, `rows` (arrays
    /// of cells: strings, numbers in microseconds or factors, `null`),
    /// `notes` and `summary`.
    pub fn json(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| json_string(c)).collect();
        let rows: Vec<String> = self
            .lines
            .iter()
            .map(|l| {
                format!(
                    "\n        [{}]",
                    l.iter().map(Cell::json).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        let notes: Vec<String> = self.notes.iter().map(|n| json_string(n)).collect();
        format!(
            "{{\"id\": {}, \"title\": {},\n      \"columns\": [{}],\n      \"rows\": [{}\n      ],\n      \"notes\": [{}],\n      \"summary\": {}}}",
            json_string(self.id),
            json_string(self.title),
            cols.join(", "),
            rows.join(","),
            notes.join(", "),
            json_string(&self.summary)
        )
    }
}

/// An optional time for a summary line.
fn say(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{} us", us_text(v)))
}

/// An optional factor for a summary line.
fn say_x(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{} x", times_text(v)))
}

/// Table 1: shared-memory raw read/write by size.
fn raw_read_write(f: &Figures) -> SeedTable {
    // (label, bytes, our suffix, seed write, seed read, seed write+read, memcpy row)
    type Size = (
        &'static str,
        u64,
        &'static str,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<&'static str>,
    );
    const SIZES: [Size; 5] = [
        (
            "1 KB",
            1 << 10,
            "1kb",
            Some(1.0),
            Some(1.0),
            Some(1.0),
            None,
        ),
        (
            "10 KB",
            10 << 10,
            "10kb",
            Some(1.0),
            Some(3.0),
            Some(3.0),
            None,
        ),
        (
            "100 KB",
            100 << 10,
            "100kb",
            Some(8.0),
            Some(53.0),
            Some(23.0),
            None,
        ),
        (
            "1 MB",
            1 << 20,
            "1mb",
            Some(80.0),
            Some(509.0),
            Some(343.0),
            Some("memcpy_1mb"),
        ),
        ("8 MB", 8 << 20, "8mb", None, None, None, Some("memcpy_8mb")),
    ];
    let mut lines = Vec::new();
    let mut measured = false;
    let mut at_1mb = (None, None);
    for (label, bytes, suffix, sw, sr, swr, memcpy) in SIZES {
        let w = f.us(&format!("shm_write_{suffix}"), bytes);
        let r = f.us(&format!("shm_read_{suffix}"), bytes);
        measured |= w.is_some() || r.is_some();
        let wr = match (w, r) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        let mc = memcpy.and_then(|m| f.us(m, bytes));
        if suffix == "1mb" {
            at_1mb = (wr, mc);
        }
        lines.push(vec![
            Cell::text(label),
            Cell::Us(sw),
            Cell::Us(w),
            Cell::Us(sr),
            Cell::Us(r),
            Cell::Us(swr),
            Cell::Us(wr),
            Cell::Us(mc),
            Cell::Times(factor(swr, wr)),
        ]);
    }
    let (wr, mc) = at_1mb;
    SeedTable {
        id: "raw_read_write",
        title: "1. Shared memory raw read/write (us per block; ours: one process writes a block, another reads all of it)",
        columns: vec![
            "size",
            "seed write",
            "ours write",
            "seed read",
            "ours read",
            "seed w+r",
            "ours w+r",
            "memcpy, same run",
            "x faster (w+r)",
        ],
        lines,
        notes: vec![
            "the seed's sizes are decimal (1,000 bytes), ours binary (1 KiB = 1,024 bytes); its 1 KB read is '<= 1 us'",
        ],
        summary: format!(
            "1 MB written and read: seed 343 us, ours {} ({} faster); a plain memcpy of 1 MiB takes {} in this run",
            say(wr),
            say_x(factor(Some(343.0), wr)),
            say(mc)
        ),
        measured,
    }
}

/// Table 2: the semaphore round trip between two processes.
fn semaphore(f: &Figures) -> SeedTable {
    const OURS: [(&str, &str, &str); 7] = [
        (
            "ring round trip, blocking (SPSC)",
            "block",
            "spsc_block_rtt",
        ),
        ("ring round trip, spinning (SPSC)", "spin", "spsc_spin_rtt"),
        ("event, wake and answer", "block", "event_wake_rtt"),
        (
            "mutex handed over through events",
            "block",
            "mutex_event_rtt",
        ),
        ("baseline: Unix socket", "block", "uds_rtt"),
        (
            "baseline: pthread mutex + condvar",
            "block",
            "pshared_mutex_rtt",
        ),
        ("baseline: bare futex wake", "block", "floor_wake_rtt"),
    ];
    let mut lines = vec![
        vec![
            Cell::text("seed: mutex, OS event messages"),
            Cell::text("-"),
            Cell::Us(Some(SEED_MUTEX_EVENTS_US)),
            Cell::Times(None),
            Cell::Times(None),
        ],
        vec![
            Cell::text("seed: mutex, UDP socket messages"),
            Cell::text("-"),
            Cell::Us(Some(SEED_MUTEX_UDP_US)),
            Cell::Times(None),
            Cell::Times(None),
        ],
    ];
    let mut measured = false;
    let uds = f.us("uds_rtt", 0);
    for (label, wait, row) in OURS {
        let v = f.us(row, 0);
        measured |= v.is_some();
        let vs_socket = if row == "uds_rtt" {
            None
        } else {
            factor(uds, v)
        };
        lines.push(vec![
            Cell::text(label),
            Cell::text(wait),
            Cell::Us(v),
            Cell::Times(factor(Some(SEED_MUTEX_EVENTS_US), v)),
            Cell::Times(vs_socket),
        ]);
    }
    let block = f.us("spsc_block_rtt", 0);
    SeedTable {
        id: "semaphore_round_trip",
        title: "2. Semaphore round trip between two processes (us)",
        columns: vec![
            "round trip",
            "wait",
            "us",
            "x faster than seed 117 us",
            "x faster than socket",
        ],
        lines,
        notes: vec![
            "block: the waiting process sleeps in the kernel and is woken; spin: both processes poll shared memory",
        ],
        summary: format!(
            "mutex round trip: seed 117 us with OS events (399 us over UDP); ours {} blocking, {} spinning; \
             the blocking ring is {} faster than the Unix socket in the same run ({})",
            say(block),
            say(f.us("spsc_spin_rtt", 0)),
            say_x(factor(uds, block)),
            say(uds)
        ),
        measured,
    }
}

/// Table 3: request overhead by request bytes.
fn request_bytes(f: &Figures) -> SeedTable {
    // (label, how, seed, ours, socket twin)
    let mut specs: Vec<(String, &str, Option<f64>, String, String)> = vec![
        (
            "empty".into(),
            "channel, block",
            Some(SEED_EMPTY_REQUEST_US),
            "channel_empty_rtt_block".into(),
            "uds_channel_empty_rtt".into(),
        ),
        (
            "empty".into(),
            "channel, spin",
            None,
            "channel_empty_rtt_spin".into(),
            "uds_channel_empty_rtt".into(),
        ),
        (
            "empty task".into(),
            "pool, block",
            Some(SEED_EMPTY_REQUEST_US),
            "pool_empty_task_rtt".into(),
            "pool_uds_empty_task_rtt".into(),
        ),
    ];
    for (label, n) in [
        ("10 B", 10),
        ("100 B", 100),
        ("1 KB", 1_000),
        ("10 KB", 10_000),
        ("100 KB", 100_000),
        ("1 MB", 1_000_000),
    ] {
        specs.push((
            label.into(),
            "channel, spin",
            None,
            format!("channel_bytes_rtt_{n}"),
            format!("uds_channel_bytes_rtt_{n}"),
        ));
    }
    let mut measured = false;
    let lines = specs
        .iter()
        .map(|(label, how, seed, ours, twin)| {
            let (o, t) = (f.us(ours, 0), f.us(twin, 0));
            measured |= o.is_some();
            vec![
                Cell::Text(label.clone()),
                Cell::Us(*seed),
                Cell::text(how),
                Cell::Us(o),
                Cell::Us(t),
                Cell::Times(factor(t, o)),
            ]
        })
        .collect();
    let mb = f.us("channel_bytes_rtt_1000000", 0);
    SeedTable {
        id: "request_overhead_by_bytes",
        title: "3. Request overhead by request bytes (us per request and reply)",
        columns: vec![
            "request",
            "seed",
            "ours: how",
            "ours",
            "socket twin",
            "x faster than socket",
        ],
        lines,
        notes: vec![
            "the seed's text gives the empty request only (12,519 us to evaluate the empty block in a drone)",
            "the socket twin: the same frames through a Unix stream socket, in the same run",
        ],
        summary: format!(
            "empty request: seed 12,519 us, ours {} (channel, blocking) and {} (a task to a drone); \
             1 MB request: ours {}, {} faster than the socket in the same run",
            say(f.us("channel_empty_rtt_block", 0)),
            say(f.us("pool_empty_task_rtt", 0)),
            say(mb),
            say_x(factor(f.us("uds_channel_bytes_rtt_1000000", 0), mb))
        ),
        measured,
    }
}

/// The array sizes of tables 4 and 5, with their labels.
const ELEMENTS: [(&str, u64); 6] = [
    ("10", 10),
    ("100", 100),
    ("1,000", 1_000),
    ("10,000", 10_000),
    ("100,000", 100_000),
    ("1,000,000", 1_000_000),
];

/// Table 4: requests with arrays (a task to a drone that sums them).
fn requests_with_arrays(f: &Figures) -> SeedTable {
    let mut measured = false;
    let lines = ELEMENTS
        .iter()
        .map(|(label, n)| {
            let (seed_shm, seed_msg) = if *n == 1_000_000 {
                (Some(99_000.0), Some(1_500_000.0))
            } else {
                (None, None)
            };
            let o = f.us(&format!("pool_array_task_rtt_{n}"), 0);
            let piped = f.us(&format!("pool_array_piped_task_rtt_{n}"), 0);
            let t = f.us(&format!("pool_uds_array_task_rtt_{n}"), 0);
            measured |= o.is_some() || piped.is_some();
            vec![
                Cell::text(label),
                Cell::Us(seed_shm),
                Cell::Us(seed_msg),
                Cell::Us(o),
                Cell::Us(piped),
                Cell::Us(t),
                Cell::Times(factor(t, o)),
                Cell::Times(factor(t, piped)),
            ]
        })
        .collect();
    let o = f.us("pool_array_task_rtt_1000000", 0);
    let piped = f.us("pool_array_piped_task_rtt_1000000", 0);
    let t = f.us("pool_uds_array_task_rtt_1000000", 0);
    SeedTable {
        id: "requests_with_arrays",
        title: "4. Requests with arrays of u64 (us: a task to a drone, which sums the array and answers)",
        columns: vec![
            "elements",
            "seed, shared memory",
            "seed, messages",
            "ours (pool)",
            "ours, piped",
            "socket twin",
            "x faster than socket",
            "piped: x faster",
        ],
        lines,
        notes: vec![
            "the seed's text gives the 1,000,000-element request only",
            "ours: the master builds the array in its arena lane, the drone sums it in place; the twin writes it through a Unix socket",
            // Names `PIPED_PIECE` (checked below).
            "piped: the same array built in pieces of 32 Ki elements, each handed to the drone as soon as it is built (map_chunks_from_fn; rows for 10^5 and 10^6 only)",
        ],
        summary: format!(
            "arrays of 1,000,000 u64: seed 99 ms in shared memory (1.5 s by messages), ours {}, {} faster than the socket in the same run; piped {}, {} faster",
            say(o),
            say_x(factor(t, o)),
            say(piped),
            say_x(factor(t, piped))
        ),
        measured,
    }
}

/// Table 5: shared-memory command vs message passing.
fn command_vs_messages(f: &Figures) -> SeedTable {
    let mut measured = false;
    let lines = ELEMENTS
        .iter()
        .map(|(label, n)| {
            let (seed_shm, seed_msg) = match n {
                10 => (Some(307.0), Some(8_000.0)),
                1_000_000 => (Some(99_000.0), Some(1_500_000.0)),
                _ => (None, None),
            };
            let o = f.us(&format!("arena_array_rtt_{n}"), 0);
            let piped = f.us(&format!("arena_array_piped_rtt_{n}"), 0);
            let t = f.us(&format!("uds_array_rtt_{n}"), 0);
            measured |= o.is_some() || piped.is_some();
            vec![
                Cell::text(label),
                Cell::Us(seed_shm),
                Cell::Us(seed_msg),
                Cell::Times(factor(seed_msg, seed_shm)),
                Cell::Us(o),
                Cell::Us(piped),
                Cell::Us(t),
                Cell::Times(factor(t, o)),
            ]
        })
        .collect();
    let o = f.us("arena_array_rtt_1000000", 0);
    let t = f.us("uds_array_rtt_1000000", 0);
    SeedTable {
        id: "command_vs_messages",
        title: "5. Shared-memory command vs message passing, arrays of u64 (us per command and answer)",
        columns: vec![
            "elements",
            "seed shm",
            "seed messages",
            "seed factor",
            "ours shm",
            "ours shm, piped",
            "ours messages (socket)",
            "our factor",
        ],
        lines,
        notes: vec![
            "ours shm: the array built in an arena block, its handle sent through a ring, summed in place by the other process",
            "piped: the same array handed over in 1 MiB blocks as they are built (rows for 10^5 and 10^6 only)",
        ],
        summary: format!(
            "1,000,000 u64: the seed's shared memory was 15 x faster than its messages (99 ms vs 1.5 s); \
             ours is {} faster than the socket in the same run ({} vs {})",
            say_x(factor(t, o)),
            say(o),
            say(t)
        ),
        measured,
    }
}

/// The five tables, in the issue's order (measured or not).
pub fn all(f: &Figures) -> Vec<SeedTable> {
    vec![
        raw_read_write(f),
        semaphore(f),
        request_bytes(f),
        requests_with_arrays(f),
        command_vs_messages(f),
    ]
}

/// The tables with at least one of our rows measured.
pub fn measured(f: &Figures) -> Vec<SeedTable> {
    all(f).into_iter().filter(|t| t.measured).collect()
}

/// The text of `tables` (nothing when there are none).
pub fn render(tables: &[SeedTable], runs: usize) -> String {
    if tables.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nThe seed's tables (the talk's figures, from its own machine, beside ours{}; \
         'socket' and 'memcpy' are baselines of this run on this machine):\n",
        if runs > 1 {
            format!(": medians of {runs} runs")
        } else {
            String::new()
        }
    );
    for t in tables {
        s.push('\n');
        s.push_str(&t.render());
    }
    s
}

/// `doc` (a JSON object from [`crate::report::json`] or
/// [`crate::report::repeat_json`])
/// with `"seed_tables": [...]` added as its last member.
pub fn add_to_json(doc: &str, tables: &[SeedTable]) -> String {
    let body = doc.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body).trim_end();
    let items: Vec<String> = tables
        .iter()
        .map(|t| format!("\n    {}", t.json()))
        .collect();
    format!(
        "{body},\n  \"seed_tables\": [{}\n  ]\n}}\n",
        items.join(",")
    )
}

// Table 4's note names the piece size of the piped rows.
const _: () = assert!(crate::pool::PIPED_PIECE == 32 * 1024);

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        Figures::from_medians(vec![
            ("shm_write_1mb", Unit::BytesPerSec, 10e9),
            ("shm_read_1mb", Unit::BytesPerSec, 5e9),
            ("memcpy_1mb", Unit::BytesPerSec, 20e9),
            ("spsc_block_rtt", Unit::Ns, 5_000.0),
            ("uds_rtt", Unit::Ns, 15_000.0),
            ("pool_array_task_rtt_1000000", Unit::Ns, 500_000.0),
            ("pool_uds_array_task_rtt_1000000", Unit::Ns, 2_000_000.0),
            ("pool_array_piped_task_rtt_1000000", Unit::Ns, 400_000.0),
        ])
    }

    #[test]
    fn times_come_from_rates_and_latencies() {
        let f = figures();
        let w = f.us("shm_write_1mb", 1 << 20).unwrap();
        assert!((w - 104.8576).abs() < 1e-6, "{w}");
        assert_eq!(f.us("spsc_block_rtt", 0), Some(5.0));
        assert_eq!(f.us("nothing", 0), None);
    }

    #[test]
    fn only_measured_tables_are_kept_with_their_summaries() {
        let t = measured(&figures());
        let ids: Vec<_> = t.iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            [
                "raw_read_write",
                "semaphore_round_trip",
                "requests_with_arrays"
            ]
        );
        assert!(
            t[2].summary.starts_with(
                "arrays of 1,000,000 u64: seed 99 ms in shared memory (1.5 s by messages), ours 500 us, 4.0 x faster"
            ),
            "{}",
            t[2].summary
        );
        assert!(
            t[2].summary
                .ends_with("faster than the socket in the same run; piped 400 us, 5.0 x faster"),
            "{}",
            t[2].summary
        );
        assert!(
            t[1].summary.contains("ours 5.00 us blocking"),
            "{}",
            t[1].summary
        );
        let text = render(&t, 5);
        assert!(text.contains("medians of 5 runs"), "{text}");
        assert!(text.contains("1,500,000"), "{text}");
    }

    #[test]
    fn json_gains_the_tables_as_its_last_member() {
        let doc = "{\n  \"measurements\": {}\n}\n";
        let j = add_to_json(doc, &measured(&figures()));
        assert!(
            j.starts_with("{\n  \"measurements\": {},\n  \"seed_tables\": ["),
            "{j}"
        );
        assert!(j.ends_with("\n  ]\n}\n"), "{j}");
        assert!(
            j.contains(
                "[\"1,000,000\", 99000.000, 1500000.000, 500.000, 400.000, 2000.000, 4.000, 5.000]"
            ),
            "{j}"
        );
        assert!(j.contains("null"), "{j}");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(12_519), "12,519");
        assert_eq!(group(999), "999");
        assert_eq!(us_text(0.354), "0.35");
        assert_eq!(us_text(1_500_000.0), "1,500,000");
    }
}
