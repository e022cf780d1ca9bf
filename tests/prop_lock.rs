//! Property test: random sequences of try_lock / unlock / die-holding /
//! mark_consistent / poison / write over four handles of one heap mutex,
//! against a plain model of who holds it, who is dead, whether it is
//! poisoned and what value it holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use polycephaly::lock::{LockStatus, MutexGuard, OwnerCheck, ShmMutex, TryLockError, UnlockError};
use polycephaly::sync::shim::AtomicBool;
use proptest::prelude::*;

const N: usize = 4;

#[derive(Debug, Default)]
struct Table {
    dead: [AtomicBool; N],
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
        (1..=N as u32).contains(&tag)
    }
    fn is_alive(&self, tag: u32) -> bool {
        !self.table.dead[(tag - 1) as usize].load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
enum Op {
    TryLock(usize),
    Unlock(usize),
    /// The holder (if any) dies: it forgets its guard and is marked dead.
    Die,
    MarkConsistent,
    Poison,
    Write(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..N).prop_map(Op::TryLock),
        3 => (0..N).prop_map(Op::Unlock),
        1 => Just(Op::Die),
        1 => Just(Op::MarkConsistent),
        1 => Just(Op::Poison),
        2 => any::<u64>().prop_map(Op::Write),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutex_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let table = Arc::new(Table::default());
        let first = ShmMutex::<u64>::new_heap(Arc::new(Who { me: 1, table: table.clone() })).unwrap();
        let mut handles = vec![];
        for me in 2..=N as u32 {
            handles.push(first.handle(Arc::new(Who { me, table: table.clone() })).unwrap());
        }
        handles.insert(0, first);
        let mut guards: Vec<Option<MutexGuard<'_, u64>>> = (0..N).map(|_| None).collect();
        // The model.
        let mut holder: Option<usize> = None;
        let mut dead = [false; N];
        let mut poisoned = false;
        let mut value = 0u64;

        for op in ops {
            match op {
                Op::TryLock(i) => {
                    if dead[i] || guards[i].is_some() {
                        continue;
                    }
                    let got = handles[i].try_lock();
                    match holder {
                        Some(h) if !dead[h] => {
                            prop_assert_eq!(got.err(), Some(TryLockError::WouldBlock));
                        }
                        Some(_) => {
                            let g = got.unwrap();
                            prop_assert_eq!(g.status(), LockStatus::OwnerDied);
                            prop_assert_eq!(*g, value);
                            poisoned = true;
                            holder = Some(i);
                            guards[i] = Some(g);
                        }
                        None => {
                            let g = got.unwrap();
                            let want = if poisoned { LockStatus::Poisoned } else { LockStatus::Consistent };
                            prop_assert_eq!(g.status(), want);
                            prop_assert_eq!(*g, value);
                            holder = Some(i);
                            guards[i] = Some(g);
                        }
                    }
                }
                Op::Unlock(i) => {
                    if let Some(g) = guards[i].take() {
                        let r = g.unlock();
                        if holder == Some(i) {
                            prop_assert_eq!(r, Ok(()));
                            holder = None;
                        } else {
                            // Taken over while we were "dead": refused.
                            let refused = matches!(r, Err(UnlockError::NotOwner { .. }));
                            prop_assert!(refused, "late unlock: {:?}", r);
                        }
                    }
                }
                Op::Die => {
                    if let Some(h) = holder {
                        if !dead[h] {
                            dead[h] = true;
                            table.dead[h].store(true, Ordering::SeqCst);
                            // Keep its guard: a late unlock is tried later.
                        }
                    }
                }
                Op::MarkConsistent | Op::Poison | Op::Write(_) => {
                    let Some(h) = holder.filter(|h| !dead[*h]) else { continue };
                    let g = guards[h].as_mut().unwrap();
                    match op {
                        Op::MarkConsistent => {
                            g.mark_consistent();
                            poisoned = false;
                        }
                        Op::Poison => {
                            g.poison();
                            poisoned = true;
                        }
                        Op::Write(v) => {
                            **g = v;
                            value = v;
                        }
                        _ => unreachable!(),
                    }
                }
            }
            prop_assert_eq!(handles[0].owner().map(|o| o.tag), holder.map(|h| h as u32 + 1));
        }
    }
}
