//! Fuzz entry: arbitrary bytes opened as a region file.

use core::time::Duration;
use std::io::Write;

use crate::region::{OpenOptions, Region};

/// Writes `data` to a fresh memfd, seals it against shrinking and opens it
/// with [`Region::from_fd`] (no
/// init wait), exactly as a peer would open a region handed to it. When the
/// bytes pass validation, every section's first and last byte is read and
/// written, and the peer table is listed, heart-beaten and queried.
///
/// It must return normally for any input: a panic, hang or fault is a bug.
pub fn region_open(data: &[u8]) {
    use rustix::fs::{MemfdFlags, SealFlags};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let Ok(fd) = rustix::fs::memfd_create("polycephaly-fuzz", flags) else {
        return;
    };
    let mut file = std::fs::File::from(fd);
    if file.write_all(data).is_err() {
        return;
    }
    // Sealed against shrinking, as `from_fd` requires (and as a region's
    // creator does): the bytes are what gets validated, not the seals.
    if rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK).is_err() {
        return;
    }
    let opts = OpenOptions {
        init_timeout: Duration::ZERO,
        role: 1,
    };
    let Ok(region) = Region::from_fd(file.into(), &opts) else {
        return;
    };
    for s in region.sections() {
        let last = s.len - 1;
        // SAFETY: a validated section is `len >= 1` bytes inside the
        // mapping, which `region` keeps alive; volatile because other
        // processes could share these bytes.
        unsafe {
            let first = s.ptr.as_ptr().read_volatile();
            s.ptr.as_ptr().write_volatile(first);
            let end = s.ptr.as_ptr().add(last);
            end.write_volatile(end.read_volatile());
        }
    }
    region.heartbeat();
    for p in region.peers() {
        let _ = region.peer_alive(p.id);
    }
    assert!(region.peer_alive(region.peer_id()), "our own slot is alive");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_inputs_return() {
        region_open(&[]);
        region_open(&[0; 100]);
        region_open(&[0xff; 5000]);
    }
}
