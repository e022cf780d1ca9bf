//! `polycephaly assess PATH`: the seed's "software assessment". The tree
//! is walked in the master ([`walk`]); its source files, grouped by
//! directory (a unit of at most [`walk::UNIT_FILES`]) within packages,
//! are handed to the drones through the pool's streaming API; each drone
//! reads its files and computes per-file metrics ([`metrics`]: lines,
//! code, comment and blank lines, functions, branch points, the most
//! complex and the longest function) and streams the results back
//! (through its arena lane when a unit's result is large). The master
//! prints a summary, writes the report, and does the same work in one
//! process to give the speed-up and to check that both results are the
//! same.

mod clike;
pub mod metrics;
mod python;
pub mod report;
mod smalltalk;
pub mod task;
pub mod walk;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use polycephaly::pool::{MAX_DRONES, Pool};

use crate::human::{self, bytes, percent, say, secs, thousands};
use report::FileRecord;
use task::{ANALYSE, Outcome};
use walk::Walk;

/// The options of `polycephaly assess`.
#[derive(Debug, Clone, clap::Args)]
pub struct AssessArgs {
    /// The source tree (or file) to assess.
    pub path: PathBuf,
    /// Drones (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_DRONES as i64))]
    pub drones: Option<u32>,
    /// Also write the per-file report, as JSON (`.json`) or CSV (`.csv`).
    #[arg(long, value_name = "report.json|report.csv", value_parser = parse_out)]
    pub out: Option<PathBuf>,
    /// Skip the one-process run (no speed-up, no check).
    #[arg(long)]
    pub no_compare: bool,
}

fn parse_out(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match p.extension().and_then(|e| e.to_str()) {
        Some("json" | "csv") => Ok(p),
        _ => Err(format!("{s:?} must end in .json or .csv")),
    }
}

/// Each unit's outcomes, in unit order.
pub type Outcomes = Vec<Vec<Outcome>>;

/// What the analysis in the drones did and cost.
#[derive(Debug, Clone)]
pub struct PoolRun {
    /// The outcomes.
    pub outcomes: Outcomes,
    /// Wall time.
    pub elapsed: Duration,
    /// Drone time in tasks, summed.
    pub busy: Duration,
    /// Result bytes through the drones' arena lanes.
    pub bytes_in_arena: u64,
    /// Task and result frames through the rings.
    pub bytes_in_rings: u64,
}

/// The inputs of the walk's units, in order.
pub fn inputs(walk: &Walk) -> Vec<Vec<u8>> {
    walk.units
        .iter()
        .map(|u| task::unit_input(u.files.iter().map(PathBuf::as_path)))
        .collect()
}

/// Analyses the units in the pool's drones, streaming them out and the
/// results back; `tick(files)` after each unit.
///
/// # Errors
/// A pool error, or a result that does not decode.
pub fn analyse_pool(
    pool: &Pool,
    walk: &Walk,
    inputs: &[Vec<u8>],
    mut tick: impl FnMut(u64),
) -> Result<PoolRun, String> {
    let before = pool.stats();
    let start = Instant::now();
    let mut outcomes: Vec<Option<Vec<Outcome>>> = vec![None; inputs.len()];
    let stream = pool
        .stream_slices(&ANALYSE, inputs.iter())
        .map_err(|e| e.to_string())?;
    for r in stream {
        let (i, bytes) = r.map_err(|e| e.to_string())?;
        let unit = task::decode(&bytes)
            .filter(|o| o.len() == walk.units[i].files.len())
            .ok_or_else(|| format!("the result of unit {i} does not decode"))?;
        tick(unit.len() as u64);
        outcomes[i] = Some(unit);
    }
    let elapsed = start.elapsed();
    let after = pool.stats();
    let outcomes = outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.ok_or_else(|| format!("unit {i} never came back")))
        .collect::<Result<_, _>>()?;
    Ok(PoolRun {
        outcomes,
        elapsed,
        busy: after.busy.saturating_sub(before.busy),
        bytes_in_arena: after.bytes_in_arena - before.bytes_in_arena,
        bytes_in_rings: after.bytes_in_rings - before.bytes_in_rings,
    })
}

/// The same analysis in this process alone.
///
/// # Errors
/// A result that does not decode (a bug).
pub fn analyse_single(inputs: &[Vec<u8>], mut tick: impl FnMut(u64)) -> Result<Outcomes, String> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let unit = task::decode(&task::analyse_unit(input))
                .ok_or_else(|| format!("the result of unit {i} does not decode"))?;
            tick(unit.len() as u64);
            Ok(unit)
        })
        .collect()
}

/// The walk's files with their outcomes, paths relative to the root.
pub fn records(walk: &Walk, outcomes: Outcomes) -> Vec<FileRecord> {
    let mut out = Vec::with_capacity(walk.source_files as usize);
    for (unit, results) in walk.units.iter().zip(outcomes) {
        for (path, outcome) in unit.files.iter().zip(results) {
            let rel = path.strip_prefix(&walk.root).unwrap_or(path);
            let rel = if rel.as_os_str().is_empty() {
                path
            } else {
                rel
            };
            out.push(FileRecord {
                path: rel.to_path_buf(),
                package: unit.package,
                outcome,
            });
        }
    }
    out
}

/// Runs `polycephaly assess`.
///
/// # Errors
/// One line: a missing or unreadable root, an unwritable report, a pool
/// that could not start, results that differ.
pub fn run(args: &AssessArgs) -> Result<(), String> {
    // The report's file first: a path that cannot be written is said
    // before any work is done.
    let report_file = match &args.out {
        Some(p) => Some((
            p,
            File::create(p).map_err(|e| format!("cannot write {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let root = std::path::absolute(&args.path).unwrap_or_else(|_| args.path.clone());
    std::fs::metadata(&root).map_err(|e| format!("cannot read {}: {e}", args.path.display()))?;
    let drones = args.drones.map_or_else(human::cpus, |n| n as usize);
    say!("assess {}", args.path.display());
    say!("machine: {}", human::machine());

    let t = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("walking");
    let walk = walk::walk(&root, |dirs| {
        if dirs % 256 == 0 {
            spinner.set_message(format!("walking: {} directories", thousands(dirs)));
            spinner.tick();
        }
    })?;
    spinner.finish_and_clear();
    let walk_time = t.elapsed();
    say!(
        "walked {} directories in {}: {} source files in {} units of work, {} other files; \
         {} symbolic links not followed, {} special files",
        thousands(walk.dirs),
        secs(walk_time),
        thousands(walk.source_files),
        thousands(walk.units.len() as u64),
        thousands(walk.other_files),
        thousands(walk.symlinks),
        thousands(walk.special)
    );
    let inputs = inputs(&walk);

    let t = Instant::now();
    let pool = Pool::builder()
        .drones(drones)
        .build()
        .map_err(|e| format!("cannot start the drones: {e}"))?;
    let start_time = t.elapsed();
    let bar = human::bar(walk.source_files, "drones", "files");
    let run = analyse_pool(&pool, &walk, &inputs, |n| bar.inc(n))?;
    bar.finish_and_clear();
    drop(pool);
    let x = human::exchange(run.elapsed, run.busy, drones);
    say!(
        "analysed by {drones} drone(s) in {} (started in {}); exchange {} per drone ({}); \
         results: {} through the rings, {} through the drones' arena lanes",
        secs(run.elapsed),
        secs(start_time),
        secs(x),
        percent(x.as_secs_f64(), run.elapsed.as_secs_f64()),
        bytes(run.bytes_in_rings),
        bytes(run.bytes_in_arena)
    );

    let mut same = true;
    if !args.no_compare {
        let bar = human::bar(walk.source_files, "one process", "files");
        let t = Instant::now();
        let single = analyse_single(&inputs, |n| bar.inc(n))?;
        let single_time = t.elapsed();
        bar.finish_and_clear();
        same = single == run.outcomes;
        say!(
            "one process    {}: speed-up {:.2}x ({:.2}x with the walk and the drones' start); results {}",
            secs(single_time),
            single_time.as_secs_f64() / run.elapsed.as_secs_f64(),
            (walk_time + single_time).as_secs_f64()
                / (walk_time + start_time + run.elapsed).as_secs_f64(),
            if same { "identical" } else { "DIFFERENT" }
        );
    }

    let files = records(&walk, run.outcomes);
    report::summary(&walk, &files);
    if let Some((path, file)) = report_file {
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => report::csv(&walk, &files),
            _ => report::json(&walk, &files),
        };
        write_all(file, path, &text)?;
        say!("");
        say!(
            "report: {} ({} files, {})",
            path.display(),
            thousands(files.len() as u64),
            bytes(text.len() as u64)
        );
    }
    if same {
        Ok(())
    } else {
        Err("the drones' results differ from the one-process results: this is a bug".into())
    }
}

fn write_all(mut file: File, path: &Path, text: &str) -> Result<(), String> {
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
