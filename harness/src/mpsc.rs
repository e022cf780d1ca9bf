//! MPSC ring rows: aggregate message rates with 1, 2 and 4 producer
//! processes, and a blocking round trip over two MPSC rings.
//!
//! Every process joins the region (a memfd inherited through `fork`) with
//! its own peer slot, so the rings see real, distinct producers. The parent
//! is the consumer and times: each sample is `plan.batch` frames received.
//! Every frame is checked (per-producer sequence numbers in the payload).
//!
//! How the processes wait: every side uses [`WaitStrategy::BLOCK`] (spin
//! up to 50 us, then sleep on the futex). On a 2-CPU machine two or four
//! producers plus the consumer are more processes than CPUs, and a side
//! that spins without ever sleeping ([`WaitStrategy::SPIN`]) only steals
//! the CPU its peer needs: measured here with one producer and other load
//! on the machine, pure spinning fell to ~0.2 M msg/s, against several M
//! with BLOCK. The figures are what the machine sustains with that many
//! writers sharing its CPUs, not a per-core rate.
//!
//! Where they run (`--pin`): `none` leaves it to the scheduler; `split`
//! puts the consumer on the first CPU and every producer on the second, as
//! the SPSC rows put their consumer and producer (so the producers share
//! one CPU and take turns on it, and their claims interleave in the ring
//! by turns rather than message by message); `same` puts everyone on the
//! first CPU. The row's note says which.

use core::time::Duration;
use std::time::Instant;

use rustix::process::{Pid, Signal, WaitOptions};

use super::floors::{open_stat, wait_until_sleeping};
use super::pair::{STUCK_AFTER, choose_cpus, current_cpu, pin_self, run_pair};
use super::{BenchError, Measurement, PinMode, Placement, Plan, Row, Timings, Unit, Wait};
use polycephaly::region::{OpenOptions, Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, RecvError, Sender, mpsc};
use polycephaly::sync::WaitStrategy;
use polycephaly::sync::shim::{AtomicU64, Ordering};

/// The MPSC rows, in table order.
pub const ROWS: &[Row] = &[
    Row {
        name: "mpsc1_64b_throughput",
        payload: "64 B",
        wait: Wait::Block,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| throughput_row(cfg.plan(FULL, QUICK), 1, cfg.pin),
    },
    Row {
        name: "mpsc2_64b_throughput",
        payload: "64 B",
        wait: Wait::Block,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| throughput_row(cfg.plan(FULL, QUICK), 2, cfg.pin),
    },
    Row {
        name: "mpsc4_64b_throughput",
        payload: "64 B",
        wait: Wait::Block,
        unit: Unit::MsgPerSec,
        floor: Some("floor_ring_64b_throughput"),
        run: |cfg| throughput_row(cfg.plan(FULL, QUICK), 4, cfg.pin),
    },
    Row {
        name: "mpsc_block_rtt",
        payload: "8 B",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_wake_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::latency(&block_rtt(cfg.pin, &plan)?)
        },
    },
];

const FULL: Plan = Plan::new(10, 200, 200_000);
const QUICK: Plan = Plan::new(5, 40, 100_000);

fn throughput_row(plan: Plan, producers: usize, pin: PinMode) -> Result<Measurement, BenchError> {
    let mut m = Measurement::rate(&throughput(producers, &plan, pin)?, Unit::MsgPerSec, 1)?;
    let placed = match pin {
        PinMode::None => "placed by the scheduler",
        PinMode::Split => "consumer on the first CPU, every producer on the second",
        PinMode::Same => "all on the first CPU",
    };
    m.notes.push(format!(
        "{producers} producer process(es) + the consumer, {placed}; all BLOCK (child = producer 0)"
    ));
    Ok(m)
}

/// The ring's data bytes: 64 KiB, as the SPSC rows.
const RING_BYTES: usize = 1 << 16;
/// Payload bytes per message.
const MSG: usize = 64;

/// A memfd region with an MPSC ring section per `rings` and a raw section
/// of control words (`[ready, go]`).
fn region(rings: usize) -> Result<Region, BenchError> {
    let spec = mpsc::Spec::new(RING_BYTES).map_err(|e| BenchError::Corrupt(e.to_string()))?;
    let mut b = Region::builder().section(SectionKind::Raw, 64);
    for _ in 0..rings {
        b = b.with(spec);
    }
    b.build()
        .map_err(|e| BenchError::Corrupt(format!("region: {e}")))
}

/// Raw word `i` of section 0.
fn word(region: &Region, i: usize) -> Result<&AtomicU64, BenchError> {
    let s = region
        .section(SectionId(0))
        .map_err(|e| BenchError::Corrupt(e.to_string()))?;
    if (i + 1) * 8 > s.len {
        return Err(BenchError::Corrupt("no such control word".into()));
    }
    // SAFETY: in bounds (checked), 8-aligned (sections are 64-aligned),
    // zero-filled at creation (a valid AtomicU64), alive with `region`.
    Ok(unsafe { &*s.ptr.as_ptr().add(i * 8).cast::<AtomicU64>() })
}

/// In a forked child: a handle of its own on the parent's region (its own
/// peer slot); the copy it inherited is inert there.
fn join(region: &Region) -> Result<Region, BenchError> {
    region
        .reopen(&OpenOptions::default())
        .map_err(|e| BenchError::Corrupt(format!("join: {e}")))
}

fn ring_err(e: impl core::fmt::Display) -> BenchError {
    BenchError::Corrupt(format!("mpsc: {e}"))
}

/// Messages per second through one MPSC ring fed by `producers` forked
/// producer processes (64-byte payloads, sequence number first), consumed
/// by the parent in batches of up to 256. Each sample times `plan.batch`
/// messages at the consumer, in steady state.
///
/// # Errors
/// [`BenchError::Corrupt`] if a message is out of order or the ring fails;
/// those of the process group.
pub fn throughput(producers: usize, plan: &Plan, pin: PinMode) -> Result<Timings, BenchError> {
    let mask =
        rustix::thread::sched_getaffinity(None).map_err(BenchError::os("sched_getaffinity"))?;
    let cpus = choose_cpus(pin, &mask)?;
    // The consumer's CPU now (the children inherit it, then move).
    pin_self(cpus.map(|(a, _)| a))?;
    let result = throughput_pinned(producers, plan, cpus.map(|(_, b)| b));
    // Back to the CPUs we had, whatever happened.
    let _ = rustix::thread::sched_setaffinity(None, &mask);
    result
}

fn throughput_pinned(
    producers: usize,
    plan: &Plan,
    producer_cpu: Option<usize>,
) -> Result<Timings, BenchError> {
    let region = region(1)?;
    let ring = SectionId(1);
    let strategy = WaitStrategy::BLOCK;
    let mut rx = mpsc::Consumer::attach(&region, ring).map_err(ring_err)?;
    rx.set_wait_strategy(strategy);
    let total = plan.total_ops();
    let per = total.div_ceil(producers as u64);
    let ready = word(&region, 0)?;
    let go = word(&region, 1)?;
    // Producer 0's CPU at the start and at the end, plus one (0: unknown).
    let child_cpus = [word(&region, 2)?, word(&region, 3)?];
    let produce = |i: usize| -> Result<(), BenchError> {
        pin_self(producer_cpu)?;
        let own = join(&region)?;
        let mut tx = mpsc::Producer::attach(&own, ring).map_err(ring_err)?;
        tx.set_wait_strategy(strategy);
        let mut msg = [0xA5u8; MSG];
        // Release/Acquire: the start barrier (pairs with the parent).
        ready.fetch_add(1, Ordering::Release);
        while go.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        let note_cpu = |k: usize| {
            if i == 0 {
                // Relaxed: read by the parent after it reaped us.
                child_cpus[k].store(u64::from(current_cpu()) + 1, Ordering::Relaxed);
            }
        };
        note_cpu(0);
        for seq in 0..per {
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            let mut claim = tx.claim(MSG).map_err(ring_err)?;
            claim.copy_from_slice(&msg);
            claim.set_tag(i as u32);
            claim.commit().map_err(ring_err)?;
        }
        note_cpu(1);
        Ok(())
    };
    let mut parent_cpus = [u32::MAX; 2];
    let samples = run_group(producers, produce, || {
        wait_ready(ready, producers as u64)?;
        // Release: pairs with the producers' Acquire loads of `go`.
        go.store(1, Ordering::Release);
        parent_cpus[0] = current_cpu();
        let mut next = vec![0u64; producers];
        let mut bad = None;
        let mut out = Vec::with_capacity(plan.samples);
        for s in 0..plan.total_samples() {
            let t0 = Instant::now();
            // One clock read per sample, not per batch: a caught-up consumer
            // reads batches of one or two frames.
            let deadline = t0.checked_add(STUCK_AFTER);
            let mut got = 0u64;
            while got < plan.batch {
                let max = (plan.batch - got).min(256) as usize;
                got += rx
                    .read_batch_deadline(max, deadline, |tag, bytes| {
                        check(tag, bytes, &mut next, &mut bad);
                    })
                    .map_err(|e| match e {
                        RecvError::TimedOut => BenchError::Stuck("the producers"),
                        e => ring_err(e),
                    })? as u64;
            }
            let d = t0.elapsed();
            if let Some(b) = bad.take() {
                return Err(BenchError::Corrupt(b));
            }
            if s >= plan.warmup {
                out.push(d);
            }
        }
        // The rest (rounding up per producer), so that every producer ends.
        let rest = per * producers as u64 - total;
        let mut drained = 0;
        while drained < rest {
            drained += rx
                .read_batch_deadline(256, Instant::now().checked_add(STUCK_AFTER), |t, b| {
                    check(t, b, &mut next, &mut bad)
                })
                .map_err(ring_err)? as u64;
        }
        parent_cpus[1] = current_cpu();
        Ok(out)
    });
    // Relaxed: the producers are reaped (`waitpid` ordered their stores).
    let child = child_cpus.map(|w| (w.load(Ordering::Relaxed).wrapping_sub(1)) as u32);
    Ok(
        Timings::new(samples?, plan.batch).with_placement(Placement {
            parent: parent_cpus,
            child,
        }),
    )
}

/// Checks one message: its producer's next sequence number.
fn check(tag: u32, bytes: &[u8], next: &mut [u64], bad: &mut Option<String>) {
    let seq = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes);
    match (next.get_mut(tag as usize), seq) {
        (Some(n), Some(seq)) if seq == *n && bytes.len() == MSG => *n += 1,
        _ if bad.is_none() => *bad = Some(format!("message from producer {tag}: {seq:?}")),
        _ => {}
    }
}

fn wait_ready(ready: &AtomicU64, n: u64) -> Result<(), BenchError> {
    let start = Instant::now();
    // Acquire: pairs with the children's Release increments.
    while ready.load(Ordering::Acquire) < n {
        if start.elapsed() > STUCK_AFTER {
            return Err(BenchError::Stuck("the producers to start"));
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// Forks `n` children that run `child(i)` and `_exit`, runs `parent` here,
/// then reaps them all (killing any still running after an error or after
/// [`STUCK_AFTER`]). A child's failure becomes [`BenchError::ChildFailed`].
fn run_group<R>(
    n: usize,
    child: impl Fn(usize) -> Result<(), BenchError>,
    parent: impl FnOnce() -> Result<R, BenchError>,
) -> Result<R, BenchError> {
    let parent_pid = rustix::process::getpid();
    let mut group = Group { pids: Vec::new() };
    for i in 0..n {
        // SAFETY: fork has no memory-safety preconditions of its own; the
        // child runs only `child(i)` and ends in `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(BenchError::last_os("fork"));
        }
        if pid == 0 {
            let run = || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(BenchError::os("prctl(PR_SET_PDEATHSIG)"))?;
                if rustix::process::getppid() != Some(parent_pid) {
                    return Err(BenchError::PeerDied);
                }
                child(i)
            };
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                Ok(Ok(())) => 0,
                Ok(Err(_)) => 1,
                Err(_) => 2,
            };
            // SAFETY: ends the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        if let Some(pid) = Pid::from_raw(pid) {
            group.pids.push(pid);
        }
    }
    let result = parent();
    let ok = result.is_ok();
    let failed = group.reap(ok);
    match (result, failed) {
        (Ok(v), None) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Some(status)) => Err(BenchError::ChildFailed {
            status,
            message: String::new(),
        }),
    }
}

/// The children of a group; killed and reaped on drop if still there.
struct Group {
    pids: Vec<Pid>,
}

impl Group {
    /// Reaps every child: waits up to [`STUCK_AFTER`] when `wait`, then
    /// kills the rest. Returns how the first failed child ended, if any.
    fn reap(&mut self, wait: bool) -> Option<String> {
        let deadline = Instant::now() + if wait { STUCK_AFTER } else { Duration::ZERO };
        let mut failed = None;
        for pid in core::mem::take(&mut self.pids) {
            let status = loop {
                match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                    Ok(Some((_, status))) => break Some(status),
                    Ok(None) if Instant::now() < deadline => std::thread::yield_now(),
                    Ok(None) => {
                        let _ = rustix::process::kill_process(pid, Signal::KILL);
                        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                        break None;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => break None,
                }
            };
            let desc = match status {
                Some(s) if s.exit_status() == Some(0) => continue,
                Some(s) => format!("{s:?}"),
                None => "killed (stuck)".to_owned(),
            };
            failed.get_or_insert(desc);
        }
        failed
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.reap(false);
    }
}

/// A blocking round trip over two MPSC rings, measured as `spsc_block_rtt`
/// is: the parent sends an 8-byte request on one, the child answers on the
/// other. The child waits with [`WaitStrategy::SLEEP`] and is asleep at
/// every request (checked through `/proc`, untimed); the parent waits with
/// the default [`WaitStrategy::BLOCK`], whose spin phase catches the reply.
/// The figure is one futex wake plus the ring work, comparable with
/// `floor_wake_rtt`. (Until issue 15 both sides slept, so the row held two
/// wakes against the floor's one.) Each round trip is timed alone
/// (`plan.batch` is ignored).
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a wrong reply.
pub fn block_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let region = region(2)?;
    let (req, rep) = (SectionId(1), SectionId(2));
    let plan = *plan;
    let result = run_pair(
        pin,
        |pair| {
            let mut tx = mpsc::Producer::attach(&region, req).map_err(ring_err)?;
            let mut rx = mpsc::Consumer::attach(&region, rep).map_err(ring_err)?;
            tx.set_wait_strategy(WaitStrategy::BLOCK);
            rx.set_wait_strategy(WaitStrategy::BLOCK);
            let stat = open_stat(pair)?;
            pair.barrier()?;
            let mut out = Vec::with_capacity(plan.samples);
            for s in 0..plan.total_samples() as u64 {
                wait_until_sleeping(pair, &stat)?;
                let t0 = Instant::now();
                tx.send_value(&s).map_err(ring_err)?;
                let back = rx
                    .read_deadline(Instant::now().checked_add(STUCK_AFTER))
                    .map_err(ring_err)?;
                let ok = back.len() == 8 && back[..] == s.to_le_bytes();
                drop(back);
                let d = t0.elapsed();
                if !ok {
                    return Err(BenchError::Corrupt(format!("reply {s}")));
                }
                if s >= plan.warmup as u64 {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair| {
            let own = join(&region)?;
            let mut rx = mpsc::Consumer::attach(&own, req).map_err(ring_err)?;
            let mut tx = mpsc::Producer::attach(&own, rep).map_err(ring_err)?;
            tx.set_wait_strategy(WaitStrategy::SLEEP);
            rx.set_wait_strategy(WaitStrategy::SLEEP);
            pair.barrier()?;
            for _ in 0..plan.total_samples() {
                let v: u64 = rx.recv_value().map_err(ring_err)?;
                tx.send_value(&v).map_err(ring_err)?;
            }
            Ok(())
        },
    );
    let (samples, placement) = result?;
    Ok(Timings::new(samples, 1).with_placement(placement))
}
