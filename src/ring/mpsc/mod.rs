//! MPSC ring: many producer processes, one consumer (to be written).
