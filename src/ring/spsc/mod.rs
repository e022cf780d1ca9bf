//! SPSC ring: one producer process, one consumer process.
//!
//! A ring section of kind [`SectionKind::SpscRing`](crate::region::SectionKind)
//! holds a small control block and a byte ring of 2^k bytes (see `layout.rs`
//! for the diagram and the invariants, [`frame`](crate::ring::frame) for the
//! frame format). This replaces a mutex round trip for commands.
//!
//! - [`Producer::try_claim`] reserves room for a frame and hands out its
//!   bytes to write in place; [`Claim::commit`] publishes it with one
//!   Release store; [`Claim::commit_deferred`] plus [`Producer::publish`]
//!   publish a batch with one store. Dropping a claim publishes nothing.
//! - [`Consumer::try_read`] gives the next frame in place; dropping the
//!   [`Frame`] releases it. [`Consumer::try_read_batch`] reads many and
//!   releases them at once. Releases reach the producer lazily (a quarter
//!   of the ring at a time, or when the consumer finds the ring empty or
//!   waits), so a consumer that keeps up pays no store per frame.
//! - The copying and typed forms (`send`, `recv`, `send_value`,
//!   `recv_value`) come from the [`Sender`](crate::ring::Sender) and
//!   [`Receiver`](crate::ring::Receiver) traits, shared with MPSC rings.
//! - The consumer polls the header of the next frame where it will be
//!   written (zero until published), never the tail: a frame costs one
//!   cache line transfer. The producer caches the consumer's position and
//!   re-reads it only when its cache says full. One 8-byte word of the
//!   ring always stays free (see `layout.rs`).
//!
//! A side that never had a peer waits for one: the consumer of a ring whose
//! producer has not attached yet blocks (until its deadline) rather than
//! report `PeerDead`. Once a peer attached and then left (dropped its handle
//! or died), a blocked side gets `PeerDead`.

mod consumer;
mod layout;
#[cfg(not(loom))]
mod observe;
mod producer;
mod view;

pub use consumer::{Consumer, Frame};
pub use layout::{CONTROL_LEN, HeapRing, MAX_CAPACITY, Spec, Spsc};
#[cfg(not(loom))]
pub use observe::observe;
pub use producer::{Claim, Producer};
