//! Rings of variable-length frames in a shared byte ring.
//!
//! # SPSC
//!
//! One producer process and one consumer process share a ring section of a
//! [`Region`](crate::region::Region): a small control block and a byte ring
//! of 2^k bytes (see [`layout`] for the diagram and the invariants, [`frame`]
//! for the frame format). This replaces a mutex round trip for commands.
//!
//! - [`SpscProducer::try_claim`] reserves room for a frame and hands out its
//!   bytes to write in place; [`Claim::commit`] publishes it with one
//!   Release store; [`Claim::commit_deferred`] plus
//!   [`SpscProducer::publish`] publish a batch with one store. Dropping a
//!   claim publishes nothing.
//! - [`SpscConsumer::try_read`] gives the next frame in place; dropping the
//!   [`Frame`] releases it. [`SpscConsumer::try_read_batch`] reads many and
//!   releases them at once. Releases reach the producer lazily (a quarter
//!   of the ring at a time, or when the consumer finds the ring empty or
//!   waits), so a consumer that keeps up pays no store per frame.
//! - Copying forms (`send`/`recv`) and typed forms for `T: bytemuck::Pod`
//!   (`send_value`/`recv_value`) sit on top.
//! - Each operation has a `try_` form that never blocks, a blocking form
//!   that follows the handle's [`WaitStrategy`](crate::sync::WaitStrategy)
//!   (spin, then sleep on a shared futex), and timeout/deadline forms. A
//!   blocked side whose peer died (or detached) gets `PeerDead`; while the
//!   peer keeps up, no system call is made.
//! - Each side caches the other's position and re-reads it only when its
//!   cache says full (producer) or empty (consumer).
//! - Everything read from shared memory is checked: a bad position or
//!   header gives `Corrupted` and poisons the ring for both sides.
//! - A frame read in place is a live view of shared memory: a hostile peer
//!   cannot make it reach outside its frame, but can change its bytes while
//!   you read them. Copy before you validate (see [`Frame`]'s docs).
//!
//! A side that never had a peer waits for one: the consumer of a ring whose
//! producer has not attached yet blocks (until its deadline) rather than
//! report `PeerDead`. Once a peer attached and then left (dropped its handle
//! or died), a blocked side gets `PeerDead`.

pub mod frame;
pub mod layout;

#[cfg(not(loom))]
mod attach;
mod consumer;
mod error;
pub mod mpsc;
mod producer;
mod spsc;
mod typed;

pub use consumer::{Frame, SpscConsumer};
pub use error::{AttachError, ClaimError, RecvError, RingError};
pub use frame::{FRAME_ALIGN, HEADER_LEN, MAX_CAPACITY, MIN_CAPACITY, max_payload};
pub use layout::{CONTROL_LEN, check_capacity, section_len};
pub use producer::{Claim, SpscProducer};
pub use spsc::heap_pair;

#[cfg(not(loom))]
pub(crate) use layout::HeapRing;
#[cfg(not(loom))]
pub(crate) use spsc::{heap_consumer, heap_producer};
