//! The command line: argument parsing and the subcommands.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use polycephaly_harness::assess::{self, AssessArgs};
use polycephaly_harness::fractal::{self, FractalArgs};
use polycephaly_harness::{self as bench, Config, PinMode, demo, report};

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
                "polycephaly: a command is needed: demo, fractal, assess or bench (see polycephaly --help)"
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
    };
    let rows = bench::select(&bench::rows(), &args.only);
    if rows.is_empty() {
        eprintln!("no row starts with any of {:?}", args.only);
        return ExitCode::FAILURE;
    }
    let machine = report::Machine::detect();
    print!("{}", report::header(&machine, &cfg));
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut stderr = std::io::stderr();
    // On a terminal the progress line is rewritten in place; elsewhere
    // (logs, tests) it is one plain line per row.
    let tty = stderr.is_terminal();
    let _ = std::io::stdout().flush();
    for (i, row) in rows.iter().enumerate() {
        // The progress line, from this (only) thread, between rows.
        let line = format!(
            "[{}/{}] {} ({:.1} s so far)",
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
    if tty {
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
    }
    print!("{}", report::table(&outcomes));
    println!(
        "{} row(s) in {:.1} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    let mut ok = outcomes.iter().all(|o| o.result.is_ok());
    if let Some(path) = &args.json {
        let text = report::json(&machine, &cfg, &outcomes);
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
