//! Criterion benches of the baselines (to be written).
fn main() {}
