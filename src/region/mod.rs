//! One shared mapping: create, open and validate, header, sections, peers.
//!
//! A [`Region`] is a file mapped `MAP_SHARED` by every process that uses it:
//! an anonymous memfd (the default: inherited by child processes, gone with
//! the last process holding it) or a named segment under `/dev/shm` for
//! unrelated processes. It starts with a 4096-byte header page (layout in
//! [`layout`]) followed by the sections asked for at creation, each 64-byte
//! aligned and zero-filled. Nothing grows at run time.
//!
//! Opening validates everything (magic, version, sizes, the section table)
//! before anything is used, and each failure is an [`OpenError`] variant.
//! Each handle made by [`RegionBuilder::build`], [`Region::open`] or
//! [`Region::from_fd`] holds a slot of the peer table until its last clone
//! drops, so peers can tell whether each other is alive.
//!
//! A handle belongs to the process that made it: its peer slot names that
//! process. A child made by `fork` inherits copies of its parent's handles,
//! and they stay inert there: [`Region::section`] refuses them
//! ([`SectionError::ForeignHandle`]), so no ring role or lock is claimed
//! under the parent's peer id, and dropping them releases no slot and
//! unlinks nothing ([`Region::opened_by_current_process`] tells them apart).
//! A child process gets a handle of its own in one of three ways:
//! - [`Region::reopen`] on the copy it inherited (a forked child);
//! - [`Region::inherited`] in a child its parent started after
//!   [`Region::share_with`] (the descriptor survives `exec`: the pool's
//!   drones);
//! - [`Region::open`] by name, for a named segment.
//!
//! Liveness: [`Region::peer_alive`] keeps a pidfd per peer slot (verified
//! against the peer's start time when opened), so a check is one `poll`;
//! `/proc` where pidfds are refused.
//!
//! Limits of the trust model: a memfd is sealed against growing and
//! shrinking, but a named segment is a plain tmpfs file; a peer of the same
//! user that truncates it makes our accesses past the new end fault
//! (SIGBUS). Use a memfd when peers are not trusted that far:
//! [`Region::from_fd`] accepts only a file sealed against shrinking, so
//! that protection does not depend on whoever sent the descriptor.
//!
//! ```
//! use polycephaly::region::{Region, SectionKind};
//!
//! let region = Region::builder()
//!     .section(SectionKind::Raw, 1000)
//!     .section(SectionKind::User(7), 64)
//!     .build()?;
//! let raw = region.sections()[0];
//! assert_eq!(raw.len, 1000);
//! assert_eq!(raw.ptr.as_ptr() as usize % 64, 0);
//! // A child process started after `region.share_with(&mut command)`
//! // calls `Region::inherited` to get a handle of its own.
//! assert!(region.peer_alive(region.peer_id()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod error;
mod handoff;
pub mod layout;
mod peer_id;
mod peers;
mod validate;

use crate::sync::clock::Instant;
use core::ptr::NonNull;
use core::time::Duration;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

pub use builder::RegionBuilder;
pub use error::{CreateError, OpenError, SectionError};
pub use handoff::REGION_FD_VAR;
use layout::{HEADER_LEN, INIT_OFFSET, INIT_READY, PEER_TABLE_OFFSET, PLAIN_LEN, PeerSlot};
pub use peers::{PeerId, PeerInfo};
use validate::ValidLayout;

use crate::sync::Futex;
use crate::sync::shim::Ordering;

/// The index of a section in the section table, in the order the sections
/// were added to the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SectionId(pub u16);

/// What a section holds: a tag for the layers above; the region does not
/// interpret it. Stored as a `u32` in the table; an unknown value makes
/// opening fail with [`OpenError::UnknownSectionKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SectionKind {
    /// Plain bytes.
    Raw,
    /// A single-producer single-consumer ring.
    SpscRing,
    /// A multi-producer single-consumer ring.
    MpscRing,
    /// A bulk arena.
    Arena,
    /// An event / doorbell word.
    Event,
    /// A lock.
    Mutex,
    /// Anything else, tagged by the user.
    User(u16),
}

/// What a structure of a layer above (a ring, an arena, a lock) needs from
/// the section it lives in: its kind and its exact length. Hand one to
/// [`RegionBuilder::with`] instead of computing lengths by hand.
pub trait SectionSpec {
    /// The section's kind.
    fn kind(&self) -> SectionKind;
    /// The section's length in bytes.
    fn section_len(&self) -> usize;
}

/// One section of a mapped region.
///
/// `ptr` is valid for reads and writes of `len` bytes while any clone of the
/// [`Region`] it came from lives; it is 64-byte aligned, and the bytes were
/// zero at creation. Other processes may write them at any time: use
/// atomics or a protocol of the layers above to share them.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// Its index in the table.
    pub id: SectionId,
    /// Its kind.
    pub kind: SectionKind,
    /// Its first byte.
    pub ptr: NonNull<u8>,
    /// Its length in bytes.
    pub len: usize,
}

/// Options for opening an existing region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long to wait for the creator to finish initializing (the file is
    /// empty or `init_state` is not ready yet) before
    /// [`OpenError::NotInitialized`].
    pub init_timeout: Duration,
    /// The role to record in this handle's peer slot.
    pub role: u32,
}

impl Default for OpenOptions {
    /// One second, role 0.
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(1),
            role: 0,
        }
    }
}

/// A mapped region. Cloning shares the mapping and the peer slot (an `Arc`
/// inside); the slot is released, and a named segment created without
/// [`RegionBuilder::keep`] is unlinked, when the last clone drops in the
/// process that opened the handle. A copy that a child made by `fork`
/// inherited is inert (see the [module docs](self) and
/// [`Region::opened_by_current_process`]).
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

struct Inner {
    map: MmapRaw,
    fd: OwnedFd,
    name: Option<String>,
    unlink_on_drop: bool,
    layout: ValidLayout,
    peer: PeerId,
    /// The pid of the process that opened the handle, the one recorded in
    /// its peer slot. A copy inherited through `fork` keeps it, and is
    /// told apart by comparing it with the caller's pid.
    pid: u32,
    /// A pidfd per peer slot, for [`Region::peer_alive`].
    liveness: peers::Liveness,
}

impl Inner {
    fn slots(&self) -> &[PeerSlot] {
        slots_of(&self.map, self.layout.max_peers)
    }

    /// Whether the calling process opened this handle (one `getpid`).
    fn opened_here(&self) -> bool {
        crate::sync::process::current_pid() == self.pid
    }
}

/// The first `max_peers` slots of the peer table of `map` (none if the
/// mapping is shorter than the header or `max_peers` exceeds the table).
fn slots_of(map: &MmapRaw, max_peers: u32) -> &[PeerSlot] {
    if map.len() < HEADER_LEN || max_peers > layout::MAX_PEERS {
        return &[];
    }
    // SAFETY: the mapping is at least HEADER_LEN bytes (checked above) and
    // page aligned, so PEER_TABLE_OFFSET (a multiple of 64) is aligned for
    // PeerSlot, and `max_peers` (<= MAX_PEERS, checked above) slots fit in
    // the header (const-asserted in layout.rs). PeerSlot holds only atomics
    // and bytes, valid for any bits, and is only accessed through shared
    // references; the slice borrows `map`, so it cannot outlive the mapping.
    unsafe {
        core::slice::from_raw_parts(
            map.as_mut_ptr().add(PEER_TABLE_OFFSET).cast::<PeerSlot>(),
            max_peers as usize,
        )
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A copy inherited through fork: the slot and the name belong to the
        // opener, which still runs. Unmapping and closing our copies of the
        // mapping and the descriptor (below, by the fields' drops) touch
        // only this process.
        if !self.opened_here() {
            return;
        }
        peers::release(self.slots(), self.peer, self.pid);
        if self.unlink_on_drop
            && let Some(name) = &self.name
        {
            // Nothing to do on failure: somebody else unlinked it already.
            let _ = rustix::shm::unlink(name.as_str());
        }
    }
}

impl core::fmt::Debug for Region {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.inner.name)
            .field("len", &self.len())
            .field("peer_id", &self.inner.peer)
            .field("sections", &self.inner.layout.sections.len())
            .finish_non_exhaustive()
    }
}

// Handles are shared between threads (the rings keep a clone).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Region>();
};

/// The init word of a mapping of at least `HEADER_LEN` bytes at `base`.
///
/// # Safety
/// `base` is page aligned and valid for `HEADER_LEN` bytes for `'a`.
unsafe fn init_word<'a>(base: *mut u8) -> &'a Futex {
    // SAFETY: INIT_OFFSET + 4 <= HEADER_LEN and INIT_OFFSET is 64-aligned
    // (const-asserted); a Futex is a transparent AtomicU32, valid for any bits.
    unsafe { &*base.add(INIT_OFFSET).cast::<Futex>() }
}

impl Region {
    /// A builder for a new region (a memfd by default).
    pub fn builder() -> RegionBuilder {
        RegionBuilder::new()
    }

    /// Opens the named segment `/dev/shm/NAME` with default options.
    ///
    /// # Errors
    /// See [`Region::open_with`].
    pub fn open(name: &str) -> Result<Region, OpenError> {
        Self::open_with(name, &OpenOptions::default())
    }

    /// Opens the named segment `/dev/shm/NAME` (never following a symbolic
    /// link), waits up to `opts.init_timeout` for its creator to finish,
    /// validates it and joins its peer table.
    ///
    /// # Errors
    /// [`OpenError::InvalidName`], [`OpenError::NotFound`],
    /// [`OpenError::PermissionDenied`], [`OpenError::Symlink`], then any
    /// error of [`Region::from_fd`].
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Region, OpenError> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        builder::check_name(name).map_err(|reason| OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        let path = format!("/dev/shm/{name}");
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path.as_str(), flags, Mode::empty()).map_err(|e| match e {
            Errno::NOENT => OpenError::NotFound {
                name: name.to_owned(),
            },
            Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied,
            Errno::LOOP => OpenError::Symlink {
                name: name.to_owned(),
            },
            e => OpenError::Io(e.into()),
        })?;
        // A /dev/shm file cannot carry seals: see the module docs.
        attach(fd, Some(name.to_owned()), opts, Seals::NotRequired)
    }

    /// Opens the region behind `fd` (e.g. a memfd inherited from the parent,
    /// see [`Region::share_with`]), validates it and joins its peer table.
    ///
    /// The file must be sealed against shrinking (`F_SEAL_SHRINK`), as the
    /// memfds of [`RegionBuilder`] are: otherwise whoever else holds it
    /// could truncate it and make our accesses fault (SIGBUS), and that
    /// must not depend on the sender. A named segment, which cannot be
    /// sealed, is opened with [`Region::open`] instead.
    ///
    /// # Errors
    /// [`OpenError::NotARegularFile`], [`OpenError::NotOwner`],
    /// [`OpenError::NotSealed`] (a file not sealed against shrinking),
    /// [`OpenError::NotInitialized`] (empty file or init state not ready in
    /// time), every validation error (see [`OpenError`]),
    /// [`OpenError::PeerTableFull`], [`OpenError::Io`].
    pub fn from_fd(fd: OwnedFd, opts: &OpenOptions) -> Result<Region, OpenError> {
        attach(fd, None, opts, Seals::Required)
    }

    /// A duplicate of the region's descriptor (with `FD_CLOEXEC`), to hand
    /// to another process your own way (over a Unix socket with
    /// `SCM_RIGHTS`, say), which passes it to [`Region::from_fd`]. To hand a
    /// region to a child you start, [`Region::share_with`] does it all.
    ///
    /// # Errors
    /// The duplication failed (too many open files).
    pub fn duplicate_fd(&self) -> std::io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&self.inner.fd, 0)?)
    }

    /// The segment's name under `/dev/shm`, `None` for a memfd.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The mapping's total length, header included.
    pub fn len(&self) -> usize {
        self.inner.layout.total_len
    }

    /// Always false: a region has at least its header page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The section `id`.
    ///
    /// # Errors
    /// [`SectionError::ForeignHandle`] when the calling process is not the
    /// one that opened this handle (a copy inherited through `fork`);
    /// [`SectionError::NoSuchSection`] when the region has fewer sections.
    pub fn section(&self, id: SectionId) -> Result<Section, SectionError> {
        self.check_opened_here()?;
        let count = self.inner.layout.sections.len() as u16;
        self.inner
            .layout
            .sections
            .get(usize::from(id.0))
            .map(|s| self.make_section(id, s))
            .ok_or(SectionError::NoSuchSection { id, count })
    }

    /// Every section, in table order; none for a handle the calling process
    /// did not open (see [`Region::section`]).
    pub fn sections(&self) -> Vec<Section> {
        if !self.inner.opened_here() {
            return Vec::new();
        }
        (0u16..)
            .zip(&self.inner.layout.sections)
            .map(|(i, s)| self.make_section(SectionId(i), s))
            .collect()
    }

    fn make_section(&self, id: SectionId, s: &validate::ValidSection) -> Section {
        // SAFETY: validation (or creation) put offset + len within the
        // mapping's length.
        let ptr = unsafe { self.inner.map.as_mut_ptr().add(s.offset) };
        Section {
            id,
            kind: s.kind,
            // A mapping is never at address 0 and the offset stays inside it.
            ptr: NonNull::new(ptr).unwrap_or(NonNull::dangling()),
            len: s.len,
        }
    }

    /// This handle's id in the peer table (for a copy inherited through
    /// `fork`, the id of the process that opened it).
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer
    }

    /// Whether `id` still holds its slot and its process is alive (its pid
    /// exists with the start time it registered, and one of its threads has
    /// not exited: see [`ProcessId::is_alive`](crate::sync::ProcessId::is_alive)).
    ///
    /// The handle keeps a pidfd per peer slot
    /// ([`ProcessWatch`](crate::sync::ProcessWatch)): the first check of a
    /// peer opens it and reads `/proc` once to verify the start time; later
    /// checks poll it (about 0.15 us, against about 3 us for a read of
    /// `/proc`). When the slot changes hands, the old pidfd is closed at the
    /// next check. Where pidfds are refused, every check reads `/proc`.
    pub fn peer_alive(&self, id: PeerId) -> bool {
        peers::alive(self.inner.slots(), id, &self.inner.liveness)
    }

    /// Every held slot of the peer table.
    pub fn peers(&self) -> Vec<PeerInfo> {
        peers::list(self.inner.slots(), &self.inner.liveness)
    }

    /// Records a heartbeat (CLOCK_MONOTONIC ns) in this handle's slot. Does
    /// nothing for a handle the calling process did not open: the slot is
    /// another process's.
    pub fn heartbeat(&self) {
        if self.inner.opened_here() {
            peers::heartbeat(self.inner.slots(), self.inner.peer);
        }
    }

    /// Whether the calling process is the one that opened this handle.
    ///
    /// False only in a child made by `fork` that holds a copy of its
    /// parent's handle (directly, or inside anything that keeps a clone,
    /// like a ring or lock handle). Such a copy is inert: its sections are
    /// refused ([`SectionError::ForeignHandle`]), its heartbeat does
    /// nothing, and dropping it releases no peer slot and unlinks nothing.
    /// Reading the peer table ([`Region::peer_alive`], [`Region::peers`])
    /// and [`Region::duplicate_fd`] still work, and [`Region::reopen`]
    /// gives the child a handle of its own.
    ///
    /// Layers above that release shared state in their `Drop` (a ring role,
    /// a lock) call this first and release nothing when it is false: the
    /// state is the opener's, still in use while the opener runs, and
    /// recovered by its peers from its pid once it dies. It costs one
    /// `getpid` system call, cheap enough for a `Drop`.
    ///
    /// ```
    /// let region = polycephaly::region::Region::builder().build()?;
    /// assert!(region.opened_by_current_process());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn opened_by_current_process(&self) -> bool {
        self.inner.opened_here()
    }

    /// `Err(ForeignHandle)` unless the calling process opened this handle.
    fn check_opened_here(&self) -> Result<(), SectionError> {
        let caller = crate::sync::process::current_pid();
        if caller == self.inner.pid {
            Ok(())
        } else {
            Err(SectionError::ForeignHandle {
                opener: self.inner.pid,
                caller,
            })
        }
    }

    /// A new handle on the same region for the calling process, with a peer
    /// slot of its own: how a child made by `fork` gets a usable handle
    /// from the copy of its parent's that it inherited. It works from any
    /// process, even after a named segment was unlinked (it goes through
    /// this handle's descriptor, not the name), and never unlinks the
    /// segment itself.
    ///
    /// ```
    /// use polycephaly::region::{OpenOptions, Region};
    ///
    /// let region = Region::builder().build()?;
    /// // In a forked child, `region` would be an inert copy.
    /// let own = region.reopen(&OpenOptions::default())?;
    /// assert!(own.opened_by_current_process());
    /// assert_ne!(own.peer_id(), region.peer_id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Region::from_fd`] (a memfd) or [`Region::open`] (a named
    /// segment): the region is validated again, and
    /// [`OpenError::PeerTableFull`] when every slot holds a live process.
    pub fn reopen(&self, opts: &OpenOptions) -> Result<Region, OpenError> {
        let fd =
            rustix::io::fcntl_dupfd_cloexec(&self.inner.fd, 0).map_err(std::io::Error::from)?;
        // The same rule as the way this handle's file came in: a memfd is
        // sealed (built here, or checked by from_fd), a named file cannot be.
        let seals = if self.inner.name.is_some() {
            Seals::NotRequired
        } else {
            Seals::Required
        };
        attach(fd, self.inner.name.clone(), opts, seals)
    }

    /// The creator's side: wraps a mapping it initialized and a slot it
    /// claimed.
    fn from_parts(
        map: MmapRaw,
        fd: OwnedFd,
        name: Option<String>,
        unlink_on_drop: bool,
        layout: ValidLayout,
        peer: PeerId,
        pid: u32,
    ) -> Region {
        let liveness = peers::Liveness::new(layout.max_peers);
        Region {
            inner: Arc::new(Inner {
                map,
                fd,
                name,
                unlink_on_drop,
                layout,
                peer,
                pid,
                liveness,
            }),
        }
    }
}

/// Whether [`attach`] requires the file to be sealed against shrinking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seals {
    /// A descriptor handed to us: refused without `F_SEAL_SHRINK`.
    Required,
    /// A `/dev/shm` file opened by name, which cannot carry seals.
    NotRequired,
}

/// Refuses a file that is not sealed against shrinking: truncated under our
/// mapping, it would make our accesses fault (SIGBUS). Seals can be added
/// but never removed, so a seal seen once holds for the file's life.
fn check_sealed(fd: &OwnedFd) -> Result<(), OpenError> {
    use rustix::fs::SealFlags;
    let seals = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => seals,
        // Not a shmem file (memfd, tmpfs, hugetlbfs): it has no seals.
        Err(rustix::io::Errno::INVAL) => SealFlags::empty(),
        Err(e) => return Err(OpenError::Io(e.into())),
    };
    if seals.contains(SealFlags::SHRINK) {
        Ok(())
    } else {
        Err(OpenError::NotSealed {
            seals: seals.bits(),
        })
    }
}

/// The opener's side, for named segments and inherited descriptors alike.
fn attach(
    fd: OwnedFd,
    name: Option<String>,
    opts: &OpenOptions,
    seals: Seals,
) -> Result<Region, OpenError> {
    // `None`: a timeout too large to represent, i.e. no deadline.
    let deadline = Instant::now().checked_add(opts.init_timeout);
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);
    // The longest single pause: polls are sliced so a missed wake-up or an
    // unsignalled change (ftruncate) costs at most one slice.
    let slice = |cap: Duration| {
        deadline.map_or(cap, |d| {
            d.saturating_duration_since(Instant::now()).min(cap)
        })
    };
    // 1. The file: a regular file of ours, sealed against shrinking when it
    //    was handed to us, not empty (a creator between O_CREAT and
    //    ftruncate leaves it empty for a moment).
    let mut pause = Duration::from_micros(50);
    let mut seal_checked = seals == Seals::NotRequired;
    let file_len = loop {
        let st = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(OpenError::NotARegularFile);
        }
        let us = rustix::process::geteuid().as_raw();
        if st.st_uid != us {
            return Err(OpenError::NotOwner {
                owner: st.st_uid,
                us,
            });
        }
        if !seal_checked {
            // Before the mapping exists, so nothing of it is ever touched
            // unprotected.
            check_sealed(&fd)?;
            seal_checked = true;
        }
        let len = u64::try_from(st.st_size).unwrap_or(0);
        if len > 0 {
            break len;
        }
        if expired() {
            return Err(OpenError::NotInitialized);
        }
        // A bounded poll: the creator does not signal its ftruncate.
        std::thread::sleep(slice(pause));
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    validate::check_file_len(file_len)?;
    let map_len = usize::try_from(file_len).map_err(|_| OpenError::TooLarge {
        len: file_len,
        max: layout::MAX_TOTAL_LEN,
    })?;
    // Never more than the file: a mapping past its end faults on access.
    let map = MmapOptions::new().len(map_len).map_raw(&fd)?;
    let base = map.as_mut_ptr();
    // 2. Wait for the creator's release-store of READY.
    // SAFETY: the mapping is page aligned and at least HEADER_LEN bytes
    // (check_file_len), and outlives `init` (dropped at the end of scope or
    // moved into the Region, which keeps it).
    let init = unsafe { init_word(base) };
    loop {
        // Acquire: pairs with the creator's Release store of INIT_READY,
        // which it makes after writing the header.
        let state = init.word().load(Ordering::Acquire);
        if state == INIT_READY {
            break;
        }
        if expired() {
            // Say why, if the header is recognizably wrong.
            let plain = copy_plain(base);
            return Err(match validate::validate(&plain, file_len) {
                Err(e @ (OpenError::BadMagic | OpenError::VersionMismatch { .. }))
                    if plain[..8] != [0; 8] =>
                {
                    e
                }
                _ => OpenError::NotInitialized,
            });
        }
        init.wait(state, Some(slice(Duration::from_millis(10))));
    }
    // 3. Validate a private copy of the plain header.
    let plain = copy_plain(base);
    let layout = validate::validate(&plain, file_len)?;
    // 4. Join the peer table.
    let me = crate::sync::ProcessId::current();
    let peer = peers::claim(slots_of(&map, layout.max_peers), me, opts.role)
        .ok_or(OpenError::PeerTableFull)?;
    Ok(Region::from_parts(
        map, fd, name, false, layout, peer, me.pid,
    ))
}

/// A copy of the header's plain bytes: the fixed part and the section
/// table. The init line (written atomically) is left zero in the copy.
fn copy_plain(base: *const u8) -> [u8; PLAIN_LEN] {
    let mut plain = [0u8; PLAIN_LEN];
    let table = layout::SECTION_TABLE_OFFSET;
    // SAFETY: `base` is valid for HEADER_LEN >= PLAIN_LEN bytes (callers
    // map at least that much); `plain` is a local buffer. These bytes are
    // written only by the creator before READY; a hostile peer writing them
    // now can only make the copy wrong, and the copy is what gets validated.
    unsafe {
        core::ptr::copy_nonoverlapping(base, plain.as_mut_ptr(), size_of::<layout::HeaderFixed>());
        core::ptr::copy_nonoverlapping(
            base.add(table),
            plain.as_mut_ptr().add(table),
            PLAIN_LEN - table,
        );
    }
    const _: () = assert!(PLAIN_LEN <= HEADER_LEN);
    plain
}
