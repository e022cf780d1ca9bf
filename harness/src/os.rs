//! What the operating system offers two processes without shared-memory
//! protocols of our own: a Unix socket, a pipe, and a process-shared pthread
//! mutex with condition variables (the talk's "mutex round trip between
//! images"). Every waiting side here sleeps in the kernel.

use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::fd::AsFd;
use rustix::io::Errno;

use super::pair::{ShmArea, run_pair};
use super::{BenchError, Measurement, PinMode, Plan, Row, Timings, Unit, Wait};
use polycephaly::sync::shim::{AtomicU32, Ordering};

/// The operating-system rows, in table order.
pub const ROWS: &[Row] = &[
    Row {
        name: "uds_rtt",
        payload: "8 B",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_wake_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(500, 40_000, 1), Plan::new(100, 5_000, 1));
            Measurement::latency(&stream_rtt(cfg.pin, Stream::Uds, &plan)?)
        },
    },
    Row {
        name: "pipe_rtt",
        payload: "8 B",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_wake_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(500, 40_000, 1), Plan::new(100, 5_000, 1));
            Measurement::latency(&stream_rtt(cfg.pin, Stream::Pipe, &plan)?)
        },
    },
    Row {
        name: "pshared_mutex_rtt",
        payload: "flag",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_wake_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(500, 40_000, 1), Plan::new(100, 5_000, 1));
            Measurement::latency(&pshared_mutex_rtt(cfg.pin, &plan)?)
        },
    },
    Row {
        name: "uds_64b_throughput",
        payload: "64 B",
        wait: Wait::Block,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(2, 60, 50_000), Plan::new(1, 20, 50_000));
            Measurement::rate(&uds_64b_throughput(cfg.pin, &plan)?, Unit::MsgPerSec, 1)
        },
    },
];

/// Which byte stream [`stream_rtt`] goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// A Unix stream socket pair.
    Uds,
    /// Two pipes, one each way.
    Pipe,
}

/// Writes all of `buf`.
pub(crate) fn write_all(fd: impl AsFd, mut buf: &[u8]) -> Result<(), BenchError> {
    while !buf.is_empty() {
        match rustix::io::write(&fd, buf) {
            Ok(0) => return Err(BenchError::PeerDied),
            Ok(n) => buf = buf.get(n..).unwrap_or(&[]),
            Err(Errno::INTR) => {}
            Err(Errno::PIPE) => return Err(BenchError::PeerDied),
            Err(e) => {
                return Err(BenchError::Os {
                    what: "write",
                    errno: e,
                });
            }
        }
    }
    Ok(())
}

/// Fills all of `buf`; end-of-file (the peer closed or died) is an error.
pub(crate) fn read_exact(fd: impl AsFd, mut buf: &mut [u8]) -> Result<(), BenchError> {
    while !buf.is_empty() {
        match rustix::io::read(&fd, &mut *buf) {
            Ok(0) => return Err(BenchError::PeerDied),
            Ok(n) => buf = buf.get_mut(n..).unwrap_or(&mut []),
            Err(Errno::INTR) => {}
            Err(e) => {
                return Err(BenchError::Os {
                    what: "read",
                    errno: e,
                });
            }
        }
    }
    Ok(())
}

/// One side's descriptors: (read from, write to).
pub(crate) type Ends = (OwnedFd, OwnedFd);

/// The parent's and the child's ends of a socket pair, or of two pipes.
pub(crate) fn stream_ends(kind: Stream) -> Result<(Ends, Ends), BenchError> {
    match kind {
        Stream::Uds => {
            use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
            let (a, b) = socketpair(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .map_err(BenchError::os("socketpair"))?;
            // Each side reads and writes its own end; duplicate so both
            // sides have a (read, write) pair of descriptors.
            let a2 = rustix::io::dup(&a).map_err(BenchError::os("dup"))?;
            let b2 = rustix::io::dup(&b).map_err(BenchError::os("dup"))?;
            Ok(((a, a2), (b, b2)))
        }
        Stream::Pipe => {
            let (to_child_r, to_child_w) = rustix::pipe::pipe().map_err(BenchError::os("pipe"))?;
            let (to_parent_r, to_parent_w) =
                rustix::pipe::pipe().map_err(BenchError::os("pipe"))?;
            Ok(((to_parent_r, to_child_w), (to_child_r, to_parent_w)))
        }
    }
}

/// Round trips of 8 bytes through a byte stream, both sides blocking in
/// `read`: the parent writes and reads the echo, the child reads and
/// echoes. Each sample times `plan.batch` trips.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] if an echo differs.
pub fn stream_rtt(pin: PinMode, kind: Stream, plan: &Plan) -> Result<Timings, BenchError> {
    let ((p_read, p_write), (c_read, c_write)) = stream_ends(kind)?;
    let plan = *plan;
    let (samples, placement) = run_pair(
        pin,
        move |_| {
            let mut out = Vec::with_capacity(plan.samples);
            let mut seq = 0u64;
            let mut echo = [0u8; 8];
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    seq += 1;
                    write_all(&p_write, &seq.to_le_bytes())?;
                    read_exact(&p_read, &mut echo)?;
                    if u64::from_le_bytes(echo) != seq {
                        return Err(BenchError::Corrupt(format!("echo of {seq}")));
                    }
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        move |_| {
            let mut msg = [0u8; 8];
            for _ in 0..plan.total_ops() {
                read_exact(&c_read, &mut msg)?;
                write_all(&c_write, &msg)?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}

/// 64-byte messages through a Unix stream socket, one `write` per message;
/// the child reads with a 64 KiB buffer, checks every byte and the total,
/// and acknowledges the end with one byte. Each sample times `plan.batch`
/// messages at the writer, in steady state.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong byte.
pub fn uds_64b_throughput(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let ((p_read, p_write), (c_read, c_write)) = stream_ends(Stream::Uds)?;
    let plan = *plan;
    const FILL: u8 = 0x5A;
    let (samples, placement) = run_pair(
        pin,
        move |_| {
            let mut out = Vec::with_capacity(plan.samples);
            let msg = [FILL; 64];
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    write_all(&p_write, &msg)?;
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            let mut ack = [0u8; 1];
            read_exact(&p_read, &mut ack)?;
            Ok(out)
        },
        move |_| {
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = plan.total_ops().saturating_mul(64);
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match rustix::io::read(&c_read, &mut buf[..want]) {
                    Ok(0) => return Err(BenchError::PeerDied),
                    Ok(n) => n,
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        return Err(BenchError::Os {
                            what: "read",
                            errno: e,
                        });
                    }
                };
                if !buf.get(..n).unwrap_or(&[]).iter().all(|&b| b == FILL) {
                    return Err(BenchError::Corrupt("uds message bytes".into()));
                }
                left -= n as u64;
            }
            write_all(&c_write, &[1])
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}

/// The pthread objects of the mutex round trip, initialized in place with
/// `PTHREAD_PROCESS_SHARED` (and a robust mutex, so a holder that dies
/// gives `EOWNERDEAD` instead of a hang). `turn` (guarded by the mutex) is
/// 1 when the child is to answer, 0 when the parent is.
#[repr(C)]
#[derive(Debug)]
struct PsharedState {
    mutex: libc::pthread_mutex_t,
    to_child: libc::pthread_cond_t,
    to_parent: libc::pthread_cond_t,
    turn: AtomicU32,
}

const _: () = assert!(align_of::<PsharedState>() <= 8);

fn check(what: &'static str, rc: libc::c_int) -> Result<(), BenchError> {
    match rc {
        0 => Ok(()),
        libc::EOWNERDEAD => Err(BenchError::PeerDied),
        e => Err(BenchError::Os {
            what,
            errno: Errno::from_raw_os_error(e),
        }),
    }
}

fn init_pshared(p: *mut PsharedState) -> Result<(), BenchError> {
    // SAFETY: `p` points to a PsharedState in a live mapping that no other
    // process uses yet; the attribute objects are local and initialized
    // before use and destroyed after.
    unsafe {
        let mut ma: libc::pthread_mutexattr_t = core::mem::zeroed();
        check(
            "pthread_mutexattr_init",
            libc::pthread_mutexattr_init(&mut ma),
        )?;
        check(
            "pthread_mutexattr_setpshared",
            libc::pthread_mutexattr_setpshared(&mut ma, libc::PTHREAD_PROCESS_SHARED),
        )?;
        check(
            "pthread_mutexattr_setrobust",
            libc::pthread_mutexattr_setrobust(&mut ma, libc::PTHREAD_MUTEX_ROBUST),
        )?;
        check(
            "pthread_mutex_init",
            libc::pthread_mutex_init(&raw mut (*p).mutex, &ma),
        )?;
        libc::pthread_mutexattr_destroy(&mut ma);
        let mut ca: libc::pthread_condattr_t = core::mem::zeroed();
        check(
            "pthread_condattr_init",
            libc::pthread_condattr_init(&mut ca),
        )?;
        check(
            "pthread_condattr_setpshared",
            libc::pthread_condattr_setpshared(&mut ca, libc::PTHREAD_PROCESS_SHARED),
        )?;
        check(
            "pthread_condattr_setclock",
            libc::pthread_condattr_setclock(&mut ca, libc::CLOCK_MONOTONIC),
        )?;
        check(
            "pthread_cond_init",
            libc::pthread_cond_init(&raw mut (*p).to_child, &ca),
        )?;
        check(
            "pthread_cond_init",
            libc::pthread_cond_init(&raw mut (*p).to_parent, &ca),
        )?;
        libc::pthread_condattr_destroy(&mut ca);
    }
    Ok(())
}

/// One side of the mutex ping-pong: with the mutex held, hands the turn
/// over (`give`, signalling `signal`) and waits on `wait_on` until the turn
/// comes back as `mine`. Waits are bounded (1 s) and check the peer.
struct PsharedSide<'a> {
    p: *mut PsharedState,
    turn: &'a AtomicU32,
    alive: &'a dyn Fn() -> bool,
}

impl PsharedSide<'_> {
    fn lock(&self) -> Result<(), BenchError> {
        // SAFETY: the mutex was initialized (process-shared) before the fork
        // and lives in the mapping for the whole pair.
        check("pthread_mutex_lock", unsafe {
            libc::pthread_mutex_lock(&raw mut (*self.p).mutex)
        })
    }

    fn unlock(&self) {
        // SAFETY: as in `lock`; this process holds the mutex.
        unsafe { libc::pthread_mutex_unlock(&raw mut (*self.p).mutex) };
    }

    fn give(&self, value: u32, signal: *mut libc::pthread_cond_t) -> Result<(), BenchError> {
        // Relaxed: the mutex orders it (we hold it).
        self.turn.store(value, Ordering::Relaxed);
        // SAFETY: the condvar was initialized before the fork.
        check("pthread_cond_signal", unsafe {
            libc::pthread_cond_signal(signal)
        })
    }

    fn await_turn(&self, mine: u32, cond: *mut libc::pthread_cond_t) -> Result<(), BenchError> {
        // Relaxed: read with the mutex held.
        while self.turn.load(Ordering::Relaxed) != mine {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let deadline = libc::timespec {
                tv_sec: (now.tv_sec + 1) as libc::time_t,
                tv_nsec: now.tv_nsec as libc::c_long,
            };
            // SAFETY: cond and mutex were initialized before the fork; we
            // hold the mutex, as pthread_cond_timedwait requires.
            let rc =
                unsafe { libc::pthread_cond_timedwait(cond, &raw mut (*self.p).mutex, &deadline) };
            if rc == libc::ETIMEDOUT {
                if !(self.alive)() {
                    return Err(BenchError::PeerDied);
                }
            } else {
                check("pthread_cond_timedwait", rc)?;
            }
        }
        Ok(())
    }
}

/// Round trips of a flag handed back and forth under a process-shared
/// pthread mutex, each side sleeping on its own condition variable until
/// the flag says it is its turn. Each sample times `plan.batch` trips.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Os`] if a pthread call fails.
pub fn pshared_mutex_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new(
        PsharedState {
            mutex: libc::PTHREAD_MUTEX_INITIALIZER,
            to_child: libc::PTHREAD_COND_INITIALIZER,
            to_parent: libc::PTHREAD_COND_INITIALIZER,
            turn: AtomicU32::new(0),
        },
        0,
    )?;
    let p = area.as_ptr();
    init_pshared(p)?;
    // SAFETY: a field projection of the live, initialized state.
    let turn = unsafe { &(*p).turn };
    let to_child = {
        // SAFETY: as above.
        unsafe { &raw mut (*p).to_child }
    };
    let to_parent = {
        // SAFETY: as above.
        unsafe { &raw mut (*p).to_parent }
    };
    let plan = *plan;
    let result = run_pair(
        pin,
        |pair| {
            let alive = || pair.peer_alive();
            let side = PsharedSide {
                p,
                turn,
                alive: &alive,
            };
            let mut out = Vec::with_capacity(plan.samples);
            side.lock()?;
            let run = (|| {
                for s in 0..plan.total_samples() {
                    let t0 = Instant::now();
                    for _ in 0..plan.batch {
                        side.give(1, to_child)?;
                        side.await_turn(0, to_parent)?;
                    }
                    let d = t0.elapsed();
                    if s >= plan.warmup {
                        out.push(d);
                    }
                }
                Ok(())
            })();
            side.unlock();
            run.map(|()| out)
        },
        |pair| {
            let alive = || pair.peer_alive();
            let side = PsharedSide {
                p,
                turn,
                alive: &alive,
            };
            side.lock()?;
            let run = (|| {
                for _ in 0..plan.total_ops() {
                    side.await_turn(1, to_child)?;
                    side.give(0, to_parent)?;
                }
                Ok(())
            })();
            side.unlock();
            run
        },
    );
    // SAFETY: the child has been reaped and nobody else uses the objects.
    unsafe {
        libc::pthread_cond_destroy(to_child);
        libc::pthread_cond_destroy(to_parent);
        libc::pthread_mutex_destroy(&raw mut (*p).mutex);
    }
    let (samples, placement) = result?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}
