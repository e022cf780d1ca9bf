//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the plain
//! test that replays their stored corpus (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes and must return normally whatever
//! they are: a panic, a hang or a crash is a bug in the library.

mod mpsc_consume;
mod region_open;
mod spsc_consume;

pub use mpsc_consume::mpsc_consume;
pub use region_open::region_open;
pub use spsc_consume::spsc_consume;

/// A fuzz entry point.
pub type Entry = fn(&[u8]);

/// The fuzz targets by name, as the corpus folders under `fuzz/corpus/` are
/// named.
pub const TARGETS: &[(&str, Entry)] = &[
    ("region_open", region_open),
    ("spsc_consume", spsc_consume),
    ("mpsc_consume", mpsc_consume),
];
