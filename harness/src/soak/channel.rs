//! The soak's channel: a server (a thread of this process) and
//! `producers` client processes; every reply checked by its client.

use std::process::Child;
use std::time::Instant;

use polycephaly::channel::{ChannelSpec, Client, Server};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::sync::shim::{AtomicBool, Ordering};

use super::{
    Cfg, Chaos, LOOK, MAX_SLOTS, Report, SLOT_VAR, SLOTS, STALL, STOP, Slot, checksum, fill,
    finish, lock, splitmix, start_worker, stopped, word,
};

const CALLS: usize = 0;
const BYTES: usize = 1;
const BAD: usize = 2;
/// Words per client slot in the words region (after the stop word).
const PER_CLIENT: usize = 4;

/// A client: calls `echo` and `checksum` with payloads of every size
/// (inline, and by arena handle up to 1 MiB) until told to stop; every
/// reply checked; counts and discrepancies in its words.
pub(super) fn channel_client(region: &Region, words: &Region, slot: u64) -> Result<(), String> {
    let client = Client::attach_timeout(region, STALL).map_err(|e| e.to_string())?;
    let echo = client
        .method::<[u8], [u8]>("echo")
        .map_err(|e| e.to_string())?;
    let check = client
        .method::<[u8], u64>("checksum")
        .map_err(|e| e.to_string())?;
    let w = |i: usize| word(words, SectionId(0), SLOTS + slot as usize * PER_CLIENT + i);
    let mut seq = splitmix(slot ^ u64::from(std::process::id()) << 20);
    let mut payload = Vec::new();
    while !stopped(words, SectionId(0)) {
        seq = splitmix(seq);
        let len = if seq % 16 == 0 {
            (seq >> 8) as usize % (1 << 20)
        } else {
            (seq >> 8) as usize % 4096
        };
        payload.resize(len, 0);
        fill(seq, &mut payload);
        let ok = if seq % 2 == 0 {
            let got = client
                .call_timeout(&echo, &payload[..], STALL)
                .map_err(|e| format!("echo of {len}: {e}"))?;
            got[..] == payload[..]
        } else {
            let got = client
                .call_timeout(&check, &payload[..], STALL)
                .map_err(|e| format!("checksum of {len}: {e}"))?;
            got == checksum(&payload)
        };
        // Relaxed: counts, read once the clients stopped.
        if ok {
            w(CALLS).fetch_add(1, Ordering::Relaxed);
            w(BYTES).fetch_add(2 * len as u64, Ordering::Relaxed);
        } else {
            w(BAD).fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

pub(super) fn channel_component(cfg: &Cfg, chaos: &Chaos) -> Report {
    let mut r = Report::new("channel", "calls");
    if let Err(e) = channel_run(cfg, chaos, &mut r) {
        r.discrepancy(e);
    }
    r
}

fn channel_run(cfg: &Cfg, chaos: &Chaos, r: &mut Report) -> Result<(), String> {
    let p = cfg.producers;
    let spec = ChannelSpec::new()
        .with_clients(p as u16 + 1)
        .with_max_in_flight(4)
        .with_lane_len(4 << 20);
    let mut server = Server::anonymous(spec).map_err(|e| e.to_string())?;
    server.set_stall_timeout(STALL);
    server
        .method_slice("echo", |b: &[u8]| b.to_vec())
        .map_err(|e| e.to_string())?;
    server
        .method("checksum", |b: &[u8]| checksum(b))
        .map_err(|e| e.to_string())?;
    let region = server.region().clone();
    let words = Region::builder()
        .section(SectionKind::Raw, 8 * (SLOTS + PER_CLIENT * MAX_SLOTS))
        .build()
        .map_err(|e| e.to_string())?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<(), String> {
        let serving = s.spawn(|| {
            let r = server.serve_until(|| stop.load(Ordering::Relaxed));
            (r.map_err(|e| e.to_string()), server.stats())
        });
        let slots: Vec<Slot> = (0..p).map(|_| Slot::default()).collect();
        for sl in &slots {
            chaos.register("channel", sl);
        }
        let spawn = |i: usize| -> Result<(), String> {
            let child = start_worker(
                "channel",
                &region,
                Some(&words),
                &[(SLOT_VAR, i.to_string())],
            )
            .map_err(|e| e.to_string())?;
            *lock(&slots[i]) = Some(child);
            Ok(())
        };
        for i in 0..p {
            spawn(i)?;
        }
        while Instant::now() < cfg.deadline {
            std::thread::sleep(LOOK);
            for (i, sl) in slots.iter().enumerate() {
                let status = {
                    let mut c = lock(sl);
                    match c.as_mut().map(Child::try_wait) {
                        Some(Ok(Some(status))) => {
                            c.take();
                            Some(status)
                        }
                        _ => None,
                    }
                };
                let Some(status) = status else { continue };
                r.deaths += 1;
                if status.code().is_some() {
                    r.discrepancy(format!("client {i} failed: {status}"));
                }
                spawn(i)?;
            }
        }
        // Relaxed: a stop request.
        word(&words, SectionId(0), STOP).store(1, Ordering::Relaxed);
        for sl in &slots {
            finish(sl, r);
        }
        stop.store(true, Ordering::Relaxed);
        let (served, stats) = serving.join().map_err(|_| "the server panicked")?;
        served.map_err(|e| format!("the server: {e}"))?;
        if stats.errors != 0 {
            r.discrepancy(format!("the server answered {} errors", stats.errors));
        }
        Ok(())
    })?;
    for i in 0..p {
        let w = |k: usize| {
            word(&words, SectionId(0), SLOTS + i * PER_CLIENT + k).load(Ordering::Relaxed)
        };
        r.count += w(CALLS);
        r.bytes += w(BYTES);
        for _ in 0..w(BAD) {
            r.discrepancy(format!("client {i}: a reply that is not its request's"));
        }
    }
    Ok(())
}
