//! The `polycephaly` command.
//!
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).
//! - `polycephaly demo`: for now, the quick bench (the worker pool will
//!   replace it).
//! - `polycephaly inspect NAME [--watch]`: a read-only view of a region.
//! - `polycephaly clean [--dry-run]`: removes the `/dev/shm` files of
//!   regions whose processes are all dead.

mod clean;
mod cli;
mod inspect;
mod progress;

fn main() -> std::process::ExitCode {
    // First: the pool rows' drones are this command started again, and
    // `serve` is what turns them into drones (it never returns in one).
    polycephaly::pool::serve(&polycephaly_harness::pool::TASKS);
    cli::main()
}
