//! Opening an existing region: by name (the socket, then the `/dev/shm`
//! file) or from a descriptor; every check an opener makes before it uses
//! anything of the region, in the order it makes them.

use core::time::Duration;
use std::os::fd::OwnedFd;

use memmap2::MmapOptions;

use super::layout::{self, HEADER_LEN, INIT_READY, PLAIN_LEN};
use super::{
    Backing, OpenError, OpenOptions, Parts, Region, builder, init_word, peers, slots_of, socket,
    validate,
};
use crate::sync::clock::Instant;
use crate::sync::shim::Ordering;

/// Opens the region `name` of the user `owner`: its socket if a process
/// serves it, else its `/dev/shm` file.
pub(super) fn open_named(name: &str, owner: u32, opts: &OpenOptions) -> Result<Region, OpenError> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    builder::check_name(name).map_err(|reason| OpenError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    let bound = opts.init_timeout.min(Duration::from_secs(10));
    if let Some(fd) = socket::fetch(name, owner, bound)? {
        return attach(fd, Some(name.to_owned()), Backing::Socket, owner, opts);
    }
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
    attach(fd, Some(name.to_owned()), Backing::ShmFile, owner, opts)
}

/// Refuses a file that is not sealed against shrinking: truncated under our
/// mapping, it would make our accesses fault (SIGBUS). Seals can be added
/// but never removed, so a seal seen once holds for the file's life.
pub(super) fn check_sealed(fd: &OwnedFd) -> Result<(), OpenError> {
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

/// The opener's side, for named regions and inherited descriptors alike.
/// The file must belong to `owner`; unless `backing` is a `/dev/shm` file,
/// it must be sealed against shrinking.
pub(super) fn attach(
    fd: OwnedFd,
    name: Option<String>,
    backing: Backing,
    owner: u32,
    opts: &OpenOptions,
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
    // A /dev/shm file cannot carry seals: see the module docs.
    let mut seal_checked = backing == Backing::ShmFile;
    let file_len = loop {
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
    if backing == Backing::ShmFile {
        // A file can shrink at any time: once more now, after the wait, so
        // that a truncation made before we use the sections is an error
        // here rather than a fault later (one made after still faults:
        // see `install_sigbus_handler`).
        let now = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)?
            .st_size;
        let now = u64::try_from(now).unwrap_or(0);
        if now != file_len {
            return Err(OpenError::SizeMismatch {
                header: file_len,
                file: now,
            });
        }
    }
    // 4. Join the peer table.
    let me = crate::sync::ProcessId::current();
    let peer = peers::claim(slots_of(&map, layout.max_peers), me, opts.role)
        .ok_or(OpenError::PeerTableFull)?;
    Ok(Region::from_parts(Parts {
        map,
        fd,
        name,
        backing,
        unlink_on_drop: false,
        server: None,
        layout,
        peer,
        pid: me.pid,
    }))
}

/// A copy of the header's plain bytes: the fixed part and the section
/// table. The init line (written atomically) is left zero in the copy.
pub(super) fn copy_plain(base: *const u8) -> [u8; PLAIN_LEN] {
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
