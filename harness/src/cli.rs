//! The command line: argument parsing and the subcommands.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use polycephaly_harness::{self as bench, Config, PinMode, report};

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
    /// A first look: runs `bench --quick` until the worker pool exists.
    Demo,
    /// Messages, requests and arrays through every primitive, checked, for
    /// a given time; with --chaos, workers killed at random.
    Soak(polycephaly_harness::soak::SoakArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Fewer samples (well under 30 s).
    #[arg(long)]
    quick: bool,
    /// Keep only the rows whose names start with one of these prefixes.
    #[arg(long, value_delimiter = ',', value_name = "PREFIX,...")]
    only: Vec<String>,
    /// Also write the figures to this JSON file.
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
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => run_bench(&args),
        Command::Soak(args) => polycephaly_harness::soak::run(&args),
        Command::Demo => {
            println!(
                "The worker pool is not there yet: `demo` runs the quick bench \
                 (`polycephaly bench --quick`), which measures what the pool will be \
                 built on.\n"
            );
            run_bench(&BenchArgs {
                quick: true,
                only: Vec::new(),
                json: None,
                pin: Pin::None,
                repeat: 1,
            })
        }
    }
}

fn run_bench(args: &BenchArgs) -> ExitCode {
    let cfg = Config {
        quick: args.quick,
        pin: args.pin.into(),
    };
    let rows = bench::select(&bench::rows(), &args.only);
    if rows.is_empty() {
        eprintln!("no row starts with any of {:?}", args.only);
        return ExitCode::FAILURE;
    }
    let machine = report::Machine::detect();
    print!("{}", report::header(&machine, &cfg));
    let started = Instant::now();
    let rounds = args.repeat as usize;
    let mut runs: Vec<Vec<report::Outcome>> = Vec::with_capacity(rounds);
    let mut stderr = std::io::stderr();
    // On a terminal the progress line is rewritten in place; elsewhere
    // (logs, tests) it is one plain line per row.
    let tty = stderr.is_terminal();
    let _ = std::io::stdout().flush();
    for round in 0..rounds {
        let mut outcomes = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            // The progress line, from this (only) thread, between rows.
            let of_round = if rounds > 1 {
                format!(" run {}/{rounds}", round + 1)
            } else {
                String::new()
            };
            let line = format!(
                "[{}/{}{of_round}] {} ({:.1} s so far)",
                i + 1,
                rows.len(),
                row.name,
                started.elapsed().as_secs_f64()
            );
            let _ = if tty {
                write!(stderr, "\r\x1b[2K{line}")
            } else {
                writeln!(stderr, "{line}")
            };
            let _ = stderr.flush();
            let result = (row.run)(&cfg).map_err(|e| e.to_string());
            outcomes.push(report::Outcome { row: *row, result });
        }
        runs.push(outcomes);
    }
    if tty {
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
    }
    let Some(last) = runs.last() else {
        return ExitCode::FAILURE;
    };
    let outcomes_len = last.len();
    let mut ok = runs.iter().flatten().all(|o| o.result.is_ok());
    if rounds == 1 {
        print!("{}", report::table(last));
    } else {
        print!("{}", report::repeat_summary(&runs));
    }
    println!(
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
        let text = if rounds == 1 {
            report::json(&machine, &cfg, last)
        } else {
            report::repeat_json(&machine, &cfg, runs)
        };
        if let Err(e) = std::fs::write(path, text) {
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
