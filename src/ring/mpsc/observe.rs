//! A read-only look at an MPSC ring section (see `ring::observe`).

use core::mem::offset_of;

use super::layout::{
    ABANDONED, CLAIMED, COMMITTED, CONTROL_LEN, Control, HeadWords, Header, MAX_CAPACITY,
    MAX_PRODUCERS, PADDING, Record, Roles,
};
use crate::region::{ObserveError, Observer, SectionId, SectionKind};
use crate::ring::frame::{MIN_CAPACITY, max_payload};
use crate::ring::observe::{RingState, Step, holder, settle};
use crate::sync::{Announced, Doorbell};

/// What the MPSC ring in section `id` holds now, read through `obs`
/// without writing anything: positions (with what was consumed and not yet released), the
/// frames between head and tail by kind (published, claimed, abandoned,
/// not yet written), the consumer and the attached producers, the
/// doorbells' waiters, and what is inconsistent.
///
/// # Errors
/// [`ObserveError::NoSuchSection`], [`ObserveError::WrongKind`], or
/// [`ObserveError::Bad`] when the section's length cannot be a ring's.
pub fn observe(obs: &Observer, id: SectionId) -> Result<RingState, ObserveError> {
    let s = obs.section_of(id, SectionKind::MpscRing)?;
    let capacity = s.len.saturating_sub(CONTROL_LEN);
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(ObserveError::Bad {
            id: id.0,
            what: format!(
                "{} bytes cannot be an MPSC ring (control block plus a power-of-two capacity)",
                s.len
            ),
        });
    }
    let cap = capacity as u64;
    let head_at = offset_of!(Control, head) + offset_of!(HeadWords, pos);
    let positions = || {
        let head = obs.u64_at(id, head_at, "head")?;
        let tail = obs.u64_at(id, offset_of!(Control, tail), "tail")?;
        Ok((head, tail))
    };
    let decode = |idx: u64| -> Result<Step, String> {
        let word = obs
            .load_u64(id, CONTROL_LEN + idx as usize)
            .ok_or_else(|| format!("header at index {idx} outside the section"))?;
        if word == 0 {
            return Ok(Step::Unwritten);
        }
        let h = Header::decode(word);
        let len = u64::from(h.len);
        Ok(match h.kind {
            COMMITTED => Step::Message(len),
            PADDING => Step::Padding(len),
            CLAIMED => Step::Claimed(len),
            ABANDONED => Step::Abandoned(len),
            k => return Err(format!("header {word:#x} has unknown kind {k}")),
        })
    };
    let max = max_payload(capacity) as u64;
    let (head, tail, frames, mut problems) = settle(cap, max, positions, decode)?;
    let release_end = obs.u64_at(
        id,
        offset_of!(Control, head) + offset_of!(HeadWords, release_end),
        "release_end",
    )?;
    // Read after the positions: a release may have started since (ahead
    // of the head read), but never from behind it.
    if release_end < head {
        problems.push(format!("release_end {release_end} is behind head {head}"));
    }
    let roles = offset_of!(Control, roles);
    let consumer = holder(
        obs.u32_at(id, roles + offset_of!(Roles, consumer), "consumer")?,
        "consumer",
        &mut problems,
    );
    let attaches = obs.u32_at(id, roles + offset_of!(Roles, epoch), "epoch")?;
    let poisoned = obs.u32_at(id, roles + offset_of!(Roles, poisoned), "poisoned")? != 0;
    let mut producers = Vec::new();
    for e in 0..MAX_PRODUCERS {
        let at = offset_of!(Control, records) + e * 64 + offset_of!(Record, owner);
        let raw = obs.u32_at(id, at, "producer record")?;
        if let Some(p) = holder(raw, "producer record", &mut problems) {
            producers.push(p);
        }
    }
    let sleepers = |line: usize| -> Result<u32, ObserveError> {
        let w = obs.u32_at(id, line + Doorbell::SLEEPERS_OFFSET, "doorbell")?;
        Ok(Announced::from_word(w).count)
    };
    Ok(RingState {
        capacity: cap,
        head,
        tail,
        release_end: Some(release_end),
        frames,
        producers,
        consumer,
        consumer_attaches: attaches,
        producer_attaches: None,
        poisoned,
        data_sleepers: sleepers(offset_of!(Control, data_bell))?,
        space_sleepers: sleepers(offset_of!(Control, space_bell))?,
        problems,
    })
}
