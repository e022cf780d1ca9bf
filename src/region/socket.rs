//! Named regions without a file: the creator hands its sealed memfd out
//! over an abstract Unix socket.
//!
//! The creator binds `SOCK_SEQPACKET` socket at the abstract address
//! [`SOCKET_NAME_PREFIX`]`NAME` (shown as `@polycephaly:NAME` by `ss -xl`)
//! and a small thread accepts on it. For each connection it reads the
//! client's credentials (`SO_PEERCRED`, as they were at `connect`), decides
//! ([`Admission`]) and sends one 16-byte reply: [`REPLY_MAGIC`] and a status,
//! with the memfd attached (`SCM_RIGHTS`) when the client is admitted. It
//! never reads from a client and never waits for one (the accepted socket is
//! non-blocking and the reply is sent with `MSG_DONTWAIT`), so a client that
//! connects and then does nothing costs the server nothing.
//!
//! The opener connects, checks the server's credentials (`SO_PEERCRED`
//! again: a server of another user is refused unless asked for), receives
//! the reply within a bound (`SO_SNDTIMEO` bounds `connect` when the
//! server's backlog is full, `SO_RCVTIMEO` the reply), checks it, and maps
//! the memfd like any handed-over descriptor (sealed against shrinking,
//! owner, header).
//!
//! Why an abstract socket: it has no file, so nothing is left behind by a
//! creator killed with SIGKILL (the kernel frees the name with the last
//! descriptor of the socket), and what openers map is a memfd, sealed: no
//! process can truncate it. Its limits: the abstract namespace belongs to
//! the network namespace (processes in different network namespaces,
//! containers say, cannot meet by name even when they share `/dev/shm`), and
//! any local user may bind a name first (the creator then gets
//! `NameTaken`, and an opener refuses that server: its uid is not the
//! expected one).

use core::time::Duration;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    sockopt,
};

use super::error::{CreateError, OpenError};
use crate::sync::clock::Instant;

/// The abstract socket address of the region `NAME` is this prefix
/// followed by `NAME` (no leading `/`; `ss -xl` shows `@polycephaly:NAME`).
pub const SOCKET_NAME_PREFIX: &str = "polycephaly:";

/// The longest name a socket-served region can have: an abstract address
/// holds 107 bytes, the prefix takes 12. Longer names (up to 200 bytes)
/// need the `/dev/shm` form ([`RegionBuilder::shm_file`]).
///
/// [`RegionBuilder::shm_file`]: super::RegionBuilder::shm_file
pub const MAX_SOCKET_NAME_LEN: usize = 107 - SOCKET_NAME_PREFIX.len();

/// The first 8 bytes of every reply of a region server.
pub(crate) const REPLY_MAGIC: [u8; 8] = *b"PLYCSRV1";
const REPLY_LEN: usize = 16;
const STATUS_OK: u32 = 0;
const STATUS_REFUSED: u32 = 1;
/// How many pending connections the kernel queues for the server.
const BACKLOG: i32 = 64;

/// The abstract address of `name`.
fn address(name: &str) -> io::Result<SocketAddrUnix> {
    let mut bytes = Vec::with_capacity(SOCKET_NAME_PREFIX.len() + name.len());
    bytes.extend_from_slice(SOCKET_NAME_PREFIX.as_bytes());
    bytes.extend_from_slice(name.as_bytes());
    Ok(SocketAddrUnix::new_abstract_name(&bytes)?)
}

/// Who a region server hands its memfd to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admission {
    /// The user admitted: the creator's effective uid.
    pub uid: u32,
    /// A group whose members are admitted too ([`RegionBuilder::group`]).
    ///
    /// [`RegionBuilder::group`]: super::RegionBuilder::group
    pub gid: Option<u32>,
}

impl Admission {
    /// Whether a client with effective `uid`, effective `gid` and
    /// supplementary `groups` (as the kernel reported them for its
    /// `connect`) gets the region.
    pub(crate) fn admits(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        uid == self.uid || self.gid.is_some_and(|g| gid == g || groups.contains(&g))
    }
}

/// The accept thread of a region, stopped when this is dropped (in the
/// process that started it; a copy inherited through `fork` stops nothing).
#[derive(Debug)]
pub(crate) struct Server {
    /// The bound, listening socket: the name is ours while it is open. The
    /// thread borrows it; it closes after the thread is joined.
    #[expect(dead_code, reason = "held for its drop; the thread borrows it")]
    listener: OwnedFd,
    /// An eventfd; written once to stop the thread.
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
    /// The process that started the thread.
    pid: u32,
}

impl Server {
    /// Binds `name` and starts serving `memfd` to the clients `admission`
    /// admits.
    ///
    /// # Errors
    /// [`CreateError::NameTaken`] when a socket holds the name (a live
    /// server, of any user); [`CreateError::Io`] when a socket, the eventfd
    /// or the thread cannot be made.
    pub(crate) fn start(
        name: &str,
        memfd: &OwnedFd,
        admission: Admission,
    ) -> Result<Server, CreateError> {
        let addr = address(name)?;
        let listener = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(io::Error::from)?;
        rustix::net::bind(&listener, &addr).map_err(|e| match e {
            Errno::ADDRINUSE => CreateError::NameTaken {
                name: name.to_owned(),
            },
            e => CreateError::Io(e.into()),
        })?;
        rustix::net::listen(&listener, BACKLOG).map_err(io::Error::from)?;
        let stop = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(io::Error::from)?;
        let memfd = rustix::io::fcntl_dupfd_cloexec(memfd, 0).map_err(io::Error::from)?;
        let (listener_raw, stop_raw) = (listener.as_raw_fd(), stop.as_raw_fd());
        let thread = std::thread::Builder::new()
            .name("polycephaly-region-server".into())
            .spawn(move || {
                // SAFETY: both descriptors are owned by the `Server`, whose
                // drop joins this thread before it closes them; in a child
                // made by `fork` this thread does not exist.
                let (listener, stop) = unsafe {
                    (
                        BorrowedFd::borrow_raw(listener_raw),
                        BorrowedFd::borrow_raw(stop_raw),
                    )
                };
                serve(listener, stop, &memfd, admission);
            })?;
        Ok(Server {
            listener,
            stop,
            thread: Some(thread),
            pid: crate::sync::process::current_pid(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if crate::sync::process::current_pid() != self.pid {
            // A copy inherited through fork: the thread runs in the parent
            // only, and the eventfd is the parent's too (writing it would
            // stop the parent's server). Closing our copies of the
            // descriptors (the fields' drops) frees nothing of the parent's.
            core::mem::forget(thread);
            return;
        }
        // Nothing to do on failure: an eventfd write fails only when its
        // counter would overflow, i.e. it was written already.
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
        // The thread returns no value and does not panic; a join error
        // would only say it did.
        let _ = thread.join();
        // `listener` closes after this (the fields' drops): the name is
        // free once the drop returns.
    }
}

/// The accept loop: until `stop` is readable.
fn serve(listener: BorrowedFd<'_>, stop: BorrowedFd<'_>, memfd: &OwnedFd, admission: Admission) {
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => {
                if back_off(stop) {
                    return;
                }
                continue;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        let ready = fds[0].revents();
        if ready.is_empty() {
            continue;
        }
        if !ready.contains(PollFlags::IN) {
            // An error state without a connection (not seen on a listening
            // socket): never spin on it.
            if back_off(stop) {
                return;
            }
            continue;
        }
        match rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
            Ok(conn) => answer(&conn, memfd, admission),
            Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => {}
            // Out of descriptors or memory: wait a little (or for the stop)
            // rather than spin on a connection we cannot take.
            Err(_) => {
                if back_off(stop) {
                    return;
                }
            }
        }
    }
}

/// Waits 10 ms or until `stop` is readable; true if it is.
fn back_off(stop: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&stop, PollFlags::IN)];
    let pause = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 10_000_000,
    };
    matches!(poll(&mut fds, Some(&pause)), Ok(n) if n > 0)
}

/// Answers one client: the memfd if admitted, a refusal otherwise. Never
/// blocks: the socket is non-blocking and the send is `MSG_DONTWAIT`.
fn answer(conn: &OwnedFd, memfd: &OwnedFd, admission: Admission) {
    let admitted = match sockopt::socket_peercred(conn) {
        Ok(cred) => {
            let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
            admission.admits(uid, gid, &[])
                || (admission.gid.is_some() && admission.admits(uid, gid, &peer_groups(conn)))
        }
        Err(_) => false,
    };
    let status = if admitted { STATUS_OK } else { STATUS_REFUSED };
    let mut reply = [0u8; REPLY_LEN];
    reply[..8].copy_from_slice(&REPLY_MAGIC);
    reply[8..12].copy_from_slice(&status.to_le_bytes());
    let fds = [memfd.as_fd()];
    let mut space = [core::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if admitted && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return;
    }
    // A client that left, or whose queue is full, does without: nothing
    // to do on failure.
    let _ = rustix::net::sendmsg(
        conn,
        &[io::IoSlice::new(&reply)],
        &mut control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    );
}

/// The supplementary groups of the client of `conn` (`SO_PEERGROUPS`,
/// Linux 4.13); none if the kernel cannot say.
fn peer_groups(conn: &OwnedFd) -> Vec<u32> {
    let mut groups = vec![0u32; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * 4) as libc::socklen_t;
        // SAFETY: `groups` is valid for `len` bytes of writes, and `len` is
        // a valid socklen_t the kernel updates; getsockopt writes no more
        // than `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = (len as usize) / 4;
        if rc == 0 {
            groups.truncate(needed.min(groups.len()));
            return groups;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || needed > 65536 {
            break;
        }
        groups.resize(needed, 0);
    }
    Vec::new()
}

/// Whether a socket holds `name` now (a connection is accepted or queued).
/// Never blocks: the probe socket is non-blocking.
pub(crate) fn in_use(name: &str) -> bool {
    if name.len() > MAX_SOCKET_NAME_LEN {
        return false;
    }
    let Ok(addr) = address(name) else {
        return false;
    };
    let Ok(probe) = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    ) else {
        return false;
    };
    // EAGAIN: the backlog is full, i.e. a listener holds the name.
    matches!(
        rustix::net::connect(&probe, &addr),
        Ok(()) | Err(Errno::AGAIN)
    )
}

/// Asks the server of `name` for its memfd.
///
/// `Ok(None)` when no socket holds the name (or it is too long to be
/// socket-served). The whole exchange is bounded by `timeout` (at least
/// 1 ms).
///
/// # Errors
/// [`OpenError::NotOwner`] when the server runs as another user than
/// `owner`; [`OpenError::Refused`] when it refused our credentials;
/// [`OpenError::TimedOut`] when it did not answer in time (or its backlog
/// stayed full); [`OpenError::BadReply`] when the answer is not a server's;
/// [`OpenError::Io`].
pub(crate) fn fetch(
    name: &str,
    owner: u32,
    timeout: Duration,
) -> Result<Option<OwnedFd>, OpenError> {
    if name.len() > MAX_SOCKET_NAME_LEN {
        return Ok(None);
    }
    let timeout = timeout.max(Duration::from_millis(1));
    let deadline = Instant::now().checked_add(timeout);
    let timed_out = || OpenError::TimedOut {
        name: name.to_owned(),
        waited: timeout,
    };
    // What is left of the bound, never zero (0 means "no timeout" to
    // SO_*TIMEO): `None` once it is spent.
    let left = || match deadline {
        None => Some(timeout),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then_some(left)
        }
    };
    let addr = address(name)?;
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    // 1. Connect, bounded: it waits only while the server's backlog is full.
    loop {
        let Some(left) = left() else {
            return Err(timed_out());
        };
        sockopt::set_socket_timeout(&sock, sockopt::Timeout::Send, Some(left))
            .map_err(io::Error::from)?;
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            // Nobody holds the name.
            Err(Errno::CONNREFUSED | Errno::NOENT) => return Ok(None),
            Err(Errno::AGAIN) => return Err(timed_out()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(OpenError::Io(e.into())),
        }
    }
    // 2. Whose server is it? (Its credentials as of its `listen`.)
    let server = sockopt::socket_peercred(&sock).map_err(io::Error::from)?;
    let server_uid = server.uid.as_raw();
    if server_uid != owner {
        return Err(OpenError::NotOwner {
            owner: server_uid,
            us: owner,
        });
    }
    // 3. The reply, bounded.
    let mut reply = [0u8; REPLY_LEN + 1];
    let mut space = [core::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        let Some(left) = left() else {
            return Err(timed_out());
        };
        sockopt::set_socket_timeout(&sock, sockopt::Timeout::Recv, Some(left))
            .map_err(io::Error::from)?;
        match rustix::net::recvmsg(
            &sock,
            &mut [io::IoSliceMut::new(&mut reply)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(Errno::AGAIN) => return Err(timed_out()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(OpenError::Io(e.into())),
        }
    };
    // Every descriptor received is owned (and closed on every error path).
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let bad = |what: &'static str| OpenError::BadReply {
        name: name.to_owned(),
        what,
    };
    if msg
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(bad("the reply or its descriptors were truncated"));
    }
    if msg.bytes == 0 {
        return Err(bad("the server closed the connection without a reply"));
    }
    if msg.bytes != REPLY_LEN || reply[..8] != REPLY_MAGIC {
        return Err(bad("not a polycephaly region server"));
    }
    let status = u32::from_le_bytes([reply[8], reply[9], reply[10], reply[11]]);
    match (status, fds.len()) {
        (STATUS_REFUSED, 0) => Err(OpenError::Refused {
            name: name.to_owned(),
        }),
        (STATUS_OK, 1) => Ok(fds.pop()),
        _ => Err(bad(
            "an unknown status, or not one descriptor with the region",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_is_the_user_or_the_chosen_group() {
        let me = Admission {
            uid: 1000,
            gid: None,
        };
        assert!(me.admits(1000, 1000, &[]));
        assert!(me.admits(1000, 5, &[7]));
        assert!(!me.admits(1001, 1000, &[1000]), "another user, our group");
        assert!(!me.admits(0, 0, &[]), "root is another user too");
        let group = Admission {
            uid: 1000,
            gid: Some(500),
        };
        assert!(group.admits(1000, 1, &[]));
        assert!(group.admits(1001, 500, &[]), "primary group");
        assert!(group.admits(1002, 7, &[3, 500]), "supplementary group");
        assert!(!group.admits(1003, 7, &[3, 501]));
    }

    #[test]
    fn names_fit_an_abstract_address() {
        assert!(address(&"x".repeat(MAX_SOCKET_NAME_LEN)).is_ok());
        assert!(address(&"x".repeat(MAX_SOCKET_NAME_LEN + 1)).is_err());
    }
}
