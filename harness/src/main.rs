//! The `polycephaly` command.
//!
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).
//! - `polycephaly demo`: for now, the quick bench (the worker pool will
//!   replace it).
//! - `polycephaly soak [--seconds S] [--producers P] [--chaos]`: every
//!   primitive under load, checked (see `polycephaly_harness::soak`).
//! - `polycephaly inspect NAME [--watch]`: a read-only view of a region.
//! - `polycephaly clean [--dry-run]`: removes the `/dev/shm` files of
//!   regions whose processes are all dead.

mod clean;
mod cli;
mod inspect;
mod progress;

fn main() -> std::process::ExitCode {
    // First: the drones of the pool rows, the soak and the commands are
    // this command started again; `serve` turns them into drones (it never
    // returns in one).
    polycephaly::pool::serve(&polycephaly_harness::tasks::TASKS);
    cli::main()
}
