//! Rows for the lock module (src/lock): the event's wake-up round trip, the
//! mutex uncontended and handed between two processes, each beside its
//! baseline.
//!
//! - [`event_wake_rtt`]: like `floor_wake_rtt`, with [`Event`] in place of
//!   the bare futex word.
//! - [`mutex_uncontended`] / [`std_mutex_uncontended`]: lock, increment,
//!   unlock in one process.
//! - [`mutex_handoff_rtt`]: two processes alternate ownership of the value
//!   (each polls through the lock until it is its turn); compared with
//!   `pshared_mutex_rtt` as the issue asks, though that one sleeps.
//! - [`mutex_event_rtt`]: the same hand-off with each side asleep on an
//!   event until its turn, the like-for-like of the pthread mutex plus
//!   condition variables.
//!
//! The shared memory is an anonymous mapping made before the fork
//! ([`ShmArea`]); the handles attach with `from_raw` and judge owners by
//! pid ([`ProcessOwner`]), since a region handle copied by `fork` would give
//! both processes the same identity.

use core::hint::black_box;
use core::ptr::NonNull;
use core::time::Duration;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use super::pair::{Pair, ShmArea, run_pair};
use super::{BenchError, Measurement, PinMode, Plan, Row, Timings, Unit, Wait};
use polycephaly::lock::{Event, EventMode, LockError, ProcessOwner, ShmMutex};
use polycephaly::sync::WaitStrategy;
use polycephaly::sync::shim::{AtomicU64, Ordering};

/// The lock rows, in table order.
pub const ROWS: &[Row] = &[
    Row {
        name: "event_wake_rtt",
        payload: "signal",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("floor_wake_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(200, 20_000, 1), Plan::new(50, 2_000, 1));
            Measurement::latency(&event_wake_rtt(cfg.pin, &plan)?)
        },
    },
    Row {
        name: "std_mutex_uncontended",
        payload: "u64",
        wait: Wait::Local,
        unit: Unit::Ns,
        floor: None,
        run: |cfg| {
            let plan = cfg.plan(Plan::new(100, 5_000, 1_000), Plan::new(20, 500, 1_000));
            Measurement::latency(&std_mutex_uncontended(&plan)?)
        },
    },
    Row {
        name: "mutex_uncontended",
        payload: "u64",
        wait: Wait::Local,
        unit: Unit::Ns,
        floor: Some("std_mutex_uncontended"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(100, 5_000, 1_000), Plan::new(20, 500, 1_000));
            Measurement::latency(&mutex_uncontended(&plan)?)
        },
    },
    Row {
        name: "mutex_handoff_rtt",
        payload: "u64",
        wait: Wait::Spin,
        unit: Unit::Ns,
        floor: Some("pshared_mutex_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(100, 2_000, 100), Plan::new(20, 200, 100));
            Measurement::latency(&mutex_handoff_rtt(cfg.pin, &plan)?)
        },
    },
    Row {
        name: "mutex_event_rtt",
        payload: "u64",
        wait: Wait::Block,
        unit: Unit::Ns,
        floor: Some("pshared_mutex_rtt"),
        run: |cfg| {
            let plan = cfg.plan(Plan::new(50, 1_000, 20), Plan::new(10, 100, 20));
            Measurement::latency(&mutex_event_rtt(cfg.pin, &plan)?)
        },
    },
];

fn lock_err(e: LockError) -> BenchError {
    match e {
        LockError::TimedOut => BenchError::Stuck("the mutex"),
        e => BenchError::Corrupt(e.to_string()),
    }
}

/// Room for a mutex section and two event sections, 64-byte aligned.
const MUTEX_AT: usize = 0;
const EVENT_A_AT: usize = 256;
const EVENT_B_AT: usize = 512;
const BULK: usize = 1024;

const _: () = {
    assert!(ShmMutex::<u64>::section_len() <= EVENT_A_AT - MUTEX_AT);
    assert!(Event::section_len() <= EVENT_B_AT - EVENT_A_AT);
    assert!(EVENT_B_AT + Event::section_len() <= BULK);
};

fn at(area: &ShmArea<()>, offset: usize) -> NonNull<u8> {
    debug_assert!(offset < area.bulk_len());
    // SAFETY: offset < the bulk length: inside the mapping, which is
    // never at address 0.
    NonNull::new(unsafe { area.bulk_ptr().add(offset) }).unwrap_or(NonNull::dangling())
}

fn mutex_in(area: &ShmArea<()>) -> Result<ShmMutex<u64>, BenchError> {
    // SAFETY: the bulk bytes at MUTEX_AT (page-aligned base + 0) hold
    // section_len() bytes (const-asserted), live as long as `area`, which
    // outlives every handle made here, and are used only by ShmMutex.
    unsafe {
        ShmMutex::<u64>::from_raw(
            at(area, MUTEX_AT),
            EVENT_A_AT - MUTEX_AT,
            Arc::new(ProcessOwner),
        )
    }
    .map_err(|e| BenchError::Corrupt(e.to_string()))
}

fn event_in(area: &ShmArea<()>, offset: usize) -> Result<Event, BenchError> {
    // SAFETY: as in `mutex_in`: 64-aligned bytes of the area, used only by
    // Event handles, alive as long as `area`.
    unsafe { Event::from_raw(at(area, offset), Event::section_len(), EventMode::AutoReset) }
        .map_err(|e| BenchError::Corrupt(e.to_string()))
}

/// The wake row's handshake words (only grow; zero-initialized): `asleep`
/// (written by the child) is the request it is about to sleep for, `rsp`
/// (written by the child) the last request answered.
#[repr(C)]
#[derive(Debug)]
struct WakeWords {
    asleep: crossbeam_utils::CachePadded<AtomicU64>,
    rsp: crossbeam_utils::CachePadded<AtomicU64>,
}

/// Round trips that must wake a responder asleep in [`Event::wait`]: for
/// every request the child announces it, then waits (sleeping at once);
/// the parent, untimed, waits for the announcement and for the child's
/// state to be `S`, then times: `signal`, spin until the reply. A trip
/// whose signal made no `FUTEX_WAKE` (the child was not asleep after all)
/// is dropped and counted. Every trip is timed alone.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] on a corrupted event.
pub fn event_wake_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new((), BULK)?;
    let words = ShmArea::new(
        WakeWords {
            asleep: Default::default(),
            rsp: Default::default(),
        },
        0,
    )?;
    let st = words.get();
    let ev = event_in(&area, EVENT_A_AT)?.with_strategy(WaitStrategy::SLEEP);
    let total = plan.total_samples() as u64;
    let warmup = plan.warmup as u64;
    let ((samples, dropped), placement) = run_pair(
        pin,
        |pair| {
            let stat = open_stat(pair)?;
            let mut out = Vec::with_capacity(plan.samples);
            let mut dropped = 0u64;
            for i in 1..=total {
                // Acquire: pairs with the child's Release store of asleep.
                pair.spin_until(|| st.asleep.load(Ordering::Acquire) == i)?;
                wait_until_sleeping(pair, &stat)?;
                let wakes = polycephaly::sync::futex_calls().wakes;
                let t0 = Instant::now();
                ev.signal()
                    .map_err(|e| BenchError::Corrupt(e.to_string()))?;
                // Acquire: pairs with the child's Release store of rsp.
                pair.spin_until(|| st.rsp.load(Ordering::Acquire) == i)?;
                let d = t0.elapsed();
                if i <= warmup {
                    continue;
                }
                if polycephaly::sync::futex_calls().wakes == wakes {
                    dropped += 1;
                } else {
                    out.push(d);
                }
            }
            Ok((out, dropped))
        },
        |pair| {
            for i in 1..=total {
                // Release: pairs with the parent's Acquire load of asleep.
                st.asleep.store(i, Ordering::Release);
                loop {
                    match ev.wait_timeout(Duration::from_millis(200)) {
                        Ok(()) => break,
                        Err(polycephaly::lock::WaitEventError::TimedOut) if pair.peer_alive() => {}
                        Err(polycephaly::lock::WaitEventError::TimedOut) => {
                            return Err(BenchError::PeerDied);
                        }
                        Err(e) => return Err(BenchError::Corrupt(e.to_string())),
                    }
                }
                // Release: pairs with the parent's Acquire load of rsp.
                st.rsp.store(i, Ordering::Release);
            }
            Ok(())
        },
    )?;
    let mut t = Timings::new(samples, 1).with_placement(placement);
    t.dropped = dropped;
    Ok(t)
}

fn open_stat(pair: &Pair<'_>) -> Result<OwnedFd, BenchError> {
    let path = format!("/proc/{}/stat", pair.peer_pid().as_raw_nonzero());
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(BenchError::os("open /proc/<child>/stat"))
}

/// Polls the peer's scheduler state until it is `S` (asleep).
fn wait_until_sleeping(pair: &Pair<'_>, stat: &OwnedFd) -> Result<(), BenchError> {
    let mut buf = [0u8; 512];
    let start = Instant::now();
    loop {
        let n = rustix::io::pread(stat, &mut buf[..], 0).map_err(BenchError::os("pread stat"))?;
        let text = buf.get(..n).unwrap_or(&[]);
        let state = text
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|c| text.get(c + 1..))
            .and_then(|rest| rest.iter().copied().find(|b| !b.is_ascii_whitespace()));
        if state == Some(b'S') {
            return Ok(());
        }
        if !pair.peer_alive() {
            return Err(BenchError::PeerDied);
        }
        if start.elapsed() > super::pair::STUCK_AFTER {
            return Err(BenchError::Stuck("the child to fall asleep"));
        }
        std::thread::yield_now();
    }
}

/// Lock, increment, unlock of a [`ShmMutex`] in shared memory, one
/// process, no contention. Each sample times `plan.batch` of them; the
/// count is checked at the end.
///
/// # Errors
/// [`BenchError::Corrupt`] if the count is wrong or a lock fails.
pub fn mutex_uncontended(plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new((), BULK)?;
    let m = mutex_in(&area)?;
    let mut out = Vec::with_capacity(plan.samples);
    for s in 0..plan.total_samples() {
        let t0 = Instant::now();
        for _ in 0..plan.batch {
            let mut g = black_box(&m).lock().map_err(lock_err)?;
            *g += 1;
        }
        let d = t0.elapsed();
        if s >= plan.warmup {
            out.push(d);
        }
    }
    if *m.lock().map_err(lock_err)? != plan.total_ops() {
        return Err(BenchError::Corrupt("mutex_uncontended count".into()));
    }
    Ok(Timings::new(out, plan.batch))
}

/// The same with `std::sync::Mutex<u64>`.
///
/// # Errors
/// [`BenchError::Corrupt`] if the count is wrong or the mutex is poisoned.
pub fn std_mutex_uncontended(plan: &Plan) -> Result<Timings, BenchError> {
    let m = std::sync::Mutex::new(0u64);
    let poisoned = |_| BenchError::Corrupt("std mutex poisoned".into());
    let mut out = Vec::with_capacity(plan.samples);
    for s in 0..plan.total_samples() {
        let t0 = Instant::now();
        for _ in 0..plan.batch {
            let mut g = black_box(&m).lock().map_err(poisoned)?;
            *g += 1;
        }
        let d = t0.elapsed();
        if s >= plan.warmup {
            out.push(d);
        }
    }
    if *m.lock().map_err(poisoned)? != plan.total_ops() {
        return Err(BenchError::Corrupt("std_mutex_uncontended count".into()));
    }
    Ok(Timings::new(out, plan.batch))
}

/// Waits (polling through the lock) until the value's parity is `parity`,
/// then increments it: one hand-off of ownership to the other side.
fn take_turn(m: &ShmMutex<u64>, parity: u64, pair: &Pair<'_>) -> Result<(), BenchError> {
    let mut n: u32 = 0;
    loop {
        let mut g = m.lock().map_err(lock_err)?;
        if *g % 2 == parity {
            *g += 1;
            return Ok(());
        }
        drop(g);
        core::hint::spin_loop();
        n = n.wrapping_add(1);
        if n % 4096 == 0 {
            // Give a peer on the same CPU a chance, and stop if it died.
            std::thread::yield_now();
            if n % (1 << 20) == 0 && !pair.peer_alive() {
                return Err(BenchError::PeerDied);
            }
        }
    }
}

/// Round trips of ownership between two processes: the parent takes its
/// turn (even value -> odd), the child takes its (odd -> even), each
/// polling through the mutex until the value says it is its turn. Each
/// sample times `plan.batch` trips; the final value is checked.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] if the count is wrong.
pub fn mutex_handoff_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new((), BULK)?;
    let plan = *plan;
    let (samples, placement) = run_pair(
        pin,
        |pair| {
            let m = mutex_in(&area)?;
            let mut out = Vec::with_capacity(plan.samples);
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    take_turn(&m, 0, pair)?;
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            take_turn(&m, 0, pair)?;
            if *m.lock().map_err(lock_err)? != 2 * plan.total_ops() + 1 {
                return Err(BenchError::Corrupt("mutex_handoff count".into()));
            }
            Ok(out)
        },
        |pair| {
            let m = mutex_in(&area)?;
            for _ in 0..plan.total_ops() {
                take_turn(&m, 1, pair)?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}

/// Round trips like [`mutex_handoff_rtt`], but each side sleeps on its own
/// auto-reset event until the other signals its turn (sleeping at once,
/// as a condition variable does): lock, check and increment, unlock,
/// signal the peer, wait. Each sample times `plan.batch` trips.
///
/// # Errors
/// Those of [`run_pair`]; [`BenchError::Corrupt`] if a turn is wrong.
pub fn mutex_event_rtt(pin: PinMode, plan: &Plan) -> Result<Timings, BenchError> {
    let area = ShmArea::new((), BULK)?;
    let to_child = event_in(&area, EVENT_A_AT)?.with_strategy(WaitStrategy::SLEEP);
    let to_parent = event_in(&area, EVENT_B_AT)?.with_strategy(WaitStrategy::SLEEP);
    let plan = *plan;
    let turn = |m: &ShmMutex<u64>, parity: u64| -> Result<(), BenchError> {
        let mut g = m.lock().map_err(lock_err)?;
        if *g % 2 != parity {
            return Err(BenchError::Corrupt(format!("woken out of turn at {}", *g)));
        }
        *g += 1;
        Ok(())
    };
    let wait = |ev: &Event, pair: &Pair<'_>| -> Result<(), BenchError> {
        loop {
            match ev.wait_timeout(Duration::from_millis(200)) {
                Ok(()) => return Ok(()),
                Err(polycephaly::lock::WaitEventError::TimedOut) if pair.peer_alive() => {}
                Err(polycephaly::lock::WaitEventError::TimedOut) => {
                    return Err(BenchError::PeerDied);
                }
                Err(e) => return Err(BenchError::Corrupt(e.to_string())),
            }
        }
    };
    let signal = |ev: &Event| ev.signal().map_err(|e| BenchError::Corrupt(e.to_string()));
    let (samples, placement) = run_pair(
        pin,
        |pair| {
            let m = mutex_in(&area)?;
            let mut out = Vec::with_capacity(plan.samples);
            for s in 0..plan.total_samples() {
                let t0 = Instant::now();
                for _ in 0..plan.batch {
                    turn(&m, 0)?;
                    signal(&to_child)?;
                    wait(&to_parent, pair)?;
                }
                let d = t0.elapsed();
                if s >= plan.warmup {
                    out.push(d);
                }
            }
            Ok(out)
        },
        |pair| {
            let m = mutex_in(&area)?;
            for _ in 0..plan.total_ops() {
                wait(&to_child, pair)?;
                turn(&m, 1)?;
                signal(&to_parent)?;
            }
            Ok(())
        },
    )?;
    Ok(Timings::new(samples, plan.batch).with_placement(placement))
}
