//! The `polycephaly` command.
//!
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).
//! - `polycephaly demo`: for now, the quick bench (the worker pool will
//!   replace it).

mod cli;
mod progress;

fn main() -> std::process::ExitCode {
    // First: the pool rows' drones are this command started again, and
    // `serve` is what turns them into drones (it never returns in one).
    polycephaly::pool::serve(&polycephaly_harness::pool::TASKS);
    cli::main()
}
