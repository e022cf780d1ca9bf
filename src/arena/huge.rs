//! Transparent huge pages for lanes of 2 MiB or more: one TLB entry per
//! 2 MiB instead of 512, where the system offers them.
//!
//! Each process that attaches marks the page-aligned part of every big
//! lane's data with `madvise(MADV_HUGEPAGE)` (the advice belongs to a
//! process's mapping, so writers and readers each give it). For shared
//! memory (a memfd or /dev/shm) the kernel uses huge pages only if
//! `/sys/kernel/mm/transparent_hugepage/shmem_enabled` allows it (`always`,
//! `within_size`, `advise`, `force`), and only for 2 MiB-aligned stretches
//! of the file inside the advised range: a lane gets them for every whole
//! aligned 2 MiB it contains. Where the setting is `never` or `deny`, the
//! advice is skipped. Heap arenas (private memory) follow
//! `transparent_hugepage/enabled` likewise.

use core::ptr::NonNull;
use std::sync::OnceLock;

use super::layout::{ARENA_HEADER_LEN, Geometry};

/// A transparent huge page: 2 MiB on x86-64.
pub const HUGE_PAGE: u64 = 2 << 20;

/// The bracketed (selected) word of a sysfs THP setting.
fn selected(text: &str) -> Option<&str> {
    let open = text.find('[')?;
    let close = open + text.get(open..)?.find(']')?;
    text.get(open + 1..close)
}

/// Whether the setting file at `path` allows huge pages on `madvise`.
/// A per-size setting of `inherit` defers to `parent`.
fn allowed(path: &str, parent: &str) -> bool {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mut word = read(path).and_then(|t| selected(&t).map(str::to_owned));
    if word.as_deref() == Some("inherit") {
        word = read(parent).and_then(|t| selected(&t).map(str::to_owned));
    }
    matches!(
        word.as_deref(),
        Some("always" | "within_size" | "advise" | "madvise" | "force")
    )
}

/// Whether this system backs shared memory with transparent huge pages
/// when asked (`shmem_enabled`, or its 2 MiB per-size setting).
pub fn shared_huge_pages() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let base = "/sys/kernel/mm/transparent_hugepage";
        allowed(
            &format!("{base}/hugepages-2048kB/shmem_enabled"),
            &format!("{base}/shmem_enabled"),
        ) || allowed(&format!("{base}/shmem_enabled"), "")
    })
}

/// Whether this system backs private memory with transparent huge pages
/// when asked (`transparent_hugepage/enabled`).
pub fn private_huge_pages() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| allowed("/sys/kernel/mm/transparent_hugepage/enabled", ""))
}

/// Advises huge pages on the data of every lane of at least [`HUGE_PAGE`]
/// bytes of the arena of `geom` at `base`, if the system offers them for
/// this kind of memory (`shared`: a region; else the heap). Returns
/// whether any advice was taken.
///
/// # Safety
/// `base` is the first byte of `geom.total` bytes of one live mapping or
/// allocation.
pub(crate) unsafe fn advise(base: NonNull<u8>, geom: &Geometry, shared: bool) -> bool {
    let on = if shared {
        shared_huge_pages()
    } else {
        private_huge_pages()
    };
    if !on || geom.lane_len < HUGE_PAGE {
        return false;
    }
    let mut any = false;
    for l in 0..u64::from(geom.lanes) {
        let off = ARENA_HEADER_LEN as u64 + l * geom.stride + geom.data_off;
        let start = base.as_ptr() as usize + off as usize;
        let first = start.next_multiple_of(4096);
        let end = (start + geom.lane_len as usize) & !4095;
        if end <= first {
            continue;
        }
        // SAFETY: `first..end` lies inside lane `l`'s data, inside the
        // caller's mapping; MADV_HUGEPAGE changes how the kernel backs the
        // range, never its contents.
        let rc =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
        any |= rc == 0;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::selected;

    #[test]
    fn the_bracketed_word_is_the_setting() {
        assert_eq!(
            selected("always within_size advise [never] deny force"),
            Some("never")
        );
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("garbage"), None);
        assert_eq!(selected("]["), None);
    }
}
