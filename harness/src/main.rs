//! The `polycephaly` command.
//!
//! - `polycephaly bench [--quick] [--only PREFIX,...] [--json FILE] [--pin none|split|same]`:
//!   the measurements between two real processes, as a table (and JSON).
//! - `polycephaly demo`: for now, the quick bench (the worker pool will
//!   replace it).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
