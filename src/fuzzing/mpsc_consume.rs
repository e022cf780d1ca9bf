/// Consumes from arbitrary MPSC ring memory (to be written).
pub fn mpsc_consume(_data: &[u8]) {}
