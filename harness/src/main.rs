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

mod cli;

fn main() -> std::process::ExitCode {
    // First: the drones are this program started again, and in a drone
    // `serve` runs tasks and never returns.
    polycephaly::pool::serve(&polycephaly_harness::tasks::TASKS);
    // The fractal's socket workers (for its comparison) are this program
    // too; elsewhere this returns at once.
    polycephaly_harness::fractal::sockets::serve_worker();
    cli::main()
}
