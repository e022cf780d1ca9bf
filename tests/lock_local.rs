//! The event and the mutex inside one process: owner death and poisoning
//! with a simulated liveness table, corrupted words, attach checks, and
//! threads contending.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use polycephaly::AttachError;
use polycephaly::lock::{
    Event, EventMode, LockError, LockStatus, OwnerCheck, ShmMutex, TryLockError, UnlockError,
    WaitEventError,
};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::sync::WaitStrategy;
use polycephaly::sync::shim::{AtomicBool, AtomicU32};

/// Lockers 1..=8 whose deaths the test decides.
#[derive(Debug, Default)]
struct Table {
    dead: [AtomicBool; 8],
}

#[derive(Debug)]
struct Who {
    me: u32,
    table: Arc<Table>,
}

impl OwnerCheck for Who {
    fn my_tag(&self) -> u32 {
        self.me
    }
    fn is_valid(&self, tag: u32) -> bool {
        (1..=8).contains(&tag)
    }
    fn is_alive(&self, tag: u32) -> bool {
        let i = (tag - 1) as usize;
        !self.table.dead[i].load(Ordering::SeqCst)
    }
}

fn who(me: u32, table: &Arc<Table>) -> Arc<dyn OwnerCheck> {
    Arc::new(Who {
        me,
        table: table.clone(),
    })
}

const FAST: WaitStrategy = WaitStrategy {
    spin: Duration::from_micros(10),
    spin_only: false,
    slice: Duration::from_millis(2),
};

#[test]
fn a_dead_owner_is_taken_over_then_poisoned_until_marked_consistent() {
    let table = Arc::new(Table::default());
    let a = ShmMutex::<u64>::new_heap(who(1, &table)).unwrap();
    let b = a.handle(who(2, &table)).unwrap().with_strategy(FAST);
    let mut g = a.lock().unwrap();
    *g = 41;
    let rec = a.owner().expect("locked");
    assert_eq!(rec.tag, 1);
    assert_eq!(rec.pid, std::process::id());
    assert!(rec.start_time > 0);
    // B waits for a live owner: no takeover.
    assert_eq!(b.try_lock().unwrap_err(), TryLockError::WouldBlock);
    assert_eq!(
        b.lock_timeout(Duration::from_millis(10)).unwrap_err(),
        LockError::TimedOut
    );
    // A "dies" holding the lock.
    table.dead[0].store(true, Ordering::SeqCst);
    let mut gb = b.lock_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(gb.status(), LockStatus::OwnerDied);
    assert_eq!(*gb, 41, "the dead owner's writes are there");
    // A's late unlock must not release B's lock.
    assert!(matches!(g.unlock(), Err(UnlockError::NotOwner { .. })));
    assert_eq!(a.owner().unwrap().tag, 2);
    *gb = 42;
    drop(gb); // not marked consistent: poisoned
    table.dead[0].store(false, Ordering::SeqCst);
    let mut g = a.lock().unwrap();
    assert_eq!(g.status(), LockStatus::Poisoned);
    assert_eq!(*g, 42);
    g.mark_consistent();
    drop(g);
    assert_eq!(b.lock().unwrap().status(), LockStatus::Consistent);
}

#[test]
fn try_lock_takes_over_from_a_dead_owner() {
    let table = Arc::new(Table::default());
    let a = ShmMutex::<[u32; 3]>::new_heap(who(3, &table)).unwrap();
    let b = a.handle(who(4, &table)).unwrap();
    std::mem::forget(a.lock().unwrap());
    table.dead[2].store(true, Ordering::SeqCst);
    let mut g = b.try_lock().unwrap();
    assert_eq!(g.status(), LockStatus::OwnerDied);
    g.mark_consistent();
    drop(g);
    assert_eq!(b.try_lock().unwrap().status(), LockStatus::Consistent);
}

#[test]
fn a_panicking_holder_poisons() {
    let table = Arc::new(Table::default());
    let a = Arc::new(ShmMutex::<u32>::new_heap(who(1, &table)).unwrap());
    let a2 = a.clone();
    let r = std::thread::spawn(move || {
        let _g = a2.lock().unwrap();
        panic!("holder panics");
    })
    .join();
    assert!(r.is_err());
    let mut g = a.lock().unwrap();
    assert_eq!(g.status(), LockStatus::Poisoned);
    g.mark_consistent();
}

fn region_with(kind: SectionKind, len: usize) -> Region {
    Region::builder().section(kind, len).build().unwrap()
}

/// The shared word at `offset` of section 0.
fn word(region: &Region, offset: usize) -> &AtomicU32 {
    let s = region.section(SectionId(0)).unwrap();
    assert!(offset + 4 <= s.len);
    // SAFETY: inside the section, 4-aligned; an atomic over shared bytes.
    unsafe { &*s.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
}

#[test]
fn corrupted_mutex_words_give_errors_not_hangs() {
    let region = region_with(SectionKind::Mutex, ShmMutex::<u64>::section_len());
    let m = ShmMutex::<u64>::attach(&region, SectionId(0))
        .unwrap()
        .with_strategy(FAST);
    // A lock word whose slot byte is 0: names no peer.
    word(&region, 0).store(0x1234_5600, Ordering::SeqCst);
    let e = m.lock_timeout(Duration::from_secs(30)).unwrap_err();
    assert_eq!(
        e,
        LockError::Corrupted {
            what: "lock word",
            value: 0x1234_5600
        }
    );
    assert!(matches!(m.try_lock(), Err(TryLockError::Corrupted { .. })));
    assert!(m.lock().is_err(), "no hang without a deadline either");
    // A state out of range: reported, and the lock is released again.
    word(&region, 0).store(0, Ordering::SeqCst);
    word(&region, 4).store(77, Ordering::SeqCst);
    assert_eq!(
        m.lock().unwrap_err(),
        LockError::Corrupted {
            what: "state",
            value: 77
        }
    );
    assert_eq!(word(&region, 0).load(Ordering::SeqCst), 0);
    // A valid-looking id of a slot nobody holds: a dead owner, taken over.
    word(&region, 4).store(0, Ordering::SeqCst);
    let ghost = (region.peer_id().to_raw() & 0x7FFF_FF00).wrapping_add(0x100) | 2;
    word(&region, 0).store(ghost, Ordering::SeqCst);
    let g = m.lock_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(g.status(), LockStatus::OwnerDied);
}

#[test]
fn corrupted_event_words_give_errors() {
    let region = region_with(SectionKind::Event, Event::section_len());
    let ev = Event::attach(&region, SectionId(0), EventMode::AutoReset).unwrap();
    word(&region, 0).store(6, Ordering::SeqCst);
    assert!(ev.signal().is_err());
    assert!(ev.is_signalled().is_err());
    assert!(matches!(
        ev.wait_timeout(Duration::from_secs(30)),
        Err(WaitEventError::Corrupted(_))
    ));
    word(&region, 0).store(0, Ordering::SeqCst);
    word(&region, 4).store(9, Ordering::SeqCst);
    assert!(matches!(
        Event::attach(&region, SectionId(0), EventMode::AutoReset),
        Err(AttachError::Corrupted { .. })
    ));
}

#[test]
fn attach_checks_kind_length_and_mode() {
    let region = Region::builder()
        .section(SectionKind::Raw, 4096)
        .section(SectionKind::Mutex, 8)
        .with(Event::spec())
        .build()
        .unwrap();
    assert!(matches!(
        ShmMutex::<u64>::attach(&region, SectionId(0)),
        Err(AttachError::WrongKind { .. })
    ));
    assert!(matches!(
        ShmMutex::<u64>::attach(&region, SectionId(1)),
        Err(AttachError::WrongLength { len: 8, .. })
    ));
    assert!(matches!(
        ShmMutex::<u64>::attach(&region, SectionId(9)),
        Err(AttachError::Section(_))
    ));
    assert!(matches!(
        Event::attach(&region, SectionId(1), EventMode::AutoReset),
        Err(AttachError::WrongKind { .. })
    ));
    let _manual = Event::attach(&region, SectionId(2), EventMode::ManualReset).unwrap();
    assert!(matches!(
        Event::attach(&region, SectionId(2), EventMode::AutoReset),
        Err(AttachError::ModeMismatch { .. })
    ));
}

#[test]
fn threads_increment_exactly() {
    let region = region_with(SectionKind::Mutex, ShmMutex::<u64>::section_len());
    let m = ShmMutex::<u64>::attach(&region, SectionId(0)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    *m.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(*m.lock().unwrap(), 80_000);
}

#[test]
fn auto_reset_releases_one_wait_per_signal() {
    let ping = Event::new_heap(EventMode::AutoReset);
    let pong = Event::new_heap(EventMode::AutoReset);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..1000 {
                ping.wait_timeout(Duration::from_secs(30)).unwrap();
                pong.signal().unwrap();
            }
        });
        for _ in 0..1000 {
            ping.signal().unwrap();
            pong.wait_timeout(Duration::from_secs(30)).unwrap();
        }
    });
    assert!(!ping.try_wait().unwrap());
    ping.signal().unwrap();
    ping.signal().unwrap(); // coalesced: one signal stands
    assert!(ping.try_wait().unwrap());
    assert!(!ping.try_wait().unwrap());
}

#[test]
fn manual_reset_releases_every_wait_until_reset() {
    let ev = Event::new_heap(EventMode::ManualReset).with_strategy(WaitStrategy::SLEEP);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| ev.wait_timeout(Duration::from_secs(30)).unwrap());
        }
        ev.signal().unwrap();
    });
    assert!(ev.is_signalled().unwrap());
    ev.wait_timeout(Duration::ZERO).unwrap();
    ev.reset().unwrap();
    assert_eq!(
        ev.wait_timeout(Duration::from_millis(5)),
        Err(WaitEventError::TimedOut)
    );
}

#[test]
fn spin_only_waiters_exclude_and_take_over() {
    let spin = WaitStrategy {
        spin: Duration::ZERO,
        spin_only: true,
        slice: Duration::from_millis(1),
    };
    let table = Arc::new(Table::default());
    let a = ShmMutex::<u64>::new_heap(who(1, &table))
        .unwrap()
        .with_strategy(spin);
    let b = a.handle(who(2, &table)).unwrap();
    std::thread::scope(|s| {
        for m in [&a, &b] {
            s.spawn(move || {
                for _ in 0..5_000 {
                    *m.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(*a.lock().unwrap(), 10_000);
    assert_eq!(
        b.lock_timeout(Duration::ZERO).map(|g| g.status()),
        Ok(LockStatus::Consistent)
    );
    std::mem::forget(a.lock().unwrap());
    assert_eq!(
        b.lock_timeout(Duration::from_millis(5)).unwrap_err(),
        LockError::TimedOut
    );
    table.dead[0].store(true, Ordering::SeqCst);
    let g = b.lock_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(g.status(), LockStatus::OwnerDied);
}

/// Owners 1 and 2, both alive, for a waiter with tag 3; its `is_valid`,
/// which a waiter calls between loading the lock word and its CAS, moves
/// the lock from one owner to the other. So every CAS the waiter tries
/// fails, on every round: a peer flipping the word as fast as it can, with
/// the schedule made deterministic.
#[derive(Debug)]
struct Flipper {
    region: Region,
}

impl OwnerCheck for Flipper {
    fn my_tag(&self) -> u32 {
        3
    }
    fn is_valid(&self, tag: u32) -> bool {
        let w = word(&self.region, 0);
        let next = if w.load(Ordering::SeqCst) == 1 { 2 } else { 1 };
        w.store(next, Ordering::SeqCst);
        (1..=2).contains(&tag)
    }
    fn is_alive(&self, _tag: u32) -> bool {
        true
    }
}

/// A peer that keeps changing the lock word cannot hold `lock_timeout`
/// past its deadline, sleeping or spin-only. The wait runs on a thread;
/// the 30 s bound only turns a hang into a failure.
#[test]
fn a_peer_flipping_the_lock_word_cannot_hold_the_deadline_off() {
    for strategy in [
        FAST,
        WaitStrategy {
            spin_only: true,
            ..FAST
        },
    ] {
        let region = region_with(SectionKind::Mutex, ShmMutex::<u64>::section_len());
        let s = region.section(SectionId(0)).unwrap();
        word(&region, 0).store(1, Ordering::SeqCst);
        let owners = Arc::new(Flipper {
            region: region.clone(),
        });
        // SAFETY: the region (kept alive by `owners` for the handle's
        // life) maps the section for `s.len` bytes; only mutex handles and
        // the flipper, which stores valid lock words, touch it.
        let m = unsafe { ShmMutex::<u64>::from_raw(s.ptr, s.len, owners) }
            .unwrap()
            .with_strategy(strategy);
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(m.lock_deadline(Some(deadline)).map(|g| g.status()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{strategy:?}: lock_deadline still waiting: {e}"));
        assert_eq!(got, Err(LockError::TimedOut), "{strategy:?}");
        assert!(std::time::Instant::now() >= deadline);
    }
}
