//! Two real processes for one measurement: a shared anonymous mapping made
//! before the fork, CPU pinning, a start barrier, waiting with liveness
//! checks, and reaping.
//!
//! ```text
//! parent (bench process)                 child (fork of it)
//! ----------------------                 ------------------
//! ShmArea::new(state)   -- both map the same pages (MAP_SHARED) --
//! fork ------------------------------------> drop(parent closure)
//! drop(child closure)                      die with the parent (PDEATHSIG)
//! pin, note CPU                            pin, note CPU
//! barrier  <------------------------------> barrier
//! parent(&pair)                            child(&pair)
//! wait for exit (pidfd), reap              note CPU, error text, _exit
//! restore own CPU mask
//! ```
//!
//! Each process drops the closure it does not run right after the fork, so
//! file descriptors moved into a closure are open in one process only: a
//! socket read sees end-of-file when its peer dies.

use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crossbeam_utils::CachePadded;
use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::CpuSet;

use super::{BenchError, PinMode};
use polycephaly::sync::shim::{AtomicU32, AtomicU64, Ordering, spin_loop};

/// How long a wait may see no progress while its peer is alive before it
/// gives up with [`BenchError::Stuck`]. Far above any figure we measure.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

const PAGE: usize = 4096;

/// Plain spins before a waiter starts yielding its CPU (so that a peer on
/// the same CPU can run): a few microseconds, well above a cross-CPU reply
/// (~0.1-0.4 us here). When nothing else wants the CPU a yield returns at
/// once, so polling goes on nearly as fast; when both processes are pinned
/// to one CPU, a waiter yields at once.
const SPINS_BEFORE_YIELD: u32 = 256;

/// A `T` and `bulk_len` further bytes in an anonymous `MAP_SHARED` mapping:
/// made before [`run_pair`] forks, so both processes see the same pages.
///
/// `T` is placed at the start of the mapping (page-aligned); the bulk bytes
/// start at the next page boundary after it. `T`'s shared state must live
/// inline (atomics, C structs): a heap pointer inside it would point to each
/// process's private copy. `T` must not need dropping: the mapping is
/// unmapped without running destructors.
#[derive(Debug)]
pub struct ShmArea<T> {
    base: NonNull<c_void>,
    len: usize,
    bulk_offset: usize,
    bulk_len: usize,
    _t: PhantomData<T>,
}

impl<T> ShmArea<T> {
    /// Maps a shared area holding `value` and `bulk_len` zeroed bytes.
    ///
    /// # Errors
    /// [`BenchError::Os`] when the mapping cannot be made.
    pub fn new(value: T, bulk_len: usize) -> Result<Self, BenchError> {
        const {
            assert!(!core::mem::needs_drop::<T>(), "ShmArea never drops T");
            assert!(align_of::<T>() <= PAGE);
        };
        let bulk_offset = size_of::<T>().div_ceil(PAGE) * PAGE;
        let len = bulk_offset
            .checked_add(bulk_len)
            .filter(|l| *l < isize::MAX as usize)
            .ok_or(BenchError::Os {
                what: "mmap (size)",
                errno: rustix::io::Errno::NOMEM,
            })?
            .max(PAGE);
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing; it overlaps nothing we hold.
        let ptr = unsafe {
            mmap_anonymous(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )
        }
        .map_err(BenchError::os("mmap"))?;
        let base = NonNull::new(ptr).ok_or(BenchError::Os {
            what: "mmap",
            errno: rustix::io::Errno::NOMEM,
        })?;
        // SAFETY: the mapping is at least size_of::<T>() bytes, page-aligned
        // (so aligned for T, asserted above), writable, and not yet shared
        // with anybody.
        unsafe { base.cast::<T>().write(value) };
        Ok(Self {
            base,
            len,
            bulk_offset,
            bulk_len,
            _t: PhantomData,
        })
    }

    /// The shared value. Meant for `T`s whose shared parts are atomics
    /// (interior mutability); C objects that the other process mutates
    /// through pointers are reached with [`as_ptr`](Self::as_ptr) instead.
    pub fn get(&self) -> &T {
        // SAFETY: `new` initialized a T there; the mapping lives as long as
        // self; it is only mutated through shared references (atomics) or
        // through `as_ptr` by code that states its own exclusivity.
        unsafe { self.base.cast::<T>().as_ref() }
    }

    /// A raw pointer to the shared value, for C types such as pthread
    /// objects that are mutated through pointers.
    pub fn as_ptr(&self) -> *mut T {
        self.base.cast::<T>().as_ptr()
    }

    /// The first bulk byte (page-aligned; valid for `bulk_len` bytes).
    /// Readers and writers must order their accesses with a handshake on
    /// atomics in `T`: the other process may write these bytes.
    pub fn bulk_ptr(&self) -> *mut u8 {
        // SAFETY: bulk_offset <= len, inside the mapping.
        unsafe { self.base.cast::<u8>().as_ptr().add(self.bulk_offset) }
    }

    /// The number of bulk bytes.
    pub fn bulk_len(&self) -> usize {
        self.bulk_len
    }
}

impl<T> Drop for ShmArea<T> {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `new`; no
        // reference into it outlives self (they all borrow self).
        let _ = unsafe { munmap(self.base.as_ptr(), self.len) };
    }
}

/// Which process of a pair this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The bench process, which times.
    Parent,
    /// The forked process.
    Child,
}

/// The CPUs the two processes ran on: `[at the start barrier, at the end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The parent (timing) process.
    pub parent: [u32; 2],
    /// The child process.
    pub child: [u32; 2],
}

/// The control block of a pair, in its own shared mapping.
///
/// # Invariants
/// - `arrivals[0]` is written (incremented) only by the parent,
///   `arrivals[1]` only by the child; each counts barrier arrivals and never
///   decreases. They sit on separate cache lines.
/// - `child_cpus` and `error_len` are written by the child before it exits
///   and read by the parent after reaping it (`waitpid` orders them).
///   `error_len` is at most the bulk length; the parent clamps it anyway.
#[repr(C)]
#[derive(Debug)]
struct Control {
    arrivals: [CachePadded<AtomicU64>; 2],
    child_cpus: AtomicU64,
    error_len: AtomicU32,
}

const _: () = {
    assert!(size_of::<CachePadded<AtomicU64>>() == 128);
    assert!(core::mem::offset_of!(Control, arrivals) == 0);
    assert!(core::mem::offset_of!(Control, child_cpus) == 256);
    assert!(core::mem::offset_of!(Control, error_len) == 264);
    assert!(align_of::<Control>() == 128);
};

const ERROR_BYTES: usize = 1024;

/// One side of a running pair: who it is, its peer, the shared barrier.
#[derive(Debug)]
pub struct Pair<'a> {
    role: Role,
    peer: Pid,
    ctl: &'a Control,
    /// The child's pidfd, in the parent (readable once the child exited).
    pidfd: Option<&'a OwnedFd>,
    /// Spins before yielding: 0 when both are pinned to one CPU.
    spins: u32,
}

impl Pair<'_> {
    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The other process.
    pub fn peer_pid(&self) -> Pid {
        self.peer
    }

    /// Whether the other process is still running.
    pub fn peer_alive(&self) -> bool {
        match self.pidfd {
            // A pidfd polls readable when its process has exited.
            Some(fd) => !poll_readable(fd, Some(Duration::ZERO)),
            // The child is re-parented when its parent dies.
            None => rustix::process::getppid() == Some(self.peer),
        }
    }

    /// Waits until the peer has reached the same number of barriers as this
    /// side. Everything either side did before the barrier happens before
    /// everything the other does after it.
    ///
    /// # Errors
    /// As [`spin_until`](Self::spin_until).
    pub fn barrier(&self) -> Result<(), BenchError> {
        let (mine, theirs) = match self.role {
            Role::Parent => (&self.ctl.arrivals[0], &self.ctl.arrivals[1]),
            Role::Child => (&self.ctl.arrivals[1], &self.ctl.arrivals[0]),
        };
        // Release: pairs with the peer's Acquire load below; publishes what
        // this side did before the barrier.
        let n = mine.fetch_add(1, Ordering::Release) + 1;
        // Acquire: pairs with the peer's Release increment.
        self.spin_until(|| theirs.load(Ordering::Acquire) >= n)
    }

    /// Busy-waits until `cond` is true: plain spinning first, then yielding
    /// the CPU between polls (so a peer on the same CPU can run), checking
    /// every few hundred polls that the peer lives and that progress is not
    /// stuck for [`STUCK_AFTER`].
    ///
    /// # Errors
    /// [`BenchError::PeerDied`] if the peer died (and `cond` is still
    /// false), [`BenchError::Stuck`] after [`STUCK_AFTER`].
    #[inline]
    pub fn spin_until(&self, mut cond: impl FnMut() -> bool) -> Result<(), BenchError> {
        for _ in 0..self.spins {
            if cond() {
                return Ok(());
            }
            spin_loop();
        }
        self.yield_until(cond)
    }

    #[cold]
    fn yield_until(&self, mut cond: impl FnMut() -> bool) -> Result<(), BenchError> {
        let start = Instant::now();
        let mut n: u32 = 0;
        loop {
            if cond() {
                return Ok(());
            }
            std::thread::yield_now();
            n = n.wrapping_add(1);
            if n % 256 == 0 {
                if !self.peer_alive() {
                    return if cond() {
                        Ok(())
                    } else {
                        Err(BenchError::PeerDied)
                    };
                }
                if start.elapsed() > STUCK_AFTER {
                    return Err(BenchError::Stuck("the peer process"));
                }
            }
        }
    }
}

fn poll_readable(fd: &OwnedFd, timeout: Option<Duration>) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let ts = timeout.map(|t| rustix::time::Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    matches!(poll(&mut fds, ts.as_ref()), Ok(n) if n > 0)
}

/// The CPUs the parent and the child are pinned to under `pin`, taken from
/// this process's current CPU mask.
pub(super) fn choose_cpus(
    pin: PinMode,
    mask: &CpuSet,
) -> Result<Option<(usize, usize)>, BenchError> {
    let allowed: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|c| mask.is_set(*c)).collect();
    match (pin, allowed.as_slice()) {
        (PinMode::None, _) => Ok(None),
        (PinMode::Same, [a, ..]) => Ok(Some((*a, *a))),
        (PinMode::Split, [a, b, ..]) => Ok(Some((*a, *b))),
        _ => Err(BenchError::Pin(format!(
            "--pin {} needs more CPUs than the {} this process may use",
            pin.as_str(),
            allowed.len()
        ))),
    }
}

/// The spin budget of a waiter: none when both processes share one CPU.
fn spins_for(cpu_pair: Option<(usize, usize)>) -> u32 {
    match cpu_pair {
        Some((a, b)) if a == b => 0,
        _ => SPINS_BEFORE_YIELD,
    }
}

pub(super) fn pin_self(cpu: Option<usize>) -> Result<(), BenchError> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu);
        rustix::thread::sched_setaffinity(None, &set)
            .map_err(BenchError::os("sched_setaffinity"))?;
    }
    Ok(())
}

/// The number of threads of this process (`Threads:` in
/// `/proc/self/status`), `None` if it cannot be read.
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

pub(super) fn current_cpu() -> u32 {
    u32::try_from(rustix::thread::sched_getcpu()).unwrap_or(u32::MAX)
}

/// Runs `parent` in this process and `child` in a forked one, both pinned
/// as `pin` says, both starting after a common barrier. Returns `parent`'s
/// result and where the two ran.
///
/// Make shared state ([`ShmArea`]) before calling and capture it by
/// reference in both closures; move file descriptors into the closure of
/// the side that uses them. The child `_exit`s after its closure (0 on
/// success); its error text travels back through the control block.
///
/// The child is a fork that runs nothing but `child`, which is sound only
/// in a process with one thread (a fork of a multi-threaded process may
/// inherit locks that some other thread held): `run_pair` checks that
/// first and refuses otherwise. The `polycephaly` command and criterion
/// (built without rayon) are single-threaded; tests that run kernels live
/// in a `harness = false` test target for this reason. A process that is
/// single-threaded at the check stays so: only its one thread could start
/// another.
///
/// # Errors
/// [`BenchError::MultiThreaded`] in a process with more than one thread;
/// [`BenchError::Pin`] for an impossible `pin`; [`BenchError::Os`] when
/// forking or pinning fails; [`BenchError::ChildFailed`] when the child
/// returned an error, panicked or died; otherwise `parent`'s error.
pub fn run_pair<R>(
    pin: PinMode,
    parent: impl FnOnce(&Pair<'_>) -> Result<R, BenchError>,
    child: impl FnOnce(&Pair<'_>) -> Result<(), BenchError>,
) -> Result<(R, Placement), BenchError> {
    match thread_count() {
        Some(1) => {}
        threads => return Err(BenchError::MultiThreaded { threads }),
    }
    let mask =
        rustix::thread::sched_getaffinity(None).map_err(BenchError::os("sched_getaffinity"))?;
    let cpus = choose_cpus(pin, &mask)?;
    let ctl = ShmArea::new(
        Control {
            arrivals: [
                CachePadded::new(AtomicU64::new(0)),
                CachePadded::new(AtomicU64::new(0)),
            ],
            child_cpus: AtomicU64::new(0),
            error_len: AtomicU32::new(0),
        },
        ERROR_BYTES,
    )?;
    let parent_pid = rustix::process::getpid();
    // SAFETY: this process has one thread (checked above, and only this
    // thread could have started another since), so the child inherits no
    // lock held by a thread that does not exist in it. The child runs only
    // `child_side`, which ends in `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(BenchError::last_os("fork"));
    }
    if pid == 0 {
        drop(parent);
        child_side(&ctl, parent_pid, cpus, child);
    }
    drop(child);
    let pid = Pid::from_raw(pid).ok_or(BenchError::Os {
        what: "fork",
        errno: rustix::io::Errno::SRCH,
    })?;
    let mut guard = ChildGuard { pid, reaped: false };
    let result = parent_side(&ctl, pid, &mut guard, cpus, parent);
    // Back to the CPUs we had, whatever happened.
    let _ = rustix::thread::sched_setaffinity(None, &mask);
    result
}

fn parent_side<R>(
    ctl: &ShmArea<Control>,
    pid: Pid,
    guard: &mut ChildGuard,
    cpu_pair: Option<(usize, usize)>,
    parent: impl FnOnce(&Pair<'_>) -> Result<R, BenchError>,
) -> Result<(R, Placement), BenchError> {
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(BenchError::os("pidfd_open"))?;
    let pair = Pair {
        role: Role::Parent,
        peer: pid,
        ctl: ctl.get(),
        pidfd: Some(&pidfd),
        spins: spins_for(cpu_pair),
    };
    pin_self(cpu_pair.map(|c| c.0))?;
    pair.barrier()?;
    let start_cpu = current_cpu();
    let outcome = parent(&pair);
    let end_cpu = current_cpu();
    // A child that exits in time is reaped; otherwise (or when the parent
    // failed and the child may wait forever) it is killed first.
    let exited = match &outcome {
        Ok(_) => poll_readable(&pidfd, Some(STUCK_AFTER)),
        Err(_) => poll_readable(&pidfd, Some(Duration::ZERO)),
    };
    let status = guard.reap(!exited)?;
    let child_err = child_failure(ctl, status, exited);
    let value = match (outcome, child_err) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(e),
        (Ok(v), None) if exited => v,
        (Ok(_), None) => return Err(BenchError::Stuck("the child process to exit")),
    };
    // Relaxed: the child stored it before exiting and waitpid ordered that
    // before this load.
    let cpus = ctl.get().child_cpus.load(Ordering::Relaxed);
    Ok((
        value,
        Placement {
            parent: [start_cpu, end_cpu],
            child: [cpus as u32, (cpus >> 32) as u32],
        },
    ))
}

/// The child's failure, if it exited on its own and not with status 0.
fn child_failure(
    ctl: &ShmArea<Control>,
    status: rustix::process::WaitStatus,
    exited_on_its_own: bool,
) -> Option<BenchError> {
    if !exited_on_its_own || status.exit_status() == Some(0) {
        return None;
    }
    // Relaxed: written before the child exited; waitpid orders it.
    let len = (ctl.get().error_len.load(Ordering::Relaxed) as usize).min(ctl.bulk_len());
    // SAFETY: the child has exited, so nobody writes the bulk bytes; len is
    // clamped to the bulk length.
    let bytes = unsafe { core::slice::from_raw_parts(ctl.bulk_ptr(), len) };
    let message = String::from_utf8_lossy(bytes).into_owned();
    let status = match (status.exit_status(), status.terminating_signal()) {
        (Some(2), _) => "panicked".to_owned(),
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "ended oddly".to_owned(),
    };
    Some(BenchError::ChildFailed { status, message })
}

/// Kills (if asked) and reaps the child; on drop, kills and reaps it if
/// nobody did, so that no path leaves it running.
#[derive(Debug)]
struct ChildGuard {
    pid: Pid,
    reaped: bool,
}

impl ChildGuard {
    fn reap(&mut self, kill: bool) -> Result<rustix::process::WaitStatus, BenchError> {
        if kill {
            let _ = rustix::process::kill_process(self.pid, Signal::KILL);
        }
        loop {
            match rustix::process::waitpid(Some(self.pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Ok(None) => continue,
                Err(e) => {
                    self.reaped = true;
                    return Err(BenchError::Os {
                        what: "waitpid",
                        errno: e,
                    });
                }
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.reap(true);
        }
    }
}

/// The child's whole life after the fork: never returns.
fn child_side(
    ctl: &ShmArea<Control>,
    parent_pid: Pid,
    cpu_pair: Option<(usize, usize)>,
    child: impl FnOnce(&Pair<'_>) -> Result<(), BenchError>,
) -> ! {
    let run = || -> Result<(), BenchError> {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
            .map_err(BenchError::os("prctl(PR_SET_PDEATHSIG)"))?;
        if rustix::process::getppid() != Some(parent_pid) {
            return Err(BenchError::PeerDied);
        }
        let pair = Pair {
            role: Role::Child,
            peer: parent_pid,
            ctl: ctl.get(),
            pidfd: None,
            spins: spins_for(cpu_pair),
        };
        pin_self(cpu_pair.map(|c| c.1))?;
        pair.barrier()?;
        let start = u64::from(current_cpu());
        let result = child(&pair);
        let end = u64::from(current_cpu());
        // Relaxed: the parent reads it after reaping us (waitpid orders it).
        ctl.get()
            .child_cpus
            .store(start | (end << 32), Ordering::Relaxed);
        result
    };
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            let text = e.to_string();
            let len = text.len().min(ctl.bulk_len());
            // SAFETY: the parent reads these bytes only after reaping us;
            // len is within the bulk area.
            unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), ctl.bulk_ptr(), len) };
            // Relaxed: read by the parent after waitpid.
            ctl.get()
                .error_len
                .store(u32::try_from(len).unwrap_or(0), Ordering::Relaxed);
            1
        }
        Err(_) => 2,
    };
    // SAFETY: _exit ends this forked process without running atexit
    // handlers or destructors that belong to the parent's state (stdio
    // buffers, test harness), which is what a fork child must do.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_choice_follows_the_pin_mode() {
        let mut one = CpuSet::new();
        one.set(3);
        assert_eq!(choose_cpus(PinMode::None, &one).unwrap(), None);
        assert_eq!(choose_cpus(PinMode::Same, &one).unwrap(), Some((3, 3)));
        assert!(matches!(
            choose_cpus(PinMode::Split, &one),
            Err(BenchError::Pin(_))
        ));
        let mut two = one;
        two.set(1);
        assert_eq!(choose_cpus(PinMode::Split, &two).unwrap(), Some((1, 3)));
        assert_eq!(spins_for(Some((3, 3))), 0);
        assert_eq!(spins_for(Some((1, 3))), SPINS_BEFORE_YIELD);
    }
}
