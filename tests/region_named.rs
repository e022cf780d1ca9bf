//! Named regions between unrelated processes: the socket form (a sealed
//! memfd handed out over an abstract Unix socket) and the `/dev/shm` form.
//!
//! - an unrelated process (this binary, re-executed, with nothing inherited)
//!   opens a socket-served region; no file exists under /dev/shm at any
//!   point, nor after the creator is killed with SIGKILL; a live name is
//!   taken (in either form), a dead one is free, and a survivor can serve it;
//! - another user is refused both ways unless asked for, and a group opens
//!   the region to a chosen user (real processes under uid 65534 when this
//!   runs as root; the decision itself is unit-tested in `socket.rs`);
//! - a server that never answers (backlog full, accepts and sends nothing,
//!   answers garbage) ends `open` with an error, never a hang; clients that
//!   connect and never read do not stop the real server;
//! - a truncated `/dev/shm` region is reported by the SIGBUS handler (a
//!   child's exit status and stderr); a socket-served region cannot be
//!   truncated (`ftruncate` fails with EPERM).

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use polycephaly::region::{
    Backing, CreateError, OpenError, OpenOptions, Region, SOCKET_NAME_PREFIX, SectionId,
    SectionKind,
};
use polycephaly::sync::shim::{AtomicU32, Ordering};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Only detects a hang: every wait below ends on an observable state.
const HANG: Duration = Duration::from_secs(60);
const NAME_VAR: &str = "POLYCEPHALY_TEST_REGION_NAME";
const CASE_VAR: &str = "POLYCEPHALY_TEST_CASE";
/// The user and groups of the "other user" children (root only).
const OTHER_UID: u32 = 65534;
const SHARED_GID: u32 = 4242;

fn unique(tag: &str) -> String {
    format!("polyc-named-{}-{tag}", std::process::id())
}

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

/// Removes `/dev/shm/NAME` when dropped (should a file-form test fail).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

fn opts(timeout_ms: u64) -> OpenOptions {
    OpenOptions {
        init_timeout: Duration::from_millis(timeout_ms),
        role: 0,
    }
}

/// Word `i` of the raw section 0.
fn word(region: &Region, i: usize) -> &AtomicU32 {
    let s = region.section(SectionId(0)).expect("the raw section");
    assert!((i + 1) * 4 <= s.len);
    // SAFETY: in bounds (checked), 4-aligned (sections are 64-aligned),
    // zero at creation; an atomic over shared bytes is valid for any bits
    // and `region` keeps the mapping as long as the reference.
    unsafe { &*s.ptr.as_ptr().add(i * 4).cast::<AtomicU32>() }
}

/// This test binary again, running only `test` in the role `role`.
fn child(test: &str, role: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(common::ROLE_VAR, role)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cmd` as uid [`OTHER_UID`] with primary group `gid` and only the
/// supplementary groups `groups`.
fn as_other_user(cmd: &mut Command, gid: u32, groups: &'static [u32]) {
    // SAFETY: the closure runs in the child between fork and exec and makes
    // only async-signal-safe system calls (setgroups, setresgid, setresuid)
    // on data that lives for the whole program; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(OTHER_UID, OTHER_UID, OTHER_UID) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Waits for `child` and asserts it succeeded.
fn expect_success(mut child: Child) {
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child failed: {status}");
}

/// Kills and reaps a child left running by a failed assertion.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `f` until it gives `Some`; panics after [`HANG`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether any mapping of process `pid` comes from `/dev/shm/NAME`, and
/// whether one comes from our memfd.
fn mappings(pid: u32, name: &str) -> (bool, bool) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    (
        maps.contains(&format!("/dev/shm/{name}")),
        maps.contains("/memfd:polycephaly"),
    )
}

#[test]
fn an_unrelated_process_opens_a_socket_served_region() {
    if common::role().as_deref() == Some("unrelated-opener") {
        let name = std::env::var(NAME_VAR).unwrap();
        let region = Region::open(&name).expect("open by name");
        assert_eq!(region.backing(), Backing::Socket);
        assert!(!region.serves_name());
        assert!(!shm_path(&name).exists());
        let (shm, memfd) = mappings(std::process::id(), &name);
        assert!(!shm && memfd, "we map the creator's memfd, no file");
        assert_eq!(word(&region, 0).load(Ordering::Relaxed), 0xC0FFEE);
        word(&region, 1).store(0xBEEF, Ordering::Relaxed);
        return;
    }
    let name = unique("unrelated");
    let region = Region::builder()
        .named(&name)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    assert_eq!(region.backing(), Backing::Socket);
    assert!(region.serves_name());
    word(&region, 0).store(0xC0FFEE, Ordering::Relaxed);
    assert!(!shm_path(&name).exists());
    let opener = child(
        "an_unrelated_process_opens_a_socket_served_region",
        "unrelated-opener",
        &[(NAME_VAR, &name)],
    )
    .spawn()
    .unwrap();
    expect_success(opener);
    assert_eq!(word(&region, 1).load(Ordering::Relaxed), 0xBEEF);
    assert_eq!(region.peers().len(), 1, "the opener released its slot");
    assert!(!shm_path(&name).exists());
}

/// The creator is another process, killed with SIGKILL: nothing is left,
/// the survivor keeps its mapping, the name is free for a new creator, and
/// the survivor can serve it again.
#[test]
fn a_killed_creator_leaves_nothing_and_frees_the_name() {
    if common::role().as_deref() == Some("creator") {
        let name = std::env::var(NAME_VAR).unwrap();
        let region = Region::builder()
            .named(&name)
            .section(SectionKind::Raw, 64)
            .build()
            .unwrap();
        word(&region, 0).store(0xC0FFEE, Ordering::Relaxed);
        // Until killed (or the parent goes: end of stdin).
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        return;
    }
    let name = unique("killed");
    let mut cmd = child(
        "a_killed_creator_leaves_nothing_and_frees_the_name",
        "creator",
        &[(NAME_VAR, &name)],
    );
    cmd.stdin(Stdio::piped());
    let mut creator = KillOnDrop(cmd.spawn().unwrap());
    let pid = creator.0.id();
    let survivor = wait_for("the creator to serve its region", || {
        Region::open(&name).ok()
    });
    assert_eq!(survivor.backing(), Backing::Socket);
    // The name is served from `build` on: the creator writes its word
    // just after, maybe after our open.
    wait_for("the creator's word", || {
        (word(&survivor, 0).load(Ordering::Relaxed) == 0xC0FFEE).then_some(())
    });
    let creator_id = survivor
        .peers()
        .into_iter()
        .find(|p| p.pid == pid)
        .expect("the creator's slot")
        .id;
    assert!(survivor.peer_alive(creator_id));
    assert!(!shm_path(&name).exists());
    let (shm, memfd) = mappings(pid, &name);
    assert!(!shm && memfd, "the creator maps a memfd, no file");

    // A live name is taken, in either form.
    for shm_file in [false, true] {
        let e = Region::builder()
            .named(&name)
            .shm_file(shm_file)
            .build()
            .unwrap_err();
        assert!(matches!(e, CreateError::NameTaken { .. }), "{e:?}");
    }
    assert!(matches!(
        survivor.serve_name(None),
        Err(CreateError::NameTaken { .. })
    ));

    creator.0.kill().unwrap();
    let status = creator.0.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!survivor.peer_alive(creator_id));
    assert!(!shm_path(&name).exists(), "nothing left under /dev/shm");
    // Our mapping outlives the creator.
    assert_eq!(word(&survivor, 0).load(Ordering::Relaxed), 0xC0FFEE);
    let e = Region::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");

    // A dead name is free: a new creator takes it...
    let other = Region::builder()
        .named(&name)
        .section(SectionKind::Raw, 64)
        .build()
        .expect("a dead name is reusable");
    assert_eq!(
        word(&Region::open(&name).unwrap(), 0).load(Ordering::Relaxed),
        0
    );
    drop(other);
    // ... and so can a survivor, serving the old region.
    survivor.serve_name(None).expect("take the name over");
    assert!(survivor.serves_name());
    let late = Region::open(&name).expect("open through the survivor");
    assert_eq!(word(&late, 0).load(Ordering::Relaxed), 0xC0FFEE);
    drop(late);
    drop(survivor);
    assert!(matches!(
        Region::open(&name),
        Err(OpenError::NotFound { .. })
    ));
    assert!(!shm_path(&name).exists());
}

#[test]
fn a_live_file_form_name_is_taken_for_the_socket_form() {
    let name = unique("file-first");
    let _cleanup = Cleanup(name.clone());
    let file = Region::builder()
        .named(&name)
        .shm_file(true)
        .build()
        .unwrap();
    let e = Region::builder().named(&name).build().unwrap_err();
    assert!(matches!(e, CreateError::NameTaken { .. }), "{e:?}");
    assert!(e.to_string().contains("already in use"), "{e}");
    assert_eq!(Region::open(&name).unwrap().backing(), Backing::ShmFile);
    drop(file);
    let socket = Region::builder().named(&name).build().unwrap();
    assert_eq!(socket.backing(), Backing::Socket);
}

#[test]
fn names_too_long_for_a_socket_need_the_file_form() {
    let name = format!("{}-{}", unique("long"), "x".repeat(100));
    let _cleanup = Cleanup(name.clone());
    let e = Region::builder().named(&name).build().unwrap_err();
    assert!(matches!(e, CreateError::InvalidName { .. }), "{e:?}");
    let file = Region::builder()
        .named(&name)
        .shm_file(true)
        .build()
        .unwrap();
    assert_eq!(Region::open(&name).unwrap().len(), file.len());
}

/// The children of [`another_user_is_refused_unless_asked_for`], as uid
/// 65534; `CASE_VAR` says what to check.
fn other_user_child(case: &str, name: &str) {
    let root = 0;
    let not_owner =
        |e: &OpenError| matches!(e, OpenError::NotOwner { owner: 0, us } if *us == OTHER_UID);
    match case {
        // Root's region, no group: refused both ways.
        "no-group" => {
            let e = Region::open(name).unwrap_err();
            assert!(not_owner(&e), "{e:?}");
            let e = Region::open_owned_by(name, root, &opts(5000)).unwrap_err();
            assert!(matches!(e, OpenError::Refused { .. }), "{e:?}");
        }
        // Root's region shared with our group (socket or file form).
        "group" => {
            let e = Region::open(name).unwrap_err();
            assert!(not_owner(&e), "{e:?}");
            let region = Region::open_owned_by(name, root, &opts(5000)).expect("admitted");
            word(&region, 0).store(OTHER_UID, Ordering::Relaxed);
        }
        // A file shared with a group we are not in: the kernel says no.
        "file-not-in-group" => {
            let e = Region::open_owned_by(name, root, &opts(5000)).unwrap_err();
            assert!(matches!(e, OpenError::PermissionDenied), "{e:?}");
        }
        // We create; the root parent checks from its side.
        "creator" => {
            let _region = Region::builder()
                .named(name)
                .section(SectionKind::Raw, 64)
                .build()
                .unwrap();
            let _ = std::io::stdin().read(&mut [0u8; 1]);
        }
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn another_user_is_refused_unless_asked_for() {
    if common::role().as_deref() == Some("other-user") {
        assert_eq!(rustix::process::geteuid().as_raw(), OTHER_UID);
        let name = std::env::var(NAME_VAR).unwrap();
        other_user_child(&std::env::var(CASE_VAR).unwrap(), &name);
        return;
    }
    if !is_root() {
        eprintln!(
            "skipped: needs root to run children as another user; the decision is \
             unit-tested (region::socket::tests::admission_is_the_user_or_the_chosen_group)"
        );
        return;
    }
    const TEST: &str = "another_user_is_refused_unless_asked_for";
    let run = |case: &str, name: &str, gid: u32, groups: &'static [u32]| {
        let mut cmd = child(TEST, "other-user", &[(NAME_VAR, name), (CASE_VAR, case)]);
        as_other_user(&mut cmd, gid, groups);
        expect_success(cmd.spawn().unwrap());
    };
    // 1. No group: refused.
    let name = unique("users-no-group");
    let region = Region::builder()
        .named(&name)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    run("no-group", &name, OTHER_UID, &[]);
    drop(region);
    // 2. A group, by primary and by supplementary membership.
    for (tag, gid, groups) in [
        ("primary", SHARED_GID, &[][..]),
        ("supplementary", OTHER_UID, &[SHARED_GID][..]),
    ] {
        let name = unique(&format!("users-group-{tag}"));
        let region = Region::builder()
            .named(&name)
            .group(SHARED_GID)
            .section(SectionKind::Raw, 64)
            .build()
            .unwrap();
        run("group", &name, gid, groups);
        assert_eq!(word(&region, 0).load(Ordering::Relaxed), OTHER_UID, "{tag}");
    }
    // 3. The file form: mode 0660 and the group; the kernel checks it.
    let name = unique("users-file");
    let _cleanup = Cleanup(name.clone());
    let region = Region::builder()
        .named(&name)
        .shm_file(true)
        .group(SHARED_GID)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let meta = std::fs::metadata(shm_path(&name)).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&meta) & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), SHARED_GID);
    run("group", &name, OTHER_UID, &[SHARED_GID]);
    assert_eq!(word(&region, 0).load(Ordering::Relaxed), OTHER_UID);
    run("file-not-in-group", &name, OTHER_UID, &[]);
    drop(region);
    // 4. The other user creates: we refuse its region unless asked for, and
    //    it refuses us (root is another user too).
    let name = unique("users-theirs");
    let mut cmd = child(
        TEST,
        "other-user",
        &[(NAME_VAR, &name), (CASE_VAR, "creator")],
    );
    cmd.stdin(Stdio::piped());
    as_other_user(&mut cmd, OTHER_UID, &[]);
    let _creator = KillOnDrop(cmd.spawn().unwrap());
    let e = wait_for("the other user's region", || match Region::open(&name) {
        Err(OpenError::NotFound { .. }) => None,
        other => Some(other),
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::NotOwner {
                owner: OTHER_UID,
                us: 0
            }
        ),
        "{e:?}"
    );
    let e = Region::open_owned_by(&name, OTHER_UID, &opts(5000)).unwrap_err();
    assert!(matches!(e, OpenError::Refused { .. }), "{e:?}");
}

/// A socket bound at the address a region named `name` would have.
fn fake_server(name: &str, backlog: i32) -> OwnedFd {
    fake_server_of_type(name, backlog, SocketType::SEQPACKET)
}

fn fake_server_of_type(name: &str, backlog: i32, kind: SocketType) -> OwnedFd {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        kind,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .unwrap();
    let addr = format!("{SOCKET_NAME_PREFIX}{name}");
    let addr = SocketAddrUnix::new_abstract_name(addr.as_bytes()).unwrap();
    rustix::net::bind(&sock, &addr).unwrap();
    rustix::net::listen(&sock, backlog).unwrap();
    sock
}

/// `Region::open_with(name)` on a thread; see [`outcome`].
fn open_in_thread(name: &str, timeout_ms: u64) -> mpsc::Receiver<Result<Region, OpenError>> {
    let (tx, rx) = mpsc::channel();
    let name = name.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Region::open_with(&name, &opts(timeout_ms)));
    });
    rx
}

/// The result of [`open_in_thread`]; a panic after [`HANG`] (an `open`
/// that hangs).
fn outcome(rx: &mpsc::Receiver<Result<Region, OpenError>>) -> Result<Region, OpenError> {
    rx.recv_timeout(HANG).expect("open hung")
}

/// Accepts one connection on the non-blocking `listener`, waiting for it
/// up to [`HANG`].
fn accept_one(listener: &OwnedFd) -> OwnedFd {
    wait_for("a client", || rustix::net::accept(listener).ok())
}

#[test]
fn a_server_that_never_answers_ends_open_with_a_timeout() {
    // Listens, never accepts: connect succeeds (queued), no reply comes.
    let name = unique("never-accepts");
    let _listener = fake_server(&name, 8);
    let rx = open_in_thread(&name, 200);
    let e = outcome(&rx).unwrap_err();
    assert!(matches!(e, OpenError::TimedOut { .. }), "{e:?}");

    // Accepts and never sends.
    let name = unique("never-sends");
    let listener = fake_server(&name, 8);
    let rx = open_in_thread(&name, 200);
    let _conn = accept_one(&listener);
    let e = outcome(&rx).unwrap_err();
    assert!(matches!(e, OpenError::TimedOut { .. }), "{e:?}");

    // A full backlog: connect itself would wait.
    let name = unique("backlog-full");
    let _listener = fake_server(&name, 0);
    let addr = format!("{SOCKET_NAME_PREFIX}{name}");
    let addr = SocketAddrUnix::new_abstract_name(addr.as_bytes()).unwrap();
    let mut fillers = Vec::new();
    loop {
        let s = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        match rustix::net::connect(&s, &addr) {
            Ok(()) => fillers.push(s),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(fillers.len() < 1000, "the backlog never filled");
    }
    let rx = open_in_thread(&name, 200);
    let e = outcome(&rx).unwrap_err();
    assert!(matches!(e, OpenError::TimedOut { .. }), "{e:?}");
}

#[test]
fn a_server_that_answers_garbage_is_refused() {
    let cases: [(&str, &[u8]); 3] = [
        ("hello", b"hello, I am not a region server"),
        ("magic-no-fd", b"PLYCSRV1\0\0\0\0\0\0\0\0"),
        ("bad-status", b"PLYCSRV1\x07\0\0\0\0\0\0\0"),
    ];
    for (tag, reply) in cases {
        let name = unique(&format!("garbage-{tag}"));
        let listener = fake_server(&name, 8);
        let rx = open_in_thread(&name, 5000);
        let conn = accept_one(&listener);
        rustix::net::send(&conn, reply, rustix::net::SendFlags::empty()).unwrap();
        let e = outcome(&rx).unwrap_err();
        assert!(matches!(e, OpenError::BadReply { .. }), "{tag}: {e:?}");
    }
    // A stream socket at the same address is another name to the kernel
    // (abstract names are looked up per socket type): not found.
    let name = unique("garbage-stream");
    let _listener = fake_server_of_type(&name, 8, SocketType::STREAM);
    let e = outcome(&open_in_thread(&name, 5000)).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    // Closes without a word.
    let name = unique("garbage-close");
    let listener = fake_server(&name, 8);
    let rx = open_in_thread(&name, 5000);
    drop(accept_one(&listener));
    let e = outcome(&rx).unwrap_err();
    assert!(matches!(e, OpenError::BadReply { .. }), "{e:?}");
}

/// Clients that connect and never read (nor close) do not stop the server:
/// it never waits for a client.
#[test]
fn clients_that_never_read_do_not_stop_the_server() {
    let name = unique("idle-clients");
    let region = Region::builder()
        .named(&name)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    word(&region, 0).store(7, Ordering::Relaxed);
    let addr = format!("{SOCKET_NAME_PREFIX}{name}");
    let addr = SocketAddrUnix::new_abstract_name(addr.as_bytes()).unwrap();
    let idle: Vec<OwnedFd> = (0..200)
        .map(|_| {
            let s = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .unwrap();
            rustix::net::connect(&s, &addr).unwrap();
            s
        })
        .collect();
    let rx = open_in_thread(&name, 5000);
    let opened = outcome(&rx).expect("served despite idle clients");
    assert_eq!(word(&opened, 0).load(Ordering::Relaxed), 7);
    drop(idle);
}

/// A child that maps a `/dev/shm` region, truncates the file and touches a
/// page past the new end: killed by SIGBUS either way; with the handler,
/// stderr names the region and the cause.
#[test]
fn a_truncated_shm_region_is_reported() {
    if common::role().as_deref() == Some("truncated") {
        let name = std::env::var(NAME_VAR).unwrap();
        let _cleanup = Cleanup(name.clone());
        if std::env::var(CASE_VAR).unwrap() == "handler" {
            polycephaly::region::install_sigbus_handler().unwrap();
        }
        let region = Region::builder()
            .named(&name)
            .shm_file(true)
            .section(SectionKind::Raw, 64)
            .build()
            .unwrap();
        word(&region, 0).store(1, Ordering::Relaxed);
        // What any process of the user can do to the file.
        std::fs::OpenOptions::new()
            .write(true)
            .open(shm_path(&name))
            .unwrap()
            .set_len(4096)
            .unwrap();
        let _ = word(&region, 0).load(Ordering::Relaxed); // SIGBUS
        eprintln!("survived the truncation");
        std::process::exit(3);
    }
    for case in ["handler", "none"] {
        let name = unique(&format!("truncated-{case}"));
        let _cleanup = Cleanup(name.clone());
        let out = child(
            "a_truncated_shm_region_is_reported",
            "truncated",
            &[(NAME_VAR, &name), (CASE_VAR, case)],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGBUS),
            "{case}: {:?}, stderr: {stderr}",
            out.status
        );
        let report = format!("region \"{name}\" was truncated by another process");
        assert_eq!(
            stderr.contains(&report),
            case == "handler",
            "{case}: {stderr}"
        );
        if case == "handler" {
            assert!(
                stderr.contains("SIGBUS at offset 4096 of 8192; the file now has 4096 bytes"),
                "{stderr}"
            );
        }
    }
}

/// What an opener maps of a socket-served region is a sealed memfd: no
/// process can truncate (or grow) it.
#[test]
fn a_socket_served_region_cannot_be_truncated() {
    let name = unique("sealed");
    let creator = Region::builder()
        .named(&name)
        .section(SectionKind::Raw, 64)
        .build()
        .unwrap();
    let opener = Region::open(&name).unwrap();
    for region in [&creator, &opener] {
        let fd = region.duplicate_fd().unwrap();
        let len = region.len() as u64;
        for to in [0, 4096, len * 2] {
            assert_eq!(
                rustix::fs::ftruncate(&fd, to),
                Err(rustix::io::Errno::PERM),
                "ftruncate to {to}"
            );
        }
        // Nor through its /proc/self/fd path (a new open file description).
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        assert_eq!(
            file.set_len(0).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert_eq!(word(region, 0).load(Ordering::Relaxed), 0, "still mapped");
    }
}
