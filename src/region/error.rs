//! The error enums of the region layer: one per operation.

use super::SectionId;

/// Why [`RegionBuilder::build`](super::RegionBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The segment name is empty, too long, `.`/`..`, or holds a character
    /// outside `[A-Za-z0-9._-]` (a `/` in particular).
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The name is in use: a live process serves a region under it (its
    /// abstract socket is bound: the socket form), or a file of that name
    /// exists under /dev/shm (the file form); for a random name, every
    /// suffix tried was taken. A name whose server died is free again: the
    /// kernel releases an abstract socket with its last descriptor.
    #[error(
        "the region name {name:?} is already in use (a live process serves it, or \
         /dev/shm/{name} exists)"
    )]
    NameTaken {
        /// The name that was taken.
        name: String,
    },
    /// A size is zero, or the region would be larger than
    /// [`MAX_TOTAL_LEN`](super::layout::MAX_TOTAL_LEN) (or overflows).
    #[error("invalid size: {reason}")]
    InvalidSize {
        /// What is wrong with the size.
        reason: &'static str,
    },
    /// More sections were asked for than the section table holds.
    #[error("{requested} sections requested, the table holds {max}")]
    TooManySections {
        /// How many sections were added.
        requested: usize,
        /// The table's capacity.
        max: usize,
    },
    /// More peers were asked for than the peer table holds.
    #[error("{requested} peers requested, the table holds {max}")]
    TooManyPeers {
        /// The `max_peers` asked for.
        requested: u32,
        /// The table's capacity.
        max: u32,
    },
    /// The kernel refused to create the segment (EACCES/EPERM), or to give
    /// it the group asked for with
    /// [`RegionBuilder::group`](super::RegionBuilder::group) (a group the
    /// user is not a member of).
    #[error("permission denied creating the shared memory segment")]
    PermissionDenied,
    /// Any other system call failure (memfd_create, ftruncate, mmap...).
    #[error("I/O error creating the region: {0}")]
    Io(#[from] std::io::Error),
}

/// Why opening a region ([`Region::open`](super::Region::open),
/// [`Region::open_with`](super::Region::open_with),
/// [`Region::open_owned_by`](super::Region::open_owned_by),
/// [`Region::from_fd`](super::Region::from_fd)) failed.
///
/// Every check on the header, the section table and the file happens before
/// anything in the region is used; each failure has its own variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name is not a valid segment name (see [`CreateError::InvalidName`]).
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No segment of that name exists.
    #[error("no shared memory segment named {name:?}")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// The segment exists but may not be opened read-write by this user.
    #[error("permission denied opening the shared memory segment")]
    PermissionDenied,
    /// The name is a symbolic link (refused: O_NOFOLLOW).
    #[error("the segment name {name:?} is a symbolic link")]
    Symlink {
        /// The name looked up.
        name: String,
    },
    /// The file is not a regular file (a directory, a FIFO...).
    #[error("the segment is not a regular file")]
    NotARegularFile,
    /// The file, or the process serving the region's socket, belongs to
    /// another user than the one expected: ours (refused by default), or the
    /// one given to [`Region::open_owned_by`](super::Region::open_owned_by).
    #[error("the region belongs to uid {owner}, not to uid {us}")]
    NotOwner {
        /// The owner found: the file's, or the serving process's uid.
        owner: u32,
        /// The uid expected: our effective uid unless another was given.
        us: u32,
    },
    /// The process serving the region's socket refused our credentials
    /// (we are not its user, nor in the group it admits: see
    /// [`RegionBuilder::group`](super::RegionBuilder::group)).
    #[error("the process serving region {name:?} refused our credentials")]
    Refused {
        /// The region's name.
        name: String,
    },
    /// The process holding the region's socket did not answer in time:
    /// its backlog stayed full, or it accepted and sent nothing (a hung or
    /// hostile process, or a child made by `fork` holding a copy of the
    /// socket of a creator that died). The bound is
    /// [`OpenOptions::init_timeout`](super::OpenOptions::init_timeout),
    /// between 1 ms and 10 s.
    #[error("the process holding region {name:?} did not answer within {waited:?}")]
    TimedOut {
        /// The region's name.
        name: String,
        /// The bound that passed.
        waited: core::time::Duration,
    },
    /// The answer on the region's socket is not a region server's (wrong
    /// length or magic, no descriptor or several, truncated).
    #[error("bad reply from the socket of region {name:?}: {what}")]
    BadReply {
        /// The region's name.
        name: String,
        /// What was wrong with it.
        what: &'static str,
    },
    /// The file is shorter than the header page.
    #[error("the file is {len} bytes, shorter than the {min}-byte header")]
    TooSmall {
        /// The file's length.
        len: u64,
        /// The header's length.
        min: u64,
    },
    /// The file is larger than any region we create.
    #[error("the file is {len} bytes, larger than the {max}-byte limit")]
    TooLarge {
        /// The file's length.
        len: u64,
        /// [`MAX_TOTAL_LEN`](super::layout::MAX_TOTAL_LEN).
        max: u64,
    },
    /// The header does not start with our magic bytes.
    #[error("bad magic: not a polycephaly region")]
    BadMagic,
    /// The header's layout version is not ours.
    #[error("layout version {found}, expected {expected}")]
    VersionMismatch {
        /// The version in the header.
        found: u32,
        /// [`LAYOUT_VERSION`](super::layout::LAYOUT_VERSION).
        expected: u32,
    },
    /// The creator did not mark the region ready within the init timeout
    /// (it is still writing it, or died before finishing).
    #[error("the region was not initialized in time")]
    NotInitialized,
    /// A plain header field is out of range.
    #[error("invalid header: {what}")]
    InvalidHeader {
        /// Which field, and why.
        what: &'static str,
    },
    /// The header's total length differs from the file's length.
    #[error("the header says {header} bytes, the file has {file}")]
    SizeMismatch {
        /// `total_len` from the header.
        header: u64,
        /// The file's length (fstat).
        file: u64,
    },
    /// The section table claims more sections than it holds.
    #[error("{count} sections in the header, the table holds {max}")]
    TooManySections {
        /// The count in the header.
        count: u32,
        /// The table's capacity.
        max: u32,
    },
    /// The header's peer capacity is zero or larger than the table.
    #[error("{count} peer slots in the header, the table holds {max}")]
    TooManyPeers {
        /// The count in the header.
        count: u32,
        /// The table's capacity.
        max: u32,
    },
    /// A section's kind word is not one we know.
    #[error("section {index} has unknown kind {kind:#x}")]
    UnknownSectionKind {
        /// The section's index.
        index: u16,
        /// The raw kind word.
        kind: u32,
    },
    /// A section is empty, starts inside the header, or ends past the region.
    #[error("section {index} ({offset}+{len}) is outside the data area (..{total})")]
    SectionOutOfBounds {
        /// The section's index.
        index: u16,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// The region's total length.
        total: u64,
    },
    /// A section's offset is not 64-byte aligned.
    #[error("section {index} offset {offset} is not 64-byte aligned")]
    SectionMisaligned {
        /// The section's index.
        index: u16,
        /// Its offset.
        offset: u64,
    },
    /// Two sections share bytes.
    #[error("sections {first} and {second} overlap")]
    SectionsOverlap {
        /// The lower index.
        first: u16,
        /// The higher index.
        second: u16,
    },
    /// [`Region::from_fd`](super::Region::from_fd) was given a file that is
    /// not sealed against shrinking (`F_SEAL_SHRINK`): a memfd its sender
    /// did not seal, a `/dev/shm` file, a file on disk. Any process holding
    /// it could truncate it under our mapping and make our accesses fault
    /// (SIGBUS), so it is refused. Descriptors from
    /// [`Region::share_with`](super::Region::share_with) are sealed, and so
    /// are those of socket-served named regions; a `/dev/shm` file is
    /// opened by name with [`Region::open`](super::Region::open), which
    /// accepts that risk by design (see
    /// [`install_sigbus_handler`](super::install_sigbus_handler)).
    #[error(
        "the file is not sealed against shrinking (F_SEAL_SHRINK missing, seals {seals:#x}): a \
         peer could truncate it and make our accesses fault (SIGBUS); pass a sealed memfd \
         (Region::share_with) or open a named segment with Region::open"
    )]
    NotSealed {
        /// The seals the file has (`F_GET_SEALS` bits: 1 seal, 2 shrink,
        /// 4 grow, 8 write); 0 for a file that cannot carry seals.
        seals: u32,
    },
    /// [`Region::inherited`](super::Region::inherited) found no region
    /// handed over by the parent.
    #[error("no region was handed over in {var}: {why}")]
    NotInherited {
        /// The environment variable read.
        var: String,
        /// What was wrong.
        why: &'static str,
    },
    /// Every peer slot holds a live process.
    #[error("the peer table is full")]
    PeerTableFull,
    /// Any other system call failure (fstat, mmap...).
    #[error("I/O error opening the region: {0}")]
    Io(#[from] std::io::Error),
}

/// Why [`Region::section`](super::Region::section) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// The region has no section with that id.
    #[error("no section {id:?}: the region has {count}")]
    NoSuchSection {
        /// The id asked for.
        id: SectionId,
        /// How many sections the region has.
        count: u16,
    },
    /// The handle was opened by another process: this one got a copy of it
    /// through `fork`. Sections of such a copy are refused, since the layers
    /// above would claim ring roles and locks under the opener's peer id.
    /// Open a handle of this process instead: [`Region::reopen`] on the
    /// copy, [`Region::open`] by name, or [`Region::from_fd`].
    ///
    /// [`Region::reopen`]: super::Region::reopen
    /// [`Region::open`]: super::Region::open
    /// [`Region::from_fd`]: super::Region::from_fd
    #[error(
        "this region handle belongs to process {opener}, not to process {caller} (a copy \
         made by fork): open a handle of this process with Region::reopen, Region::open or \
         Region::from_fd"
    )]
    ForeignHandle {
        /// The pid of the process that opened the handle.
        opener: u32,
        /// The pid of the calling process.
        caller: u32,
    },
}
