//! Which process is which: a pid plus its start time, so that a pid reused
//! by a new process is not mistaken for the old one; and whether it still
//! runs.
//!
//! A process lives while any of its threads does. Its main thread (the
//! thread-group leader, whose tid is the pid) may end first, with
//! `pthread_exit`: Linux then shows the leader as a zombie (state `Z` in
//! `/proc/PID/stat` and `/proc/PID/status`) while the other threads run,
//! until the last one exits. So the state alone cannot tell; measured on
//! Linux 6.18:
//!
//! | case | stat state | stat field 20 = `Threads:` | `task/` | pidfd polls |
//! | --- | --- | --- | --- | --- |
//! | leader called `pthread_exit`, a thread runs | `Z` | 2 | leader `Z`, thread `S` | not readable |
//! | every thread exited, not reaped (zombie) | `Z` | 1 | leader `Z` | readable |
//! | reaped | no such file | | | (`pidfd_open`: ESRCH) |
//!
//! [`ProcessId::is_alive`] judges a process dead when `/proc/PID/stat` is
//! gone, or its state is `X`, or its state is `Z` with at most one thread
//! counted (the exited leader itself; 0 when the kernel could not count
//! them). The count comes from the same read as the state and the start
//! time, so its three fields describe one process. It costs one read of one
//! file (about 3 us).
//!
//! [`ProcessWatch`] is for a process checked again and again (a region's
//! peers): it opens a pidfd once, checks the start time in `/proc` right
//! after (so the pidfd refers to this very process, not to a later one that
//! reused its pid), and from then on a check is one `poll` of the pidfd
//! with a zero timeout (about 0.15 us), readable once the whole thread group
//! has exited, as in the table above. Where `pidfd_open` is refused (a
//! kernel before 5.3, a seccomp filter) it falls back to `/proc`.

use std::os::fd::OwnedFd;

use crate::sync::shim::{AtomicU32, Ordering};

/// A process, identified by its pid and its start time.
///
/// `start_time` is field 22 of `/proc/PID/stat` (clock ticks since boot):
/// two processes that get the same pid one after the other have different
/// start times (unless both start in the same tick, which pid reuse makes
/// practically impossible).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: the start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessId {
    /// The calling process.
    ///
    /// If `/proc` cannot be read (it is not mounted), `start_time` is 0 and
    /// [`is_alive`](Self::is_alive) of the result reports false: liveness
    /// checks need `/proc`.
    pub fn current() -> ProcessId {
        let pid = current_pid();
        let start_time = std::fs::read("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
            .map_or(0, |s| s.start_time);
        ProcessId { pid, start_time }
    }

    /// The process with this pid now, if it exists and has a thread that
    /// has not exited (a main thread that exited while others run does not
    /// make it dead; an unreaped zombie is dead).
    pub fn of(pid: u32) -> Option<ProcessId> {
        if pid == 0 || i32::try_from(pid).is_err() {
            return None;
        }
        let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        let stat = parse_stat(&bytes)?;
        if stat.dead {
            return None;
        }
        Some(ProcessId {
            pid,
            start_time: stat.start_time,
        })
    }

    /// A pidfd for this very process, if it runs: the pidfd is opened
    /// first and the start time checked after, so the descriptor refers to
    /// this process and not to a later one that reused its pid. It stays a
    /// valid handle after the process exits (poll it for readability to
    /// learn of the exit without racing pid reuse).
    pub fn pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        let raw = i32::try_from(self.pid).ok()?;
        let pid = rustix::process::Pid::from_raw(raw)?;
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
        self.is_alive().then_some(fd)
    }

    /// Whether this very process still runs: its pid exists, one of its
    /// threads has not exited (see [`ProcessId::of`]), and it has the same
    /// start time (a reused pid is another process).
    ///
    /// Reads `/proc/PID/stat` once: meant for slow paths (after a wait
    /// timed out), not for every operation.
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid).is_some_and(|now| now.start_time == self.start_time)
    }
}

/// Whether `pidfd_open` works here: [`PIDFD_UNKNOWN`] until the first
/// attempt, then [`PIDFD_WORKS`] or [`PIDFD_REFUSED`] (ENOSYS: a kernel
/// before 5.3; EPERM/EACCES: a seccomp filter). Relaxed everywhere: a
/// hint read and written whole, nothing is published with it; a stale
/// read costs one more refused system call.
static PIDFD_STATE: AtomicU32 = AtomicU32::new(PIDFD_UNKNOWN);
const PIDFD_UNKNOWN: u32 = 0;
const PIDFD_WORKS: u32 = 1;
const PIDFD_REFUSED: u32 = 2;

/// Whether [`ProcessWatch`] uses pidfds (false once `pidfd_open` was
/// refused in this process, or after `set_pidfds_disabled(true)`, a test
/// hook of the `testing` feature).
pub fn pidfds_available() -> bool {
    // Relaxed: see PIDFD_STATE.
    PIDFD_STATE.load(Ordering::Relaxed) != PIDFD_REFUSED
}

/// Makes every [`ProcessWatch`] opened from now on use `/proc` (`true`) as
/// where `pidfd_open` is refused, or pidfds again (`false`): the fallback
/// path, testable on a kernel that has pidfds.
#[cfg(feature = "testing")]
pub fn set_pidfds_disabled(disabled: bool) {
    let state = if disabled {
        PIDFD_REFUSED
    } else {
        PIDFD_UNKNOWN
    };
    // Relaxed: see PIDFD_STATE.
    PIDFD_STATE.store(state, Ordering::Relaxed);
}

/// A process watched for its exit: what a region keeps per peer slot, so
/// that a liveness check costs a `poll` instead of a read of `/proc`.
///
/// Made by [`ProcessWatch::new`]: a pidfd opened and then verified against
/// the start time (see the [module docs](self)); `/proc` when pidfds are
/// refused or the descriptor could not be opened (too many open files).
/// Once the process is seen dead the pidfd is closed and the verdict kept:
/// a process never comes back.
///
/// ```
/// use polycephaly::sync::{ProcessId, ProcessWatch};
///
/// let mut me = ProcessWatch::new(ProcessId::current());
/// assert!(me.is_alive());
/// let reused = ProcessId { start_time: 1, ..ProcessId::current() };
/// assert!(!ProcessWatch::new(reused).is_alive(), "same pid, another process");
/// ```
#[derive(Debug)]
pub struct ProcessWatch {
    id: ProcessId,
    how: Watch,
}

#[derive(Debug)]
enum Watch {
    /// A pidfd that referred to `id` when it was opened.
    Pidfd(OwnedFd),
    /// No pidfd: each check reads `/proc`.
    Proc,
    /// Seen dead: for good.
    Exited,
}

impl ProcessWatch {
    /// Starts watching `id`: opens a pidfd for its pid, then checks in
    /// `/proc` that the pid still has `id`'s start time (otherwise the pid
    /// was reused, or the process is gone: it is dead). One `pidfd_open`
    /// and one read of `/proc`; `/proc` alone where pidfds are refused.
    pub fn new(id: ProcessId) -> ProcessWatch {
        let how = match open_pidfd(id.pid) {
            Opened::Fd(fd) => {
                // After the open: a pid reused before it would show another
                // start time here, and ours cannot come back.
                if id.is_alive() {
                    Watch::Pidfd(fd)
                } else {
                    Watch::Exited
                }
            }
            Opened::NoSuchProcess => Watch::Exited,
            Opened::Unavailable => Watch::Proc,
        };
        ProcessWatch { id, how }
    }

    /// The process watched.
    pub fn process(&self) -> ProcessId {
        self.id
    }

    /// Whether the pidfd is in use (false: `/proc` is read on each check,
    /// or the process is known dead).
    pub fn uses_pidfd(&self) -> bool {
        matches!(self.how, Watch::Pidfd(_))
    }

    /// Whether the process still runs (one of its threads has not exited).
    /// A `poll` with a zero timeout on its pidfd; a read of `/proc` where
    /// there is none.
    pub fn is_alive(&mut self) -> bool {
        let alive = match &self.how {
            Watch::Exited => return false,
            Watch::Proc => self.id.is_alive(),
            Watch::Pidfd(fd) => match poll_exited(fd) {
                Some(exited) => !exited,
                // The poll failed (EINTR, ENOMEM): ask /proc this time.
                None => self.id.is_alive(),
            },
        };
        if !alive {
            // Closes the pidfd: the verdict is final.
            self.how = Watch::Exited;
        }
        alive
    }
}

enum Opened {
    Fd(OwnedFd),
    NoSuchProcess,
    Unavailable,
}

fn open_pidfd(pid: u32) -> Opened {
    use rustix::io::Errno;
    if !pidfds_available() {
        return Opened::Unavailable;
    }
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Opened::NoSuchProcess;
    };
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => {
            // Relaxed: see PIDFD_STATE.
            PIDFD_STATE.store(PIDFD_WORKS, Ordering::Relaxed);
            Opened::Fd(fd)
        }
        Err(Errno::SRCH) => Opened::NoSuchProcess,
        Err(Errno::NOSYS | Errno::PERM | Errno::ACCESS) => {
            // Never again in this process: the kernel or a filter refuses.
            // Relaxed: see PIDFD_STATE.
            let _ = PIDFD_STATE.compare_exchange(
                PIDFD_UNKNOWN,
                PIDFD_REFUSED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            Opened::Unavailable
        }
        // EMFILE/ENFILE/ENOMEM, or EINVAL (a thread id, not a process):
        // /proc for this watch.
        Err(_) => Opened::Unavailable,
    }
}

/// Whether the process behind `pidfd` has exited (its whole thread group):
/// `Some(true)` when the pidfd polls readable or hung up, `None` when the
/// poll itself failed.
fn poll_exited(pidfd: &OwnedFd) -> Option<bool> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => Some(false),
        Ok(_) => {
            let got = fds[0].revents();
            if got.intersects(PollFlags::IN | PollFlags::HUP) {
                Some(true)
            } else {
                // POLLERR/POLLNVAL: not an answer.
                None
            }
        }
        Err(_) => None,
    }
}

/// The calling process's pid: one `getpid` system call (glibc caches
/// nothing since 2.25, and rustix calls the kernel directly), so it is right
/// in a child made by `fork` or `clone` too.
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// What we need from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Every thread of the process has exited: the state (of its leader)
    /// is `X`/`x` (dead), or `Z` (zombie) with at most one thread counted.
    /// A `Z` leader with more threads called `pthread_exit` while the
    /// others run: the process lives.
    pub dead: bool,
    /// Field 22.
    pub start_time: u64,
}

/// Parses the contents of `/proc/PID/stat`.
///
/// Field 2 is the command name in parentheses, which may itself contain
/// spaces and `)`: the fields after it start after the *last* `)`. Any
/// field missing or not a number gives `None`.
pub(crate) fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(bytes.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; field 20 (num_threads, the `Threads:` of
    // /proc/PID/status) is 17 fields after it, field 22 two after that.
    let state = fields.next()?;
    let threads: u64 = fields.nth(16)?.parse().ok()?;
    let start_time = fields.nth(1)?.parse().ok()?;
    let dead = match state {
        "X" | "x" => true,
        // The exited leader still counts itself until it is reaped; the
        // kernel prints 0 when it can no longer count the threads.
        "Z" => threads <= 1,
        _ => false,
    };
    Some(Stat { dead, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line: fields 4..=19 and 21 are placeholders, 20 = threads,
    /// 22 = start, then a few more.
    fn line_with(comm: &str, state: &str, threads: &str, start: u64) -> String {
        let a: Vec<String> = (4..=19).map(|i| i.to_string()).collect();
        format!(
            "1234 ({comm}) {state} {} {threads} 21 {start} 99 100\n",
            a.join(" ")
        )
    }

    fn line(comm: &str, state: &str, start: u64) -> String {
        line_with(comm, state, "1", start)
    }

    #[test]
    fn parses_start_time_and_state() {
        let s = parse_stat(line("cat", "S", 777).as_bytes()).unwrap();
        assert_eq!(
            s,
            Stat {
                dead: false,
                start_time: 777
            }
        );
        let z = parse_stat(line("cat", "Z", 5).as_bytes()).unwrap();
        assert!(z.dead);
    }

    #[test]
    fn a_zombie_leader_with_running_threads_is_alive() {
        let dead = |state: &str, threads: &str| {
            parse_stat(line_with("t", state, threads, 9).as_bytes()).map(|s| s.dead)
        };
        // The leader called pthread_exit; one or more threads run.
        assert_eq!(dead("Z", "2"), Some(false));
        assert_eq!(dead("Z", "40"), Some(false));
        // Every thread exited: a zombie (1: the leader; 0: not countable).
        assert_eq!(dead("Z", "1"), Some(true));
        assert_eq!(dead("Z", "0"), Some(true));
        assert_eq!(dead("X", "3"), Some(true));
        assert_eq!(dead("x", "1"), Some(true));
        for live in ["R", "S", "D", "T", "t", "I"] {
            assert_eq!(dead(live, "1"), Some(false), "{live}");
        }
        // A thread count that is not a number makes the line unreadable.
        assert_eq!(dead("Z", "-1"), None);
        assert_eq!(dead("Z", "two"), None);
    }

    #[test]
    fn comm_with_spaces_and_parens_is_skipped() {
        let s = parse_stat(line("a) b (c)) R 1", "R", 42).as_bytes()).unwrap();
        assert_eq!(s.start_time, 42);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
        assert_eq!(parse_stat(b"no parens at all"), None);
        assert_eq!(parse_stat(&[0xff, b')', b' ', 0xfe]), None);
        // Cut right after the thread count: no start time.
        assert_eq!(
            parse_stat(b"1 (x) Z 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 2"),
            None
        );
    }

    #[test]
    fn our_own_stat_parses() {
        let bytes = std::fs::read("/proc/self/stat").unwrap();
        let s = parse_stat(&bytes).unwrap();
        assert!(!s.dead);
        assert!(s.start_time > 0);
    }

    #[test]
    fn current_process_is_alive_and_pid_zero_is_not() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        assert_eq!(ProcessId::of(me.pid), Some(me));
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
        assert!(me.pidfd().is_some());
        assert!(reused.pidfd().is_none());
        assert_eq!(ProcessId::of(0), None);
        assert_eq!(ProcessId::of(u32::MAX), None);
    }

    #[test]
    fn a_watch_sees_us_alive_and_a_reused_pid_dead() {
        let me = ProcessId::current();
        let mut watch = ProcessWatch::new(me);
        assert!(watch.uses_pidfd(), "pidfd_open works on this kernel");
        assert!(watch.is_alive());
        assert!(watch.is_alive(), "the pidfd stays usable");
        let mut reused = ProcessWatch::new(ProcessId {
            start_time: me.start_time + 1,
            ..me
        });
        assert!(
            !reused.uses_pidfd(),
            "the pidfd of another process is closed"
        );
        assert!(!reused.is_alive());
        let mut nobody = ProcessWatch::new(ProcessId {
            pid: u32::MAX,
            start_time: 1,
        });
        assert!(!nobody.is_alive());
    }
}
