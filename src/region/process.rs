//! Which process is which: a pid plus its start time, so that a pid reused
//! by a new process is not mistaken for the old one.

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
        let pid = rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs();
        let start_time = std::fs::read("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
            .map_or(0, |s| s.start_time);
        ProcessId { pid, start_time }
    }

    /// The process with this pid now, if it exists and is not a zombie.
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

    /// Whether this very process still runs: its pid exists, is not a
    /// zombie, and has the same start time (a reused pid is another process).
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid).is_some_and(|now| now.start_time == self.start_time)
    }
}

/// What we need from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The state is `Z` (zombie) or `X` (dead).
    pub dead: bool,
    /// Field 22.
    pub start_time: u64,
}

/// Parses the contents of `/proc/PID/stat`.
///
/// Field 2 is the command name in parentheses, which may itself contain
/// spaces and `)`: the fields after it start after the *last* `)`.
pub(crate) fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(bytes.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; field 22 is 19 fields after it.
    let state = fields.next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        dead: matches!(state, "Z" | "X" | "x"),
        start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(comm: &str, state: &str, start: u64) -> String {
        // Fields 4..=21 are placeholders, then 22 = start, then a few more.
        let mid: Vec<String> = (4..=21).map(|i| i.to_string()).collect();
        format!("1234 ({comm}) {state} {} {start} 99 100\n", mid.join(" "))
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
