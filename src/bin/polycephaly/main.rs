//! The polycephaly command.
fn main() {}
