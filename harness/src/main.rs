//! The `polycephaly` command.
//!
//! - `polycephaly demo`: the seed's example on four drones, maps over
//!   large arrays, and an account of what the pool did.
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).

mod cli;

fn main() -> std::process::ExitCode {
    // First: the drones are this program started again, and in a drone
    // `serve` runs tasks and never returns.
    polycephaly::pool::serve(&polycephaly_harness::tasks::TASKS);
    cli::main()
}
