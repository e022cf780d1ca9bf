//! Creating a region: the builder, segment names, the layout plan.

use std::hash::{BuildHasher, Hasher};
use std::os::fd::OwnedFd;

use memmap2::{MmapOptions, MmapRaw};
use zerocopy::IntoBytes;

use super::error::CreateError;
use super::layout::{
    HEADER_LEN, HeaderFixed, INIT_READY, LAYOUT_VERSION, MAGIC, MAX_PEERS, MAX_SECTIONS,
    MAX_TOTAL_LEN, SECTION_ALIGN, SECTION_TABLE_OFFSET, SectionEntry, align_up, encode_kind,
};
use super::validate::{ValidLayout, ValidSection};
use super::{Region, SectionKind, SectionSpec, init_word, peers, slots_of};
use crate::sync::ProcessId;
use crate::sync::shim::Ordering;

/// The longest segment name accepted (`NAME_MAX` is 255; we keep a margin).
pub const MAX_NAME_LEN: usize = 200;
/// Random suffixes are this many hex digits.
const SUFFIX_LEN: usize = 16;

/// Checks a segment name: 1..=[`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`,
/// not `.` or `..`.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 200 bytes");
    }
    if name.contains('/') {
        return Err("contains '/'");
    }
    if name == "." || name == ".." {
        return Err("is '.' or '..'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("has a character outside [A-Za-z0-9._-]");
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Backing {
    Memfd,
    Named(String),
    NamedRandom(String),
}

/// Builds a new [`Region`]; see [`Region::builder`].
///
/// Nothing is checked or created until [`build`](Self::build), which reports
/// every bad request as a [`CreateError`].
#[derive(Debug, Clone)]
pub struct RegionBuilder {
    backing: Backing,
    keep: bool,
    sections: Vec<(SectionKind, usize)>,
    max_peers: u32,
    role: u32,
}

impl RegionBuilder {
    pub(super) fn new() -> Self {
        Self {
            backing: Backing::Memfd,
            keep: false,
            sections: Vec::new(),
            max_peers: MAX_PEERS,
            role: 0,
        }
    }

    /// Back the region with an anonymous memfd (the default). A child
    /// process gets it through [`Region::share_with`].
    pub fn memfd(mut self) -> Self {
        self.backing = Backing::Memfd;
        self
    }

    /// Back the region with `/dev/shm/NAME`, exactly this name (checked by
    /// [`build`](Self::build): 1 to 200 bytes of `[A-Za-z0-9._-]`).
    pub fn named(mut self, name: &str) -> Self {
        self.backing = Backing::Named(name.to_owned());
        self
    }

    /// Back the region with `/dev/shm/PREFIX` followed by 16 random hex
    /// digits, retried with a new suffix if taken.
    pub fn named_random(mut self, prefix: &str) -> Self {
        self.backing = Backing::NamedRandom(prefix.to_owned());
        self
    }

    /// Keep the named segment when the last handle drops (default: unlink
    /// it). No effect on a memfd.
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Adds the section a structure of a layer above needs (a ring's
    /// `Spec`, ...): its kind and exact length. It gets `SectionId(i)` for
    /// the i-th section added, as with [`section`](Self::section).
    pub fn with(self, spec: impl SectionSpec) -> Self {
        let (kind, len) = (spec.kind(), spec.section_len());
        self.section(kind, len)
    }

    /// Adds a section of `len` bytes; it gets `SectionId(i)` for the i-th
    /// call.
    pub fn section(mut self, kind: SectionKind, len: usize) -> Self {
        self.sections.push((kind, len));
        self
    }

    /// How many peer slots the table uses (1..=48, default 48).
    pub fn max_peers(mut self, n: u32) -> Self {
        self.max_peers = n;
        self
    }

    /// The creator's role in the peer table (default 0).
    pub fn role(mut self, role: u32) -> Self {
        self.role = role;
        self
    }

    /// Creates the region: the file, its size, the header; the creator's
    /// handle joins the peer table; `init_state` is release-stored last.
    ///
    /// # Errors
    /// [`CreateError::TooManySections`], [`CreateError::TooManyPeers`],
    /// [`CreateError::InvalidSize`] (a zero section length, zero peers, or a
    /// total that overflows or exceeds 1 TiB), [`CreateError::InvalidName`],
    /// [`CreateError::NameTaken`], [`CreateError::PermissionDenied`],
    /// [`CreateError::Io`] (memfd_create, ftruncate, mmap).
    pub fn build(self) -> Result<Region, CreateError> {
        if self.max_peers > MAX_PEERS {
            return Err(CreateError::TooManyPeers {
                requested: self.max_peers,
                max: MAX_PEERS,
            });
        }
        if self.max_peers == 0 {
            return Err(CreateError::InvalidSize {
                reason: "max_peers is 0",
            });
        }
        let page = rustix::param::page_size() as u64;
        let layout = plan(&self.sections, self.max_peers, page)?;
        let (fd, name) = match &self.backing {
            Backing::Memfd => (create_memfd()?, None),
            Backing::Named(name) => {
                check_name(name).map_err(|reason| CreateError::InvalidName {
                    name: name.clone(),
                    reason,
                })?;
                (create_named(name)?, Some(name.clone()))
            }
            Backing::NamedRandom(prefix) => {
                let (fd, name) = create_random(prefix)?;
                (fd, Some(name))
            }
        };
        // From here on, a failure must not leave the name behind.
        let mut guard = UnlinkGuard(name.clone());
        let map = size_and_map(&fd, &layout, name.is_none())?;
        write_header(&map, &layout);
        let me = ProcessId::current();
        let peer = peers::claim(slots_of(&map, layout.max_peers), me, self.role).ok_or(
            CreateError::InvalidSize {
                reason: "the peer table has no slot",
            },
        )?;
        // SAFETY: the mapping is page aligned, at least HEADER_LEN bytes
        // (plan), and outlives `init` (moved into the Region after).
        let init = unsafe { init_word(map.as_mut_ptr()) };
        // Release: the last write; pairs with the openers' Acquire load, so
        // an opener that sees READY sees the whole header.
        init.word().store(INIT_READY, Ordering::Release);
        init.wake_all();
        guard.0 = None;
        let unlink = name.is_some() && !self.keep;
        Ok(Region::from_parts(
            map, fd, name, unlink, layout, peer, me.pid,
        ))
    }
}

/// Unlinks a half-created named segment when creation fails.
struct UnlinkGuard(Option<String>);

impl Drop for UnlinkGuard {
    fn drop(&mut self) {
        if let Some(name) = &self.0 {
            let _ = rustix::shm::unlink(name.as_str());
        }
    }
}

/// Places the sections after the header, each 64-byte aligned, and rounds
/// the total up to `page`.
pub(crate) fn plan(
    sections: &[(SectionKind, usize)],
    max_peers: u32,
    page: u64,
) -> Result<ValidLayout, CreateError> {
    if sections.len() > MAX_SECTIONS {
        return Err(CreateError::TooManySections {
            requested: sections.len(),
            max: MAX_SECTIONS,
        });
    }
    let too_big = || CreateError::InvalidSize {
        reason: "the region would exceed 1 TiB",
    };
    let mut cursor = HEADER_LEN as u64;
    let mut placed = Vec::with_capacity(sections.len());
    for &(kind, len) in sections {
        if len == 0 {
            return Err(CreateError::InvalidSize {
                reason: "a section has length 0",
            });
        }
        let len64 = u64::try_from(len).map_err(|_| too_big())?;
        let offset = align_up(cursor, SECTION_ALIGN as u64).ok_or_else(too_big)?;
        let end = offset.checked_add(len64).ok_or_else(too_big)?;
        if end > MAX_TOTAL_LEN {
            return Err(too_big());
        }
        placed.push(ValidSection {
            kind,
            // Both below MAX_TOTAL_LEN, so they fit a usize on 64-bit targets.
            offset: usize::try_from(offset).map_err(|_| too_big())?,
            len,
        });
        cursor = end;
    }
    let total = align_up(cursor, page.max(1).next_power_of_two()).ok_or_else(too_big)?;
    if total > MAX_TOTAL_LEN {
        return Err(too_big());
    }
    Ok(ValidLayout {
        total_len: usize::try_from(total).map_err(|_| too_big())?,
        max_peers,
        sections: placed,
    })
}

fn create_memfd() -> Result<OwnedFd, CreateError> {
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(
        "polycephaly",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(std::io::Error::from)?;
    Ok(fd)
}

fn create_named(name: &str) -> Result<OwnedFd, CreateError> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    let path = format!("/dev/shm/{name}");
    // EXCL: never reuse an existing file; NOFOLLOW: never through a link
    // (with EXCL a planted link gives EEXIST anyway).
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(path.as_str(), flags, Mode::RUSR | Mode::WUSR).map_err(|e| match e {
        Errno::EXIST | Errno::LOOP => CreateError::NameTaken {
            name: name.to_owned(),
        },
        Errno::ACCESS | Errno::PERM => CreateError::PermissionDenied,
        e => CreateError::Io(e.into()),
    })
}

fn create_random(prefix: &str) -> Result<(OwnedFd, String), CreateError> {
    let mut last = None;
    for attempt in 0..8u32 {
        let name = format!("{prefix}{:016x}", random_suffix(attempt));
        debug_assert_eq!(name.len(), prefix.len() + SUFFIX_LEN);
        check_name(&name).map_err(|reason| CreateError::InvalidName {
            name: prefix.to_owned(),
            reason,
        })?;
        match create_named(&name) {
            Ok(fd) => return Ok((fd, name)),
            Err(e @ CreateError::NameTaken { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(CreateError::NameTaken {
        name: prefix.to_owned(),
    }))
}

/// 64 unpredictable bits without a rand dependency: std's `RandomState`
/// is keyed from the OS's random source once per process; the time, the
/// pid, a stack address and `attempt` make each call differ.
fn random_suffix(attempt: u32) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    h.write_i64(t.tv_sec);
    h.write_i64(t.tv_nsec);
    h.write_u32(
        rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs(),
    );
    h.write_usize(core::ptr::addr_of!(attempt) as usize);
    h.write_u32(attempt);
    h.finish()
}

/// Sizes the file, seals a memfd against resizing, and maps it.
fn size_and_map(fd: &OwnedFd, layout: &ValidLayout, memfd: bool) -> Result<MmapRaw, CreateError> {
    rustix::fs::ftruncate(fd, layout.total_len as u64).map_err(std::io::Error::from)?;
    if memfd {
        use rustix::fs::SealFlags;
        // Nothing grows at run time, and no peer can shrink the file under
        // a mapping (which would make accesses fault with SIGBUS).
        rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(std::io::Error::from)?;
    }
    Ok(MmapOptions::new().len(layout.total_len).map_raw(fd)?)
}

/// Writes the plain header fields and the section table into a fresh
/// (zero) mapping of `layout.total_len` bytes.
fn write_header(map: &MmapRaw, layout: &ValidLayout) {
    let me = ProcessId::current();
    let fixed = HeaderFixed {
        magic: MAGIC,
        version: LAYOUT_VERSION,
        header_len: HEADER_LEN as u32,
        total_len: layout.total_len as u64,
        creator_pid: me.pid,
        section_count: layout.sections.len() as u32,
        creator_start_time: me.start_time,
        max_peers: layout.max_peers,
        flags: 0,
        reserved: [0; 16],
    };
    let base = map.as_mut_ptr();
    let bytes = fixed.as_bytes();
    // SAFETY: the mapping has at least HEADER_LEN bytes; HeaderFixed (64
    // bytes) fits before INIT_OFFSET (const-asserted in layout.rs). No one
    // else writes these bytes: openers only read them after READY.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len()) };
    for (i, s) in layout.sections.iter().enumerate().take(MAX_SECTIONS) {
        let entry = SectionEntry {
            kind: encode_kind(s.kind),
            offset: s.offset as u64,
            len: s.len as u64,
            ..Default::default()
        };
        let bytes = entry.as_bytes();
        let at = SECTION_TABLE_OFFSET + i * size_of::<SectionEntry>();
        // SAFETY: i < MAX_SECTIONS, so the entry lies within the section
        // table, inside the header page (const-asserted in layout.rs).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(at), bytes.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("poly-1.a_b").is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        for bad in ["", ".", "..", "a/b", "/a", "sp ace", "nul\0", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn plan_aligns_sections_and_rounds_to_pages() {
        let l = plan(&[(SectionKind::Raw, 100), (SectionKind::Arena, 1)], 4, 4096).unwrap();
        assert_eq!(l.sections[0].offset, 4096);
        assert_eq!(l.sections[1].offset, 4096 + 128);
        assert_eq!(l.total_len, 8192);
        let empty = plan(&[], 1, 4096).unwrap();
        assert_eq!(empty.total_len, 4096);
    }

    #[test]
    fn plan_refuses_bad_sizes() {
        assert!(matches!(
            plan(&[(SectionKind::Raw, 0)], 1, 4096),
            Err(CreateError::InvalidSize { .. })
        ));
        assert!(matches!(
            plan(&[(SectionKind::Raw, usize::MAX)], 1, 4096),
            Err(CreateError::InvalidSize { .. })
        ));
        assert!(matches!(
            plan(&[(SectionKind::Raw, 1 << 40)], 1, 4096),
            Err(CreateError::InvalidSize { .. })
        ));
        let many = vec![(SectionKind::Raw, 1); MAX_SECTIONS + 1];
        assert!(matches!(
            plan(&many, 1, 4096),
            Err(CreateError::TooManySections { .. })
        ));
    }

    #[test]
    fn random_suffixes_differ() {
        assert_ne!(random_suffix(0), random_suffix(0));
    }
}
