//! The command line: argument parsing and the subcommands.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use polycephaly_harness::assess::{self, AssessArgs};
use polycephaly_harness::fractal::{self, FractalArgs};
use polycephaly_harness::{self as bench, Config, PinMode, demo, report, tables};

use crate::progress::Progress;

/// Shared-memory IPC between processes, and its measurements.
#[derive(Debug, Parser)]
#[command(name = "polycephaly", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure round trips, throughput and bulk transfers between two
    /// processes, and the floors they are compared with.
    Bench(BenchArgs),
    /// A first look: the seed's example on 4 drones, two maps over large
    /// arrays, and an account of what the pool did (a few seconds).
    Demo,
    /// Render a Mandelbrot image with the drones (tiles back through their
    /// arena lanes), compared with one process and with Unix sockets.
    Fractal(FractalArgs),
    /// Assess a source tree: per-file metrics computed by the drones, a
    /// summary, a JSON or CSV report, the speed-up over one process.
    Assess(AssessArgs),
    /// Messages, requests and arrays through every primitive, checked, for
    /// a given time; with --chaos, workers killed at random.
    Soak(polycephaly_harness::soak::SoakArgs),
    /// A read-only view of a named region: header, sections (rings' fill
    /// and positions, arena lanes and live blocks, events, mutexes), peers.
    /// It takes no peer slot, attaches no role and never writes.
    Inspect(crate::inspect::InspectArgs),
    /// Remove the /dev/shm files of regions whose creator and peers are
    /// all dead (the file form only: a socket-served name or an anonymous
    /// memfd leaves nothing behind when its processes die). Another user's
    /// file, or one with a live peer, is never touched.
    Clean(crate::clean::CleanArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Fewer samples (well under 30 s).
    #[arg(long)]
    quick: bool,
    /// Keep only the rows whose names start with one of these prefixes.
    #[arg(long, value_delimiter = ',', value_name = "PREFIX,...")]
    only: Vec<String>,
    /// Also write the figures to this JSON file (`-`: to stdout, and the
    /// text report to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// CPU placement of the two processes: none (the scheduler's choice),
    /// split (one process per CPU), same (both on one CPU).
    #[arg(long, value_enum, default_value_t = Pin::None)]
    pin: Pin,
    /// Run the selected rows N times, interleaved (every row once per
    /// round), and report each row's median of medians and each ratio as
    /// the median of the per-run ratios, with min and max: the figures the
    /// targets are judged on.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
    /// Run N busy processes (unpinned) beside the bench for its whole run:
    /// the figures when processes outnumber CPUs.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    hog: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Pin {
    None,
    Split,
    Same,
}

impl From<Pin> for PinMode {
    fn from(p: Pin) -> Self {
        match p {
            Pin::None => PinMode::None,
            Pin::Split => PinMode::Split,
            Pin::Same => PinMode::Same,
        }
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let done = match cli.command {
        Command::Bench(args) => return run_bench(&args),
        Command::Soak(args) => return polycephaly_harness::soak::run(&args),
        Command::Inspect(args) => return crate::inspect::run(&args),
        Command::Clean(args) => return crate::clean::run(&args),
        Command::Demo => demo::run(),
        Command::Fractal(args) => fractal::run(&args),
        Command::Assess(args) => assess::run(&args),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // One line, whatever the message holds.
            eprintln!("polycephaly: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap writes them; a usage error is
/// one line on stderr (clap's first paragraph, without its usage block)
/// and exit code 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            eprintln!(
                "polycephaly: a command is needed: demo, fractal, assess, bench, soak, inspect or clean (see polycephaly --help)"
            );
            return ExitCode::from(2);
        }
        _ => {}
    }
    let text = e.to_string();
    let first: Vec<&str> = text
        .trim_start()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = first.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("polycephaly: {line} (see --help)");
    ExitCode::from(2)
}

fn run_bench(args: &BenchArgs) -> ExitCode {
    let cfg = Config {
        quick: args.quick,
        pin: args.pin.into(),
        hogs: args.hog,
    };
    let rows = bench::select(&bench::rows(), &args.only);
    if rows.is_empty() {
        eprintln!("no row starts with any of {:?}", args.only);
        return ExitCode::FAILURE;
    }
    let machine = report::Machine::detect();
    // `--json -`: the JSON alone on stdout, the text report on stderr.
    let json_to_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
    let mut text: Box<dyn std::io::Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let _ = write!(text, "{}", report::header(&machine, &cfg));
    let _ = text.flush();
    // Before the progress bar: the hogs are forks of a one-thread process.
    let _hogs = match polycephaly_harness::hog::Hogs::start(args.hog) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("polycephaly: cannot start the hogs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let rounds = args.repeat as usize;
    let mut runs: Vec<Vec<report::Outcome>> = Vec::with_capacity(rounds);
    let progress = Progress::new(rows.len(), rounds, json_to_stdout);
    for round in 0..rounds {
        let mut outcomes = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            // From this (only) thread, between rows.
            progress.row(round, i, row.name);
            let result = (row.run)(&cfg).map_err(|e| e.to_string());
            outcomes.push(report::Outcome { row: *row, result });
        }
        runs.push(outcomes);
    }
    progress.finish();
    let Some(last) = runs.last() else {
        return ExitCode::FAILURE;
    };
    let outcomes_len = last.len();
    let mut ok = runs.iter().flatten().all(|o| o.result.is_ok());
    if rounds == 1 {
        let _ = write!(text, "{}", report::table(last));
    } else {
        let _ = write!(text, "{}", report::repeat_summary(&runs));
    }
    let seed_tables = tables::measured(&tables::Figures::from_runs(&runs));
    let _ = write!(text, "{}", tables::render(&seed_tables, rounds));
    let _ = writeln!(
        text,
        "{} row(s){} in {:.1} s",
        outcomes_len,
        if rounds > 1 {
            format!(" x {rounds} runs")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.json {
        let doc = if rounds == 1 {
            report::json(&machine, &cfg, last)
        } else {
            report::repeat_json(&machine, &cfg, runs)
        };
        let doc = tables::add_to_json(&doc, &seed_tables);
        let written = if json_to_stdout {
            let mut out = std::io::stdout();
            out.write_all(doc.as_bytes()).and_then(|()| out.flush())
        } else {
            std::fs::write(path, doc)
        };
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
