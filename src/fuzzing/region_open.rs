/// Opens arbitrary bytes as a region file (to be written).
pub fn region_open(_data: &[u8]) {}
