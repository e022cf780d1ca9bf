//! Two unrelated processes and a named channel: one serves, the other
//! calls, and they meet by name under /dev/shm.
//!
//! ```text
//! cargo run --release --example channel -- server [NAME]    # in one terminal
//! cargo run --release --example channel -- client [NAME]    # in another
//! cargo run --release --example channel                     # both: starts the server itself
//! ```
//!
//! The client calls a method with a small argument (inline in the frame),
//! sums a 64 MB array (sent by handle through its arena lane), asks for a
//! large result the server builds in place (read in place), keeps a few
//! calls in flight, and finally asks the server to stop.

use std::process::Command;
use std::time::{Duration, Instant};

use polycephaly::channel::{CallError, ChannelSpec, Client, Out, Server};
// The crate's atomics (std's, behind a shim the loom build swaps).
use polycephaly::sync::shim::{AtomicBool, Ordering};

const DEFAULT_NAME: &str = "polycephaly-example-channel";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let role = args.next();
    let name = args.next().unwrap_or_else(|| DEFAULT_NAME.to_owned());
    match role.as_deref() {
        Some("server") => serve(&name),
        Some("client") => call(&name),
        None => {
            // Both roles: the server is this program again, started by
            // name only (no descriptor is handed over).
            let mut server = Command::new(std::env::current_exe()?)
                .args(["server", &name])
                .spawn()?;
            let called = call(&name);
            let status = server.wait()?;
            called?;
            if !status.success() {
                return Err(format!("the server failed: {status}").into());
            }
            Ok(())
        }
        Some(other) => Err(format!("unknown role {other:?}: server or client").into()),
    }
}

fn serve(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let spec = ChannelSpec::new().with_clients(4).with_lane_len(128 << 20);
    let mut server = Server::bind(name, spec)?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    server.method("add", |a: &[u64; 2]| a[0].wrapping_add(a[1]))?;
    server.method("sum", |xs: &[u64]| {
        xs.iter().fold(0u64, |s, x| s.wrapping_add(*x))
    })?;
    server.method_in_place("squares", |n: &u64, out: &mut Out<'_, u64>| {
        for (i, x) in out.alloc(*n as usize)?.iter_mut().enumerate() {
            *x = (i as u64) * (i as u64);
        }
        Ok(())
    })?;
    server.method("stop", move |_: &()| {
        flag.store(true, Ordering::Relaxed);
    })?;
    println!("server: serving {name}");
    server.serve_until(|| stop.load(Ordering::Relaxed))?;
    let s = server.stats();
    println!(
        "server: {} requests, {} replies, {} errors; bye",
        s.requests, s.replies, s.errors
    );
    Ok(())
}

fn call(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect_timeout(name, Duration::from_secs(10))?;
    let add = client.method::<[u64; 2], u64>("add")?;
    let sum = client.method::<[u64], u64>("sum")?;
    let squares = client.method::<u64, [u64]>("squares")?;
    let stop = client.method::<(), ()>("stop")?;

    let start = Instant::now();
    let n = 100_000u64;
    for i in 0..n {
        assert_eq!(client.call(&add, &[i, 1])?, i + 1);
    }
    let per_call = start.elapsed() / n as u32;
    println!("client: {n} small calls, {per_call:?} each");

    // 64 MB by handle, built in place in the client's lane.
    let words = 8 << 20;
    let start = Instant::now();
    let total = client.call_with(&sum, words, |xs| {
        for (i, x) in xs.iter_mut().enumerate() {
            *x = i as u64;
        }
    })?;
    let want = (words as u64 - 1) * words as u64 / 2;
    assert_eq!(total, want);
    println!("client: summed 64 MB in {:?}", start.elapsed());

    // A large result, built in place by the server and read in place.
    let sq = client.call(&squares, &(1 << 20))?;
    assert!(sq.is_in_place());
    assert_eq!(sq[1000], 1_000_000);
    drop(sq);

    // Calls in flight, answered in any order they are waited on.
    let tickets = (0..8u64)
        .map(|i| client.send(&add, &[i, i]))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, t) in tickets.into_iter().enumerate().rev() {
        assert_eq!(t.wait()?, 2 * i as u64);
    }

    // A method the server does not have is an error reply, not a hang.
    let missing = polycephaly::channel::Method::<u64, u64>::from_id(999);
    assert!(matches!(
        client.call(&missing, &0),
        Err(CallError::UnknownMethod { method: 999 })
    ));

    client.call(&stop, &())?;
    println!("client: done");
    Ok(())
}
