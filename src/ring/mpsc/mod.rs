//! MPSC ring: many producer processes, one consumer (drones reporting to
//! the master, clients to a server).
//!
//! A ring section of kind [`SectionKind::MpscRing`](crate::region::SectionKind)
//! holds a control block (tail, head, consumer role, doorbells, one record
//! per producer: see `layout.rs` for the diagram) and 2^k data bytes of
//! frames, each an 8-byte header word and the payload, 8-byte aligned.
//! All-zero memory is an empty ring: no initialisation step.
//!
//! - [`Producer::attach`] (any number, each identified by its region
//!   peer id, attaching and detaching at any time) and
//!   [`Consumer::attach`] (one, the role claimed by CAS and taken over when
//!   its holder is dead); [`HeapRing`] for rings on the heap (threads, loom,
//!   property tests), the same code otherwise.
//! - Zero-copy [`Producer::try_claim`] / [`Claim::commit`] and
//!   [`Consumer::try_read`] / [`Frame`]; the copying and typed forms come
//!   from the [`Sender`](crate::ring::Sender) and
//!   [`Receiver`](crate::ring::Receiver) traits, shared with SPSC rings;
//!   `try_`, blocking, `_timeout` and `_deadline` forms of each; batch
//!   reads.
//! - Frames of one producer arrive in its order; frames of different
//!   producers interleave in claim order. Every committed frame is
//!   delivered exactly once.
//!
//! # Protocol
//!
//! Header word of a frame (see `layout.rs`): 0 unwritten, CLAIMED(entry,
//! len), COMMITTED(entry, len, tag), PADDING(len), ABANDONED(entry, len).
//!
//! ```text
//! producer (entry e)                          consumer
//! ------------------                          --------
//! t = tail                                    at head h:
//! loop:                                         word = header(h) (Acquire)
//!   need = pad(t) + 8 + align8(len)             COMMITTED -> deliver
//!   room vs cached head (refresh: Acquire)      PADDING / ABANDONED -> skip
//!   record[e].need = need                       CLAIMED(e) -> wait; after the
//!   record[e].intent = t|1      (Release)         claim timeout, resolve
//!   CAS tail t -> t+need        (Release)       0 -> empty, or reserved and
//!     failed: t = current, retry                  not written: the tail
//! header(frame) = CLAIMED(e,len) (Release)        (Acquire) tells, read only
//! header(t) = PADDING, if pad    (Release)        after the claim timeout
//! prefetch lines ahead for writing            consumed: release_end = end;
//! write the payload in place                    every quarter ring (or
//! CAS header CLAIMED -> COMMITTED(tag)          idle): zero, head = end
//!                                               (Release), ring the bell
//!   (Release); ring the data bell
//!   failed with ABANDONED -> Err(Abandoned)
//! ```
//!
//! The consumer walks headers, not the tail: every claim CASes the tail's
//! line, and a consumer polling it would make each claim wait for that line
//! to come back. A written header is below the tail (its producer wrote it
//! after its claim moved the tail), so the consumer checks a frame against
//! the lap and one capacity from the head as it walks, and reads the tail
//! (which must be at or past every frame seen, else `Corrupted`) before it
//! releases bytes past the last tail it read: once per release, which is
//! lazy (a quarter ring, or when idle: see below). A 0 header can be an empty
//! ring or a reservation whose header is not written yet; the tail tells
//! them apart, and it is read for that when the head has not moved for the
//! claim timeout, which is when a dead claim would be resolved anyway.
//!
//! Resolving a claim that blocked the head for the claim timeout:
//!
//! - CLAIMED(e): the claimer is `record[e].owner`. Only if that peer is
//!   dead (pid plus start time: a stopped or slow process is alive and is
//!   waited for, one timeout at a time) does the consumer CAS the header
//!   CLAIMED -> ABANDONED. The producer's commit is a CAS from the same
//!   value, so exactly one wins: a late commit returns
//!   [`CommitError::Abandoned`](crate::ring::CommitError::Abandoned) and nothing is delivered or lost silently.
//! - 0 below the tail: a producer won the tail CAS and has not written the
//!   header (or died in between). The tail CAS cannot write the claimer's
//!   id, so each producer records its *intent* (start and length of the
//!   attempt) before the CAS. The consumer's Acquire load of the tail
//!   synchronises with the winning CAS, so the winner's intent naming this
//!   position is visible; the winner changes its intent only after writing
//!   the header (Release), so "no intent names it any more" means the
//!   header is written (re-read, Acquire). A producer that lost the CAS may
//!   still name the position until it retries or gives up, and it never
//!   gives up with that intent standing (it withdraws it first: a live
//!   loser must not keep the consumer waiting behind a dead winner); one
//!   that detached (owner 0) had finished all its claims and is ignored. Hence: if any record naming
//!   the position belongs to a live peer, wait; if all belong to dead
//!   peers, the reservation (`need` bytes, padding included) is skipped
//!   whole. The one undecidable case, two dead producers naming the same
//!   position with different lengths (the loser died between its failed
//!   CAS and its retry, the winner between its CAS and its header: two
//!   deaths within nanoseconds at the same spot), poisons the ring rather
//!   than guess.
//!
//! The consumer zeroes every byte it consumed before it publishes the
//! head (one pass per release), so the next lap's headers read as
//! unwritten; a producer writes only below `head + capacity` after an
//! Acquire load of the head. Releases are lazy: the consumer records each
//! frame it consumed at once (`release_end`, on the head's own line), and
//! releases (reads the tail, zeroes, stores the head) once a quarter of
//! the ring is consumed, when it has been blocked for 20 us, before a
//! strategy that does not spin sleeps, and on drop. A consumer keeping up
//! with its producers thus reads the tail, whose line every claim CASes,
//! once per quarter ring instead of once per frame. A release is
//! restartable, and nothing consumed is delivered twice: a consumer taking
//! the role over from a dead one first releases up to the `release_end`
//! it finds (zeroing is idempotent, and the bytes are still the
//! consumer's). Without that, a consumer killed between zeroing and
//! storing the head would leave a zeroed header at the head that its
//! successor took for a reservation nobody made, and frames consumed but
//! not released would be delivered again.
//!
//! Wake-ups: a commit rings the consumer's doorbell (a fence and a load;
//! `FUTEX_WAKE` only when the consumer sleeps); the consumer rings the
//! producers' doorbell likewise once a quarter of the ring was released
//! since it last did, and whenever it releases while blocked. A sleeping consumer wakes one claim
//! timeout after its head stopped moving (at least 1 ms from when it went
//! to sleep) to look at what blocks it: a pending claim to resolve, or a 0
//! header that the tail may show to be a reservation.
//!
//! Everything read from shared memory is checked (positions, header kinds,
//! lengths, entries, records); an inconsistency gives `Corrupted` and
//! poisons the ring. A header's place is checked against the tail when the
//! tail is next read, and the head is never released past the last tail
//! read, so producers never claim space the consumer has passed. A header
//! forged past the tail is caught at the next release if the tail is still
//! behind it (the forged frame itself may have been delivered); releases
//! being lazy, producers may have claimed past it by then, and a forged
//! frame whose end falls where an honest frame ends then goes unseen, the
//! honest frame it covered lost (or, not yet committed, zeroed, and its
//! commit told `Abandoned`). A hostile producer could already drop frames
//! (by rewriting their headers); it cannot make the consumer read outside
//! the ring. Loops over shared state are bounded.

mod consumer;
mod layout;
#[cfg(not(loom))]
mod observe;
mod producer;
mod view;

pub use consumer::{Consumer, DEFAULT_CLAIM_TIMEOUT, Frame, ProducerInfo};
pub use layout::{CONTROL_LEN, HeapRing, MAX_CAPACITY, MAX_PRODUCERS, Mpsc, Spec};
#[cfg(not(loom))]
pub use observe::observe;
pub use producer::{Claim, Producer};
