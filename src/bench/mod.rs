//! Bench harness (to be written).
