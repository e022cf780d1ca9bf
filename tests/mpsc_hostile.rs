//! An MPSC ring whose shared words are overwritten with garbage, as a
//! crashed or hostile peer could: every inconsistency the consumer or a
//! producer reads gives `Corrupted` (never a panic, a hang, or a read
//! outside the ring), and the ring stays poisoned.
//!
//! Offsets follow `polycephaly::ring::mpsc::layout`: the tail at 0, the
//! head at 64, the data after `mpsc::CONTROL_LEN` bytes; a frame header is
//! `len | entry << 23 | kind << 29 | tag << 32`.

use std::time::Duration;

use polycephaly::region::{Region, SectionId};
use polycephaly::ring::{Receiver, RecvError, Sender, TryRecvError, TrySendError, mpsc};

const CAPACITY: usize = 256;
const TAIL: usize = 0;
const HEAD: usize = 64;
const COMMITTED: u64 = 2;
const CLAIMED: u64 = 1;
const PADDING: u64 = 3;

fn header(kind: u64, entry: u64, len: u64, tag: u64) -> u64 {
    len | entry << 23 | kind << 29 | tag << 32
}

/// A region with one MPSC ring, a producer and a consumer that checks
/// claims at once (no claim timeout).
fn ring() -> (Region, mpsc::Producer, mpsc::Consumer) {
    let r = Region::builder()
        .with(mpsc::Spec::new(CAPACITY).unwrap())
        .build()
        .unwrap();
    let tx = mpsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = mpsc::Consumer::attach(&r, SectionId(0)).unwrap();
    rx.set_claim_timeout(Duration::ZERO);
    (r, tx, rx)
}

/// Writes `v` at byte `offset` of the ring section, as another process
/// would.
fn poke(r: &Region, offset: usize, v: u64) {
    let s = r.section(SectionId(0)).unwrap();
    assert!(offset % 8 == 0 && offset + 8 <= s.len);
    // SAFETY: in bounds and 8-aligned (checked; sections are 64-aligned);
    // a volatile write of plain bytes into shared memory that the ring
    // reads only through atomics and checks.
    unsafe { s.ptr.as_ptr().add(offset).cast::<u64>().write_volatile(v) };
}

/// Reads the word at byte `offset` of the ring section, as another
/// process would.
fn peek(r: &Region, offset: usize) -> u64 {
    let s = r.section(SectionId(0)).unwrap();
    assert!(offset % 8 == 0 && offset + 8 <= s.len);
    // SAFETY: in bounds and 8-aligned (checked); a volatile read of a
    // shared word.
    unsafe { s.ptr.as_ptr().add(offset).cast::<u64>().read_volatile() }
}

/// Reads until the ring reports something other than a frame.
fn drain(rx: &mut mpsc::Consumer) -> TryRecvError {
    let mut buf = Vec::new();
    for _ in 0..64 {
        if let Err(e) = rx.try_recv(&mut buf) {
            return e;
        }
    }
    panic!("64 frames out of a 256-byte ring");
}

fn assert_poisoned(rx: &mut mpsc::Consumer) {
    assert!(rx.is_poisoned());
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Corrupted));
    assert_eq!(
        rx.read_timeout(Duration::from_secs(5)).err(),
        Some(RecvError::Corrupted)
    );
}

#[test]
fn a_bad_header_at_the_head_is_detected() {
    let cases = [
        (
            "length beyond the largest payload",
            header(COMMITTED, 0, 200, 0),
        ),
        (
            "frame running past the end of the lap",
            header(COMMITTED, 0, 120, 0),
        ),
        ("unknown kind", header(6, 0, 8, 0)),
        ("claimed with a tag", header(CLAIMED, 0, 8, 9)),
        ("padding at the start of a lap", header(PADDING, 0, 248, 0)),
        ("padding of the wrong length", header(PADDING, 0, 8, 0)),
    ];
    for (what, word) in cases {
        let (r, mut tx, mut rx) = ring();
        if what == "frame running past the end of the lap" {
            // Move both ends to 128 first: 120 bytes from there overrun
            // the lap (a real frame would have been preceded by padding).
            tx.try_send(&[7; 120]).unwrap();
            let mut buf = Vec::new();
            rx.try_recv(&mut buf).unwrap();
        }
        tx.try_send(&[1; 16]).unwrap();
        let at = if what == "frame running past the end of the lap" {
            128
        } else {
            0
        };
        poke(&r, mpsc::CONTROL_LEN + at, word);
        assert_eq!(drain(&mut rx), TryRecvError::Corrupted, "{what}");
        assert_poisoned(&mut rx);
    }
}

#[test]
fn a_batch_read_detects_a_bad_header_after_good_frames() {
    let (r, mut tx, mut rx) = ring();
    tx.try_send(&[1; 16]).unwrap();
    tx.try_send(&[2; 16]).unwrap();
    // The second frame's header (at 24) claims more than the ring holds.
    poke(&r, mpsc::CONTROL_LEN + 24, header(COMMITTED, 0, 4000, 0));
    let mut seen = Vec::new();
    assert_eq!(
        rx.try_read_batch(10, |_, b| seen.push(b.to_vec())),
        Err(TryRecvError::Corrupted)
    );
    // The frame before the bad one was delivered, and only that one.
    assert_eq!(seen, vec![vec![1; 16]]);
    assert_poisoned(&mut rx);
}

#[test]
fn a_header_forged_past_the_tail_is_caught_at_the_next_tail_read() {
    let (r, mut tx, mut rx) = ring();
    tx.try_send(&[1; 16]).unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    // The tail is at 24. A "committed" frame appears at 24, past it: the
    // consumer walks headers, not the tail, so it may deliver it; the
    // next read of the tail (at the latest when the ring looks empty for
    // the claim timeout, here zero) finds the head past the tail.
    poke(&r, mpsc::CONTROL_LEN + 24, header(COMMITTED, 0, 8, 0));
    assert_eq!(drain(&mut rx), TryRecvError::Corrupted);
    assert_poisoned(&mut rx);
    // The producer learns it on its slow path (a full ring), and a new
    // consumer is refused.
    let mut got = Ok(());
    for _ in 0..64 {
        got = tx.try_send(&[3; 100]);
        if got.is_err() {
            break;
        }
    }
    assert_eq!(got, Err(TrySendError::Corrupted));
    drop(rx);
    assert!(mpsc::Consumer::attach(&r, SectionId(0)).is_err());
}

#[test]
fn the_head_never_passes_the_tail_even_with_traffic_after_a_forgery() {
    // With the default claim timeout (the tail is not read while frames
    // keep coming), a forged frame past the tail is followed by real ones.
    let (r, mut tx, mut rx) = ring();
    rx.set_claim_timeout(Duration::from_secs(60));
    tx.try_send(&[1; 16]).unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    poke(&r, mpsc::CONTROL_LEN + 24, header(COMMITTED, 0, 8, 0));
    // The consumer may deliver the forged frame, but it does not give its
    // bytes back before a read of the tail covers them.
    let first = rx.try_recv(&mut buf);
    assert!(matches!(first, Ok(_) | Err(TryRecvError::Corrupted)));
    assert!(
        peek(&r, HEAD) <= peek(&r, TAIL),
        "the head was released past the tail"
    );
    // Producers go on: their frames start at the real tail (24), under the
    // forged one, so the consumer, past the forged frame, reads inside one
    // of them and reports the ring corrupted; the head is still at or
    // behind the tail.
    let _ = tx.try_send(&[2; 16]);
    let _ = tx.try_send(&[3; 16]);
    assert_eq!(drain(&mut rx), TryRecvError::Corrupted);
    assert_poisoned(&mut rx);
    assert!(
        peek(&r, HEAD) <= peek(&r, TAIL),
        "the head was released past the tail"
    );
    drop(rx);
    assert!(mpsc::Consumer::attach(&r, SectionId(0)).is_err());
}

/// A forged frame past the tail, and no traffic after it: the consumer
/// releases lazily, but when it does (here: on drop) it reads the tail
/// first, finds the frame past it, and poisons the ring; the head stays
/// where it was.
#[test]
fn a_forged_frame_is_caught_when_its_release_comes() {
    let (r, mut tx, mut rx) = ring();
    rx.set_claim_timeout(Duration::from_secs(60));
    tx.try_send(&[1; 16]).unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    poke(&r, mpsc::CONTROL_LEN + 24, header(COMMITTED, 0, 8, 0));
    assert_eq!(rx.try_recv(&mut buf), Ok(0));
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    drop(rx);
    let head = peek(&r, HEAD);
    assert!(head <= 24, "head {head} past the tail");
    // Poisoned by the release on drop (an attach would also refuse the
    // recorded end past the tail, but as "release end").
    assert!(matches!(
        mpsc::Consumer::attach(&r, SectionId(0)),
        Err(polycephaly::AttachError::Corrupted {
            what: "ring positions"
        })
    ));
}

/// What lazy release gives up (see DESIGN.md, "MPSC release, lazy"): a
/// forged frame past the tail that ends where an honest frame claimed
/// after it ends, read before the consumer next releases, goes unseen,
/// and the honest frame it covered is lost. The consumer reads nothing
/// outside the ring, the head never passes the tail, and the frames after
/// are delivered.
#[test]
fn a_forged_frame_ending_where_a_real_one_ends_costs_that_frame() {
    let (r, mut tx, mut rx) = ring();
    rx.set_claim_timeout(Duration::from_secs(60));
    tx.try_send(&[1; 16]).unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    // 24..40, as the next real 8-byte frame will be.
    poke(&r, mpsc::CONTROL_LEN + 24, header(COMMITTED, 0, 8, 0));
    assert_eq!(rx.try_recv(&mut buf), Ok(0));
    assert_eq!(buf, [0; 8], "the forged frame's bytes");
    tx.try_send(&[2; 8]).unwrap(); // at 24..40: under the forged one
    tx.try_send(&[3; 8]).unwrap(); // at 40..56
    assert_eq!(rx.try_recv(&mut buf), Ok(0));
    assert_eq!(buf, [3; 8], "the frame at 24 was lost");
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    rx.flush_releases().unwrap();
    assert!(!rx.is_poisoned(), "the tail covers everything read");
    let (head, tail) = (peek(&r, HEAD), peek(&r, TAIL));
    assert_eq!((head, tail), (56, 56));
}

#[test]
fn a_claim_forged_past_the_tail_is_not_waited_for() {
    // A "claimed" header past the tail, naming a live producer's entry:
    // a real claim would be waited for while its producer lives, but at
    // the claim timeout the consumer checks the tail, which must be past
    // every header it walked.
    let (r, mut tx, mut rx) = ring();
    tx.try_send(&[1; 16]).unwrap();
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    poke(
        &r,
        mpsc::CONTROL_LEN + 24,
        header(CLAIMED, tx.entry() as u64, 8, 0),
    );
    assert_eq!(drain(&mut rx), TryRecvError::Corrupted);
    assert_poisoned(&mut rx);
}

#[test]
fn bad_tails_are_detected_by_the_consumer() {
    for (what, tail) in [
        ("more than a capacity ahead", 24 + 4096),
        ("not 8-aligned", 27),
        ("behind a frame already seen", 8),
    ] {
        let (r, mut tx, mut rx) = ring();
        tx.try_send(&[1; 16]).unwrap();
        let mut buf = Vec::new();
        rx.try_recv(&mut buf).unwrap();
        poke(&r, TAIL, tail);
        assert_eq!(drain(&mut rx), TryRecvError::Corrupted, "{what}");
        assert_poisoned(&mut rx);
    }
}

#[test]
fn a_reservation_nobody_made_is_detected() {
    // The tail moves on with no producer's intent naming the space and no
    // header written: after the claim timeout (zero here) the consumer
    // finds no claimer to wait for and reports the ring corrupted rather
    // than skip an unknown number of bytes or wait forever.
    let (r, _tx, mut rx) = ring();
    poke(&r, TAIL, 64);
    assert_eq!(drain(&mut rx), TryRecvError::Corrupted);
    assert_poisoned(&mut rx);
}

#[test]
fn bad_heads_are_detected_by_a_producer() {
    for (what, head) in [
        ("past the tail", 4096),
        ("not 8-aligned", 3),
        ("moved backwards", 0),
    ] {
        let (r, mut tx, mut rx) = ring();
        // Frames of 120 bytes: after the third the producer has seen the
        // head at 120 (it needed room), and the fourth needs a new look.
        tx.try_send(&[1; 112]).unwrap();
        let mut buf = Vec::new();
        rx.try_recv(&mut buf).unwrap();
        tx.try_send(&[2; 112]).unwrap();
        tx.try_send(&[2; 112]).unwrap();
        poke(&r, HEAD, head);
        let mut got = Ok(());
        for _ in 0..4 {
            got = tx.try_send(&[3; 112]);
            if got.is_err() {
                break;
            }
        }
        assert_eq!(got, Err(TrySendError::Corrupted), "{what}");
        assert!(tx.is_poisoned(), "{what}");
    }
}
