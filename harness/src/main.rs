//! The `polycephaly` command.
//!
//! - `polycephaly demo`: the seed's example on four drones, maps over
//!   large arrays, and an account of what the pool did.
//! - `polycephaly fractal [--size WxH] ...`: a Mandelbrot image rendered by
//!   the drones, compared with one process and with Unix sockets.
//! - `polycephaly assess PATH [--out report.json|report.csv]`: per-file
//!   metrics of a source tree computed by the drones, and a summary.
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).
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
    // The fractal's socket workers (for its comparison) are this program
    // too; elsewhere this returns at once.
    polycephaly_harness::fractal::sockets::serve_worker();
    cli::main()
}
