//! Rings (to be written).
