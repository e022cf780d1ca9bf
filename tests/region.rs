//! Region: create and open, named and memfd, across real processes; every
//! bad region and every bad builder request gives its typed error; the peer
//! table tells live peers from dead ones.

mod common;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use polycephaly::region::layout::{HEADER_LEN, INIT_OFFSET, SECTION_TABLE_OFFSET};
use polycephaly::region::{
    Backing, CreateError, OpenError, OpenOptions, PeerId, Region, SectionError, SectionId,
    SectionKind,
};
use rustix::fs::SealFlags;

/// A name unique to this process and test.
fn unique(tag: &str) -> String {
    format!("polyc-test-{}-{tag}", std::process::id())
}

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

/// Removes `/dev/shm/NAME` when dropped (a file or a symlink).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

fn short() -> OpenOptions {
    OpenOptions {
        init_timeout: Duration::from_millis(50),
        role: 0,
    }
}

fn read_u8(region: &Region, id: u16, at: usize) -> u8 {
    let s = region.section(SectionId(id)).unwrap();
    assert!(at < s.len);
    // SAFETY: `at` is inside the section, which `region` keeps mapped.
    unsafe { s.ptr.as_ptr().add(at).read_volatile() }
}

fn write_u8(region: &Region, id: u16, at: usize, v: u8) {
    let s = region.section(SectionId(id)).unwrap();
    assert!(at < s.len);
    // SAFETY: as in `read_u8`.
    unsafe { s.ptr.as_ptr().add(at).write_volatile(v) }
}

fn read_u32(region: &Region, id: u16, at: usize) -> u32 {
    u32::from_le_bytes(core::array::from_fn(|i| read_u8(region, id, at + i)))
}

fn write_u32(region: &Region, id: u16, at: usize, v: u32) {
    for (i, b) in v.to_le_bytes().into_iter().enumerate() {
        write_u8(region, id, at + i, b);
    }
}

/// The bytes of a valid region with two sections (Raw 64 at 4096, SpscRing
/// 256 at 4160), 8192 bytes in all, as our own builder writes it. The
/// creator's peer slot is released (it is dropped before we return).
fn valid_bytes(tag: &str) -> Vec<u8> {
    let name = unique(&format!("template-{tag}"));
    let _cleanup = Cleanup(name.clone());
    let region = Region::builder()
        .named(&name)
        .keep(true)
        .section(SectionKind::Raw, 64)
        .section(SectionKind::SpscRing, 256)
        .max_peers(4)
        .build()
        .unwrap();
    drop(region);
    let bytes = std::fs::read(shm_path(&name)).unwrap();
    assert_eq!(bytes.len(), 8192);
    bytes
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of field `field_at` of section table entry `i`.
fn entry(i: usize, field_at: usize) -> usize {
    SECTION_TABLE_OFFSET + 32 * i + field_at
}

/// Writes `bytes` to `/dev/shm/NAME` (mode 0600) and opens it by name.
fn open_bytes(tag: &str, bytes: &[u8]) -> Result<Region, OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = unique(tag);
    let _cleanup = Cleanup(name.clone());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(&name))
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    drop(f);
    Region::open_with(&name, &short())
}

/// Both named forms: the socket form (the default) never has a file under
/// /dev/shm; the file form has one, unlinked when the creator drops.
#[test]
fn named_round_trip_shares_bytes_and_unlinks_on_drop() {
    for shm_file in [false, true] {
        named_round_trip(shm_file);
    }
}

fn named_round_trip(shm_file: bool) {
    let name = unique(if shm_file {
        "roundtrip-file"
    } else {
        "roundtrip"
    });
    let _cleanup = Cleanup(name.clone());
    let creator = Region::builder()
        .named(&name)
        .shm_file(shm_file)
        .role(7)
        .section(SectionKind::Raw, 100)
        .section(SectionKind::SpscRing, 4096)
        .build()
        .unwrap();
    let backing = if shm_file {
        Backing::ShmFile
    } else {
        Backing::Socket
    };
    assert_eq!(creator.name(), Some(name.as_str()));
    assert_eq!(creator.backing(), backing);
    assert_eq!(creator.serves_name(), !shm_file);
    assert_eq!(shm_path(&name).exists(), shm_file);
    let opener = Region::open_with(&name, &OpenOptions { role: 9, ..short() }).unwrap();
    assert_eq!(opener.backing(), backing);
    assert!(!opener.serves_name());
    assert_eq!(opener.len(), creator.len());
    assert_eq!(opener.len() % 4096, 0);
    let sections = opener.sections();
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0].kind, SectionKind::Raw);
    assert_eq!(sections[0].len, 100);
    assert_eq!(sections[1].kind, SectionKind::SpscRing);
    assert_eq!(sections[1].len, 4096);
    for s in &sections {
        assert_eq!(s.ptr.as_ptr() as usize % 64, 0);
        for i in 0..s.len {
            // SAFETY: inside the section; `opener` keeps it mapped.
            assert_eq!(unsafe { s.ptr.as_ptr().add(i).read_volatile() }, 0);
        }
    }
    write_u8(&creator, 1, 4095, 0xAB);
    assert_eq!(read_u8(&opener, 1, 4095), 0xAB);
    assert_ne!(creator.peer_id(), opener.peer_id());
    let peers = creator.peers();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.alive && p.pid == std::process::id()));
    let roles: Vec<u32> = peers.iter().map(|p| p.role).collect();
    assert!(roles.contains(&7) && roles.contains(&9));
    assert_eq!(
        opener.section(SectionId(2)).unwrap_err(),
        SectionError::NoSuchSection {
            id: SectionId(2),
            count: 2
        }
    );
    drop(opener);
    assert_eq!(creator.peers().len(), 1, "the opener's slot is released");
    drop(creator);
    assert!(!shm_path(&name).exists(), "unlinked on drop");
    assert!(matches!(
        Region::open(&name),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn keep_leaves_the_segment_and_random_names_are_unique() {
    let name = unique("keep");
    let _cleanup = Cleanup(name.clone());
    let kept = Region::builder()
        .named(&name)
        .keep(true)
        .section(SectionKind::Raw, 10)
        .build()
        .unwrap();
    assert_eq!(kept.backing(), Backing::ShmFile, "only a file outlives us");
    drop(kept);
    assert!(shm_path(&name).exists());
    let again = Region::open_with(&name, &short()).unwrap();
    assert_eq!(again.sections()[0].len, 10);
    drop(again);
    std::fs::remove_file(shm_path(&name)).unwrap();

    for shm_file in [false, true] {
        let prefix = unique("rand-");
        let build = || {
            Region::builder()
                .named_random(&prefix)
                .shm_file(shm_file)
                .build()
                .unwrap()
        };
        let (a, b) = (build(), build());
        let (na, nb) = (a.name().unwrap().to_owned(), b.name().unwrap().to_owned());
        assert_ne!(na, nb);
        assert!(na.starts_with(&prefix) && na.len() == prefix.len() + 16);
        assert_eq!(shm_path(&na).exists(), shm_file);
        assert_eq!(Region::open(&nb).unwrap().len(), b.len());
        drop((a, b));
        assert!(!shm_path(&na).exists() && !shm_path(&nb).exists());
        assert!(matches!(Region::open(&na), Err(OpenError::NotFound { .. })));
    }
}

#[test]
fn clones_share_one_slot_released_with_the_last() {
    let region = Region::builder().build().unwrap();
    let watcher = Region::from_fd(region.duplicate_fd().unwrap(), &short()).unwrap();
    let id = region.peer_id();
    let clone = region.clone();
    assert_eq!(clone.peer_id(), id);
    assert_eq!(watcher.peers().len(), 2);
    drop(region);
    assert!(watcher.peer_alive(id), "a clone still holds the slot");
    drop(clone);
    assert!(!watcher.peer_alive(id));
    assert_eq!(watcher.peers().len(), 1);
}

#[test]
fn memfd_is_inherited_by_a_child_process() {
    if common::role().as_deref() == Some("memfd-child") {
        let region = Region::inherited(&short()).unwrap();
        // Taken over once: a second call is refused, never a second owner.
        assert!(matches!(
            Region::inherited(&short()),
            Err(OpenError::NotInherited { .. })
        ));
        assert_eq!(region.name(), None);
        assert_eq!(read_u32(&region, 0, 0), 0xC0FFEE);
        let peers = region.peers();
        assert_eq!(peers.len(), 2);
        assert!(peers.iter().all(|p| p.alive));
        write_u32(&region, 0, 64, 0xBEEF);
        return;
    }
    let region = Region::builder()
        .section(SectionKind::Raw, 128)
        .build()
        .unwrap();
    assert_eq!(region.name(), None);
    write_u32(&region, 0, 0, 0xC0FFEE);
    let child = common::spawn_self_with(
        "memfd_is_inherited_by_a_child_process",
        "memfd-child",
        &[],
        &region,
    );
    common::expect_success(child);
    assert_eq!(read_u32(&region, 0, 64), 0xBEEF);
    assert_eq!(region.peers().len(), 1, "the child released its slot");
}

#[test]
fn a_dead_peer_is_not_alive_and_its_slot_is_reclaimed() {
    if common::role().as_deref() == Some("dying-child") {
        let name = std::env::var("REGION_NAME").unwrap();
        let region = Region::open(&name).unwrap();
        write_u32(&region, 0, 0, region.peer_id().to_raw());
        // Exit without dropping: the slot stays held by a dead process.
        std::process::exit(0);
    }
    let name = unique("dead-peer");
    let _cleanup = Cleanup(name.clone());
    let region = Region::builder()
        .named(&name)
        .max_peers(2)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let child = common::spawn_self(
        "a_dead_peer_is_not_alive_and_its_slot_is_reclaimed",
        "dying-child",
        &[("REGION_NAME", name.clone())],
    );
    common::expect_success(child); // reaped: not even a zombie
    let dead = PeerId::from_raw(read_u32(&region, 0, 0)).expect("the child wrote its id");
    assert_ne!(dead, region.peer_id());
    assert!(!region.peer_alive(dead));
    let listed: Vec<_> = region.peers();
    assert_eq!(listed.len(), 2, "the dead peer's slot is still held");
    assert!(listed.iter().any(|p| p.id == dead && !p.alive));
    assert!(region.peer_alive(region.peer_id()));
    // The table holds two: the dead peer's slot is taken over, with a new id.
    let newcomer = Region::open_with(&name, &short()).unwrap();
    assert_ne!(newcomer.peer_id(), dead);
    assert_eq!(newcomer.peer_id().to_raw() & 0xFF, dead.to_raw() & 0xFF);
    assert!(!region.peer_alive(dead));
    assert!(matches!(
        Region::open_with(&name, &short()),
        Err(OpenError::PeerTableFull)
    ));
}

#[test]
fn each_bad_region_gives_its_typed_error() {
    let good = valid_bytes("bad");
    assert!(open_bytes("good", &good).is_ok());

    let e = open_bytes("trunc-small", &good[..100]).unwrap_err();
    assert!(matches!(e, OpenError::TooSmall { len: 100, .. }), "{e:?}");
    let e = open_bytes("trunc", &good[..6000]).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::SizeMismatch {
                header: 8192,
                file: 6000
            }
        ),
        "{e:?}"
    );
    let mut longer = good.clone();
    longer.resize(12288, 0);
    let e = open_bytes("longer", &longer).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::SizeMismatch {
                header: 8192,
                file: 12288
            }
        ),
        "{e:?}"
    );

    let mut b = good.clone();
    b[0..8].copy_from_slice(b"NOTOURS!");
    let e = open_bytes("magic", &b).unwrap_err();
    assert!(matches!(e, OpenError::BadMagic), "{e:?}");

    let mut b = good.clone();
    put_u32(&mut b, 8, 99);
    let e = open_bytes("version", &b).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::VersionMismatch {
                found: 99,
                expected: 1
            }
        ),
        "{e:?}"
    );

    let mut b = good.clone();
    put_u64(&mut b, entry(1, 8), 4096 + 64 - 64); // section 1 starts where 0 does
    let e = open_bytes("overlap", &b).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::SectionsOverlap {
                first: 0,
                second: 1
            }
        ),
        "{e:?}"
    );

    let mut b = good.clone();
    put_u64(&mut b, entry(1, 16), 8192);
    let e = open_bytes("oob", &b).unwrap_err();
    assert!(
        matches!(e, OpenError::SectionOutOfBounds { index: 1, .. }),
        "{e:?}"
    );

    let mut b = good.clone();
    put_u64(&mut b, entry(0, 8), 64);
    let e = open_bytes("in-header", &b).unwrap_err();
    assert!(
        matches!(e, OpenError::SectionOutOfBounds { index: 0, .. }),
        "{e:?}"
    );

    let mut b = good.clone();
    put_u32(&mut b, entry(0, 0), 0xDEAD);
    let e = open_bytes("kind", &b).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::UnknownSectionKind {
                index: 0,
                kind: 0xDEAD
            }
        ),
        "{e:?}"
    );

    let mut b = good.clone();
    put_u32(&mut b, INIT_OFFSET, 0);
    let e = open_bytes("not-ready", &b).unwrap_err();
    assert!(matches!(e, OpenError::NotInitialized), "{e:?}");

    let e = open_bytes("empty", &[]).unwrap_err();
    assert!(matches!(e, OpenError::NotInitialized), "{e:?}");

    let e = open_bytes("zeros", &vec![0; HEADER_LEN]).unwrap_err();
    assert!(matches!(e, OpenError::NotInitialized), "{e:?}");

    // Not ready and not ours: the magic says why.
    let e = open_bytes("garbage", &vec![0x55; HEADER_LEN]).unwrap_err();
    assert!(matches!(e, OpenError::BadMagic), "{e:?}");
}

#[test]
fn a_symlink_planted_at_the_name_is_refused() {
    let target = unique("symlink-target");
    let link = unique("symlink");
    let _c1 = Cleanup(target.clone());
    let _c2 = Cleanup(link.clone());
    let real = Region::builder()
        .named(&target)
        .shm_file(true)
        .build()
        .unwrap();
    std::os::unix::fs::symlink(shm_path(&target), shm_path(&link)).unwrap();
    let e = Region::open_with(&link, &short()).unwrap_err();
    assert!(matches!(e, OpenError::Symlink { .. }), "{e:?}");
    // Creating at a planted link never follows it either, in either form
    // (the socket form refuses a name that exists under /dev/shm).
    for shm_file in [true, false] {
        let e = Region::builder()
            .named(&link)
            .shm_file(shm_file)
            .build()
            .unwrap_err();
        assert!(matches!(e, CreateError::NameTaken { .. }), "{e:?}");
    }
    drop(real);
}

#[test]
fn a_file_of_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to give a file to another user");
        return;
    }
    let good = valid_bytes("owner");
    let name = unique("other-owner");
    let _cleanup = Cleanup(name.clone());
    std::fs::write(shm_path(&name), &good).unwrap();
    std::os::unix::fs::chown(shm_path(&name), Some(65534), Some(65534)).unwrap();
    let e = Region::open_with(&name, &short()).unwrap_err();
    assert!(
        matches!(e, OpenError::NotOwner { owner: 65534, .. }),
        "{e:?}"
    );
}

#[test]
fn bad_open_requests_are_typed_errors() {
    for bad in ["", "a/b", "..", &"x".repeat(201)] {
        let e = Region::open(bad).unwrap_err();
        assert!(matches!(e, OpenError::InvalidName { .. }), "{bad:?}: {e:?}");
    }
    let e = Region::open(&unique("missing")).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
}

#[test]
fn bad_builder_requests_are_typed_errors() {
    let e = Region::builder()
        .section(SectionKind::Raw, 0)
        .build()
        .unwrap_err();
    assert!(matches!(e, CreateError::InvalidSize { .. }), "{e:?}");
    let e = Region::builder()
        .section(SectionKind::Raw, usize::MAX)
        .build()
        .unwrap_err();
    assert!(matches!(e, CreateError::InvalidSize { .. }), "{e:?}");
    let e = Region::builder()
        .section(SectionKind::Raw, usize::MAX / 2)
        .section(SectionKind::Raw, usize::MAX / 2)
        .build()
        .unwrap_err();
    assert!(matches!(e, CreateError::InvalidSize { .. }), "{e:?}");
    let mut many = Region::builder();
    for _ in 0..17 {
        many = many.section(SectionKind::Raw, 1);
    }
    let e = many.build().unwrap_err();
    assert!(
        matches!(
            e,
            CreateError::TooManySections {
                requested: 17,
                max: 16
            }
        ),
        "{e:?}"
    );
    let e = Region::builder().max_peers(49).build().unwrap_err();
    assert!(
        matches!(
            e,
            CreateError::TooManyPeers {
                requested: 49,
                max: 48
            }
        ),
        "{e:?}"
    );
    let e = Region::builder().max_peers(0).build().unwrap_err();
    assert!(matches!(e, CreateError::InvalidSize { .. }), "{e:?}");
    for bad in ["a/b", "", ".", &"x".repeat(201)] {
        let e = Region::builder().named(bad).build().unwrap_err();
        assert!(
            matches!(e, CreateError::InvalidName { .. }),
            "{bad:?}: {e:?}"
        );
    }
    let e = Region::builder().named_random("a/").build().unwrap_err();
    assert!(matches!(e, CreateError::InvalidName { .. }), "{e:?}");

    let name = unique("taken");
    let _cleanup = Cleanup(name.clone());
    let first = Region::builder().named(&name).build().unwrap();
    let e = Region::builder().named(&name).build().unwrap_err();
    assert!(matches!(e, CreateError::NameTaken { .. }), "{e:?}");
    drop(first);
    // The failed attempt did not unlink the first one's name early, and the
    // first one's drop did.
    assert!(!shm_path(&name).exists());
}

#[test]
fn a_full_peer_table_refuses_a_new_peer() {
    let region = Region::builder().max_peers(1).build().unwrap();
    let e = Region::from_fd(region.duplicate_fd().unwrap(), &short()).unwrap_err();
    assert!(matches!(e, OpenError::PeerTableFull), "{e:?}");
}

#[test]
fn heartbeat_moves_forward() {
    let region = Region::builder().build().unwrap();
    let before = region.peers()[0].heartbeat;
    region.heartbeat();
    let after = region.peers()[0].heartbeat;
    assert!(after >= before && after > 0);
}

/// Writes the committed seed corpus of the `region_open` fuzz target. Run
/// with `cargo test --test region -- --ignored write_fuzz_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/region_open; run by hand"]
fn write_fuzz_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/region_open");
    std::fs::create_dir_all(&dir).unwrap();
    let good = valid_bytes("corpus");
    let mut files: Vec<(&str, Vec<u8>)> = vec![("valid", good.clone())];
    files.push(("truncated-100", good[..100].to_vec()));
    files.push(("truncated-header", good[..HEADER_LEN - 1].to_vec()));
    files.push(("truncated-6000", good[..6000].to_vec()));
    let mut b = good.clone();
    b[0..8].copy_from_slice(b"NOTOURS!");
    files.push(("bad-magic", b));
    let mut b = good.clone();
    put_u32(&mut b, 8, 2);
    files.push(("bad-version", b));
    let mut b = good.clone();
    put_u64(&mut b, entry(1, 8), 4096);
    files.push(("overlapping", b));
    let mut b = good.clone();
    put_u64(&mut b, entry(1, 16), u64::MAX - 100);
    files.push(("out-of-bounds", b));
    let mut b = good.clone();
    put_u64(&mut b, entry(0, 8), 4100);
    files.push(("misaligned", b));
    let mut b = good.clone();
    put_u32(&mut b, entry(1, 0), 77);
    files.push(("unknown-kind", b));
    let mut b = good.clone();
    put_u32(&mut b, INIT_OFFSET, 0);
    files.push(("not-ready", b));
    let mut b = good.clone();
    put_u32(&mut b, 28, 200);
    files.push(("too-many-sections", b));
    let mut b = good.clone();
    put_u32(&mut b, 40, 1);
    // Slot 0 held by pid 1 (alive in any pid namespace) under a made-up id (not the
    // stale `published` one, 0x101, which would pair it with our start time).
    put_u64(&mut b, 640, 1u64 << 32 | 0x301);
    files.push(("peer-table-full", b));
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("seed-empty"));
}

/// The committed corpus is what its file names say (see `write_fuzz_corpus`).
#[test]
fn the_fuzz_corpus_files_give_their_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/region_open");
    let open = |file: &str| {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        Region::from_fd(sealed_memfd(&bytes, SealFlags::SHRINK), &short())
    };
    let r = open("valid").unwrap();
    assert_eq!(r.sections().len(), 2);
    let expect = |file: &str, ok: fn(&OpenError) -> bool| match open(file) {
        Ok(r) => panic!("{file}: opened {r:?}"),
        Err(e) => assert!(ok(&e), "{file}: {e:?}"),
    };
    expect("truncated-100", |e| matches!(e, OpenError::TooSmall { .. }));
    expect("truncated-header", |e| {
        matches!(e, OpenError::TooSmall { .. })
    });
    expect("truncated-6000", |e| {
        matches!(e, OpenError::SizeMismatch { .. })
    });
    expect("bad-magic", |e| matches!(e, OpenError::BadMagic));
    expect("bad-version", |e| {
        matches!(e, OpenError::VersionMismatch { .. })
    });
    expect("overlapping", |e| {
        matches!(e, OpenError::SectionsOverlap { .. })
    });
    expect("out-of-bounds", |e| {
        matches!(e, OpenError::SectionOutOfBounds { .. })
    });
    expect("misaligned", |e| {
        matches!(e, OpenError::SectionMisaligned { .. })
    });
    expect("unknown-kind", |e| {
        matches!(e, OpenError::UnknownSectionKind { .. })
    });
    expect("not-ready", |e| matches!(e, OpenError::NotInitialized));
    expect("too-many-sections", |e| {
        matches!(e, OpenError::TooManySections { .. })
    });
    expect("peer-table-full", |e| matches!(e, OpenError::PeerTableFull));
}

/// A memfd holding `bytes`, with `seals` added (none if empty).
fn sealed_memfd(bytes: &[u8], seals: SealFlags) -> OwnedFd {
    use rustix::fs::MemfdFlags;
    let fd =
        rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, bytes).unwrap();
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&f, seals).unwrap();
    }
    f.into()
}

fn not_sealed(r: Result<Region, OpenError>) -> u32 {
    match r {
        Err(OpenError::NotSealed { seals }) => seals,
        other => panic!("expected NotSealed, got {other:?}"),
    }
}

/// `from_fd` maps only a file sealed against shrinking: one that is not
/// (a memfd its sender did not seal, a tmpfs file, a file on disk) could be
/// truncated under the mapping by whoever else holds it.
#[test]
fn from_fd_refuses_a_file_not_sealed_against_shrinking() {
    let good = valid_bytes("seals");
    // A memfd that allows sealing but has no seal.
    let e = Region::from_fd(sealed_memfd(&good, SealFlags::empty()), &short()).unwrap_err();
    assert!(matches!(e, OpenError::NotSealed { seals: 0 }), "{e:?}");
    assert!(e.to_string().contains("F_SEAL_SHRINK"), "{e}");
    // Sealed, but against growing only.
    let seals = not_sealed(Region::from_fd(
        sealed_memfd(&good, SealFlags::GROW | SealFlags::SEAL),
        &short(),
    ));
    assert_eq!(seals, (SealFlags::GROW | SealFlags::SEAL).bits());
    // A memfd made without MFD_ALLOW_SEALING: born with F_SEAL_SEAL only.
    let fd = rustix::fs::memfd_create("unsealable", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, &good).unwrap();
    assert_eq!(
        not_sealed(Region::from_fd(f.into(), &short())),
        SealFlags::SEAL.bits()
    );
    // A plain tmpfs file under /dev/shm, handed over as a descriptor; the
    // same file opened by name goes through `open`, which takes it.
    let name = unique("unsealed-tmpfs");
    let _cleanup = Cleanup(name.clone());
    std::fs::write(shm_path(&name), &good).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    let _ = not_sealed(Region::from_fd(file.into(), &short()));
    let by_name = Region::open_with(&name, &short()).unwrap();
    assert_eq!(by_name.sections().len(), 2);
    // Its reopen stays on the named path.
    by_name.reopen(&short()).unwrap();
    // A file on disk cannot carry seals at all.
    let path = std::env::temp_dir().join(unique("unsealed-disk"));
    std::fs::write(&path, &good).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let _ = not_sealed(Region::from_fd(file.into(), &short()));

    // Sealed against shrinking, and nothing else: accepted.
    let r = Region::from_fd(sealed_memfd(&good, SealFlags::SHRINK), &short()).unwrap();
    assert_eq!(r.sections().len(), 2);
    // The builder's own memfd, as a child inherits it: accepted, and so is
    // a reopen through it.
    let built = Region::builder()
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let inherited = Region::from_fd(built.duplicate_fd().unwrap(), &short()).unwrap();
    assert_eq!(inherited.sections().len(), 1);
    inherited.reopen(&short()).unwrap();
}

/// An opener waits for a creator that has not marked the region ready yet;
/// whether the child looks before or after the parent's store, it must open.
#[test]
fn an_opener_waits_for_a_late_creator() {
    if common::role().as_deref() == Some("waiting-child") {
        let name = std::env::var("REGION_NAME").unwrap();
        let opts = OpenOptions {
            init_timeout: Duration::MAX, // no deadline: only READY ends the wait
            role: 3,
        };
        let region = Region::open_with(&name, &opts).unwrap();
        assert_eq!(region.sections().len(), 2);
        return;
    }
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let mut bytes = valid_bytes("late");
    let ready = bytes[INIT_OFFSET..INIT_OFFSET + 4].to_vec();
    put_u32(&mut bytes, INIT_OFFSET, 0);
    let name = unique("late");
    let _cleanup = Cleanup(name.clone());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(&name))
        .unwrap();
    file.write_all_at(&bytes, 0).unwrap();
    let child = common::spawn_self(
        "an_opener_waits_for_a_late_creator",
        "waiting-child",
        &[("REGION_NAME", name.clone())],
    );
    file.write_all_at(&ready, INIT_OFFSET as u64).unwrap();
    common::expect_success(child);
}

/// A handed-over descriptor is taken only if it is the file the parent
/// shared: a variable naming another open descriptor (a grandchild that
/// inherited a stale variable, say), a closed one, or garbage is refused.
/// (The child gets the variables from the parent's command: no process
/// changes its own environment.)
#[test]
fn inherited_checks_the_descriptor_it_is_told_about() {
    const VARS: [&str; 4] = [
        "POLYCEPHALY_TEST_HANDOFF_OTHER_FILE",
        "POLYCEPHALY_TEST_HANDOFF_CLOSED",
        "POLYCEPHALY_TEST_HANDOFF_GARBAGE",
        "POLYCEPHALY_TEST_HANDOFF_UNSET",
    ];
    if common::role().as_deref() == Some("handoff-checks") {
        for var in VARS {
            let got = Region::inherited_from(var, &short());
            assert!(
                matches!(got, Err(OpenError::NotInherited { .. })),
                "{var}: {got:?}"
            );
        }
        return;
    }
    let region = Region::builder().build().unwrap();
    let st = rustix::fs::fstat(region.duplicate_fd().unwrap()).unwrap();
    let id = format!("{}:{}", st.st_dev, st.st_ino);
    let child = common::spawn_self(
        "inherited_checks_the_descriptor_it_is_told_about",
        "handoff-checks",
        &[
            // The child's stdout: open, but not the region's file.
            (VARS[0], format!("1:{id}")),
            (VARS[1], format!("99999:{id}")),
            (VARS[2], "12:x:y".into()),
        ],
    );
    common::expect_success(child);
}
