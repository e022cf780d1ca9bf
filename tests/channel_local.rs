//! The channel in one process: the server serves in a thread, the client
//! calls from the test's thread with a region handle of its own (its own
//! peer id). Typed calls of every shape and size, lookups, and every
//! typed error: unknown method, bad argument, oversized payloads, a
//! panicking handler, timeouts and late replies, a closed server.
//!
//! No sleep synchronises anything: a slow handler waits on a flag the
//! test sets; every blocking call has a deadline far above what it needs,
//! so a stall fails the test instead of hanging it.

use polycephaly::sync::shim::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use polycephaly::channel::{
    CallError, ChannelSpec, Client, ConnectError, LookupError, Method, OutError, Server,
    TryWaitError,
};
use polycephaly::region::Region;

const STALL: Duration = Duration::from_secs(20);
const LANE: usize = 4 << 20;

fn spec() -> ChannelSpec {
    ChannelSpec::new()
        .with_clients(2)
        .with_max_in_flight(4)
        .with_lane_len(LANE)
}

/// A server serving in a thread until told to stop.
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

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |c, &b| c.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn standard(server: &mut Server) {
    server.method("add", |a: &[u64; 2]| a[0] + a[1]).unwrap();
    server
        .method("sum", |xs: &[u64]| xs.iter().sum::<u64>())
        .unwrap();
    server.method("checksum", |b: &[u8]| checksum(b)).unwrap();
    server.method_slice("echo", |b: &[u8]| b.to_vec()).unwrap();
    server
        .method_in_place("iota", |n: &u64, out| {
            for (i, x) in out.alloc(*n as usize)?.iter_mut().enumerate() {
                *x = i as u64;
            }
            Ok(())
        })
        .unwrap();
    server.method("nothing", |_: &()| ()).unwrap();
    server
        .method("boom", |x: &u64| -> u64 {
            if *x == 13 {
                panic!("unlucky {x}");
            }
            *x
        })
        .unwrap();
}

#[test]
fn calls_of_every_shape_and_size() {
    let run = start(spec(), standard);
    let client = run.client();
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    let sum = client.method::<[u64], u64>("sum").unwrap();
    let check = client.method::<[u8], u64>("checksum").unwrap();
    let echo = client.method::<[u8], [u8]>("echo").unwrap();
    let iota = client.method::<u64, [u64]>("iota").unwrap();
    let nothing = client.method::<(), ()>("nothing").unwrap();
    assert_eq!(client.call(&add, &[2, 3]).unwrap(), 5);
    client.call(&nothing, &()).unwrap();
    let inline = client.inline_max();
    for len in [
        0,
        1,
        7,
        8,
        inline - 1,
        inline,
        inline + 1,
        100_000,
        LANE / 2,
    ] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        assert_eq!(
            client.call(&check, &bytes[..]).unwrap(),
            checksum(&bytes),
            "{len}"
        );
        let back = client.call(&echo, &bytes[..]).unwrap();
        assert_eq!(&back[..], &bytes[..], "{len}");
        assert_eq!(back.is_in_place(), len > inline, "{len}");
    }
    let words: Vec<u64> = (0..300_000).collect();
    assert_eq!(
        client.call(&sum, &words[..]).unwrap(),
        299_999 * 300_000 / 2
    );
    let built = client
        .call_with(&sum, 200_000, |xs| xs.iter_mut().for_each(|x| *x = 3))
        .unwrap();
    assert_eq!(built, 600_000);
    let small = client
        .call_with_timeout(&sum, 10, |xs| xs.fill(2), STALL)
        .unwrap();
    assert_eq!(small, 20);
    let t = client.try_send_with(&sum, 3, |xs| xs.fill(5)).unwrap();
    assert_eq!(t.wait_timeout(STALL).unwrap(), 15);
    let small = client.call(&iota, &10).unwrap();
    assert_eq!(&small[..], &(0..10).collect::<Vec<u64>>()[..]);
    assert!(!small.is_in_place());
    let big = client.call(&iota, &100_000).unwrap();
    assert!(
        big.is_in_place(),
        "built in the server's lane, read in place"
    );
    assert_eq!(big[99_999], 99_999);
    assert_eq!(big.into_vec().len(), 100_000);
    drop(small);
    drop(client);
    let stats = run.finish().stats();
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.replies, stats.requests);
}

#[test]
fn lookups_are_checked() {
    let run = start(spec(), standard);
    let client = run.client();
    assert_eq!(
        client.methods(),
        ["add", "sum", "checksum", "echo", "iota", "nothing", "boom"]
    );
    assert!(matches!(
        client.method::<u64, u64>("missing"),
        Err(LookupError::NotFound { .. })
    ));
    assert!(matches!(
        client.method::<[u32], u64>("sum"),
        Err(LookupError::WrongSignature { .. })
    ));
    assert!(matches!(
        client.method::<[u64], [u64]>("sum"),
        Err(LookupError::WrongSignature { .. })
    ));
    let add = client.method_by_id::<[u64; 2], u64>(0).unwrap();
    assert_eq!(client.call(&add, &[1, 1]).unwrap(), 2);
    assert!(client.method_by_id::<u8, u8>(200).is_err());
    drop(client);
    run.finish();
}

#[test]
fn unknown_methods_and_bad_arguments_are_answered() {
    let run = start(spec(), standard);
    let client = run.client();
    let unknown = Method::<u64, u64>::from_id(999);
    assert_eq!(
        client.call(&unknown, &1).unwrap_err(),
        CallError::UnknownMethod { method: 999 }
    );
    // "add" takes 16 bytes; send it 8.
    let wrong = Method::<u64, u64>::from_id(0);
    assert!(matches!(
        client.call(&wrong, &1),
        Err(CallError::BadArgument { .. })
    ));
    // "sum" answers a u64; read it as a slice of u32: 8 bytes are two.
    let as_slice = Method::<[u64], [u32]>::from_id(1);
    let r = client.call(&as_slice, &[5u64][..]).unwrap();
    assert_eq!(r.len(), 2);
    drop(r);
    // ...but not as a u128.
    let as_wide = Method::<[u64], u128>::from_id(1);
    assert!(matches!(
        client.call(&as_wide, &[5u64][..]),
        Err(CallError::BadReply { .. })
    ));
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    assert_eq!(client.call(&add, &[4, 4]).unwrap(), 8);
    drop(client);
    assert_eq!(run.finish().stats().errors, 2);
}

#[test]
fn oversized_payloads_are_typed_errors() {
    let run = start(spec(), |s| {
        standard(s);
        s.method_in_place(
            "huge",
            |_: &(), out: &mut polycephaly::channel::Out<'_, u8>| out.alloc(LANE + 1).map(|_| ()),
        )
        .unwrap();
        s.method_in_place(
            "twice",
            |_: &(), out: &mut polycephaly::channel::Out<'_, u8>| {
                out.alloc(1)?;
                match out.alloc(1) {
                    Err(OutError::AlreadyAllocated) => Ok(()),
                    _ => panic!("a second alloc must fail"),
                }
            },
        )
        .unwrap();
    });
    let client = run.client();
    let check = client.method::<[u8], u64>("checksum").unwrap();
    let too_big = vec![1u8; LANE + 1];
    assert!(matches!(
        client.call(&check, &too_big[..]),
        Err(CallError::TooLarge { bytes, max }) if bytes == LANE as u64 + 1 && max == LANE as u64
    ));
    let huge = client.method::<(), [u8]>("huge").unwrap();
    assert!(matches!(
        client.call(&huge, &()),
        Err(CallError::ReplyTooLarge { .. })
    ));
    let twice = client.method::<(), [u8]>("twice").unwrap();
    assert_eq!(client.call(&twice, &()).unwrap().len(), 1);
    // Still fine after all that.
    assert_eq!(
        client.call(&check, &[1u8, 2][..]).unwrap(),
        checksum(&[1, 2])
    );
    drop(client);
    run.finish();
}

#[test]
fn a_panicking_handler_gets_an_error_reply_and_the_server_lives() {
    let run = start(spec(), standard);
    let client = run.client();
    let boom = client.method::<u64, u64>("boom").unwrap();
    for round in 0..3 {
        match client.call(&boom, &13) {
            Err(CallError::HandlerPanicked { message }) => {
                assert!(message.contains("unlucky 13"), "{message}")
            }
            r => panic!("round {round}: {r:?}"),
        }
        assert_eq!(client.call(&boom, &12).unwrap(), 12);
    }
    drop(client);
    assert_eq!(run.finish().stats().errors, 3);
}

/// A handler that holds its reply until the test opens the gate.
fn gated(server: &mut Server, gate: Arc<AtomicBool>, entered: Arc<AtomicU64>) {
    server
        .method("slow", move |x: &u64| {
            entered.fetch_add(1, Ordering::AcqRel);
            while !gate.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            *x
        })
        .unwrap();
}

#[test]
fn timeouts_drop_late_replies() {
    let gate = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicU64::new(0));
    let (g, e) = (gate.clone(), entered.clone());
    let run = start(spec(), move |s| {
        standard(s);
        gated(s, g, e);
    });
    let client = run.client();
    let slow = client.method::<u64, u64>("slow").unwrap();
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    assert_eq!(
        client.call_timeout(&slow, &111, Duration::from_millis(20)),
        Err(CallError::TimedOut)
    );
    let t = client.send(&slow, &222).unwrap();
    let t = match t.try_wait() {
        Err(TryWaitError::NotReady(t)) => t,
        r => panic!("{r:?}"),
    };
    assert_eq!(
        t.wait_timeout(Duration::from_millis(1)),
        Err(CallError::TimedOut)
    );
    // A third ticket, dropped unwaited.
    drop(client.send(&slow, &333).unwrap());
    assert_eq!(
        client.in_flight(),
        3,
        "given up, but their replies will come"
    );
    gate.store(true, Ordering::Release);
    // The late replies come first and are dropped; this is ours.
    assert_eq!(client.call_timeout(&add, &[20, 22], STALL).unwrap(), 42);
    assert_eq!(client.in_flight(), 0);
    assert_eq!(entered.load(Ordering::Acquire), 3);
    drop(client);
    run.finish();
}

#[test]
fn tickets_are_matched_out_of_order_beyond_the_in_flight_limit() {
    let run = start(spec(), standard);
    let client = run.client();
    assert_eq!(client.max_in_flight(), 4);
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    let echo = client.method::<[u8], [u8]>("echo").unwrap();
    // 20 tickets with at most 4 in flight: sends read replies ahead and keep
    // them for their tickets.
    let tickets: Vec<_> = (0..20u64)
        .map(|i| client.send(&add, &[i, 1000]).unwrap())
        .collect();
    let mut tickets: Vec<_> = tickets.into_iter().enumerate().collect();
    // Every other one first, from the end, then the rest.
    tickets.sort_by_key(|(i, _)| (i % 2 == 0, std::cmp::Reverse(*i)));
    for (i, t) in tickets {
        assert_eq!(
            t.wait_deadline(Some(std::time::Instant::now() + STALL))
                .unwrap(),
            i as u64 + 1000
        );
    }
    // Large replies kept for their tickets stay in the server's lane.
    let big: Vec<u8> = (0..50_000).map(|i| i as u8).collect();
    let a = client.send(&echo, &big[..]).unwrap();
    let b = client.send(&echo, &big[..100]).unwrap();
    assert_eq!(&b.wait().unwrap()[..], &big[..100]);
    let a = a.wait().unwrap();
    assert!(a.is_in_place());
    assert_eq!(&a[..], &big[..]);
    drop(a);
    drop(client);
    run.finish();
}

#[test]
fn a_closed_server_is_peer_dead() {
    let run = start(spec(), standard);
    let client = run.client();
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    assert_eq!(client.call(&add, &[1, 2]).unwrap(), 3);
    let region = run.region.clone();
    drop(run.finish());
    assert_eq!(
        client.call_timeout(&add, &[1, 2], STALL),
        Err(CallError::PeerDead)
    );
    assert!(matches!(
        Client::attach_timeout(&region, STALL),
        Err(ConnectError::PeerDead)
    ));
}

#[test]
fn slots_are_taken_and_given_back() {
    let run = start(spec(), standard);
    let a = run.client();
    let b = run.client();
    assert_ne!(a.slot(), b.slot());
    assert!(matches!(
        Client::try_attach(&run.region),
        Err(ConnectError::Full { slots: 2 })
    ));
    let slot = a.slot();
    drop(a);
    let c = run.client();
    assert_eq!(c.slot(), slot, "the slot and its reply ring are reused");
    let add = c.method::<[u64; 2], u64>("add").unwrap();
    assert_eq!(c.call(&add, &[3, 4]).unwrap(), 7);
    assert_eq!(b.call(&add, &[5, 6]).unwrap(), 11);
    drop((b, c));
    run.finish();
}

#[test]
fn named_channels_meet_by_name() {
    let name = format!("polycephaly-test-channel-{}", std::process::id());
    let mut server = Server::bind(&name, spec()).unwrap();
    standard(&mut server);
    assert!(matches!(
        Server::bind(&name, spec()),
        Err(polycephaly::channel::BindError::InUse { .. })
    ));
    // Not serving yet: a client that does not wait is told so.
    assert!(matches!(
        Client::try_connect(&name),
        Err(ConnectError::NotServing)
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        server.serve_until(|| flag.load(Ordering::Relaxed)).unwrap();
    });
    let client = Client::connect_timeout(&name, STALL).unwrap();
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    assert_eq!(client.call(&add, &[40, 2]).unwrap(), 42);
    drop(client);
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    // The server unlinked the name when it was dropped.
    assert!(matches!(
        Client::try_connect(&name),
        Err(ConnectError::Open(_))
    ));
    assert!(matches!(
        Client::connect_timeout(&name, Duration::from_millis(5)),
        Err(ConnectError::TimedOut)
    ));
}

#[test]
fn with_no_inline_payloads_everything_goes_by_handle() {
    let run = start(spec().with_inline_max(0).with_max_in_flight(2), standard);
    let client = run.client();
    assert_eq!(client.inline_max(), 0);
    let add = client.method::<[u64; 2], u64>("add").unwrap();
    let echo = client.method::<[u8], [u8]>("echo").unwrap();
    let boom = client.method::<u64, u64>("boom").unwrap();
    let nothing = client.method::<(), ()>("nothing").unwrap();
    for i in 0..50u64 {
        assert_eq!(client.call(&add, &[i, 1]).unwrap(), i + 1);
        let back = client.call(&echo, &[i as u8; 3][..]).unwrap();
        assert!(back.is_in_place());
        assert_eq!(&back[..], &[i as u8; 3]);
        drop(back);
        client.call(&nothing, &()).unwrap();
    }
    // Error replies (a message of up to 256 bytes) still fit the ring.
    for _ in 0..10 {
        assert!(matches!(
            client.call(&boom, &13),
            Err(CallError::HandlerPanicked { .. })
        ));
    }
    drop(client);
    run.finish();
}
