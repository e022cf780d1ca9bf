//! A read-only look at an SPSC ring section (see `ring::observe`).

use core::mem::offset_of;

use super::layout::{CONTROL_LEN, Control, MAX_CAPACITY, READY, Roles};
use crate::region::{ObserveError, Observer, SectionId, SectionKind};
use crate::ring::frame::{FRAME_HEADER_LEN, MIN_CAPACITY, PAD_FLAG, max_payload};
use crate::ring::observe::{RingState, Step, holder, settle};
use crate::sync::{Announced, Doorbell};

/// What the SPSC ring in section `id` holds now, read through `obs`
/// without writing anything: positions, the frames between them (each
/// header checked), the roles, the doorbells' waiters, and what is
/// inconsistent.
///
/// # Errors
/// [`ObserveError::NoSuchSection`], [`ObserveError::WrongKind`], or
/// [`ObserveError::Bad`] when the section's length cannot be a ring's.
pub fn observe(obs: &Observer, id: SectionId) -> Result<RingState, ObserveError> {
    let s = obs.section_of(id, SectionKind::SpscRing)?;
    let capacity = s.len.saturating_sub(CONTROL_LEN);
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(ObserveError::Bad {
            id: id.0,
            what: format!(
                "{} bytes cannot be an SPSC ring (control block plus a power-of-two capacity)",
                s.len
            ),
        });
    }
    let cap = capacity as u64;
    let tail_at = offset_of!(Control, tail);
    let head_at = offset_of!(Control, head);
    let roles = offset_of!(Control, roles);
    let positions = || {
        // The head first, the tail after it (a hint: see the layout). One
        // behind the head, left by a producer that died between its header
        // and tail stores, counts as the head, as when a producer attaches.
        let head = obs.u64_at(id, head_at, "head")?;
        let tail = obs.u64_at(id, tail_at, "tail")?;
        Ok((head, tail.max(head)))
    };
    let decode = |idx: u64| -> Result<Step, String> {
        let at = CONTROL_LEN + idx as usize;
        let word = obs
            .load_u64(id, at)
            .ok_or_else(|| format!("header at index {idx} outside the section"))?;
        // The header's low half is the length word (see `ring::frame`),
        // with the ready bit set in every published header.
        let len_word = word as u32;
        if len_word & READY == 0 {
            return Err(format!("header at index {idx} lacks the ready bit"));
        }
        let len_word = len_word & !READY;
        Ok(if len_word & PAD_FLAG != 0 {
            Step::Padding(u64::from(len_word & !PAD_FLAG))
        } else {
            Step::Message(u64::from(len_word))
        })
    };
    let max = max_payload(capacity) as u64;
    let (head, tail, frames, mut problems) = settle(cap, max, positions, decode)?;
    let role = |i: usize| obs.u32_at(id, roles + offset_of!(Roles, holder) + 4 * i, "role word");
    let epoch = |i: usize| obs.u32_at(id, roles + offset_of!(Roles, epoch) + 4 * i, "epoch");
    let producer = holder(role(0)?, "producer", &mut problems);
    let consumer = holder(role(1)?, "consumer", &mut problems);
    let poisoned = obs.u32_at(id, roles + offset_of!(Roles, poisoned), "poisoned")? != 0;
    let sleepers = |line: usize| -> Result<u32, ObserveError> {
        let w = obs.u32_at(id, line + Doorbell::SLEEPERS_OFFSET, "doorbell")?;
        Ok(Announced::from_word(w).count)
    };
    const _: () = assert!(FRAME_HEADER_LEN == 8);
    Ok(RingState {
        capacity: cap,
        head,
        tail,
        release_end: None,
        frames,
        producers: producer.into_iter().collect(),
        consumer,
        consumer_attaches: epoch(1)?,
        producer_attaches: Some(epoch(0)?),
        poisoned,
        data_sleepers: sleepers(offset_of!(Control, data_bell))?,
        space_sleepers: sleepers(offset_of!(Control, space_bell))?,
        problems,
    })
}
