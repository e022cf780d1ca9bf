//! SPSC rings in region sections, within one process: attach rules, role
//! claims, capacity checks, corruption and poisoning, peer loss.

use std::thread;
use std::time::Duration;

use polycephaly::AttachError;
use polycephaly::region::{PeerId, Region, SectionId, SectionKind};
use polycephaly::ring::{
    CapacityError, ClaimError, MIN_CAPACITY, Receiver, RecvError, SendError, Sender, TryRecvError,
    TrySendError, mpsc, spsc,
};
use polycephaly::sync::WaitStrategy;

/// Offsets in the control block (see `ring::spsc::layout`).
const TAIL: usize = 0;
const HEAD: usize = 64;
const PRODUCER_HOLDER: usize = 128;
/// Where the consumer last began a wait (plus one): a hint it stores when
/// it changes (see `ring::spsc::layout`).
#[cfg(all(target_arch = "x86_64", not(miri)))]
const CONSUMER_CPU: usize = 148;

fn region(capacity: usize) -> Region {
    Region::builder()
        .with(spsc::Spec::new(capacity).unwrap())
        .build()
        .unwrap()
}

/// Writes `value` at `offset` of section 0, as a hostile peer could.
fn poke_u64(region: &Region, offset: usize, value: u64) {
    let s = region.section(SectionId(0)).unwrap();
    assert!(offset + 8 <= s.len);
    // SAFETY: in bounds of the live mapping; 8-aligned (section 64-aligned,
    // offsets multiples of 8). A racing atomic access would only see a new
    // value, which the ring checks.
    unsafe {
        s.ptr
            .as_ptr()
            .add(offset)
            .cast::<u64>()
            .write_volatile(value)
    };
}

fn poke_u32(region: &Region, offset: usize, value: u32) {
    let s = region.section(SectionId(0)).unwrap();
    assert!(offset + 4 <= s.len);
    // SAFETY: as in `poke_u64`.
    unsafe {
        s.ptr
            .as_ptr()
            .add(offset)
            .cast::<u32>()
            .write_volatile(value)
    };
}

#[test]
fn capacities_are_checked_at_creation() {
    assert_eq!(
        spsc::Spec::new(4096).map(|s| s.section_len()),
        Ok(spsc::CONTROL_LEN + 4096)
    );
    assert_eq!(
        spsc::Spec::new(3000),
        Err(CapacityError::NotPowerOfTwo(3000))
    );
    assert_eq!(
        spsc::Spec::new(32),
        Err(CapacityError::TooSmall {
            capacity: 32,
            min: MIN_CAPACITY
        })
    );
    assert!(spsc::HeapRing::new(100).is_err());
}

#[test]
fn attach_checks_the_section() {
    let r = Region::builder()
        .section(
            SectionKind::Raw,
            spsc::Spec::new(1024).unwrap().section_len(),
        )
        .section(SectionKind::SpscRing, spsc::CONTROL_LEN + 10)
        .section(
            SectionKind::SpscRing,
            spsc::Spec::new(1024).unwrap().section_len() + 100,
        )
        .section(
            SectionKind::SpscRing,
            mpsc::Spec::new(1024).unwrap().section_len(),
        )
        .with(spsc::Spec::new(1024).unwrap())
        .build()
        .unwrap();
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(0)),
        Err(AttachError::WrongKind {
            found: SectionKind::Raw,
            wanted: SectionKind::SpscRing
        })
    ));
    assert!(matches!(
        spsc::Consumer::attach(&r, SectionId(1)),
        Err(AttachError::WrongLength { len, .. }) if len == spsc::CONTROL_LEN + 10
    ));
    assert!(matches!(
        spsc::Consumer::attach(&r, SectionId(9)),
        Err(AttachError::Section(_))
    ));
    // A longer section than a ring needs is refused: attach demands the
    // exact length (control block plus a power-of-two capacity), so that
    // a section sized for another layout is never silently read as a
    // smaller ring. (This used to attach with the largest power of two
    // that fits; refusing is the intended behaviour now.)
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(2)),
        Err(AttachError::WrongLength { len, .. })
            if len == spsc::CONTROL_LEN + 1024 + 100
    ));
    // So is a section sized for an MPSC ring of the same capacity.
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(3)),
        Err(AttachError::WrongLength { .. })
    ));
    // The exact length attaches, with the capacity asked for.
    let tx = spsc::Producer::attach(&r, SectionId(4)).unwrap();
    assert_eq!(tx.capacity(), 1024);
    assert_eq!(tx.max_payload(), 512 - 8);
}

#[test]
fn one_producer_and_one_consumer_at_a_time() {
    let r = Region::builder()
        .named_random("polycephaly-test-spsc-roles-")
        .with(spsc::Spec::new(1024).unwrap())
        .build()
        .unwrap();
    let tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let holder = Some(r.peer_id());
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(0)),
        Err(AttachError::RoleTaken { holder: h }) if h == holder
    ));
    // Another handle (another peer id) of the same region is refused too.
    let other = Region::open(r.name().unwrap()).unwrap();
    assert_ne!(other.peer_id(), r.peer_id());
    assert!(matches!(
        spsc::Consumer::attach(&other, SectionId(0)),
        Err(AttachError::RoleTaken { holder: h }) if h == holder
    ));
    drop(tx);
    drop(rx);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"again").unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"again");
}

#[test]
fn a_dead_holder_is_taken_over_and_positions_survive() {
    let r = region(256);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"one").unwrap();
    drop(tx);
    // A role word naming a peer that does not exist (slot 40, generation
    // 12345): the holder is dead, the role is taken over.
    let ghost = PeerId::from_raw((12345 << 8) | 40).unwrap();
    assert!(!r.peer_alive(ghost));
    poke_u32(&r, PRODUCER_HOLDER, ghost.to_raw());
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"two").unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"one");
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"two");
}

/// Reads the `u32` at `offset` of section 0, as a peer could.
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn peek_u32(region: &Region, offset: usize) -> u32 {
    let s = region.section(SectionId(0)).unwrap();
    assert!(offset + 4 <= s.len);
    // SAFETY: as in `poke_u64`; a racing store is seen whole or not at all
    // (aligned), and only compared with zero.
    unsafe { s.ptr.as_ptr().add(offset).cast::<u32>().read_volatile() }
}

/// A header forged while the consumer waits for it: the wait ends on any
/// non-zero header, before the frame is checked. Each forgery ends the
/// wait with `Corrupted`: no panic, no hang, nothing read past the ring.
/// Only where the consumer notes its CPU when it begins a wait, which
/// tells the test it waits.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[test]
fn a_header_forged_while_the_consumer_waits_is_reported() {
    const READY: u64 = 1 << 30;
    const PAD: u64 = 1 << 31;
    let forgeries = [
        READY | 0x3fff_ffff, // the largest length a header can say
        READY | 200,         // past the largest payload (120)
        READY | PAD | 5,     // padding that does not fill the lap
        u64::MAX,
        64, // no ready bit
    ];
    for forged in forgeries {
        let r = region(256);
        let _tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
        let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
        rx.set_wait_strategy(WaitStrategy::SPIN);
        poke_u32(&r, CONSUMER_CPU, 0);
        thread::scope(|s| {
            let reader = s.spawn(|| rx.read_timeout(Duration::from_secs(20)).err());
            // Stored when the consumer begins to wait.
            while peek_u32(&r, CONSUMER_CPU) == 0 && !reader.is_finished() {
                thread::yield_now();
            }
            poke_u64(&r, spsc::CONTROL_LEN, forged);
            let got = reader.join().expect("the waiting consumer panicked");
            assert_eq!(got, Some(RecvError::Corrupted), "header {forged:#x}");
        });
    }
}

#[test]
fn a_corrupted_header_poisons_the_ring_for_good() {
    let r = region(256);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"fine").unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    // The word the consumer polls next (at 16, zero until published): a
    // header without the ready bit.
    poke_u64(&r, spsc::CONTROL_LEN + 16, 8);
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Corrupted));
    assert!(rx.is_poisoned());
    // Even once the word looks sane again, the consumer stays poisoned.
    poke_u64(&r, spsc::CONTROL_LEN + 16, 0);
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Corrupted));
    assert_eq!(
        rx.read_timeout(Duration::from_secs(5)).err(),
        Some(RecvError::Corrupted)
    );
    // The producer learns on its slow path, and a new attach is refused.
    let max = tx.max_payload();
    let mut got = Ok(());
    for _ in 0..64 {
        got = tx.try_send(&vec![0; max]);
        if got.is_err() {
            break;
        }
    }
    assert_eq!(got, Err(TrySendError::Corrupted));
    drop(rx);
    assert!(matches!(
        spsc::Consumer::attach(&r, SectionId(0)),
        Err(AttachError::Corrupted { .. })
    ));
}

#[test]
fn a_corrupted_tail_is_refused_when_a_producer_attaches() {
    let r = region(256);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"fine").unwrap();
    drop(tx);
    // A tail hint more than a capacity ahead of the head.
    poke_u64(&r, TAIL, 8 + 4096);
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(0)),
        Err(AttachError::Corrupted { .. })
    ));
    // The consumer does not read the tail, but the attach poisoned the
    // ring for every side: it learns once it finds no frame to read.
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Ok(0));
    assert_eq!(buf, b"fine");
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Corrupted));
}

#[test]
fn a_tail_hint_leaving_no_free_word_is_refused() {
    // head 0, tail a whole capacity ahead: within the old rule (in flight
    // <= capacity), but a producer always leaves the word at its end free.
    let r = region(256);
    poke_u64(&r, TAIL, 256);
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(0)),
        Err(AttachError::Corrupted { .. })
    ));
}

/// Sends `frames` from a producer that then leaves with the tail hint
/// still at 0, as one killed between its header store and its tail store
/// leaves it behind the published end; returns the consumer, attached
/// before.
fn frames_past_a_stale_tail_hint(r: &Region, frames: &[&[u8]]) -> spsc::Consumer {
    let mut tx = spsc::Producer::attach(r, SectionId(0)).unwrap();
    let rx = spsc::Consumer::attach(r, SectionId(0)).unwrap();
    for frame in frames {
        tx.try_send(frame).unwrap();
    }
    drop(tx);
    poke_u64(r, TAIL, 0);
    rx
}

/// Receives `want`, in order, then finds the ring empty.
fn receive_exactly(rx: &mut spsc::Consumer, want: &[&[u8]]) {
    let mut buf = Vec::new();
    for want in want {
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, *want);
    }
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn a_producer_taking_over_continues_after_frames_past_the_tail_hint() {
    let r = region(256);
    let mut rx = frames_past_a_stale_tail_hint(&r, &[b"one", b"two"]);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"three").unwrap();
    receive_exactly(&mut rx, &[b"one", b"two", b"three"]);
}

#[test]
fn both_sides_attach_after_the_consumer_read_past_the_tail_hint() {
    // Found by the chaos soak: a producer killed between its header store
    // and its tail store leaves the hint behind, the consumer reads on
    // (the headers say what is published) and releases past it; the next
    // producer must not take head > tail for corruption.
    let r = region(256);
    let mut rx = frames_past_a_stale_tail_hint(&r, &[b"one", b"two"]);
    // Found empty at the end: the head is stored, past the hint.
    receive_exactly(&mut rx, &[b"one", b"two"]);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"three").unwrap();
    drop(tx);
    poke_u64(&r, TAIL, 0);
    receive_exactly(&mut rx, &[b"three"]);
    // A consumer taking over there attaches too, and so does a producer
    // after it.
    drop(rx);
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(b"four").unwrap();
    receive_exactly(&mut rx, &[b"four"]);
}

#[test]
fn corrupted_headers_and_heads_are_detected() {
    let capacity = 256;
    // A frame header with a length beyond the maximum.
    let r = region(capacity);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(&[1; 16]).unwrap();
    poke_u64(&r, spsc::CONTROL_LEN, 5000);
    assert_eq!(rx.try_read().err(), Some(TryRecvError::Corrupted));

    // A header without the ready bit (every header has it).
    let r = region(capacity);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(&[1; 16]).unwrap();
    poke_u64(&r, spsc::CONTROL_LEN, 64);
    assert_eq!(
        rx.try_read_batch(10, |_, _| {}),
        Err(TryRecvError::Corrupted)
    );

    // A bogus padding frame.
    let r = region(capacity);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(&[1; 16]).unwrap();
    poke_u64(&r, spsc::CONTROL_LEN, 3 << 30);
    assert_eq!(rx.try_read().err(), Some(TryRecvError::Corrupted));

    // A head beyond the published tail, seen by a producer that needs room.
    let r = region(capacity);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let _rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.try_send(&[1; 100]).unwrap();
    poke_u64(&r, HEAD, 4096);
    // The cached head still leaves room for one more frame; the refresh
    // that the next one needs finds the bad head.
    assert_eq!(tx.try_send(&[1; 120]), Ok(()));
    assert_eq!(tx.try_send(&[1; 120]), Err(TrySendError::Corrupted));
    assert_eq!(tx.try_send(&[]), Err(TrySendError::Corrupted));
}

#[test]
fn positions_near_overflow_are_refused_at_attach() {
    let r = region(256);
    poke_u64(&r, TAIL, u64::MAX - 7);
    poke_u64(&r, HEAD, u64::MAX - 7);
    assert!(matches!(
        spsc::Producer::attach(&r, SectionId(0)),
        Err(AttachError::Corrupted { .. })
    ));
    assert!(matches!(
        spsc::Consumer::attach(&r, SectionId(0)),
        Err(AttachError::Corrupted { .. })
    ));
}

#[test]
fn too_large_is_an_error_not_a_hang() {
    let r = region(256);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let max = tx.max_payload();
    assert_eq!(
        tx.claim(max + 1).err(),
        Some(ClaimError::TooLarge { len: max + 1, max })
    );
    assert_eq!(
        tx.send(&vec![0; 10_000]).err(),
        Some(SendError::TooLarge { len: 10_000, max })
    );
}

#[test]
fn waiting_for_a_producer_that_never_came_times_out() {
    let r = region(256);
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    rx.set_wait_strategy(WaitStrategy::SLEEP);
    assert!(rx.is_peer_alive());
    assert_eq!(
        rx.read_timeout(Duration::from_millis(20)).err(),
        Some(RecvError::TimedOut)
    );
}

#[test]
fn consumer_gets_every_frame_then_peer_dead_when_the_producer_leaves() {
    let r = region(1024);
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let r2 = r.clone();
    let producer = thread::spawn(move || {
        let mut tx = spsc::Producer::attach(&r2, SectionId(0)).unwrap();
        for i in 0..1000u32 {
            tx.send_value(&i).unwrap();
        }
        // Dropping detaches.
    });
    for i in 0..1000u32 {
        assert_eq!(rx.recv_value::<u32>(), Ok(i));
    }
    producer.join().unwrap();
    assert!(!rx.is_peer_alive());
    assert_eq!(rx.read().err(), Some(RecvError::PeerDead));
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn producer_blocked_on_a_full_ring_gets_peer_dead_when_the_consumer_leaves() {
    let r = region(256);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    while tx.try_send(&[0; 64]).is_ok() {}
    let consumer = thread::spawn(move || drop(rx));
    consumer.join().unwrap();
    assert_eq!(
        tx.send_timeout(&[0; 64], Duration::from_secs(30)),
        Err(SendError::PeerDead)
    );
}

#[test]
fn a_full_ring_with_a_live_idle_consumer_times_out() {
    let r = region(256);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    tx.set_wait_strategy(WaitStrategy::SLEEP);
    while tx.try_send(&[1; 64]).is_ok() {}
    assert_eq!(tx.try_send(&[1; 64]), Err(TrySendError::Full));
    assert_eq!(
        tx.claim_timeout(64, Duration::from_millis(20)).err(),
        Some(ClaimError::TimedOut)
    );
    // Reading one frame frees room (the release reaches the producer at
    // the latest when the consumer drains the ring).
    let mut n = 0;
    while rx.try_read().is_ok() {
        n += 1;
    }
    assert!(n > 0);
    assert_eq!(tx.send_timeout(&[2; 64], Duration::from_secs(30)), Ok(()));
}

#[test]
fn typed_frames_check_their_size() {
    let (mut tx, mut rx) = spsc_pair(256);
    tx.try_send_value(&[1u16, 2, 3]).unwrap();
    assert_eq!(
        rx.try_recv_value::<u64>(),
        Err(TryRecvError::WrongSize {
            expected: 8,
            got: 6
        })
    );
    // The wrong-sized frame was consumed.
    assert_eq!(rx.try_recv_value::<u64>(), Err(TryRecvError::Empty));
    tx.try_send_value(&u64::MAX).unwrap();
    assert_eq!(rx.try_recv_value::<u64>(), Ok(u64::MAX));
}

#[test]
fn a_dropped_claim_publishes_nothing_and_batches_publish_once() {
    let (mut tx, mut rx) = spsc_pair(256);
    let mut claim = tx.try_claim(10).unwrap();
    claim.fill(9);
    drop(claim);
    assert_eq!(rx.try_read().err(), Some(TryRecvError::Empty));
    for i in 0..3u8 {
        let mut c = tx.try_claim(1).unwrap();
        c[0] = i;
        c.commit_deferred();
    }
    assert!(tx.has_unpublished());
    assert_eq!(rx.try_read().err(), Some(TryRecvError::Empty));
    tx.publish();
    let mut seen = Vec::new();
    assert_eq!(rx.try_read_batch(usize::MAX, |_, b| seen.push(b[0])), Ok(3));
    assert_eq!(seen, [0, 1, 2]);
    // Dropping the producer publishes deferred commits.
    tx.try_claim(0).unwrap().commit_deferred();
    drop(tx);
    assert_eq!(rx.try_read().map(|f| f.len()), Ok(0));
}

fn _handles_are_send() {
    fn send<T: Send>() {}
    send::<spsc::Producer>();
    send::<spsc::Consumer>();
}

/// A fresh SPSC ring on the heap and both of its handles.
fn spsc_pair(capacity: usize) -> (spsc::Producer, spsc::Consumer) {
    let ring = spsc::HeapRing::new(capacity).unwrap();
    (ring.producer().unwrap(), ring.consumer().unwrap())
}

/// A consumer reading a stream reads the tail hint to bound its prefetches
/// (see `spsc::Consumer`), and trusts it for nothing else: with the hint
/// scribbled before each stream is read (zero, behind the head, past the
/// published end, at the last word a frame may end before, at and past a
/// lap ahead, the largest value), every frame still arrives whole and in
/// order, frame by frame and in batches, nothing is reported corrupted,
/// and the ring stays usable.
#[test]
fn a_scribbled_tail_hint_changes_nothing_a_stream_reads() {
    let r = region(4096);
    let mut tx = spsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = spsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let mut buf = Vec::new();
    let mut seq = 0u64;
    for round in 0..40u64 {
        // 24 frames of 72 bytes: more than a quarter of the ring (a
        // release is published, and the hint read, in the middle of the
        // stream) and more than the 8 frames that make a stream.
        let first = seq;
        for _ in 0..24 {
            let mut frame = [0u8; 64];
            frame[..8].copy_from_slice(&seq.to_le_bytes());
            tx.try_send(&frame).unwrap();
            seq += 1;
        }
        let head_hint = first * 72;
        let forged = match round % 7 {
            0 => 0,
            1 => head_hint + 8,
            2 => seq * 72 + 512,
            3 => head_hint + 4096 - 8,
            4 => head_hint + 4096,
            5 => head_hint + 4096 + 8,
            _ => u64::MAX,
        };
        poke_u64(&r, TAIL, forged);
        if round % 2 == 0 {
            for want in first..seq {
                assert_eq!(rx.try_recv(&mut buf), Ok(0), "round {round}");
                assert_eq!(buf.len(), 64);
                assert_eq!(buf[..8], want.to_le_bytes(), "round {round}");
            }
        } else {
            let mut want = first;
            let check = |tag: u32, bytes: &[u8]| {
                assert_eq!((tag, bytes.len()), (0, 64), "round {round}");
                assert_eq!(bytes[..8], want.to_le_bytes(), "round {round}");
                want += 1;
            };
            assert_eq!(rx.try_read_batch(100, check), Ok(24), "round {round}");
        }
        assert_eq!(
            rx.try_recv(&mut buf),
            Err(TryRecvError::Empty),
            "round {round}"
        );
    }
}
