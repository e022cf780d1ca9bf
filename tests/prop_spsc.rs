//! Property test: random claim/commit/abort/publish/read/batch/flush
//! sequences on a heap SPSC ring against a plain model (a VecDeque of
//! published frames and the byte accounting of the ring, lazy releases
//! included), with capacities small enough that wrap-around and padding
//! happen constantly.

use std::collections::VecDeque;

use polycephaly::ring::{Receiver, Sender, TryClaimError, TryRecvError, spsc};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Claim `len` bytes; then 0 commit, 1 commit deferred, 2 drop.
    Claim {
        len: usize,
        tag: u32,
        then: u8,
    },
    Publish,
    Read,
    Batch {
        max: usize,
    },
    Recv,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..130, any::<u32>(), 0u8..3).prop_map(|(len, tag, then)| Op::Claim { len, tag, then }),
        1 => Just(Op::Publish),
        3 => Just(Op::Read),
        1 => (0usize..6).prop_map(|max| Op::Batch { max }),
        1 => Just(Op::Recv),
        1 => Just(Op::Flush),
    ]
}

/// The model: frames published, frames committed but not published, and
/// the byte positions the ring must agree with.
struct Model {
    cap: u64,
    published: VecDeque<(Vec<u8>, u32, u64)>,
    staged: Vec<(Vec<u8>, u32, u64)>,
    /// Bytes of committed frames (padding included) not yet released.
    used: u64,
    /// Bytes released by the consumer but not yet published to the
    /// producer (releases are lazy: published once a quarter of the ring
    /// is pending, when a read finds the ring empty, on flush).
    unflushed: u64,
    /// Producer position (committed).
    tail: u64,
}

impl Model {
    fn release(&mut self, need: u64) {
        self.used -= need;
        self.unflushed += need;
        if self.unflushed >= self.cap / 4 {
            self.unflushed = 0;
        }
    }

    /// Ring bytes a frame of `len` takes at the current tail, padding
    /// included: the stated layout (8-byte header, 8-byte alignment, a
    /// frame never straddles the end of the lap).
    fn need(&self, len: usize) -> u64 {
        let total = 8 + (len as u64).div_ceil(8) * 8;
        let room = self.cap - self.tail % self.cap;
        if total > room { room + total } else { total }
    }
}

fn payload(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect()
}

fn run(cap_exp: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cap = 64usize << cap_exp;
    let (mut tx, mut rx) = spsc_pair(cap);
    let max = spsc::Spec::new(cap).unwrap().max_payload();
    prop_assert_eq!(tx.max_payload(), max);
    let mut m = Model {
        cap: cap as u64,
        published: VecDeque::new(),
        staged: Vec::new(),
        used: 0,
        unflushed: 0,
        tail: 0,
    };
    let mut buf = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Claim { len, tag, then } => {
                let r = tx.try_claim(len);
                if len > max {
                    prop_assert_eq!(r.err(), Some(TryClaimError::TooLarge { len, max }));
                    continue;
                }
                let need = m.need(len);
                // One word stays free: the zero after the last frame.
                if need > m.cap - 8 - m.used - m.unflushed {
                    prop_assert_eq!(r.err(), Some(TryClaimError::Full), "step {}", step);
                    continue;
                }
                let mut claim = r.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                prop_assert_eq!(claim.len(), len);
                let data = payload(len, tag ^ step as u32);
                claim.copy_from_slice(&data);
                claim.set_tag(tag);
                match then {
                    0 => {
                        claim.commit();
                        m.published.extend(m.staged.drain(..));
                        m.published.push_back((data, tag, need));
                        m.used += need;
                        m.tail += need;
                    }
                    1 => {
                        claim.commit_deferred();
                        m.staged.push((data, tag, need));
                        m.used += need;
                        m.tail += need;
                    }
                    _ => drop(claim),
                }
            }
            Op::Publish => {
                tx.publish();
                m.published.extend(m.staged.drain(..));
            }
            Op::Read => match m.published.pop_front() {
                None => {
                    prop_assert_eq!(rx.try_read().err(), Some(TryRecvError::Empty));
                    m.unflushed = 0;
                }
                Some((data, tag, need)) => {
                    let frame = rx
                        .try_read()
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&frame[..], &data[..]);
                    prop_assert_eq!(frame.tag(), tag);
                    frame.release();
                    m.release(need);
                }
            },
            Op::Recv => match m.published.pop_front() {
                None => {
                    prop_assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
                    m.unflushed = 0;
                }
                Some((data, tag, need)) => {
                    prop_assert_eq!(rx.try_recv(&mut buf), Ok(tag));
                    prop_assert_eq!(&buf, &data);
                    m.release(need);
                }
            },
            Op::Flush => {
                rx.flush_releases();
                m.unflushed = 0;
            }
            Op::Batch { max } => {
                let mut got = Vec::new();
                let n = rx
                    .try_read_batch(max, |tag, bytes| got.push((bytes.to_vec(), tag)))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expect = max.min(m.published.len());
                prop_assert_eq!(n, expect);
                prop_assert_eq!(got.len(), expect);
                let mut released = 0;
                for (data, tag) in got {
                    let (d, t, need) = m.published.pop_front().unwrap();
                    prop_assert_eq!(data, d);
                    prop_assert_eq!(tag, t);
                    released += need;
                }
                // A batch releases all its frames at once.
                if released > 0 {
                    m.used -= released;
                    m.unflushed += released;
                    if m.unflushed >= m.cap / 4 {
                        m.unflushed = 0;
                    }
                }
                if m.published.is_empty() {
                    // The batch drained the ring: releases are published.
                    m.unflushed = 0;
                }
            }
        }
        prop_assert!(!tx.is_poisoned() && !rx.is_poisoned());
    }
    // Everything committed comes out, in order, once published.
    tx.publish();
    m.published.extend(m.staged.drain(..));
    while let Some((data, tag, _)) = m.published.pop_front() {
        prop_assert_eq!(rx.try_recv(&mut buf), Ok(tag));
        prop_assert_eq!(&buf, &data);
    }
    prop_assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
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

/// Every length from 0 to the maximum, at every alignment of the tail,
/// goes through a small ring (wrapping and padding many times).
#[test]
fn every_length_at_every_offset() {
    for cap in [64usize, 128, 256] {
        let (mut tx, mut rx) = spsc_pair(cap);
        let max = spsc::Spec::new(cap).unwrap().max_payload();
        let mut buf = Vec::new();
        for shift in 0..cap / 8 {
            for len in 0..=max {
                let data = payload(len, (shift * 1000 + len) as u32);
                tx.try_send(&data).unwrap();
                assert_eq!(rx.try_recv(&mut buf), Ok(0));
                assert_eq!(buf, data);
            }
            // Move the tail by one 8-byte step.
            tx.try_send(&[]).unwrap();
            rx.try_recv(&mut buf).unwrap();
        }
        assert_eq!(
            tx.try_claim(max + 1).err(),
            Some(TryClaimError::TooLarge { len: max + 1, max })
        );
    }
}

/// A fresh SPSC ring on the heap and both of its handles.
fn spsc_pair(capacity: usize) -> (spsc::Producer, spsc::Consumer) {
    let ring = spsc::HeapRing::new(capacity).unwrap();
    (ring.producer().unwrap(), ring.consumer().unwrap())
}
