//! The soak's arena: a writer process hands arrays on (handles through
//! an SPSC ring), this process reads each in place and checks it.

use std::sync::Arc;
use std::time::Instant;

use polycephaly::arena::{ArenaReader, ArenaSpec, ArenaWriter, BlockHandle};
use polycephaly::region::{Region, SectionId, SectionKind};
use polycephaly::ring::{Receiver, RecvError, Sender, spsc};
use polycephaly::sync::shim::Ordering;

use super::{
    Cfg, Chaos, END_TAG, LOOK, MAX_SLOTS, NEXT_VAR, Quiet, Report, SLOTS, STALL, STOP, Slot,
    checksum, finish, lock, splitmix, start_worker, stopped, word, writer_quiet,
};

const ARENA: SectionId = SectionId(0);
const HANDLES: SectionId = SectionId(1);
const ARENA_WORDS: SectionId = SectionId(2);
const LANE: usize = 32 << 20;

/// What travels with an array's handle.
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Sent {
    handle: BlockHandle,
    seq: u64,
    sum: u64,
}

/// An array's length in words: mostly up to 8 K, sometimes up to 1 MiB.
fn words_of(seq: u64) -> usize {
    let r = splitmix(seq ^ 0xA11A);
    (if r % 16 == 0 { r % (1 << 17) } else { r % 8192 }) as usize
}

fn array_word(seq: u64, k: usize) -> u64 {
    splitmix(seq << 24 ^ k as u64)
}

/// The arena writer: arrays from `next` on, each published for one read
/// and its handle sent, counting what it handed on; until told to stop.
pub(super) fn arena_writer(region: &Region, next: u64) -> Result<(), String> {
    let mut w = ArenaWriter::attach_lane(region, ARENA, 0).map_err(|e| e.to_string())?;
    let mut tx = spsc::Producer::attach(region, HANDLES).map_err(|e| e.to_string())?;
    let mut seq = next;
    while !stopped(region, ARENA_WORDS) {
        let n = words_of(seq);
        let block = w
            .alloc_uninit_timeout::<u64>(n, STALL)
            .map_err(|e| format!("array {seq}: {e}"))?
            .init_with(|k| array_word(seq, k));
        let sum = checksum(bytemuck::cast_slice(&block));
        let handle = block.publish_for(1);
        let sent = Sent { handle, seq, sum };
        let mut claim = tx
            .claim_timeout(size_of::<Sent>(), STALL)
            .map_err(|e| e.to_string())?;
        claim.copy_from_slice(bytemuck::bytes_of(&sent));
        claim.commit();
        seq += 1;
        // Release: read by the reader after our death.
        word(region, ARENA_WORDS, SLOTS).store(seq, Ordering::Release);
    }
    let mut claim = tx.claim_timeout(8, STALL).map_err(|e| e.to_string())?;
    claim.copy_from_slice(&seq.to_le_bytes());
    claim.set_tag(END_TAG);
    claim.commit();
    Ok(())
}

pub(super) fn arena_component(cfg: &Cfg, chaos: &Chaos) -> Report {
    let mut r = Report::new("arena", "arrays");
    if let Err(e) = arena_run(cfg, chaos, &mut r) {
        r.discrepancy(e);
    }
    r
}

fn arena_run(cfg: &Cfg, chaos: &Chaos, r: &mut Report) -> Result<(), String> {
    let spec = ArenaSpec::new(1, LANE).with_blocks(64);
    let region = Region::builder()
        .section(
            SectionKind::Arena,
            spec.section_len().map_err(|e| e.to_string())?,
        )
        .with(spsc::Spec::new(1 << 12).map_err(|e| e.to_string())?)
        .section(SectionKind::Raw, 64 * MAX_SLOTS)
        .build()
        .map_err(|e| e.to_string())?;
    spec.format(&region, ARENA).map_err(|e| e.to_string())?;
    let reader = ArenaReader::attach(&region, ARENA).map_err(|e| e.to_string())?;
    let mut rx = spsc::Consumer::attach(&region, HANDLES).map_err(|e| e.to_string())?;
    let slot: Slot = Arc::default();
    chaos.register("arena", &slot);
    let spawn = |next: u64| -> Result<(), String> {
        // Relaxed: the writer is not started yet.
        word(&region, ARENA_WORDS, SLOTS).store(next, Ordering::Relaxed);
        let child = start_worker("arena", &region, None, &[(NEXT_VAR, next.to_string())])
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
            word(&region, ARENA_WORDS, STOP).store(1, Ordering::Relaxed);
        }
        match rx.recv_timeout(&mut buf, LOOK) {
            Ok(END_TAG) => {
                let n = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
                if n != next {
                    r.discrepancy(format!("the writer handed on {n} arrays, {next} arrived"));
                }
                break;
            }
            Ok(_) if buf.len() == size_of::<Sent>() => {
                quiet = Instant::now();
                let sent: Sent = bytemuck::pod_read_unaligned(&buf);
                if sent.seq != next {
                    r.discrepancy(format!("array {} where {next} was due", sent.seq));
                }
                next = sent.seq + 1;
                match reader.read::<u64>(&sent.handle) {
                    Ok(g) => {
                        let ok = checksum(bytemuck::cast_slice(&g)) == sent.sum
                            && g.len() == words_of(sent.seq)
                            && g.iter()
                                .enumerate()
                                .all(|(k, &x)| x == array_word(sent.seq, k));
                        if !ok {
                            r.discrepancy(format!("array {}: contents", sent.seq));
                        }
                        r.count += 1;
                        r.bytes += 8 * g.len() as u64;
                    }
                    Err(e) => r.discrepancy(format!("array {}: {e}", sent.seq)),
                }
            }
            Ok(_) => r.discrepancy(format!("a frame of {} bytes", buf.len())),
            Err(e @ (RecvError::TimedOut | RecvError::PeerDead)) => {
                if writer_quiet(e, &slot, &mut seen_dead, quiet, r, "writer")? == Quiet::Wait {
                    continue;
                }
                // Acquire: the writer is dead and reaped.
                let sent = word(&region, ARENA_WORDS, SLOTS).load(Ordering::Acquire);
                if next != sent && next != sent + 1 {
                    r.discrepancy(format!("{next} arrays arrived, {sent} handed on"));
                }
                if Instant::now() >= cfg.deadline {
                    break;
                }
                spawn(next)?;
                quiet = Instant::now();
            }
            Err(e) => return Err(format!("the reader: {e}")),
        }
    }
    finish(&slot, r);
    Ok(())
}
