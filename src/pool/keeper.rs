//! The keeper: the one thread of the master that starts drones, watches them
//! through pidfds, reaps them, and kills them when told.
//!
//! Why a thread of its own:
//! - A drone's parent-death signal (`PR_SET_PDEATHSIG`) fires when the
//!   *thread* that forked it exits, not the process. Spawning every drone,
//!   first ones and replacements alike, from a thread that lives exactly as
//!   long as the pool ties each drone to the pool's life.
//! - A drone's death is noticed at once: the keeper sleeps in `poll` on
//!   every drone's pidfd (and an eventfd through which the pool wakes it),
//!   so a SIGKILLed drone is reaped and reported within a system call's
//!   latency, not at the next time-out of whoever waits for its results.
//!
//! The pool talks to the keeper through [`KeeperHandle`]: requests go into a
//! queue under a mutex and the eventfd is written; what the keeper learns
//! (a drone started, a drone died) comes back in [`Event`]s, through a
//! callback that the pool gives at start (it wakes the pool's waits).

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::region::Region;
use crate::sync::clock::Instant;

/// The environment variable that tells a process started by the keeper
/// that it is a drone, and which slot it serves: `slot.generation`.
pub(crate) const DRONE_VAR: &str = "POLYCEPHALY_DRONE";
/// The environment variable through which the pool's region is handed to
/// its drones (see [`Region::share_with_var`]).
pub(crate) const REGION_VAR: &str = "POLYCEPHALY_POOL_REGION";

/// What the keeper reports to the pool.
#[derive(Debug)]
pub(crate) enum Event {
    /// Drone `slot`, generation `generation`, runs as process `pid`.
    Started {
        slot: usize,
        generation: u32,
        pid: u32,
    },
    /// Drone `slot` of generation `generation` could not be started.
    SpawnFailed {
        slot: usize,
        generation: u32,
        error: String,
    },
    /// Drone `slot` of generation `generation` ended, and was reaped
    /// (its status is `None` when somebody else reaped it: a process that
    /// ignores SIGCHLD, or a `waitpid(-1)` elsewhere).
    Died {
        slot: usize,
        generation: u32,
        status: Option<ExitStatus>,
    },
}

/// A request to the keeper.
#[derive(Debug)]
enum Request {
    /// Start a drone for `slot` (a new generation of it).
    Spawn { slot: usize, generation: u32 },
    /// Kill the drone of `slot` if it is of `generation` (SIGKILL).
    Kill { slot: usize, generation: u32 },
    /// Kill every drone still running once `grace` has passed, reap them
    /// all, and end.
    Stop { grace: Duration },
}

/// What the pool and the keeper share.
#[derive(Debug)]
struct Shared {
    requests: Mutex<VecDeque<Request>>,
    /// Written to wake the keeper from `poll`.
    wake: OwnedFd,
}

/// The pool's handle on its keeper thread.
#[derive(Debug)]
pub(crate) struct KeeperHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// One running drone.
#[derive(Debug)]
struct Drone {
    slot: usize,
    generation: u32,
    child: Child,
    pidfd: OwnedFd,
}

impl KeeperHandle {
    /// Starts the keeper thread. Drones it starts re-execute `exe` with the
    /// region handed over; `report` receives every [`Event`], on the
    /// keeper's thread (it must be quick and must not call back into the
    /// keeper).
    pub(crate) fn start(
        region: Region,
        report: impl FnMut(Event) + Send + 'static,
    ) -> std::io::Result<Self> {
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(VecDeque::new()),
            wake,
        });
        let keeper = Keeper {
            shared: Arc::clone(&shared),
            arg0: std::env::args_os()
                .next()
                .unwrap_or_else(|| "polycephaly-drone".into()),
            region,
            master: rustix::process::getpid(),
            drones: Vec::new(),
            report: Box::new(report),
            stopping: None,
        };
        let thread = std::thread::Builder::new()
            .name("polycephaly-keeper".into())
            .spawn(move || keeper.run())?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn request(&self, r: Request) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(r);
        // A full eventfd counter (it cannot be, at 2^64 - 1) or a closed
        // one (the keeper ended) only means the keeper needs no waking.
        let _ = rustix::io::write(&self.shared.wake, &1u64.to_ne_bytes());
    }

    /// Asks for a drone for `slot`, generation `generation`.
    pub(crate) fn spawn(&self, slot: usize, generation: u32) {
        self.request(Request::Spawn { slot, generation });
    }

    /// Asks for the drone of `slot`, generation `generation`, to be
    /// killed (a stuck task, a shutdown without grace).
    pub(crate) fn kill(&self, slot: usize, generation: u32) {
        self.request(Request::Kill { slot, generation });
    }

    /// Kills whatever drone is still running after `grace`, reaps every
    /// drone, and joins the keeper thread.
    pub(crate) fn stop(mut self, grace: Duration) {
        self.stop_now(grace);
    }

    fn stop_now(&mut self, grace: Duration) {
        if let Some(thread) = self.thread.take() {
            self.request(Request::Stop { grace });
            // The keeper reaps its children before it ends; a panic in it
            // (a bug) has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

impl Drop for KeeperHandle {
    /// A pool dropped without a shutdown: its drones are killed at once.
    fn drop(&mut self) {
        self.stop_now(Duration::ZERO);
    }
}

/// The keeper thread's state.
struct Keeper {
    shared: Arc<Shared>,
    /// The master's `argv[0]`, given to drones as theirs.
    arg0: std::ffi::OsString,
    region: Region,
    /// The master's pid: a drone whose parent is not it when it arms its
    /// parent-death signal was orphaned before it could, and exits.
    master: Pid,
    drones: Vec<Drone>,
    report: Box<dyn FnMut(Event) + Send>,
    /// When a stop was asked for: kill what still runs at this instant.
    stopping: Option<Instant>,
}

impl Keeper {
    fn run(mut self) {
        loop {
            self.take_requests();
            if let Some(at) = self.stopping {
                if Instant::now() >= at {
                    for d in &self.drones {
                        let _ = rustix::process::pidfd_send_signal(&d.pidfd, Signal::KILL);
                    }
                }
                if self.drones.is_empty() {
                    return;
                }
            }
            self.wait_for_something();
            self.reap_the_dead();
        }
    }

    /// Sleeps in `poll` until a drone ends, a request comes, or a stop's
    /// grace runs out.
    fn wait_for_something(&self) {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.drones.len() + 1);
        fds.push(PollFd::new(&self.shared.wake, PollFlags::IN));
        for d in &self.drones {
            fds.push(PollFd::new(&d.pidfd, PollFlags::IN));
        }
        let timeout = self.stopping.map(|at| {
            let left = at.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        // EINTR and the like: look around and poll again.
        let _ = rustix::event::poll(&mut fds, timeout.as_ref());
        // Drain the eventfd (non-blocking): its requests are in the queue.
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.shared.wake, &mut buf);
    }

    fn take_requests(&mut self) {
        let requests: Vec<Request> = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for r in requests {
            match r {
                Request::Spawn { slot, generation } => {
                    if self.stopping.is_none() {
                        self.start_drone(slot, generation);
                    }
                }
                Request::Kill { slot, generation } => {
                    if let Some(d) = self
                        .drones
                        .iter()
                        .find(|d| d.slot == slot && d.generation == generation)
                    {
                        let _ = rustix::process::pidfd_send_signal(&d.pidfd, Signal::KILL);
                    }
                }
                Request::Stop { grace } => {
                    let at = Instant::now()
                        .checked_add(grace)
                        .unwrap_or_else(Instant::now);
                    self.stopping = Some(self.stopping.map_or(at, |s| s.min(at)));
                }
            }
        }
    }

    /// Starts a drone for `slot`: this executable again, with the region
    /// handed over, stdin closed, the parent-death signal armed.
    fn start_drone(&mut self, slot: usize, generation: u32) {
        match self.spawn(slot, generation) {
            Ok(d) => {
                let pid = d.child.id();
                self.drones.push(d);
                (self.report)(Event::Started {
                    slot,
                    generation,
                    pid,
                });
            }
            Err(e) => (self.report)(Event::SpawnFailed {
                slot,
                generation,
                error: e.to_string(),
            }),
        }
    }

    fn spawn(&self, slot: usize, generation: u32) -> std::io::Result<Drone> {
        // This very executable, even if its file was replaced or deleted
        // since: `/proc/self/exe` in the child (a fork of the master) is
        // the master's.
        let mut cmd = Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut cmd, &self.arg0);
        cmd.env(DRONE_VAR, format!("{slot}.{generation}"))
            .stdin(Stdio::null());
        self.region.share_with_var(&mut cmd, REGION_VAR)?;
        let master = self.master;
        // SAFETY: the closure runs in the child between fork and exec: two
        // system calls through rustix (prctl, getppid) and `libc::_exit`,
        // all async-signal-safe; no allocation, no lock.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                // Dies with the keeper thread (the thread that forked us).
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // Orphaned already (the master died before we armed it):
                // the signal will never come, so go now.
                if rustix::process::getppid() != Some(master) {
                    // `_exit` ends the child at once, without running
                    // anything of the parent's (no atexit, no flush): what
                    // a forked child may do (covered by the SAFETY above).
                    libc::_exit(super::drone::EXIT_ORPHANED);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // The child cannot be reaped before we wait for it, so its pid
        // names it until then: the pidfd is the child's.
        let pid = Pid::from_child(&child);
        let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                // Unwatchable (a kernel before 5.3): not left running.
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        };
        Ok(Drone {
            slot,
            generation,
            child,
            pidfd,
        })
    }

    /// Reaps every drone whose pidfd says it ended, and reports it.
    fn reap_the_dead(&mut self) {
        let mut i = 0;
        while i < self.drones.len() {
            let status = match self.drones[i].child.try_wait() {
                Ok(Some(status)) => Some(status),
                Ok(None) => {
                    i += 1;
                    continue;
                }
                // Not ours to reap any more (reaped elsewhere: ECHILD):
                // its pidfd says whether it ended.
                Err(_) if ended(&self.drones[i].pidfd) => None,
                Err(_) => {
                    i += 1;
                    continue;
                }
            };
            let d = self.drones.swap_remove(i);
            (self.report)(Event::Died {
                slot: d.slot,
                generation: d.generation,
                status,
            });
        }
    }
}

impl core::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keeper")
            .field("drones", &self.drones)
            .finish_non_exhaustive()
    }
}

/// Whether `fd` (a pidfd) says its process ended.
pub(crate) fn ended(fd: &impl AsFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap_or(0) > 0
}
