//! The fast paths make no system call: uncontended lock and unlock, and a
//! signal nobody waits for. (Alone in its binary: the futex call counters
//! are per process, and other tests would add to them.)

use std::time::Duration;

use polycephaly::lock::{Event, EventMode, LockStatus, ShmMutex};
use polycephaly::region::{Region, SectionId};
use polycephaly::sync::futex_calls;

#[test]
fn uncontended_paths_make_no_futex_call() {
    let region = Region::builder()
        .with(ShmMutex::<[u64; 4]>::spec())
        .with(Event::spec())
        .build()
        .unwrap();
    let m = ShmMutex::<[u64; 4]>::attach(&region, SectionId(0)).unwrap();
    let ev = Event::attach(&region, SectionId(1), EventMode::AutoReset).unwrap();
    let before = futex_calls();
    for i in 0..10_000u64 {
        let mut g = m.lock().unwrap();
        assert_eq!(g.status(), LockStatus::Consistent);
        g[0] += i;
        drop(g);
        let g = m.try_lock().unwrap();
        drop(g);
        let g = m.lock_timeout(Duration::from_secs(1)).unwrap();
        g.unlock().unwrap();
        ev.signal().unwrap();
        ev.wait_timeout(Duration::from_secs(1)).unwrap();
    }
    assert_eq!(futex_calls(), before);
    assert_eq!(m.lock().unwrap()[0], (0..10_000u64).sum::<u64>());
}
