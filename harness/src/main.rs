//! The `polycephaly` command.
//!
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).
//! - `polycephaly demo`: for now, the quick bench (the worker pool will
//!   replace it).
//! - `polycephaly soak [--seconds S] [--producers P] [--chaos]`: every
//!   primitive under load, checked (see `polycephaly_harness::soak`).

mod cli;

fn main() -> std::process::ExitCode {
    // First: in a drone of the soak's pool, this serves and never returns.
    polycephaly::pool::serve(&polycephaly_harness::soak::SOAK_TASKS);
    cli::main()
}
