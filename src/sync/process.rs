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
//! A process is judged dead when `/proc/PID/stat` is gone, or its state is
//! `X`, or its state is `Z` with at most one thread counted (the exited
//! leader itself; 0 when the kernel could not count them). The count comes
//! from the same read as the state and the start time, so the check costs
//! what it did before (one read of one file) and its three fields describe
//! one process. A pidfd would tell the same (it polls readable once the
//! whole thread group exited), but opening one by pid races with pid reuse
//! until the start time is checked in `/proc` anyway, so it would add two
//! system calls to every check; [`ProcessId::pidfd`] is there for callers
//! that watch one process for long.

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
}
