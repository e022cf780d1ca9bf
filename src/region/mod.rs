//! One shared mapping: create, open and validate, header, sections, peers.
//!
//! A [`Region`] is a file mapped `MAP_SHARED` by every process that uses it,
//! in one of three forms ([`Backing`]):
//! - an anonymous memfd (the default: inherited by child processes, gone
//!   with the last process holding it);
//! - a named region for unrelated processes, in the socket form (the
//!   default for a name): a memfd that its creator hands out over an
//!   abstract Unix socket named after the region, to processes of its user;
//! - a named region in the file form: a file under `/dev/shm`
//!   ([`RegionBuilder::shm_file`]).
//!
//! It starts with a 4096-byte header page (layout in
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
//! - [`Region::open`] by name, for a named region.
//!
//! Limits of the trust model: a memfd is sealed against growing and
//! shrinking (the anonymous and the socket forms), but a `/dev/shm` file is
//! a plain tmpfs file; a peer of the same user that truncates it makes our
//! accesses past the new end fault (SIGBUS), which
//! [`install_sigbus_handler`] turns into a one-line report naming the region.
//! [`Region::from_fd`] accepts only a file sealed against shrinking, so that
//! protection does not depend on whoever sent the descriptor. A region of
//! another user is refused unless asked for ([`Region::open_owned_by`]).
//!
//! Liveness: [`Region::peer_alive`] keeps a pidfd per peer slot (verified
//! against the peer's start time when opened), so a check is one `poll`;
//! `/proc` where pidfds are refused.
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
mod observe;
mod open;
mod peer_id;
mod peers;
mod sigbus;
mod socket;
mod validate;

use core::ptr::NonNull;
use core::time::Duration;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use memmap2::MmapRaw;

pub use builder::RegionBuilder;
pub use error::{CreateError, OpenError, SectionError};
pub use handoff::REGION_FD_VAR;
use layout::{HEADER_LEN, INIT_OFFSET, PEER_TABLE_OFFSET, PeerSlot};
pub use observe::{ObserveError, Observer, SectionInfo};
pub use peers::{PeerId, PeerInfo};
pub use sigbus::install_sigbus_handler;
pub use socket::{MAX_SOCKET_NAME_LEN, SOCKET_NAME_PREFIX};
use validate::ValidLayout;

use crate::sync::{Futex, ProcessId};

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

/// What a region is backed by (see [`Region::backing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backing {
    /// An anonymous memfd, sealed, without a name: handed to child
    /// processes ([`Region::share_with`]) or over a socket of one's own
    /// ([`Region::from_fd`]).
    Memfd,
    /// A named region in the socket form: a sealed memfd, handed out over
    /// the abstract Unix socket `@polycephaly:NAME` by its creator (or by
    /// a peer that took the name over, [`Region::serve_name`]).
    Socket,
    /// A named region in the file form: the file `/dev/shm/NAME`, which
    /// cannot be sealed ([`RegionBuilder::shm_file`]).
    ShmFile,
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
    /// [`OpenError::NotInitialized`]. It also bounds the exchange with the
    /// process serving a named region's socket (connect and reply), kept
    /// between 1 ms and 10 s, before [`OpenError::TimedOut`].
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
/// inside); when the last clone drops in the process that opened the
/// handle, the slot is released, a socket-served region stops being served
/// by this handle, and a `/dev/shm` file created without
/// [`RegionBuilder::keep`] is unlinked. A copy that a child made by `fork`
/// inherited is inert (see the [module docs](self) and
/// [`Region::opened_by_current_process`]).
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

/// Field order matters for the drops after `Inner::drop`: the server stops
/// and the SIGBUS registration goes before the mapping is unmapped and the
/// descriptor closed.
struct Inner {
    /// The accept thread serving the region's name, if this handle serves
    /// it (the creator's, or [`Region::serve_name`]).
    server: Mutex<Option<socket::Server>>,
    /// This mapping's entry in the SIGBUS handler's table (a `/dev/shm`
    /// file only), removed when it drops.
    #[expect(dead_code, reason = "held for its drop")]
    sigbus: Option<sigbus::Registration>,
    map: MmapRaw,
    fd: OwnedFd,
    name: Option<String>,
    backing: Backing,
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

/// What [`Region::from_parts`] assembles.
struct Parts {
    map: MmapRaw,
    fd: OwnedFd,
    name: Option<String>,
    backing: Backing,
    unlink_on_drop: bool,
    server: Option<socket::Server>,
    layout: ValidLayout,
    peer: PeerId,
    pid: u32,
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
            .field("backing", &self.inner.backing)
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

    /// Opens the region named `NAME` with default options.
    ///
    /// ```
    /// use polycephaly::region::Region;
    ///
    /// let name = format!("doc-open-{}", std::process::id());
    /// let creator = Region::builder().named(&name).build()?;
    /// let opener = Region::open(&name)?;
    /// assert_eq!(opener.len(), creator.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`Region::open_with`].
    pub fn open(name: &str) -> Result<Region, OpenError> {
        Self::open_with(name, &OpenOptions::default())
    }

    /// Opens the region named `NAME`, of our own user: its socket form if a
    /// process serves the name (it hands us its sealed memfd), else the file
    /// `/dev/shm/NAME` (never following a symbolic link); waits up to
    /// `opts.init_timeout` for its creator to finish, validates it and
    /// joins its peer table.
    ///
    /// The exchange with the serving process is bounded by
    /// `opts.init_timeout` (kept between 1 ms and 10 s): a process that
    /// holds the name and never answers gives [`OpenError::TimedOut`], never
    /// a hang. A file's length is checked against its header before
    /// anything past the header is used.
    ///
    /// # Errors
    /// [`OpenError::InvalidName`]; from the socket:
    /// [`OpenError::NotOwner`] (the serving process is another user's),
    /// [`OpenError::Refused`] (it refused our credentials),
    /// [`OpenError::TimedOut`], [`OpenError::BadReply`]; from the file:
    /// [`OpenError::NotFound`] (neither exists), [`OpenError::PermissionDenied`],
    /// [`OpenError::Symlink`], [`OpenError::NotOwner`] (the file is another
    /// user's); then any error of [`Region::from_fd`].
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Region, OpenError> {
        open::open_named(name, rustix::process::geteuid().as_raw(), opts)
    }

    /// As [`Region::open_with`], for a region of the user `owner`, which may
    /// be another user: a deliberate multi-user set-up, where the creator
    /// shares the region with a group ([`RegionBuilder::group`]). The
    /// serving process (socket form) or the file (file form), and the
    /// memory object itself, must belong to `owner`; anything else gives
    /// [`OpenError::NotOwner`]. `open_owned_by(name, our_uid, opts)` is
    /// `open_with(name, opts)`.
    ///
    /// Trust: the peers then include another user's processes, which can
    /// make the data wrong like any peer (see the trust model), and no more.
    ///
    /// ```no_run
    /// use polycephaly::region::{OpenOptions, Region};
    ///
    /// // User 1000 built `.named("jobs").group(2000)`; we are in group 2000.
    /// let region = Region::open_owned_by("jobs", 1000, &OpenOptions::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Region::open_with`].
    pub fn open_owned_by(name: &str, owner: u32, opts: &OpenOptions) -> Result<Region, OpenError> {
        open::open_named(name, owner, opts)
    }

    /// Opens the region behind `fd` (e.g. a memfd inherited from the parent,
    /// see [`Region::share_with`]), validates it and joins its peer table.
    ///
    /// The file must be sealed against shrinking (`F_SEAL_SHRINK`), as the
    /// memfds of [`RegionBuilder`] are: otherwise whoever else holds it
    /// could truncate it and make our accesses fault (SIGBUS), and that
    /// must not depend on the sender. A `/dev/shm` file, which cannot be
    /// sealed, is opened by name with [`Region::open`] instead.
    ///
    /// # Errors
    /// [`OpenError::NotARegularFile`], [`OpenError::NotOwner`],
    /// [`OpenError::NotSealed`] (a file not sealed against shrinking),
    /// [`OpenError::NotInitialized`] (empty file or init state not ready in
    /// time), every validation error (see [`OpenError`]),
    /// [`OpenError::PeerTableFull`], [`OpenError::Io`].
    pub fn from_fd(fd: OwnedFd, opts: &OpenOptions) -> Result<Region, OpenError> {
        let us = rustix::process::geteuid().as_raw();
        open::attach(fd, None, Backing::Memfd, us, opts)
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

    /// The region's name (either named form), `None` for an anonymous
    /// memfd.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// What the region is backed by: an anonymous memfd, a named memfd
    /// served over a socket, or a `/dev/shm` file.
    pub fn backing(&self) -> Backing {
        self.inner.backing
    }

    /// Whether this handle serves the region's name now (the creator's
    /// handle of a socket-served region, or one that called
    /// [`Region::serve_name`]); false for a copy inherited through `fork`,
    /// whose parent serves.
    pub fn serves_name(&self) -> bool {
        self.inner.opened_here()
            && self
                .inner
                .server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
    }

    /// Serves the region's name from this handle: a surviving peer takes
    /// the name over after the process that served it died (or dropped its
    /// handle), so that new processes can open the region by name again. It
    /// serves until the last clone of this handle drops. `group` admits a
    /// group as [`RegionBuilder::group`] does (the creator's choice is not
    /// recorded in the region).
    ///
    /// Nothing does this by itself: when the creator dies the name simply
    /// disappears (the kernel frees it), which its peers may want to notice
    /// rather than have hidden; and several survivors would race for it.
    /// Whoever calls this first gets the name; the others get
    /// [`CreateError::NameTaken`].
    ///
    /// ```
    /// use polycephaly::region::{CreateError, OpenError, Region};
    ///
    /// let name = format!("doc-serve-{}", std::process::id());
    /// let creator = Region::builder().named(&name).build()?;
    /// let survivor = Region::open(&name)?;
    /// assert!(matches!(survivor.serve_name(None), Err(CreateError::NameTaken { .. })));
    /// drop(creator); // the name goes with the last handle that served it
    /// assert!(matches!(Region::open(&name), Err(OpenError::NotFound { .. })));
    /// survivor.serve_name(None)?;
    /// assert!(survivor.serves_name());
    /// let newcomer = Region::open(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`CreateError::NameTaken`] when a live process holds the name;
    /// [`CreateError::InvalidName`] when the region is not in the socket
    /// form (an anonymous memfd has no name, a `/dev/shm` file needs no
    /// server) or the handle is a copy inherited through `fork`;
    /// [`CreateError::Io`].
    pub fn serve_name(&self, group: Option<u32>) -> Result<(), CreateError> {
        let not = |reason| CreateError::InvalidName {
            name: self.inner.name.clone().unwrap_or_default(),
            reason,
        };
        let (Backing::Socket, Some(name)) = (self.inner.backing, &self.inner.name) else {
            return Err(not("the region is not socket-served: nothing to serve"));
        };
        if !self.inner.opened_here() {
            return Err(not(
                "a copy of a handle inherited through fork cannot serve",
            ));
        }
        let mut server = self.inner.server.lock().unwrap_or_else(|e| e.into_inner());
        if server.is_some() {
            return Ok(());
        }
        let admission = socket::Admission {
            uid: rustix::process::geteuid().as_raw(),
            gid: group,
        };
        *server = Some(socket::Server::start(name, &self.inner.fd, admission)?);
        Ok(())
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

    /// The process that created the region: its pid and start time, as the
    /// header records them (written by the creator before the region was
    /// ready, never after; a hostile peer could still rewrite them, which
    /// makes this answer wrong, never unsafe). `creator().is_alive()` tells
    /// whether it still runs: what a peer needs when the creator died
    /// before it published anything else about itself.
    ///
    /// ```
    /// let region = polycephaly::region::Region::builder().build()?;
    /// assert_eq!(region.creator(), polycephaly::sync::ProcessId::current());
    /// assert!(region.creator().is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn creator(&self) -> ProcessId {
        self.inner.layout.creator
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
    /// process, even after a `/dev/shm` file was unlinked or the name's server
    /// stopped (it goes through this handle's descriptor, not the name),
    /// and never unlinks or serves anything itself.
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
        // The same rules as the way this handle's file came in (a memfd is
        // sealed, a /dev/shm file cannot be), and the same owner: it is the
        // same file.
        let owner = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?.st_uid;
        open::attach(fd, self.inner.name.clone(), self.inner.backing, owner, opts)
    }

    /// Wraps a mapping that is initialized and a slot that is claimed.
    fn from_parts(parts: Parts) -> Region {
        let Parts {
            map,
            fd,
            name,
            backing,
            unlink_on_drop,
            server,
            layout,
            peer,
            pid,
        } = parts;
        // Only a file can be truncated under the mapping: memfds are sealed.
        let sigbus = (backing == Backing::ShmFile)
            .then(|| sigbus::register(map.as_ptr(), map.len(), fd.as_raw_fd(), name.as_deref()))
            .flatten();
        let liveness = peers::Liveness::new(layout.max_peers);
        Region {
            inner: Arc::new(Inner {
                server: Mutex::new(server),
                sigbus,
                map,
                fd,
                name,
                backing,
                unlink_on_drop,
                layout,
                peer,
                pid,
                liveness,
            }),
        }
    }
}
