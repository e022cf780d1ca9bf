//! Consuming (and producing) on an MPSC ring whose memory holds arbitrary
//! bytes, with arbitrary bytes poked into it between operations, as a
//! hostile process sharing the ring could; producers die at arbitrary
//! points (declared dead on the heap ring) and the consumer resolves their
//! claims with a zero claim timeout.
//!
//! Input: `[cap_exp, flags, image..., ops...]`. The ring has
//! `64 << (cap_exp % 6)` bytes; when `flags & 1`, its whole memory (control
//! block and data) is overwritten with the next bytes of the input (as many
//! as it spans, or fewer); when `flags & 2`, the consumer role word and the
//! producer owners are cleared afterwards so the handles can attach. Then
//! each op byte picks an operation, taking its arguments from the
//! following bytes.

use core::time::Duration;

use crate::sync::clock::Instant;

use super::{Input, heap_ring_from, poke};
use crate::ring::mpsc::{Consumer, HeapRing, MAX_PRODUCERS, Mpsc, Producer};
use crate::ring::{CommitError, Receiver, RecvError, TryClaimError, TryRecvError};

/// Offset of the consumer role word (see `ring::mpsc::layout`).
const ROLES_OFFSET: usize = 128;
/// Offset of the record table.
const RECORDS_OFFSET: usize = 320;

/// The fuzz entry point (see the module docs). Never panics, never hangs.
pub fn mpsc_consume(data: &[u8]) {
    let mut input = Input(data);
    let Some((ring, flags)) = heap_ring_from::<Mpsc>(&mut input) else {
        return;
    };
    if flags & 2 != 0 {
        poke(&ring, ROLES_OFFSET, &[0; 4]);
        for e in 0..MAX_PRODUCERS {
            poke(&ring, RECORDS_OFFSET + e * 64 + 12, &[0; 4]);
        }
    }
    let mut consumer = attach_consumer(&ring);
    let mut producers: [Option<Producer>; 2] = [ring.producer().ok(), ring.producer().ok()];
    let mut graveyard = Vec::new();
    let mut buf = Vec::new();
    let mut checksum = 0u64;
    while let Some(op) = input.byte() {
        let which = usize::from(op >> 7);
        match op % 12 {
            0 => {
                if let Some(c) = consumer.as_mut() {
                    check_read(c, &mut checksum);
                }
            }
            1 => {
                let max = usize::from(input.byte().unwrap_or(1));
                if let Some(c) = consumer.as_mut() {
                    let max_payload = c.max_payload();
                    let r = c.try_read_batch(max, |tag, bytes| {
                        assert!(bytes.len() <= max_payload);
                        checksum = checksum.wrapping_add(u64::from(tag)) ^ bytes.len() as u64;
                    });
                    if let Ok(n) = r {
                        assert!(n <= max);
                    }
                }
            }
            2 => {
                if let Some(c) = consumer.as_mut() {
                    let _ = c.try_recv(&mut buf);
                    let _ = c.try_recv_value::<u64>();
                }
            }
            3 => {
                if let Some(c) = consumer.as_mut() {
                    // A deadline already passed: returns at once.
                    let r = c.read_deadline(Some(Instant::now())).map(|f| f.len());
                    assert!(!matches!(r, Err(RecvError::WrongSize { .. })));
                    let _ = c.producers();
                }
            }
            4..=7 => {
                let len = usize::from(input.u16().unwrap_or(0));
                let tag = u32::from(input.byte().unwrap_or(0));
                if let Some(p) = producers[which].as_mut() {
                    let max_payload = p.max_payload();
                    match p.try_claim(len) {
                        Ok(mut claim) => {
                            assert_eq!(claim.len(), len);
                            claim.fill(op);
                            claim.set_tag(tag);
                            // The consumer looks while the claim is held.
                            if op % 12 == 6 {
                                if let Some(c) = consumer.as_mut() {
                                    check_read(c, &mut checksum);
                                }
                            }
                            match op % 12 {
                                4 | 6 => {
                                    let r = claim.commit();
                                    assert!(matches!(
                                        r,
                                        Ok(())
                                            | Err(CommitError::Abandoned | CommitError::Corrupted)
                                    ));
                                }
                                5 => drop(claim),
                                _ => core::mem::forget(claim),
                            }
                        }
                        Err(TryClaimError::TooLarge { .. }) => assert!(len > max_payload),
                        Err(_) => {}
                    }
                }
            }
            8 => {
                // A producer dies between its tail CAS and its header.
                let len = usize::from(input.byte().unwrap_or(0));
                if let Some(mut p) = producers[which].take() {
                    let _ = p.reserve_and_vanish(len);
                    ring.mark_dead(p.id());
                    // Kept, not dropped: a dead process releases nothing.
                    graveyard.push(p);
                }
                producers[which] = ring.producer().ok();
            }
            9 => {
                let offset = usize::from(input.u16().unwrap_or(0));
                let n = usize::from(input.byte().unwrap_or(0) % 16);
                let bytes: Vec<u8> = (0..n).filter_map(|_| input.byte()).collect();
                poke(&ring, offset, &bytes);
            }
            10 => {
                // A hostile position: tail (0) or head (64).
                let at = usize::from(input.byte().unwrap_or(0) & 1) * 64;
                let value = input.u64().unwrap_or(0);
                poke(&ring, at, &value.to_ne_bytes());
            }
            _ => {
                // Detach and re-attach one side, or declare a producer dead.
                match input.byte().unwrap_or(0) % 3 {
                    0 => {
                        drop(consumer.take());
                        consumer = attach_consumer(&ring);
                    }
                    1 => {
                        drop(producers[which].take());
                        producers[which] = ring.producer().ok();
                    }
                    _ => {
                        if let Some(p) = &producers[which] {
                            ring.mark_dead(p.id());
                        }
                    }
                }
            }
        }
    }
    std::hint::black_box(checksum);
    drop(graveyard);
}

fn attach_consumer(ring: &HeapRing) -> Option<Consumer> {
    let mut c = ring.consumer().ok()?;
    c.set_claim_timeout(Duration::ZERO);
    Some(c)
}

/// Reads one frame in place and checks what the API promises about it.
fn check_read(c: &mut Consumer, checksum: &mut u64) {
    let max_payload = c.max_payload();
    let poisoned_before = c.is_poisoned();
    let r = c.try_read().map(|frame| {
        assert!(frame.len() <= max_payload);
        assert!(frame.entry() < MAX_PRODUCERS);
        frame.iter().map(|&b| u64::from(b)).sum::<u64>()
    });
    match r {
        Ok(sum) => {
            assert!(!poisoned_before);
            *checksum = checksum.wrapping_add(sum);
        }
        Err(TryRecvError::Corrupted) => assert!(c.is_poisoned()),
        Err(_) => assert!(!poisoned_before),
    }
}
