//! Rings of variable-length frames in a shared byte ring: [`spsc`] (one
//! producer, one consumer) and [`mpsc`] (many producers, one consumer),
//! siblings over what they share.
//!
//! Both kinds speak the same vocabulary:
//!
//! - `spsc::Spec` / `mpsc::Spec` give a section's kind and exact length for
//!   the region builder; `Producer::attach` and `Consumer::attach` join a
//!   ring in a region section; `HeapRing` is the same ring on the heap (for
//!   the threads of one process, tests and loom models).
//! - Zero-copy: `try_claim` / `claim` hand out a frame's bytes to write in
//!   place, `commit` publishes it; `try_read` / `read` give a frame in
//!   place, dropping it releases it (lazily).
//! - The copying and typed forms (`send`, `recv`, `send_value`,
//!   `recv_value`) are written once, in the [`Sender`] and [`Receiver`]
//!   traits that both kinds implement.
//! - Every operation that may wait has `try_`, blocking, `_timeout` and
//!   `_deadline` forms; a blocked side whose peer died gets `PeerDead`;
//!   while the peer keeps up, no system call is made.
//! - Everything read from shared memory is checked: a bad position or
//!   header gives `Corrupted` and poisons the ring for every side.
//! - A frame read in place is a live view of shared memory: a hostile peer
//!   cannot make it reach outside its frame, but can change its bytes while
//!   you read them. Copy before you validate (see [`Frame`]'s docs).
//!
//! ```
//! use polycephaly::region::{Region, SectionId};
//! use polycephaly::ring::{Receiver, Sender, mpsc, spsc};
//!
//! let region = Region::builder()
//!     .with(spsc::Spec::new(4096)?) // SectionId(0)
//!     .with(mpsc::Spec::new(4096)?) // SectionId(1)
//!     .build()?;
//! let mut cmd = spsc::Producer::attach(&region, SectionId(0))?;
//! let mut drone = spsc::Consumer::attach(&region, SectionId(0))?;
//! let mut report = mpsc::Producer::attach(&region, SectionId(1))?;
//! let mut master = mpsc::Consumer::attach(&region, SectionId(1))?;
//! cmd.send_value(&21u64)?;
//! let x: u64 = drone.recv_value()?;
//! report.send_value(&(2 * x))?;
//! assert_eq!(master.recv_value::<u64>()?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod core;
mod error;
pub mod frame;
mod guard;
mod io;
mod kind;
pub mod mpsc;
#[cfg(not(loom))]
pub mod observe;
pub mod spsc;

pub use error::{
    CapacityError, ClaimError, CommitError, RecvError, SendError, TryClaimError, TryRecvError,
    TrySendError,
};
pub use frame::{FRAME_ALIGN, FRAME_HEADER_LEN, MIN_CAPACITY};
pub use guard::{Frame, FrameSource};
pub use io::{Commit, ReadFrame, Receiver, Sender};
pub use kind::{HeapRing, Kind, Spec};
