//! Property test: random interleavings of several producers' claims,
//! commits, aborts, deaths (after claiming, or between the tail CAS and the
//! header write) and late commits, and the consumer's reads and batches, on
//! a heap MPSC ring, against a plain model: the claims in claim order with
//! their state, and the ring's byte accounting. Capacities are small, so
//! wrap-around, padding and full rings happen constantly.

use std::collections::VecDeque;
use std::time::Duration;

use polycephaly::ring::{CommitError, Receiver, Sender, TryClaimError, TryRecvError, mpsc};
use proptest::prelude::*;

const PRODUCERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Producer `p` claims `len` bytes (if it has no open claim).
    Claim {
        p: usize,
        len: usize,
        tag: u32,
    },
    /// Producer `p` commits its open claim.
    Commit {
        p: usize,
    },
    /// Producer `p` drops its open claim uncommitted.
    Abort {
        p: usize,
    },
    /// Producer `p` dies holding its open claim (declared dead; the claim
    /// guard is kept for a late commit).
    Die {
        p: usize,
    },
    /// Producer `p` dies between its tail CAS and its header write.
    Vanish {
        p: usize,
        len: usize,
    },
    /// A dead producer's late commit.
    LateCommit {
        p: usize,
    },
    /// A dead producer is replaced by a new one.
    Replace {
        p: usize,
    },
    Read,
    Recv,
    Batch {
        max: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PRODUCERS;
    prop_oneof![
        6 => (p.clone(), 0usize..70, any::<u32>()).prop_map(|(p, len, tag)| Op::Claim { p, len, tag }),
        5 => p.clone().prop_map(|p| Op::Commit { p }),
        1 => p.clone().prop_map(|p| Op::Abort { p }),
        1 => p.clone().prop_map(|p| Op::Die { p }),
        1 => (p.clone(), 0usize..70).prop_map(|(p, len)| Op::Vanish { p, len }),
        1 => p.clone().prop_map(|p| Op::LateCommit { p }),
        1 => p.prop_map(|p| Op::Replace { p }),
        3 => Just(Op::Read),
        1 => Just(Op::Recv),
        1 => (0usize..5).prop_map(|max| Op::Batch { max }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Claimed, not committed, claimer alive.
    Open,
    Committed,
    /// Dropped uncommitted, or abandoned by the consumer.
    Skipped,
    /// Claimed by a producer now dead, not yet passed by the consumer.
    DeadOpen,
}

#[derive(Debug)]
struct Claimed {
    id: u64,
    data: Vec<u8>,
    tag: u32,
    need: u64,
    state: State,
}

/// The model: unconsumed claims in claim order, the tail, bytes in use.
struct Model {
    cap: u64,
    claims: VecDeque<Claimed>,
    tail: u64,
    /// Bytes claimed and not yet consumed or skipped.
    used: u64,
    /// Bytes consumed or skipped so far: the consumer gives them back
    /// lazily, so up to `unreleased_bound` of them may still be in use.
    consumed: u64,
    next_id: u64,
}

impl Model {
    /// The most bytes the consumer may have consumed and not released:
    /// it releases everything once a quarter of the ring is (and sooner
    /// when idle, which the model cannot know).
    fn unreleased_bound(&self) -> u64 {
        self.consumed.min(self.cap / 4 - 8)
    }

    /// Whether a claim of `need` bytes must fail (`Some(true)`), must
    /// succeed (`Some(false)`), or may do either (`None`: it fits only
    /// if the consumer has released lazily).
    fn must_be_full(&self, need: u64) -> Option<bool> {
        let room = self.cap - self.used;
        if need > room {
            Some(true)
        } else if need <= room.saturating_sub(self.unreleased_bound()) {
            Some(false)
        } else {
            None
        }
    }

    fn need(&self, len: usize) -> u64 {
        let total = 8 + (len as u64).div_ceil(8) * 8;
        let room = self.cap - self.tail % self.cap;
        if total > room { room + total } else { total }
    }

    fn find(&mut self, id: u64) -> Option<&mut Claimed> {
        self.claims.iter_mut().find(|c| c.id == id)
    }

    /// What the consumer delivers next: skips (and frees) everything it
    /// may skip, then the front committed frame, if any.
    fn next(&mut self) -> Option<(Vec<u8>, u32)> {
        while let Some(front) = self.claims.front_mut() {
            match front.state {
                State::Skipped => {}
                // The consumer's claim timeout is zero: a dead claimer's
                // frame is abandoned as soon as it blocks the head.
                State::DeadOpen => front.state = State::Skipped,
                State::Open => return None,
                State::Committed => {
                    let c = self.claims.pop_front()?;
                    self.used -= c.need;
                    self.consumed += c.need;
                    return Some((c.data, c.tag));
                }
            }
            if let Some(c) = self.claims.pop_front() {
                self.used -= c.need;
                self.consumed += c.need;
            }
        }
        None
    }
}

/// One producer slot of the test: the handle (leaked so that an open
/// claim can outlive the loop iteration) and its open claim.
struct Slot {
    producer: *mut mpsc::Producer,
    claim: Option<(mpsc::Claim<'static>, u64)>,
    dead: bool,
}

fn new_slot(ring: &mpsc::HeapRing) -> Slot {
    Slot {
        producer: Box::into_raw(Box::new(ring.producer().unwrap())),
        claim: None,
        dead: false,
    }
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect()
}

fn check_read(rx: &mut mpsc::Consumer, m: &mut Model) -> Result<(), TestCaseError> {
    match m.next() {
        None => prop_assert_eq!(rx.try_read().err(), Some(TryRecvError::Empty)),
        Some((data, tag)) => {
            let frame = rx
                .try_read()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&frame[..], &data[..]);
            prop_assert_eq!(frame.tag(), tag);
        }
    }
    Ok(())
}

fn run(cap_exp: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cap = 64usize << cap_exp;
    let ring = mpsc::HeapRing::new(cap).unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_claim_timeout(Duration::ZERO);
    let max = mpsc::Spec::new(cap).unwrap().max_payload();
    let mut slots: Vec<Slot> = (0..PRODUCERS).map(|_| new_slot(&ring)).collect();
    let mut m = Model {
        cap: cap as u64,
        claims: VecDeque::new(),
        tail: 0,
        used: 0,
        consumed: 0,
        next_id: 0,
    };
    let mut buf = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Claim { p, len, tag } => {
                let s = &mut slots[p];
                if s.claim.is_some() || s.dead {
                    continue;
                }
                // SAFETY: the producer is leaked (never freed while a claim
                // borrows it) and has no open claim: this is the only
                // reference in use.
                let producer = unsafe { &mut *s.producer };
                let r = producer.try_claim(len);
                if len > max {
                    prop_assert_eq!(r.err(), Some(TryClaimError::TooLarge { len, max }));
                    continue;
                }
                let need = m.need(len);
                match m.must_be_full(need) {
                    Some(true) => {
                        prop_assert_eq!(r.err(), Some(TryClaimError::Full), "step {}", step);
                        continue;
                    }
                    None if matches!(r, Err(TryClaimError::Full)) => continue,
                    _ => {}
                }
                let mut claim = r.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                // Padding before the frame is its own skippable entry: the
                // consumer frees it as soon as it reaches it.
                let total = 8 + (len as u64).div_ceil(8) * 8;
                if need > total {
                    m.claims.push_back(Claimed {
                        id: u64::MAX,
                        data: Vec::new(),
                        tag: 0,
                        need: need - total,
                        state: State::Skipped,
                    });
                }
                prop_assert!(claim.iter().all(|&b| b == 0), "claimed bytes are zeroed");
                let data = payload(len, m.next_id ^ u64::from(tag));
                claim.copy_from_slice(&data);
                claim.set_tag(tag);
                let id = m.next_id;
                m.next_id += 1;
                m.claims.push_back(Claimed {
                    id,
                    data,
                    tag,
                    need: total,
                    state: State::Open,
                });
                m.tail += need;
                m.used += need;
                s.claim = Some((claim, id));
            }
            Op::Commit { p } => {
                let s = &mut slots[p];
                if s.dead {
                    continue;
                }
                if let Some((claim, id)) = s.claim.take() {
                    prop_assert_eq!(claim.commit(), Ok(()));
                    m.find(id).unwrap().state = State::Committed;
                }
            }
            Op::Abort { p } => {
                let s = &mut slots[p];
                if s.dead {
                    continue;
                }
                if let Some((claim, id)) = s.claim.take() {
                    drop(claim);
                    m.find(id).unwrap().state = State::Skipped;
                }
            }
            Op::Die { p } => {
                let s = &mut slots[p];
                if s.dead || s.claim.is_none() {
                    continue;
                }
                // SAFETY: reading the id through the leaked handle; the
                // claim's borrow is not used meanwhile.
                ring.mark_dead(unsafe { (*s.producer).id() });
                s.dead = true;
                let id = s.claim.as_ref().unwrap().1;
                m.find(id).unwrap().state = State::DeadOpen;
            }
            Op::Vanish { p, len } => {
                let s = &mut slots[p];
                if s.dead || s.claim.is_some() || len > max {
                    continue;
                }
                let need = m.need(len);
                // SAFETY: as in `Claim`.
                let producer = unsafe { &mut *s.producer };
                let r = producer.reserve_and_vanish(len);
                match m.must_be_full(need) {
                    Some(true) => {
                        prop_assert_eq!(r, Err(TryClaimError::Full));
                        continue;
                    }
                    None if r == Err(TryClaimError::Full) => continue,
                    _ => {}
                }
                prop_assert_eq!(r, Ok(()));
                ring.mark_dead(producer.id());
                s.dead = true;
                m.claims.push_back(Claimed {
                    id: m.next_id,
                    data: Vec::new(),
                    tag: 0,
                    need,
                    state: State::DeadOpen,
                });
                m.next_id += 1;
                m.tail += need;
                m.used += need;
            }
            Op::LateCommit { p } => {
                let s = &mut slots[p];
                if !s.dead {
                    continue;
                }
                if let Some((claim, id)) = s.claim.take() {
                    match m.find(id) {
                        // Still ahead of the consumer: the commit wins.
                        Some(c) if c.state == State::DeadOpen => {
                            prop_assert_eq!(claim.commit(), Ok(()));
                            c.state = State::Committed;
                        }
                        // The consumer abandoned it first.
                        _ => prop_assert_eq!(claim.commit(), Err(CommitError::Abandoned)),
                    }
                }
            }
            Op::Replace { p } => {
                if slots[p].dead {
                    // The dead producer's handle and claim are leaked, as a
                    // killed process's would be.
                    if let Some((claim, _)) = slots[p].claim.take() {
                        std::mem::forget(claim);
                    }
                    slots[p] = new_slot(&ring);
                }
            }
            Op::Read => check_read(&mut rx, &mut m)?,
            Op::Recv => match m.next() {
                None => prop_assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty)),
                Some((data, tag)) => {
                    prop_assert_eq!(rx.try_recv(&mut buf), Ok(tag));
                    prop_assert_eq!(&buf, &data);
                }
            },
            Op::Batch { max } => {
                let mut got = Vec::new();
                let n = rx
                    .try_read_batch(max, |tag, bytes| got.push((bytes.to_vec(), tag)))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                prop_assert_eq!(n, got.len());
                let mut expect = Vec::new();
                while expect.len() < max {
                    match m.next() {
                        Some(x) => expect.push(x),
                        None => break,
                    }
                }
                prop_assert_eq!(got, expect, "step {}", step);
            }
        }
        prop_assert!(!rx.is_poisoned(), "step {}", step);
    }
    // Every live producer commits; everything committed comes out once, in
    // claim order.
    for s in &mut slots {
        if let Some((claim, id)) = s.claim.take() {
            if s.dead {
                std::mem::forget(claim);
            } else {
                prop_assert_eq!(claim.commit(), Ok(()));
                m.find(id).unwrap().state = State::Committed;
            }
        }
    }
    while let Some((data, tag)) = m.next() {
        prop_assert_eq!(rx.try_recv(&mut buf), Ok(tag));
        prop_assert_eq!(&buf, &data);
    }
    prop_assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    // Dropping the consumer first: the leaked claims borrow nothing it owns.
    drop(rx);
    for s in slots {
        if !s.dead {
            // SAFETY: no claim of this producer is open any more; it was
            // leaked by `new_slot` and is freed once, here.
            drop(unsafe { Box::from_raw(s.producer) });
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn ring_matches_model(cap_exp in 0u32..3, ops in proptest::collection::vec(op(), 1..300)) {
        run(cap_exp, ops)?;
    }
}

/// Every length at every alignment of the tail, through one producer and
/// then two alternating ones (wrapping and padding many times).
#[test]
fn every_length_at_every_offset() {
    for cap in [64usize, 128, 256] {
        let ring = mpsc::HeapRing::new(cap).unwrap();
        let mut a = ring.producer().unwrap();
        let mut b = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let max = mpsc::Spec::new(cap).unwrap().max_payload();
        let mut buf = Vec::new();
        for shift in 0..cap / 8 {
            for len in 0..=max {
                let data = payload(len, (shift * 1000 + len) as u64);
                let tx = if len % 2 == 0 { &mut a } else { &mut b };
                tx.try_send(&data).unwrap();
                assert_eq!(rx.try_recv(&mut buf), Ok(0));
                assert_eq!(buf, data);
            }
            a.try_send(&[]).unwrap();
            rx.try_recv(&mut buf).unwrap();
        }
        assert_eq!(
            a.try_claim(max + 1).err(),
            Some(TryClaimError::TooLarge { len: max + 1, max })
        );
    }
}
