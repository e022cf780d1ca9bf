//! Sending and receiving on an MPSC ring while the other side keeps up
//! makes no futex call at all. Alone in its test binary: the counts are per
//! process, and other tests would add their own.

use polycephaly::region::{Region, SectionId};
use polycephaly::ring::mpsc;
use polycephaly::ring::{Receiver, Sender};
use polycephaly::sync::futex_calls;

#[test]
fn no_system_call_on_the_fast_path() {
    let r = Region::builder()
        .with(mpsc::Spec::new(4096).unwrap())
        .build()
        .unwrap();
    let mut a = mpsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut b = mpsc::Producer::attach(&r, SectionId(0)).unwrap();
    let mut rx = mpsc::Consumer::attach(&r, SectionId(0)).unwrap();
    let mut buf = Vec::new();
    let before = futex_calls();
    for i in 0..10_000u32 {
        let tx = if i % 3 == 0 { &mut a } else { &mut b };
        let mut claim = tx.claim(40).unwrap();
        claim.fill(i as u8);
        claim.set_tag(i);
        claim.commit().unwrap();
        assert_eq!(rx.recv(&mut buf), Ok(i));
        assert_eq!(buf, [i as u8; 40]);
    }
    assert_eq!(futex_calls(), before);
}
