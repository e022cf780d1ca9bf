//! Cross-process event and mutex (to be written).
