//! Property tests of ticket matching.
//!
//! - The matcher alone (`Tickets`, through the `testing` hooks) against a
//!   plain model: random interleavings of issuing, replies arriving in any
//!   order (some for ids never issued, some twice), tickets waited on
//!   straight from the ring, taken after their reply arrived, given up on
//!   (timed out or dropped) before or after it, and withdrawn. A reply is
//!   only ever handed to the ticket it was sent for, a late reply after a
//!   give-up is dropped, and the count of replies still expected is the
//!   model's.
//! - A real client against a real server (a thread, its own region
//!   handle): random sends, waits in any order (patient, or with a zero
//!   timeout that may or may not find the reply), polls and drops, with
//!   at most 4 requests in flight. Every result a ticket gets is the one
//!   its own request asked for; what is left is drained and nothing stays
//!   in flight.

use std::collections::HashMap;
use std::time::Duration;

use polycephaly::channel::{CallError, ChannelSpec, Client, Server, Ticket, TryWaitError};
use polycephaly::fuzzing::{Arrival, Tickets};
use polycephaly::sync::shim::{AtomicBool, Ordering};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
enum Op {
    Issue,
    /// A reply for the picked id (or, `stray`, for an id never issued).
    Arrive {
        pick: usize,
        stray: bool,
    },
    /// The picked ticket is waited on and its reply read from the ring.
    Complete {
        pick: usize,
    },
    Take {
        pick: usize,
    },
    Abandon {
        pick: usize,
    },
    Withdraw {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Issue),
        4 => (any::<usize>(), prop::bool::weighted(0.1))
            .prop_map(|(pick, stray)| Op::Arrive { pick, stray }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Take { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Abandon { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Withdraw { pick }),
    ]
}

/// The model's view of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    Waiting,
    Arrived(u64),
    Abandoned,
}

fn run_tickets(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut sut: Tickets<u64> = Tickets::new();
    let mut model: HashMap<u64, M> = HashMap::new();
    let mut issued: Vec<u64> = Vec::new();
    let mut replies = 0u64;
    for op in ops {
        let pick = |p: usize| issued.get(p % issued.len().max(1)).copied();
        match op {
            Op::Issue => {
                let id = sut.issue();
                prop_assert!(!issued.contains(&id), "id {id} issued twice");
                prop_assert!(issued.iter().all(|&i| i < id), "ids increase");
                issued.push(id);
                model.insert(id, M::Waiting);
            }
            Op::Arrive { pick: p, stray } => {
                let id = if stray {
                    u64::MAX - p as u64 % 1000
                } else {
                    match pick(p) {
                        Some(id) => id,
                        None => continue,
                    }
                };
                replies += 1;
                // Unique, and names the id it answers.
                let v = id.wrapping_mul(1 << 20) ^ replies;
                let got = sut.arrive(id, v);
                let want = match model.get(&id) {
                    Some(M::Waiting) => {
                        model.insert(id, M::Arrived(v));
                        Arrival::Kept
                    }
                    Some(M::Abandoned) => {
                        model.remove(&id);
                        Arrival::Dropped(v)
                    }
                    _ => Arrival::Dropped(v),
                };
                prop_assert_eq!(got, want);
            }
            Op::Complete { pick: p } => {
                let Some(id) = pick(p) else { continue };
                let want = model.get(&id) == Some(&M::Waiting);
                prop_assert_eq!(sut.complete(id), want);
                if want {
                    model.remove(&id);
                }
            }
            Op::Take { pick: p } => {
                let Some(id) = pick(p) else { continue };
                let want = match model.get(&id) {
                    Some(&M::Arrived(v)) => {
                        model.remove(&id);
                        Some(v)
                    }
                    _ => None,
                };
                let got = sut.take(id);
                if let Some(v) = got {
                    prop_assert_eq!(v / (1 << 20), id, "a reply handed to another ticket");
                }
                prop_assert_eq!(got, want);
            }
            Op::Abandon { pick: p } => {
                let Some(id) = pick(p) else { continue };
                let want = match model.get(&id) {
                    Some(M::Waiting) => {
                        model.insert(id, M::Abandoned);
                        None
                    }
                    Some(&M::Arrived(v)) => {
                        model.remove(&id);
                        Some(v)
                    }
                    _ => None,
                };
                prop_assert_eq!(sut.abandon(id), want);
            }
            Op::Withdraw { pick: p } => {
                // Only a request never sent is withdrawn: a waiting one.
                let Some(id) = pick(p) else { continue };
                if model.get(&id) == Some(&M::Waiting) {
                    sut.withdraw(id);
                    model.remove(&id);
                }
            }
        }
        let expected = model
            .values()
            .filter(|m| matches!(m, M::Waiting | M::Abandoned))
            .count();
        prop_assert_eq!(sut.expected(), expected);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Call {
    Send,
    /// Wait on the picked ticket, patiently or with a zero timeout.
    Wait {
        pick: usize,
        patient: bool,
    },
    Poll {
        pick: usize,
    },
    Drop {
        pick: usize,
    },
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => Just(Call::Send),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, patient)| Call::Wait { pick, patient }),
        1 => any::<usize>().prop_map(|pick| Call::Poll { pick }),
        1 => any::<usize>().prop_map(|pick| Call::Drop { pick }),
    ]
}

const LONG: Duration = Duration::from_secs(20);

fn run_client(calls: Vec<Call>) -> Result<(), TestCaseError> {
    let spec = ChannelSpec::new()
        .with_clients(1)
        .with_max_in_flight(4)
        .with_lane_len(64 << 10);
    let mut server = Server::anonymous(spec).unwrap();
    let id = server.method("id", |x: &u64| *x).unwrap();
    let region = server.region().reopen(&Default::default()).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| server.serve_until(|| stop.load(Ordering::Relaxed)).unwrap());
        let result = (|| {
            let client = Client::attach_timeout(&region, LONG).unwrap();
            let mut open: Vec<(Ticket<'_, u64>, u64)> = Vec::new();
            let mut next = 1u64;
            for c in calls {
                let pick = |p: usize, n: usize| p % n.max(1);
                match c {
                    Call::Send => {
                        let t = client.send_timeout(&id, &next, LONG).unwrap();
                        open.push((t, next));
                        next += 1;
                    }
                    Call::Wait { pick: p, patient } => {
                        if open.is_empty() {
                            continue;
                        }
                        let (t, want) = open.swap_remove(pick(p, open.len()));
                        let timeout = if patient { LONG } else { Duration::ZERO };
                        match t.wait_timeout(timeout) {
                            Ok(got) => prop_assert_eq!(got, want, "another ticket's reply"),
                            Err(CallError::TimedOut) => prop_assert!(!patient),
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                    Call::Poll { pick: p } => {
                        if open.is_empty() {
                            continue;
                        }
                        let (t, want) = open.swap_remove(pick(p, open.len()));
                        match t.try_wait() {
                            Ok(got) => prop_assert_eq!(got, want, "another ticket's reply"),
                            Err(TryWaitError::NotReady(t)) => open.push((t, want)),
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                    Call::Drop { pick: p } => {
                        if !open.is_empty() {
                            drop(open.swap_remove(pick(p, open.len())));
                        }
                    }
                }
                prop_assert!(client.in_flight() <= client.max_in_flight());
            }
            for (t, want) in open {
                prop_assert_eq!(t.wait_timeout(LONG).unwrap(), want);
            }
            // The last reply comes after every late one: none is left.
            prop_assert_eq!(client.call_timeout(&id, &0, LONG).unwrap(), 0);
            prop_assert_eq!(client.in_flight(), 0);
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn tickets_match_a_model(ops in prop::collection::vec(op(), 0..200)) {
        run_tickets(ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_client_matches_replies_to_tickets(calls in prop::collection::vec(call(), 0..60)) {
        run_client(calls)?;
    }
}
