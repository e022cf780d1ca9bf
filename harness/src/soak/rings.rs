//! The soak's rings: an SPSC producer process and `producers` MPSC
//! producer processes, this process consuming; every frame checked.

use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, RecvError, Sender, mpsc, spsc};
use polycephaly::sync::shim::Ordering;

use super::{
    Cfg, Chaos, END_TAG, HEAD, LOOK, MAX_SLOTS, NEXT_VAR, Quiet, Report, SLOT_VAR, SLOTS, STALL,
    STOP, Slot, check_frame, finish, len_of, lock, start_worker, stopped, word, write_frame,
    writer_quiet,
};

// SPSC: one producer process, this thread consumes.

const RING: SectionId = SectionId(0);
const RING_WORDS: SectionId = SectionId(1);

/// The SPSC producer: frames from `next` on, counting its commits, until
/// told to stop (then its end frame, with its count).
pub(super) fn spsc_producer(region: &Region, next: u64) -> Result<(), String> {
    let mut tx = spsc::Producer::attach(region, RING).map_err(|e| e.to_string())?;
    let mut seq = next;
    let mut buf = vec![0u8; HEAD + 1024];
    while !stopped(region, RING_WORDS) {
        let n = HEAD + len_of(seq, 1024);
        write_frame(&mut buf[..n], 0, seq);
        let mut claim = tx.claim_timeout(n, STALL).map_err(|e| e.to_string())?;
        claim.copy_from_slice(&buf[..n]);
        claim.commit();
        seq += 1;
        // Release: read by the consumer after our death.
        word(region, RING_WORDS, SLOTS).store(seq, Ordering::Release);
    }
    let mut claim = tx.claim_timeout(8, STALL).map_err(|e| e.to_string())?;
    claim.copy_from_slice(&seq.to_le_bytes());
    claim.set_tag(END_TAG);
    claim.commit();
    Ok(())
}

pub(super) fn spsc_component(cfg: &Cfg, chaos: &Chaos) -> Report {
    let mut r = Report::new("spsc", "frames");
    if let Err(e) = spsc_run(cfg, chaos, &mut r) {
        r.discrepancy(e);
    }
    r
}

fn spsc_run(cfg: &Cfg, chaos: &Chaos, r: &mut Report) -> Result<(), String> {
    let region = Region::builder()
        .with(spsc::Spec::new(1 << 16).map_err(|e| e.to_string())?)
        .section(SectionKind::Raw, 64 * MAX_SLOTS)
        .build()
        .map_err(|e| e.to_string())?;
    let mut rx = spsc::Consumer::attach(&region, RING).map_err(|e| e.to_string())?;
    let slot: Slot = Arc::default();
    chaos.register("spsc", &slot);
    let spawn = |next: u64| -> Result<(), String> {
        // Relaxed: the producer is not started yet.
        word(&region, RING_WORDS, SLOTS).store(next, Ordering::Relaxed);
        let child = start_worker("spsc", &region, None, &[(NEXT_VAR, next.to_string())])
            .map_err(|e| e.to_string())?;
        *lock(&slot) = Some(child);
        Ok(())
    };
    let mut next = 0u64;
    spawn(next)?;
    let mut buf = Vec::new();
    let mut quiet = Instant::now();
    let mut seen_dead = false;
    loop {
        if Instant::now() >= cfg.deadline {
            // Relaxed: a stop request.
            word(&region, RING_WORDS, STOP).store(1, Ordering::Relaxed);
        }
        match rx.recv_timeout(&mut buf, LOOK) {
            Ok(END_TAG) => {
                let n = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
                if n != next {
                    r.discrepancy(format!("the producer sent {n} frames, {next} arrived"));
                }
                break;
            }
            Ok(_) => {
                quiet = Instant::now();
                match check_frame(&buf) {
                    Ok(h) if h.seq == next => {
                        next += 1;
                        r.count += 1;
                        r.bytes += buf.len() as u64;
                    }
                    Ok(h) => {
                        r.discrepancy(format!("frame {} where {next} was due", h.seq));
                        next = h.seq + 1;
                    }
                    Err(e) => r.discrepancy(e),
                }
            }
            Err(e @ (RecvError::TimedOut | RecvError::PeerDead)) => {
                if writer_quiet(e, &slot, &mut seen_dead, quiet, r, "producer")? == Quiet::Wait {
                    continue;
                }
                // Acquire: the producer is dead and reaped.
                let committed = word(&region, RING_WORDS, SLOTS).load(Ordering::Acquire);
                if next != committed && next != committed + 1 {
                    r.discrepancy(format!("{next} frames arrived, {committed} committed"));
                }
                if Instant::now() >= cfg.deadline {
                    break;
                }
                spawn(next)?;
                quiet = Instant::now();
            }
            Err(e) => return Err(format!("the consumer: {e}")),
        }
    }
    finish(&slot, r);
    Ok(())
}

// MPSC: `producers` producer processes, this thread consumes.

/// An MPSC producer in slot `slot`, incarnation `inc`: frames from 0,
/// counting its commits in its slot's word.
pub(super) fn mpsc_producer(region: &Region, slot: u64, inc: u64) -> Result<(), String> {
    let mut tx = mpsc::Producer::attach(region, RING).map_err(|e| e.to_string())?;
    let tag = (slot as u32) << 16 | (inc as u32 & 0xFFFF);
    let mut seq = 0u64;
    let mut buf = vec![0u8; HEAD + 512];
    let words = word(region, RING_WORDS, SLOTS + slot as usize);
    while !stopped(region, RING_WORDS) {
        let n = HEAD + len_of(seq ^ slot << 40, 512);
        write_frame(&mut buf[..n], tag, seq);
        let mut claim = tx.claim_timeout(n, STALL).map_err(|e| e.to_string())?;
        claim.copy_from_slice(&buf[..n]);
        claim.set_tag(tag);
        claim.commit().map_err(|e| e.to_string())?;
        seq += 1;
        // Release: read by the consumer after our death.
        words.store(seq, Ordering::Release);
    }
    let mut claim = tx.claim_timeout(16, STALL).map_err(|e| e.to_string())?;
    claim[..8].copy_from_slice(&seq.to_le_bytes());
    claim[8..].copy_from_slice(&u64::from(tag).to_le_bytes());
    claim.set_tag(END_TAG);
    claim.commit().map_err(|e| e.to_string())
}

/// The consumer's view of one producer slot.
#[derive(Debug, Default)]
struct Stream {
    /// The incarnation whose frames arrive now, and the next one due.
    inc: u32,
    next: u64,
    /// Incarnations that died: their committed count, to check once their
    /// frames are all in (when the next incarnation's first frame comes,
    /// or at the end).
    dead: Vec<(u32, u64)>,
    ended: bool,
}

impl Stream {
    /// Closes the current incarnation's count against what it committed,
    /// and those of dead incarnations before `upto` that sent nothing.
    fn close(&mut self, r: &mut Report, slot: usize, upto: u32) {
        let (inc, next) = (self.inc, self.next);
        self.dead.retain(|&(i, committed)| {
            let delivered = match i {
                i if i == inc => next,
                i if i < upto => 0,
                _ => return true,
            };
            if delivered != committed && delivered != committed + 1 {
                r.discrepancy(format!(
                    "producer {slot}.{i}: {delivered} frames arrived, {committed} committed"
                ));
            }
            false
        });
    }

    /// Moves on to incarnation `inc` (a frame of it came).
    fn switch(&mut self, r: &mut Report, slot: usize, inc: u32) -> bool {
        if inc == self.inc {
            return true;
        }
        if inc < self.inc {
            r.discrepancy(format!("a frame of {slot}.{inc} after {slot}.{}", self.inc));
            return false;
        }
        self.close(r, slot, inc);
        self.inc = inc;
        self.next = 0;
        true
    }
}

pub(super) fn mpsc_component(cfg: &Cfg, chaos: &Chaos) -> Report {
    let mut r = Report::new("mpsc", "frames");
    if let Err(e) = mpsc_run(cfg, chaos, &mut r) {
        r.discrepancy(e);
    }
    r
}

fn mpsc_run(cfg: &Cfg, chaos: &Chaos, r: &mut Report) -> Result<(), String> {
    let region = Region::builder()
        .with(mpsc::Spec::new(1 << 16).map_err(|e| e.to_string())?)
        .section(SectionKind::Raw, 64 * MAX_SLOTS)
        .build()
        .map_err(|e| e.to_string())?;
    let mut rx = mpsc::Consumer::attach(&region, RING).map_err(|e| e.to_string())?;
    rx.set_claim_timeout(Duration::from_millis(20));
    let p = cfg.producers;
    let slots: Vec<Slot> = (0..p).map(|_| Slot::default()).collect();
    for s in &slots {
        chaos.register("mpsc", s);
    }
    let mut streams: Vec<Stream> = (0..p).map(|_| Stream::default()).collect();
    let mut incs = vec![0u32; p];
    let spawn = |i: usize, inc: u32| -> Result<(), String> {
        // Relaxed: the producer is not started yet.
        word(&region, RING_WORDS, SLOTS + i).store(0, Ordering::Relaxed);
        let child = start_worker(
            "mpsc",
            &region,
            None,
            &[(SLOT_VAR, i.to_string()), (NEXT_VAR, inc.to_string())],
        )
        .map_err(|e| e.to_string())?;
        *lock(&slots[i]) = Some(child);
        Ok(())
    };
    for i in 0..p {
        spawn(i, 0)?;
    }
    let mut quiet = Instant::now();
    let mut stopping = false;
    loop {
        if !stopping && Instant::now() >= cfg.deadline {
            // Relaxed: a stop request.
            word(&region, RING_WORDS, STOP).store(1, Ordering::Relaxed);
            stopping = true;
        }
        let got = rx.read_batch_deadline(256, Some(Instant::now() + LOOK), |tag, bytes| {
            on_frame(&mut streams, r, tag, bytes);
        });
        match got {
            Ok(_) => quiet = Instant::now(),
            Err(RecvError::TimedOut) => {}
            Err(e) => return Err(format!("the consumer: {e}")),
        }
        if quiet.elapsed() > STALL {
            return Err("no frame for 30 s".into());
        }
        // Deaths: record what the dead committed, start the next one.
        for i in 0..p {
            let died = {
                let mut c = lock(&slots[i]);
                match c.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => {
                        c.take();
                        Some(status)
                    }
                    _ => None,
                }
            };
            let Some(status) = died else { continue };
            if status.success() {
                // Stopped: its end frame is on its way.
                continue;
            }
            r.deaths += 1;
            if status.code().is_some() {
                r.discrepancy(format!("producer {i} failed: {status}"));
            }
            // Acquire: the producer is dead and reaped.
            let committed = word(&region, RING_WORDS, SLOTS + i).load(Ordering::Acquire);
            streams[i].dead.push((incs[i], committed));
            if stopping {
                streams[i].ended = true;
            } else {
                incs[i] = (incs[i] + 1) & 0xFFFF;
                spawn(i, incs[i])?;
            }
        }
        if stopping && streams.iter().all(|s| s.ended) {
            break;
        }
    }
    // The last frames of producers that died at the end.
    while let Ok(n) = rx.read_batch_deadline(256, Some(Instant::now() + LOOK), |tag, bytes| {
        on_frame(&mut streams, r, tag, bytes);
    }) {
        if n == 0 {
            break;
        }
    }
    for (i, s) in streams.iter_mut().enumerate() {
        s.close(r, i, u32::MAX);
    }
    for s in &slots {
        finish(s, r);
    }
    Ok(())
}

/// Checks one frame of the MPSC ring against its producer's stream.
fn on_frame(streams: &mut [Stream], r: &mut Report, tag: u32, bytes: &[u8]) {
    if tag == END_TAG {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let t = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()) as u32;
        let (i, inc) = ((t >> 16) as usize, t & 0xFFFF);
        let Some(s) = streams.get_mut(i) else {
            return r.discrepancy(format!("an end frame of {i}.{inc}"));
        };
        if s.switch(r, i, inc) {
            if s.next != n {
                r.discrepancy(format!("producer {i}: sent {n}, {} arrived", s.next));
            }
            s.ended = true;
        }
        return;
    }
    let (i, inc) = ((tag >> 16) as usize, tag & 0xFFFF);
    let Some(s) = streams.get_mut(i) else {
        return r.discrepancy(format!("a frame of producer {i}"));
    };
    if !s.switch(r, i, inc) {
        return;
    }
    match check_frame(bytes) {
        Ok(h) if h.seq == s.next => {
            s.next += 1;
            r.count += 1;
            r.bytes += bytes.len() as u64;
        }
        Ok(h) => {
            r.discrepancy(format!(
                "{i}.{inc}: frame {} where {} was due",
                h.seq, s.next
            ));
            s.next = h.seq + 1;
        }
        Err(e) => r.discrepancy(e),
    }
}
