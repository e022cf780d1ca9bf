//! Consuming (and producing) on a ring whose memory holds arbitrary bytes,
//! with arbitrary bytes poked into it between operations, as a hostile
//! process sharing the ring could.
//!
//! Input: `[cap_exp, flags, image..., ops...]`. The ring has
//! `64 << (cap_exp % 6)` bytes; when `flags & 1`, its whole memory (control
//! block and data) is overwritten with the next bytes of the input (as many
//! as it spans, or fewer); when `flags & 2`, the role words are cleared
//! afterwards so both handles can attach. Then each op byte picks an
//! operation, taking its arguments from the following bytes.

use crate::sync::clock::Instant;

use super::{Input, heap_ring_from, poke};
use crate::ring::spsc::{Consumer, Spsc};
use crate::ring::{Receiver, RecvError, TryClaimError, TryRecvError};

/// Offset of the role words in the control block (see `ring::spsc::layout`).
const ROLES_OFFSET: usize = 128;

/// The fuzz entry point (see the module docs). Never panics, never hangs.
pub fn spsc_consume(data: &[u8]) {
    let mut input = Input(data);
    let Some((heap, flags)) = heap_ring_from::<Spsc>(&mut input) else {
        return;
    };
    if flags & 2 != 0 {
        poke(&heap, ROLES_OFFSET, &[0; 8]);
    }
    let mut consumer = heap.consumer().ok();
    let mut producer = heap.producer().ok();
    let mut buf = Vec::new();
    let mut checksum = 0u64;
    while let Some(op) = input.byte() {
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
                }
            }
            3 => {
                if let Some(c) = consumer.as_mut() {
                    // A deadline already passed: returns at once.
                    let r = c.read_deadline(Some(Instant::now())).map(|f| f.len());
                    assert!(!matches!(r, Err(RecvError::WrongSize { .. })));
                }
            }
            4 => {
                if let Some(c) = consumer.as_mut() {
                    let _ = c.try_recv_value::<u64>();
                }
            }
            5..=7 => {
                let len = usize::from(input.u16().unwrap_or(0));
                if let Some(p) = producer.as_mut() {
                    match p.try_claim(len) {
                        Ok(mut claim) => {
                            assert_eq!(claim.len(), len);
                            claim.fill(op);
                            claim.set_tag(u32::from(op));
                            match op % 12 {
                                5 => claim.commit(),
                                6 => claim.commit_deferred(),
                                _ => drop(claim),
                            }
                        }
                        Err(TryClaimError::TooLarge { .. }) => assert!(len > p.max_payload()),
                        Err(_) => {}
                    }
                }
            }
            8 => {
                if let Some(p) = producer.as_mut() {
                    p.publish();
                }
            }
            9 => {
                let offset = usize::from(input.u16().unwrap_or(0));
                let n = usize::from(input.byte().unwrap_or(0) % 16);
                let bytes: Vec<u8> = (0..n).filter_map(|_| input.byte()).collect();
                poke(&heap, offset, &bytes);
            }
            10 => {
                // A hostile position: tail (0) or head (64).
                let which = usize::from(input.byte().unwrap_or(0) & 1) * 64;
                let value = input.u64().unwrap_or(0);
                poke(&heap, which, &value.to_ne_bytes());
            }
            _ => {
                // Detach and re-attach one side (role release, takeover,
                // attach-time checks).
                if input.byte().unwrap_or(0) & 1 == 0 {
                    drop(consumer.take());
                    consumer = heap.consumer().ok();
                } else {
                    drop(producer.take());
                    producer = heap.producer().ok();
                }
            }
        }
    }
    std::hint::black_box(checksum);
}

/// Reads one frame in place and checks what the API promises about it.
fn check_read(c: &mut Consumer, checksum: &mut u64) {
    let max_payload = c.max_payload();
    let poisoned_before = c.is_poisoned();
    let r = c.try_read().map(|frame| {
        assert!(frame.len() <= max_payload);
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
