/// Consumes from arbitrary ring memory (to be written).
pub fn spsc_consume(_data: &[u8]) {}
