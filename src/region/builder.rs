//! Creating a region: the builder, segment names, the layout plan.
//!
//! A named region has one of two forms, chosen here:
//! - the socket form (the default): an anonymous memfd, sealed against
//!   resizing, that the creator hands out over an abstract Unix socket named
//!   after the region (see `socket.rs`). No file exists at any point, so
//!   nothing is left behind by a creator killed with SIGKILL, and nothing
//!   can truncate what openers map.
//! - the file form ([`RegionBuilder::shm_file`], or [`RegionBuilder::keep`]):
//!   a file under `/dev/shm`. It outlives its processes (if kept), and it
//!   can be truncated by any process of its user, which makes every peer's
//!   next access to the lost pages fault (SIGBUS; see
//!   [`install_sigbus_handler`](super::install_sigbus_handler)).

use std::hash::{BuildHasher, Hasher};
use std::os::fd::OwnedFd;

use memmap2::{MmapOptions, MmapRaw};
use zerocopy::IntoBytes;

use super::error::CreateError;
use super::layout::{
    HEADER_LEN, HeaderFixed, INIT_READY, LAYOUT_VERSION, MAGIC, MAX_PEERS, MAX_SECTIONS,
    MAX_TOTAL_LEN, SECTION_ALIGN, SECTION_TABLE_OFFSET, SectionEntry, align_up, encode_kind,
};
use super::socket::{Admission, MAX_SOCKET_NAME_LEN, Server};
use super::validate::{ValidLayout, ValidSection};
use super::{Backing, Region, SectionKind, SectionSpec, init_word, peers, slots_of};
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
enum Naming {
    Anonymous,
    Named(String),
    NamedRandom(String),
}

/// Builds a new [`Region`]; see [`Region::builder`].
///
/// Nothing is checked or created until [`build`](Self::build), which reports
/// every bad request as a [`CreateError`].
///
/// A named region is served over an abstract Unix socket by default (see
/// [`named`](Self::named)); [`shm_file`](Self::shm_file) selects a file
/// under `/dev/shm` instead.
///
/// ```
/// use polycephaly::region::{Backing, Region, SectionKind};
///
/// let name = format!("doc-builder-{}", std::process::id());
/// let region = Region::builder()
///     .named(&name)
///     .section(SectionKind::Raw, 4096)
///     .build()?;
/// assert_eq!(region.backing(), Backing::Socket);
/// assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
/// let peer = Region::open(&name)?; // what an unrelated process does
/// assert_eq!(peer.backing(), Backing::Socket);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegionBuilder {
    naming: Naming,
    keep: bool,
    shm_file: bool,
    group: Option<u32>,
    sections: Vec<(SectionKind, usize)>,
    max_peers: u32,
    role: u32,
}

impl RegionBuilder {
    pub(super) fn new() -> Self {
        Self {
            naming: Naming::Anonymous,
            keep: false,
            shm_file: false,
            group: None,
            sections: Vec::new(),
            max_peers: MAX_PEERS,
            role: 0,
        }
    }

    /// Back the region with an anonymous memfd and no name (the default). A
    /// child process gets it through [`Region::share_with`].
    pub fn memfd(mut self) -> Self {
        self.naming = Naming::Anonymous;
        self
    }

    /// Name the region `NAME` (checked by [`build`](Self::build): 1 to 200
    /// bytes of `[A-Za-z0-9._-]`, at most
    /// [`MAX_SOCKET_NAME_LEN`](super::MAX_SOCKET_NAME_LEN) = 95 for the socket
    /// form), so that unrelated processes open it with [`Region::open`].
    ///
    /// By default the region is a sealed memfd that this handle serves over
    /// the abstract Unix socket `@polycephaly:NAME`, to processes of the same
    /// user (and of the [`group`](Self::group), if set): a small thread
    /// accepts there until the last clone of this handle drops. Nothing is
    /// created under `/dev/shm`, nothing is left behind if this process is
    /// killed, and nothing can truncate the memory. Openers keep their
    /// mapping when the creator goes; new openers then find no region of
    /// that name, until a surviving peer takes the name over with
    /// [`Region::serve_name`].
    ///
    /// With [`shm_file`](Self::shm_file) (or [`keep`](Self::keep)) the region
    /// is the file `/dev/shm/NAME` instead.
    pub fn named(mut self, name: &str) -> Self {
        self.naming = Naming::Named(name.to_owned());
        self
    }

    /// As [`named`](Self::named), with the name `PREFIX` followed by 16
    /// random hex digits, retried with a new suffix if taken.
    pub fn named_random(mut self, prefix: &str) -> Self {
        self.naming = Naming::NamedRandom(prefix.to_owned());
        self
    }

    /// Keep the named region when the last handle drops (default: remove
    /// it). Only a file can outlive every process, so `keep(true)` gives a
    /// named region the `/dev/shm` form, with its risk (see
    /// [`shm_file`](Self::shm_file)). No effect on an anonymous memfd.
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Give a named region the `/dev/shm` form: the file `/dev/shm/NAME`
    /// (mode 0600, or 0660 with a [`group`](Self::group)), created with
    /// `O_EXCL`, removed when the last handle drops unless
    /// [`keep`](Self::keep) is set.
    ///
    /// For those who need a file: peers that cannot reach the creator's
    /// socket (another network namespace), a region that outlives its
    /// creator, tools that read the file. The risk: any process of the user
    /// can truncate the file (a file cannot be sealed), and every process
    /// that maps it then dies of SIGBUS at its next access to the lost pages.
    /// Openers check the file's length against the header before they use
    /// it; [`install_sigbus_handler`](super::install_sigbus_handler) turns a
    /// later truncation into a one-line report naming the region. A file
    /// left by a process killed with SIGKILL stays until someone removes it.
    ///
    /// ```
    /// use polycephaly::region::{Backing, Region};
    ///
    /// let name = format!("doc-shm-file-{}", std::process::id());
    /// let region = Region::builder().named(&name).shm_file(true).build()?;
    /// assert_eq!(region.backing(), Backing::ShmFile);
    /// assert!(std::path::Path::new("/dev/shm").join(&name).exists());
    /// drop(region);
    /// assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shm_file(mut self, yes: bool) -> Self {
        self.shm_file = yes;
        self
    }

    /// Share a named region with the members of group `gid` as well, for a
    /// deliberate multi-user set-up: the socket form admits a client whose
    /// effective or supplementary groups (as the kernel reports them,
    /// `SO_PEERCRED` and `SO_PEERGROUPS`) include `gid`; the file form gets
    /// mode 0660 and group `gid` (the user must be a member of it, unless
    /// root). Openers of another user open it with
    /// [`Region::open_owned_by`], naming this user's uid. No effect on an
    /// anonymous memfd.
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
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
    /// A named region in the socket form is served from the moment it is
    /// ready (the name appears last).
    ///
    /// # Errors
    /// [`CreateError::TooManySections`], [`CreateError::TooManyPeers`],
    /// [`CreateError::InvalidSize`] (a zero section length, zero peers, or a
    /// total that overflows or exceeds 1 TiB), [`CreateError::InvalidName`]
    /// (including a name longer than 95 bytes in the socket form),
    /// [`CreateError::NameTaken`] (a live process serves the name, or
    /// `/dev/shm/NAME` exists: both forms check both),
    /// [`CreateError::PermissionDenied`] (including a [`group`](Self::group)
    /// the user may not give), [`CreateError::Io`] (memfd_create, ftruncate,
    /// mmap, the socket, the server thread).
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
        let file_form = self.shm_file || self.keep;
        match (&self.naming, file_form) {
            (Naming::Anonymous, _) => self.build_memfd(layout, None),
            (Naming::Named(name), false) => {
                check_socket_name(name)?;
                if shm_file_exists(name) {
                    return Err(CreateError::NameTaken { name: name.clone() });
                }
                self.build_memfd(layout, Some(name.clone()))
            }
            (Naming::NamedRandom(prefix), false) => {
                // The region first, then names tried until one binds.
                let mut last = None;
                for attempt in 0..8u32 {
                    let name = random_name(prefix, attempt)?;
                    check_socket_name(&name)?;
                    if shm_file_exists(&name) {
                        last = Some(CreateError::NameTaken { name });
                        continue;
                    }
                    match self.build_memfd(layout.clone(), Some(name)) {
                        Err(e @ CreateError::NameTaken { .. }) => last = Some(e),
                        other => return other,
                    }
                }
                Err(last.unwrap_or(CreateError::NameTaken {
                    name: prefix.clone(),
                }))
            }
            (Naming::Named(name), true) => {
                check_name(name).map_err(|reason| CreateError::InvalidName {
                    name: name.clone(),
                    reason,
                })?;
                let fd = create_named(name, self.group)?;
                self.build_file(layout, fd, name.clone())
            }
            (Naming::NamedRandom(prefix), true) => {
                let (fd, name) = create_random(prefix, self.group)?;
                self.build_file(layout, fd, name)
            }
        }
    }

    /// A memfd region; served under `name` if there is one.
    fn build_memfd(
        &self,
        layout: ValidLayout,
        name: Option<String>,
    ) -> Result<Region, CreateError> {
        let fd = create_memfd()?;
        let map = size_and_map(&fd, &layout, true)?;
        let (peer, pid) = self.initialize(&map, &layout)?;
        let (backing, server) = match &name {
            None => (Backing::Memfd, None),
            Some(name) => {
                let admission = Admission {
                    uid: rustix::process::geteuid().as_raw(),
                    gid: self.group,
                };
                // The region is ready: the name appears last. NameTaken if
                // another process holds it; the region is dropped then.
                (Backing::Socket, Some(Server::start(name, &fd, admission)?))
            }
        };
        Ok(Region::from_parts(super::Parts {
            map,
            fd,
            name,
            backing,
            unlink_on_drop: false,
            server,
            layout,
            peer,
            pid,
        }))
    }

    /// A region in the file `/dev/shm/NAME`, just created (empty) as `fd`.
    fn build_file(
        &self,
        layout: ValidLayout,
        fd: OwnedFd,
        name: String,
    ) -> Result<Region, CreateError> {
        // From here on, a failure must not leave the name behind.
        let mut guard = UnlinkGuard(Some(name.clone()));
        let map = size_and_map(&fd, &layout, false)?;
        let (peer, pid) = self.initialize(&map, &layout)?;
        guard.0 = None;
        Ok(Region::from_parts(super::Parts {
            map,
            fd,
            name: Some(name),
            backing: Backing::ShmFile,
            unlink_on_drop: !self.keep,
            server: None,
            layout,
            peer,
            pid,
        }))
    }

    /// Writes the header, claims the creator's slot and marks the region
    /// ready. Returns the slot and our pid.
    fn initialize(
        &self,
        map: &MmapRaw,
        layout: &ValidLayout,
    ) -> Result<(super::PeerId, u32), CreateError> {
        write_header(map, layout);
        let me = ProcessId::current();
        let peer = peers::claim(slots_of(map, layout.max_peers), me, self.role).ok_or(
            CreateError::InvalidSize {
                reason: "the peer table has no slot",
            },
        )?;
        // SAFETY: the mapping is page aligned, at least HEADER_LEN bytes
        // (plan), and outlives `init` (it is borrowed for this call).
        let init = unsafe { init_word(map.as_mut_ptr()) };
        // Release: the last write; pairs with the openers' Acquire load, so
        // an opener that sees READY sees the whole header.
        init.word().store(INIT_READY, Ordering::Release);
        init.wake_all();
        Ok((peer, me.pid))
    }
}

/// Checks a name for the socket form: a valid name that fits an abstract
/// socket address.
fn check_socket_name(name: &str) -> Result<(), CreateError> {
    check_name(name).map_err(|reason| CreateError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    if name.len() > MAX_SOCKET_NAME_LEN {
        return Err(CreateError::InvalidName {
            name: name.to_owned(),
            reason: "longer than 95 bytes, the limit of a socket-served name (the /dev/shm \
                     form, RegionBuilder::shm_file, takes 200)",
        });
    }
    Ok(())
}

/// Whether anything (a file, a link...) is at `/dev/shm/NAME`.
fn shm_file_exists(name: &str) -> bool {
    let path = format!("/dev/shm/{name}");
    rustix::fs::statat(
        rustix::fs::CWD,
        path.as_str(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .is_ok()
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
        creator: ProcessId::current(),
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

/// Creates `/dev/shm/NAME` (empty), mode 0600, or 0660 with group `group`.
fn create_named(name: &str, group: Option<u32>) -> Result<OwnedFd, CreateError> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    // A live server of the socket form holds the name: `Region::open` would
    // find it first. (A check, not a lock: a server that binds between it
    // and our create is not seen.)
    if super::socket::in_use(name) {
        return Err(CreateError::NameTaken {
            name: name.to_owned(),
        });
    }
    let path = format!("/dev/shm/{name}");
    // EXCL: never reuse an existing file; NOFOLLOW: never through a link
    // (with EXCL a planted link gives EEXIST anyway).
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd =
        rustix::fs::open(path.as_str(), flags, Mode::RUSR | Mode::WUSR).map_err(|e| match e {
            Errno::EXIST | Errno::LOOP => CreateError::NameTaken {
                name: name.to_owned(),
            },
            Errno::ACCESS | Errno::PERM => CreateError::PermissionDenied,
            e => CreateError::Io(e.into()),
        })?;
    if let Some(gid) = group {
        let shared = (|| {
            let gid = rustix::fs::Gid::from_raw(gid);
            rustix::fs::fchown(&fd, None, Some(gid))?;
            // Exactly 0660, whatever the umask made of the mode.
            rustix::fs::fchmod(&fd, Mode::RUSR | Mode::WUSR | Mode::RGRP | Mode::WGRP)
        })();
        if let Err(e) = shared {
            let _ = rustix::shm::unlink(name);
            return Err(match e {
                Errno::ACCESS | Errno::PERM => CreateError::PermissionDenied,
                e => CreateError::Io(e.into()),
            });
        }
    }
    Ok(fd)
}

/// `PREFIX` and 16 random hex digits.
fn random_name(prefix: &str, attempt: u32) -> Result<String, CreateError> {
    let name = format!("{prefix}{:016x}", random_suffix(attempt));
    debug_assert_eq!(name.len(), prefix.len() + SUFFIX_LEN);
    check_name(&name).map_err(|reason| CreateError::InvalidName {
        name: prefix.to_owned(),
        reason,
    })?;
    Ok(name)
}

fn create_random(prefix: &str, group: Option<u32>) -> Result<(OwnedFd, String), CreateError> {
    let mut last = None;
    for attempt in 0..8u32 {
        let name = random_name(prefix, attempt)?;
        match create_named(&name, group) {
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
    let me = layout.creator;
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
