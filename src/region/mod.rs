//! One shared mapping (to be written).
