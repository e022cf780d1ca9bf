//! Regression tests for the channel review's findings: each test failed
//! before its fix.
//!
//! The server serves in a thread, the clients call from the test's threads
//! with one region handle (so they share a peer id, as clients of one
//! process do). No sleep synchronises anything; every blocking call has a
//! deadline far above what it needs, so a stall fails the test instead of
//! hanging it.

use polycephaly::sync::shim::{AtomicBool, AtomicU64, Ordering};
use std::{sync::Arc, thread::JoinHandle, time::Duration};

use polycephaly::channel::{CallError, ChannelSpec, Client, Out, OutError, Server};
use polycephaly::region::Region;

const STALL: Duration = Duration::from_secs(20);

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Server>,
    region: Region,
}

fn start(spec: ChannelSpec, setup: impl FnOnce(&mut Server)) -> Running {
    let mut server = Server::anonymous(spec).unwrap();
    setup(&mut server);
    let region = server.region().reopen(&Default::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        server.serve_until(|| flag.load(Ordering::Relaxed)).unwrap();
        server
    });
    Running {
        stop,
        thread,
        region,
    }
}

impl Running {
    fn client(&self) -> Client {
        Client::attach_timeout(&self.region, STALL).unwrap()
    }

    fn finish(self) -> Server {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn small_lane() -> ChannelSpec {
    ChannelSpec::new()
        .with_clients(3)
        .with_max_in_flight(4)
        .with_lane_len(64 << 10)
}

fn big_methods(s: &mut Server) {
    s.set_stall_timeout(Duration::from_millis(200));
    s.method_slice("big", |n: &u64| vec![7u8; *n as usize])
        .unwrap();
    s.method("ping", |x: &u64| *x).unwrap();
}

#[test]
fn unread_block_reply_of_a_dropped_client_jams_the_server_lane() {
    let run = start(small_lane(), big_methods);
    let helper = run.client();
    let ping = helper.method::<u64, u64>("ping").unwrap();
    {
        let c1 = run.client();
        let big = c1.method::<u64, [u8]>("big").unwrap();
        let t = c1.send(&big, &(16 << 10)).unwrap();
        // Served in order: once ping is answered, big's reply is in c1's
        // ring, unread.
        assert_eq!(helper.call_timeout(&ping, &1, STALL).unwrap(), 1);
        drop(t);
    }
    let c2 = run.client();
    let big = c2.method::<u64, [u8]>("big").unwrap();
    for i in 0..16 {
        let r = c2.call_timeout(&big, &(16 << 10), STALL);
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    drop((c2, helper));
    run.finish();
}

#[test]
fn one_clients_held_payload_makes_other_clients_busy() {
    let run = start(small_lane(), big_methods);
    let (a, b) = (run.client(), run.client());
    let big_a = a.method::<u64, [u8]>("big").unwrap();
    let held = a.call_timeout(&big_a, &(16 << 10), STALL).unwrap();
    assert!(held.is_in_place());
    let big = b.method::<u64, [u8]>("big").unwrap();
    for i in 0..16 {
        let r = b.call_timeout(&big, &(16 << 10), STALL);
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    drop(held);
    drop((a, b));
    run.finish();
}

#[repr(C, align(128))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Wide {
    bytes: [u8; 128],
}

#[test]
fn an_over_aligned_in_place_result_strands_the_caller() {
    let run = start(small_lane(), |s| {
        s.method_in_place("wide", |n: &u64, out: &mut Out<'_, Wide>| {
            out.alloc(*n as usize)?;
            Ok(())
        })
        .unwrap();
        s.method_slice("big", |n: &u64| vec![7u8; *n as usize])
            .unwrap();
    });
    let c = run.client();
    let wide = c.method::<u64, [Wide]>("wide").unwrap();
    let big = c.method::<u64, [u8]>("big").unwrap();
    let r1 = c
        .call_timeout(&wide, &1, Duration::from_secs(2))
        .map(|p| p.len());
    let held = c.call_timeout(&big, &4097, STALL).unwrap();
    let r2 = c
        .call_timeout(&wide, &1, Duration::from_secs(2))
        .map(|p| p.len());
    drop(held);
    assert_eq!((r1, r2), (Ok(1), Ok(1)));
    drop(c);
    run.finish();
}

#[test]
fn every_handler_fault_gets_a_reply_and_over_aligned_slices_travel() {
    let run = start(small_lane(), |s| {
        s.method_in_place("gone", |_: &u64, _: &mut Out<'_, u8>| {
            Err(OutError::ClientGone)
        })
        .unwrap();
        s.method_in_place("corrupt", |_: &u64, _: &mut Out<'_, u8>| {
            Err(OutError::Corrupted)
        })
        .unwrap();
        s.method_slice("wides", |n: &u64| {
            (0..*n)
                .map(|i| Wide {
                    bytes: [i as u8; 128],
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
        s.method("first_bytes", |xs: &[Wide]| {
            xs.iter().map(|w| u64::from(w.bytes[0])).sum::<u64>()
        })
        .unwrap();
    });
    let c = run.client();
    let quick = Duration::from_secs(2);
    for name in ["gone", "corrupt"] {
        let m = c.method::<u64, [u8]>(name).unwrap();
        let r = c.call_timeout(&m, &0, quick);
        assert!(
            matches!(r, Err(CallError::HandlerFailed { .. })),
            "{name}: {r:?}"
        );
    }
    assert_eq!(c.in_flight(), 0);
    // Over-aligned elements by handle (a block is only 64-aligned) both
    // ways: built apart and copied, received as a copy when misaligned.
    let wides = c.method::<u64, [Wide]>("wides").unwrap();
    for n in [1u64, 3, 40] {
        let got = c.call_timeout(&wides, &n, quick).unwrap();
        assert_eq!(got.len(), n as usize);
        for (i, w) in got.iter().enumerate() {
            assert_eq!(w.bytes, [i as u8; 128]);
        }
    }
    let first = c.method::<[Wide], u64>("first_bytes").unwrap();
    let sum = c
        .call_with_timeout(
            &first,
            40,
            |xs: &mut [Wide]| {
                for (i, w) in xs.iter_mut().enumerate() {
                    w.bytes = [i as u8; 128];
                }
            },
            quick,
        )
        .unwrap();
    assert_eq!(sum, (0..40).sum::<u64>());
    drop(c);
    run.finish();
}
#[test]
fn a_panicking_fill_leaks_its_ticket() {
    let run = start(small_lane(), |s| {
        s.method("sum", |xs: &[u64]| xs.iter().sum::<u64>())
            .unwrap();
    });
    let c = run.client();
    let sum = c.method::<[u64], u64>("sum").unwrap();
    for _ in 0..c.max_in_flight() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = c.send_with(&sum, 4, |_| panic!("fill failed"));
        }));
        assert!(r.is_err());
    }
    let leaked = c.in_flight();
    let r = c.call_timeout(&sum, &[1u64, 2][..], Duration::from_secs(2));
    assert_eq!((leaked, r), (0, Ok(3)));
    drop(c);
    run.finish();
}

#[test]
fn a_slow_inline_fill_blocks_every_other_client() {
    let run = start(small_lane(), |s| {
        s.method("sum", |xs: &[u64]| xs.iter().sum::<u64>())
            .unwrap();
        s.method("ping", |x: &u64| *x).unwrap();
    });
    // The fill closure stays open until the test has made its call: it
    // parks on a channel, not a sleep.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let region = run.region.clone();
    let slow = std::thread::spawn(move || {
        let a = Client::attach_timeout(&region, STALL).unwrap();
        let sum = a.method::<[u64], u64>("sum").unwrap();
        let r = a.call_with_timeout(
            &sum,
            4,
            |xs| {
                entered_tx.send(()).unwrap();
                done_rx.recv_timeout(STALL).unwrap();
                xs.fill(1);
            },
            STALL,
        );
        assert_eq!(r, Ok(4));
    });
    entered_rx.recv_timeout(STALL).unwrap();
    let b = run.client();
    let ping = b.method::<u64, u64>("ping").unwrap();
    let r = b.call_timeout(&ping, &5, Duration::from_secs(2));
    done_tx.send(()).unwrap();
    slow.join().unwrap();
    assert_eq!(r, Ok(5));
    drop(b);
    run.finish();
}

#[test]
fn a_dropped_sessions_queued_requests_run_after_a_same_peer_reconnect() {
    let (gate, entered, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let (g, en, cn) = (gate.clone(), entered.clone(), count.clone());
    let run = start(small_lane(), move |s| {
        s.method("slow", move |x: &u64| {
            en.fetch_add(1, Ordering::AcqRel);
            while !g.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            *x
        })
        .unwrap();
        s.method("count", move |_: &u64| cn.fetch_add(1, Ordering::AcqRel))
            .unwrap();
    });
    {
        let c1 = run.client();
        let (slow, count) = (
            c1.method::<u64, u64>("slow").unwrap(),
            c1.method::<u64, u64>("count").unwrap(),
        );
        drop(c1.send(&slow, &1).unwrap());
        while entered.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        for _ in 0..3 {
            drop(c1.send(&count, &0).unwrap());
        }
    }
    let c2 = run.client();
    gate.store(true, Ordering::Release);
    let cm = c2.method::<u64, u64>("count").unwrap();
    assert_eq!(c2.call_timeout(&cm, &0, STALL).unwrap(), 0);
    drop(c2);
    run.finish();
}
