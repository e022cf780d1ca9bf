//! Loom models of the lock module (src/lock): mutual exclusion and no lost
//! wakeup with two and three contenders, event signal/wait in both modes,
//! and an owner-death takeover racing the "dead" owner's late unlock.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom_lock`.
//! A sleeper that is never woken shows as a loom deadlock. Loom takes no
//! futex timeout, so under loom a waiter judges the owner's liveness on
//! every pass instead of after a timed-out slice.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::thread;
use polycephaly::lock::{Event, EventMode, LockStatus, OwnerCheck, ShmMutex, UnlockError};
use polycephaly::sync::WaitStrategy;

/// Lockers 1..=3; a locker "dies" by setting its flag.
#[derive(Debug)]
struct Who {
    me: u32,
    dead: Arc<Vec<AtomicBool>>,
}

impl OwnerCheck for Who {
    fn my_tag(&self) -> u32 {
        self.me
    }
    fn is_valid(&self, tag: u32) -> bool {
        (1..=3).contains(&tag)
    }
    fn is_alive(&self, tag: u32) -> bool {
        !self.dead[(tag - 1) as usize].load(Ordering::SeqCst)
    }
}

fn table() -> Arc<Vec<AtomicBool>> {
    Arc::new((0..3).map(|_| AtomicBool::new(false)).collect())
}

/// Handles 1..=n to one heap mutex, sleeping at once (no spinning).
fn handles(n: u32, dead: &Arc<Vec<AtomicBool>>) -> Vec<Arc<ShmMutex<u32>>> {
    let first = ShmMutex::<u32>::new_heap(std::sync::Arc::new(Who {
        me: 1,
        dead: dead.clone(),
    }))
    .unwrap()
    .with_strategy(WaitStrategy::SLEEP);
    let mut v: Vec<_> = (2..=n)
        .map(|me| {
            Arc::new(
                first
                    .handle(std::sync::Arc::new(Who {
                        me,
                        dead: dead.clone(),
                    }))
                    .unwrap(),
            )
        })
        .collect();
    v.insert(0, Arc::new(first));
    v
}

/// Locks, checks nobody else is inside, increments, unlocks.
///
/// `inside` is counted with Relaxed read-modify-writes: they still see two
/// holders at once (one modification order), but order nothing, so that
/// the only thing ordering one holder's access to the value before the
/// next's is the lock itself (a SeqCst count here would hide a weakened
/// unlock or lock from the model).
fn critical(m: &ShmMutex<u32>, inside: &AtomicU32) {
    let mut g = m.lock().unwrap();
    assert_eq!(g.status(), LockStatus::Consistent);
    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two holders");
    *g += 1;
    inside.fetch_sub(1, Ordering::Relaxed);
}

fn contenders(n: u32) {
    loom::model(move || {
        let dead = table();
        let hs = handles(n, &dead);
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = hs[1..]
            .iter()
            .map(|m| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || critical(&m, &inside))
            })
            .collect();
        critical(&hs[0], &inside);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*hs[0].try_lock().unwrap(), n);
    });
}

#[test]
fn two_contenders_exclude_and_wake() {
    contenders(2);
}

#[test]
fn three_contenders_exclude_and_wake() {
    contenders(3);
}

/// A holds the lock, "dies" (its liveness flag goes false), then unlocks
/// late; B locks meanwhile. Either B took the lock over (OwnerDied) and A's
/// unlock is refused, or A's unlock came first and B locks normally. Never
/// both, never a lost wake.
#[test]
fn takeover_races_a_late_unlock() {
    loom::model(|| {
        let dead = table();
        let hs = handles(2, &dead);
        let a_locked = Arc::new(AtomicBool::new(false));
        let a = {
            let (m, dead, a_locked) = (hs[0].clone(), dead.clone(), a_locked.clone());
            thread::spawn(move || {
                let mut g = m.lock().unwrap();
                *g = 1;
                a_locked.store(true, Ordering::SeqCst);
                dead[0].store(true, Ordering::SeqCst);
                g.unlock()
            })
        };
        while !a_locked.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        let g = hs[1].lock().unwrap();
        let status = g.status();
        drop(g);
        let late = a.join().unwrap();
        match status {
            LockStatus::OwnerDied => {
                assert!(matches!(late, Err(UnlockError::NotOwner { .. })));
            }
            LockStatus::Consistent => assert_eq!(late, Ok(())),
            LockStatus::Poisoned => panic!("nobody poisoned it"),
        }
    });
}

/// An owner that died before anyone else arrived: the next locker takes
/// over without any wake.
#[test]
fn a_dead_owner_is_taken_over() {
    loom::model(|| {
        let dead = table();
        let hs = handles(2, &dead);
        core::mem::forget(hs[0].lock().unwrap());
        dead[0].store(true, Ordering::SeqCst);
        let b = {
            let m = hs[1].clone();
            thread::spawn(move || m.lock().unwrap().status())
        };
        assert_eq!(b.join().unwrap(), LockStatus::OwnerDied);
    });
}

/// Auto-reset: one signal releases the waiter (asleep or not), and is
/// consumed.
#[test]
fn auto_reset_signal_wakes_the_waiter() {
    loom::model(|| {
        let ev = Event::new_heap(EventMode::AutoReset).with_strategy(WaitStrategy::SLEEP);
        let t = {
            let ev = ev.clone();
            thread::spawn(move || ev.signal().unwrap())
        };
        ev.wait_deadline(None).unwrap();
        t.join().unwrap();
        assert!(!ev.try_wait().unwrap());
    });
}

/// A value two threads hand over through an event.
struct Data(loom::cell::UnsafeCell<u64>);

// SAFETY: the threads access the cell one after the other, ordered by the
// event; that ordering is what the model checks (loom's cell reports any
// access it does not order).
unsafe impl Sync for Data {}

/// What a thread wrote before it signalled is what the waiter reads after
/// its wait: the signal publishes it (loom's cell fails the model if the
/// read is not ordered after the write).
#[test]
fn data_written_before_a_signal_is_seen_after_the_wait() {
    loom::model(|| {
        let ev = Event::new_heap(EventMode::AutoReset).with_strategy(WaitStrategy::SLEEP);
        let data = Arc::new(Data(loom::cell::UnsafeCell::new(0)));
        let t = {
            let (ev, data) = (ev.clone(), data.clone());
            thread::spawn(move || {
                // SAFETY: nobody else touches the cell until the signal.
                data.0.with_mut(|p| unsafe { *p = 42 });
                ev.signal().unwrap();
            })
        };
        ev.wait_deadline(None).unwrap();
        // SAFETY: the writer is done with the cell (it signalled after).
        assert_eq!(data.0.with(|p| unsafe { *p }), 42);
        t.join().unwrap();
    });
}

/// Manual-reset: one signal releases two waiters.
#[test]
fn manual_reset_signal_wakes_every_waiter() {
    loom::model(|| {
        let ev = Event::new_heap(EventMode::ManualReset).with_strategy(WaitStrategy::SLEEP);
        let w = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_deadline(None).unwrap())
        };
        let s = {
            let ev = ev.clone();
            thread::spawn(move || ev.signal().unwrap())
        };
        ev.wait_deadline(None).unwrap();
        w.join().unwrap();
        s.join().unwrap();
        assert!(ev.is_signalled().unwrap());
    });
}

/// Auto-reset, two signals and two waits in two threads: both waits return
/// (each signal is consumed by one wait, or coalesced only when a wait
/// already consumed it).
#[test]
fn auto_reset_ping_pong() {
    loom::model(|| {
        let ping = Event::new_heap(EventMode::AutoReset).with_strategy(WaitStrategy::SLEEP);
        let pong = Event::new_heap(EventMode::AutoReset).with_strategy(WaitStrategy::SLEEP);
        let t = {
            let (ping, pong) = (ping.clone(), pong.clone());
            thread::spawn(move || {
                ping.wait_deadline(None).unwrap();
                pong.signal().unwrap();
            })
        };
        ping.signal().unwrap();
        pong.wait_deadline(None).unwrap();
        t.join().unwrap();
    });
}
