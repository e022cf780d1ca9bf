//! A read-only look at a named region: [`Observer`].
//!
//! An observer maps the region `PROT_READ`, takes no peer slot, attaches no
//! role and never stores to it: a mapping without write permission makes a
//! store fault, so "never writes" is enforced by the kernel, not only by
//! this code. For a socket-served name it asks the serving process for the
//! memfd, which is what any opener does (the server hands it out and
//! forgets the client: nothing is recorded in the region); for the file
//! form it opens `/dev/shm/NAME` read-only.
//!
//! Everything is read through [`Observer::load_u32`] and
//! [`Observer::load_u64`]: atomic loads at offsets checked against the
//! section's validated bounds. Nothing read is trusted: the layers' state
//! readers (`ring::observe`, `arena::observe`, `lock::observe`) check every
//! position, length and tag they decode and report what is inconsistent
//! instead of using it. A busy region changes between two loads; the
//! readers say so rather than report a torn picture as corruption.
//!
//! The file form can be truncated under any mapping of it. The observer
//! checks the file's length against the header when it opens, and again on
//! [`Observer::check_len`] (call it before each look); a truncation in
//! between faults like for any peer, reported in one line if the process
//! installed [`install_sigbus_handler`](super::install_sigbus_handler)
//! (the observer registers its mapping with it).

use core::time::Duration;
use std::os::fd::{AsRawFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};

use zerocopy::FromBytes as _;

use super::layout::{HeaderFixed, INIT_READY};
use super::validate::{self, ValidLayout};
use super::{Backing, OpenError, SectionId, SectionKind, builder, init_word, peers, slots_of};
use super::{PeerInfo, sigbus, socket};
use crate::sync::ProcessId;
use crate::sync::shim::{AtomicU32, AtomicU64, Ordering};

/// Why a layer's state reader could not read a section.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// The region has no such section.
    #[error("no section {0}")]
    NoSuchSection(u16),
    /// The section is of another kind.
    #[error("section {id} is {found:?}, not {expected:?}")]
    WrongKind {
        /// The section.
        id: u16,
        /// Its kind.
        found: SectionKind,
        /// The kind the reader reads.
        expected: SectionKind,
    },
    /// The section cannot hold the structure (its length, or a header
    /// inside it, is inconsistent): what is wrong.
    #[error("section {id}: {what}")]
    Bad {
        /// The section.
        id: u16,
        /// What is wrong.
        what: String,
    },
}

impl Observer {
    /// The section `id`, checked to be of `kind` (for the layers' state
    /// readers).
    ///
    /// # Errors
    /// [`ObserveError::NoSuchSection`], [`ObserveError::WrongKind`].
    pub fn section_of(
        &self,
        id: SectionId,
        kind: SectionKind,
    ) -> Result<SectionInfo, ObserveError> {
        let s = self.section(id).ok_or(ObserveError::NoSuchSection(id.0))?;
        if s.kind != kind {
            return Err(ObserveError::WrongKind {
                id: id.0,
                found: s.kind,
                expected: kind,
            });
        }
        Ok(s)
    }

    /// [`load_u64`](Self::load_u64), with a missing word (out of the
    /// section) as an [`ObserveError::Bad`] naming `what`.
    ///
    /// # Errors
    /// [`ObserveError::Bad`].
    pub fn u64_at(&self, id: SectionId, offset: usize, what: &str) -> Result<u64, ObserveError> {
        self.load_u64(id, offset).ok_or_else(|| ObserveError::Bad {
            id: id.0,
            what: format!("{what} at offset {offset} is outside the section"),
        })
    }

    /// As [`u64_at`](Self::u64_at), for a `u32`.
    ///
    /// # Errors
    /// [`ObserveError::Bad`].
    pub fn u32_at(&self, id: SectionId, offset: usize, what: &str) -> Result<u32, ObserveError> {
        self.load_u32(id, offset).ok_or_else(|| ObserveError::Bad {
            id: id.0,
            what: format!("{what} at offset {offset} is outside the section"),
        })
    }
}

/// One section as the observer sees it (validated at open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// Its index in the table.
    pub id: SectionId,
    /// Its kind.
    pub kind: SectionKind,
    /// Its offset from the start of the region.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
}

/// A read-only view of a named region.
///
/// Mapped `PROT_READ` (a store would fault: "never writes" is enforced by
/// the kernel), with no peer slot and no role. A socket-served name is
/// asked for its memfd as any opener does (the server hands it out and
/// records nothing in the region); a file is opened read-only. Every word
/// is read by [`load_u32`](Self::load_u32) / [`load_u64`](Self::load_u64):
/// atomic loads at offsets checked against the validated section bounds.
/// The layers' state readers ([`crate::ring::spsc::observe`],
/// [`crate::ring::mpsc::observe`], [`crate::arena::observe::observe`],
/// [`crate::lock::observe_event`], [`crate::lock::observe_mutex`]) trust
/// nothing they read: they check it and list what does not hold.
///
/// The file form can be truncated under any mapping: [`check_len`](Self::check_len)
/// before each look turns that into an error; a truncation between the
/// check and a load faults, reported in one line when the process called
/// [`install_sigbus_handler`](super::install_sigbus_handler).
///
/// ```
/// use polycephaly::region::{Observer, Region, SectionKind};
///
/// let name = format!("doc-observe-{}", std::process::id());
/// let region = Region::builder().named(&name).section(SectionKind::Raw, 64).build()?;
/// let obs = Observer::open(&name)?;
/// assert_eq!(obs.sections().len(), 1);
/// assert_eq!(obs.peers().len(), 1, "the creator; the observer took no slot");
/// assert!(obs.creator_alive());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Observer {
    /// Removed (dropped) before the mapping it describes.
    #[expect(dead_code, reason = "held for its drop")]
    sigbus: Option<sigbus::Registration>,
    map: MmapRaw,
    fd: OwnedFd,
    name: String,
    backing: Backing,
    layout: ValidLayout,
    creator: ProcessId,
    liveness: peers::Liveness,
}

impl core::fmt::Debug for Observer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observer")
            .field("name", &self.name)
            .field("backing", &self.backing)
            .field("len", &self.layout.total_len)
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Opens the region `name` of our own user for reading only: the
    /// socket's memfd if a process serves the name, else `/dev/shm/NAME`.
    /// It does not wait for a creator still building the region
    /// ([`OpenError::NotInitialized`]).
    ///
    /// # Errors
    /// [`OpenError::InvalidName`]; from the socket as [`Region::open`]
    /// ([`OpenError::NotOwner`], [`OpenError::Refused`],
    /// [`OpenError::TimedOut`], [`OpenError::BadReply`]); from the file
    /// [`OpenError::NotFound`], [`OpenError::PermissionDenied`],
    /// [`OpenError::Symlink`]; then [`OpenError::NotARegularFile`],
    /// [`OpenError::NotOwner`] (another user's file), [`OpenError::NotSealed`]
    /// (a memfd handed out unsealed), [`OpenError::NotInitialized`], and
    /// every validation error of the header ([`OpenError::BadMagic`] for a
    /// file that is not a region, [`OpenError::TooSmall`] or
    /// [`OpenError::SizeMismatch`] for a truncated one, ...).
    ///
    /// [`Region::open`]: super::Region::open
    pub fn open(name: &str) -> Result<Observer, OpenError> {
        builder::check_name(name).map_err(|reason| OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        let us = rustix::process::geteuid().as_raw();
        if let Some(fd) = socket::fetch(name, us, Duration::from_secs(1))? {
            return Self::from_fd(fd, name, Backing::Socket, us);
        }
        Self::open_shm_file(name)
    }

    /// As [`Observer::open`], for the file form only: `/dev/shm/NAME`,
    /// whether or not a process serves the name over a socket (a tool that
    /// looks at the files, like `polycephaly clean`).
    ///
    /// # Errors
    /// As [`Observer::open`], less the socket's errors.
    pub fn open_shm_file(name: &str) -> Result<Observer, OpenError> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        builder::check_name(name).map_err(|reason| OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        let us = rustix::process::geteuid().as_raw();
        let path = format!("/dev/shm/{name}");
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
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
        Self::from_fd(fd, name, Backing::ShmFile, us)
    }

    /// Checks `fd` (a regular file of `owner`, sealed unless a `/dev/shm`
    /// file), maps it read-only and validates its header.
    fn from_fd(fd: OwnedFd, name: &str, backing: Backing, owner: u32) -> Result<Self, OpenError> {
        let st = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(OpenError::NotARegularFile);
        }
        if st.st_uid != owner {
            return Err(OpenError::NotOwner {
                owner: st.st_uid,
                us: owner,
            });
        }
        if backing != Backing::ShmFile {
            super::open::check_sealed(&fd)?;
        }
        let file_len = u64::try_from(st.st_size).unwrap_or(0);
        if file_len == 0 {
            return Err(OpenError::NotInitialized);
        }
        validate::check_file_len(file_len)?;
        let map_len = usize::try_from(file_len).map_err(|_| OpenError::TooLarge {
            len: file_len,
            max: super::layout::MAX_TOTAL_LEN,
        })?;
        // Never more than the file, and never writable.
        let map = MmapOptions::new().len(map_len).map_raw_read_only(&fd)?;
        let sigbus = (backing == Backing::ShmFile)
            .then(|| sigbus::register(map.as_ptr(), map.len(), fd.as_raw_fd(), Some(name)))
            .flatten();
        let base = map.as_ptr();
        let plain = super::open::copy_plain(base);
        // Say what is wrong with a header that is not a region's before
        // saying it is not ready.
        let magic_ok = plain[..8] == super::layout::MAGIC;
        if !magic_ok && plain[..8] != [0; 8] {
            return Err(OpenError::BadMagic);
        }
        // SAFETY: the mapping is page aligned, at least HEADER_LEN bytes
        // (check_file_len) and outlives `init` (a local of this call). The
        // word is only loaded from: the mapping is read-only.
        let init = unsafe { init_word(base.cast_mut()) };
        // Acquire: pairs with the creator's Release store of INIT_READY,
        // made after it wrote the header.
        if init.word().load(Ordering::Acquire) != INIT_READY {
            return Err(match validate::validate(&plain, file_len) {
                Err(e @ OpenError::VersionMismatch { .. }) if magic_ok => e,
                _ => OpenError::NotInitialized,
            });
        }
        // The copy above may predate READY: copy again after the Acquire.
        let plain = super::open::copy_plain(base);
        let layout = validate::validate(&plain, file_len)?;
        let fixed = HeaderFixed::read_from_prefix(&plain[..])
            .ok()
            .map(|(f, _)| f);
        let creator = ProcessId {
            pid: fixed.map_or(0, |f| f.creator_pid),
            start_time: fixed.map_or(0, |f| f.creator_start_time),
        };
        let liveness = peers::Liveness::new(layout.max_peers);
        Ok(Observer {
            sigbus,
            map,
            fd,
            name: name.to_owned(),
            backing,
            layout,
            creator,
            liveness,
        })
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket form or the file form.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The region's length, header included.
    pub fn len(&self) -> usize {
        self.layout.total_len
    }

    /// Always false: a region has at least its header page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// How many peer slots the region's table has.
    pub fn max_peers(&self) -> u32 {
        self.layout.max_peers
    }

    /// The creator recorded in the header (pid and start time).
    pub fn creator(&self) -> ProcessId {
        self.creator
    }

    /// Whether the creator still runs (the same pid with the same start
    /// time, by `/proc`).
    pub fn creator_alive(&self) -> bool {
        self.creator.is_alive()
    }

    /// The sections, validated when the observer opened.
    pub fn sections(&self) -> Vec<SectionInfo> {
        (0u16..)
            .zip(&self.layout.sections)
            .map(|(i, s)| SectionInfo {
                id: SectionId(i),
                kind: s.kind,
                offset: s.offset,
                len: s.len,
            })
            .collect()
    }

    /// The section `id`, if the region has it.
    pub fn section(&self, id: SectionId) -> Option<SectionInfo> {
        let s = self.layout.sections.get(usize::from(id.0))?;
        Some(SectionInfo {
            id,
            kind: s.kind,
            offset: s.offset,
            len: s.len,
        })
    }

    /// Every held slot of the peer table, with the liveness of its holder
    /// (a pidfd per slot, kept by the observer, not in the region).
    pub fn peers(&self) -> Vec<PeerInfo> {
        peers::list(slots_of(&self.map, self.layout.max_peers), &self.liveness)
    }

    /// For the file form: `Err` when the file no longer has the length its
    /// header gives (another process truncated or grew it), before the next
    /// look faults. Always `Ok` for a sealed memfd.
    ///
    /// # Errors
    /// [`OpenError::SizeMismatch`]; [`OpenError::Io`] if `fstat` fails.
    pub fn check_len(&self) -> Result<(), OpenError> {
        if self.backing != Backing::ShmFile {
            return Ok(());
        }
        let now = rustix::fs::fstat(&self.fd)
            .map_err(std::io::Error::from)?
            .st_size;
        let now = u64::try_from(now).unwrap_or(0);
        let header = self.layout.total_len as u64;
        if now == header {
            Ok(())
        } else {
            Err(OpenError::SizeMismatch { header, file: now })
        }
    }

    /// The absolute offset of `len` bytes at `offset` in section `id`,
    /// aligned to `len`; `None` out of bounds or misaligned.
    fn at(&self, id: SectionId, offset: usize, len: usize) -> Option<usize> {
        let s = self.layout.sections.get(usize::from(id.0))?;
        let end = offset.checked_add(len)?;
        if end > s.len || offset % len != 0 {
            return None;
        }
        // Sections start at 64-byte aligned offsets (validated), so the
        // absolute offset is aligned too; within the mapping (validated:
        // offset + len of a section <= total_len == the mapping's length).
        let abs = s.offset.checked_add(offset)?;
        (abs + len <= self.map.len()).then_some(abs)
    }

    /// The `u32` at byte `offset` of section `id` (an atomic Acquire load;
    /// `offset` a multiple of 4), `None` outside the section.
    pub fn load_u32(&self, id: SectionId, offset: usize) -> Option<u32> {
        let abs = self.at(id, offset, 4)?;
        // SAFETY: `abs + 4` lies within the mapping and `abs` is 4-aligned
        // (`at`, whose bounds come from the validated layout); the mapping
        // lives as long as `self`, and an AtomicU32 is valid for any bits.
        // Only loaded from: the mapping is read-only.
        let word = unsafe { &*self.map.as_ptr().add(abs).cast::<AtomicU32>() };
        // Acquire: whatever a writer published before storing this word is
        // visible to the loads that follow (positions before frames).
        Some(word.load(Ordering::Acquire))
    }

    /// The `u64` at byte `offset` of section `id` (an atomic Acquire load;
    /// `offset` a multiple of 8), `None` outside the section.
    pub fn load_u64(&self, id: SectionId, offset: usize) -> Option<u64> {
        let abs = self.at(id, offset, 8)?;
        // SAFETY: as in `load_u32`, with 8-byte bounds and alignment.
        let word = unsafe { &*self.map.as_ptr().add(abs).cast::<AtomicU64>() };
        // Acquire: as in `load_u32`.
        Some(word.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Region;

    #[test]
    fn observes_without_a_slot_and_reads_sections() {
        let name = format!("observe-unit-{}", std::process::id());
        let region = Region::builder()
            .named(&name)
            .section(SectionKind::Raw, 128)
            .build()
            .unwrap();
        let raw = region.section(SectionId(0)).unwrap();
        // SAFETY: the section is 128 bytes, 64-aligned; this test is its
        // only writer.
        unsafe { (*raw.ptr.as_ptr().cast::<AtomicU64>()).store(42, Ordering::Release) };
        let obs = Observer::open(&name).unwrap();
        assert_eq!(obs.backing(), Backing::Socket);
        assert_eq!(obs.load_u64(SectionId(0), 0), Some(42));
        assert_eq!(obs.load_u64(SectionId(0), 124), None, "misaligned");
        assert_eq!(obs.load_u64(SectionId(0), 128), None, "out of bounds");
        assert_eq!(obs.load_u32(SectionId(1), 0), None, "no such section");
        assert_eq!(obs.peers().len(), 1);
        assert!(obs.creator_alive());
        assert!(obs.check_len().is_ok());
    }

    #[test]
    fn garbage_and_truncated_files_are_errors() {
        let name = format!("observe-garbage-{}", std::process::id());
        let path = format!("/dev/shm/{name}");
        std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
        assert!(matches!(Observer::open(&name), Err(OpenError::BadMagic)));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            Observer::open(&name),
            Err(OpenError::TooSmall { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        let file = Region::builder()
            .named(&name)
            .shm_file(true)
            .section(SectionKind::Raw, 8192)
            .build()
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert!(matches!(
            Observer::open(&name),
            Err(OpenError::SizeMismatch { .. })
        ));
        drop(file);
    }
}
