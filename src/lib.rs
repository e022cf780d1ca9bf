//! # polycephaly
//!
//! Commands and large arrays between processes on one machine, through shared
//! memory, at the speed of the memory system; and a pool of worker processes
//! ("drones") built on it.
//!
//! ## Layers
//!
//! Each layer uses only the ones below it; [`ring`], [`arena`] and [`lock`] are
//! siblings on [`region`] and [`sync`]; [`channel`] and [`pool`] stand on the
//! rings and the arena.
//!
//! | layer | what it holds |
//! | --- | --- |
//! | [`pool`] | drone processes: typed tasks run on every CPU, surviving drones that die |
//! | [`channel`] | request/response between processes: a server and many clients over one region, requests in an MPSC ring, replies in one SPSC ring per client, correlation ids and tickets; small payloads inline, large ones by arena handle, read in place; methods by name and id; dead clients dropped, a dead server reported |
//! | [`ring`] · [`arena`] · [`lock`] | SPSC and MPSC rings of variable-length frames in a shared section · writer-owned lanes of bulk memory, arrays built in place and read in place by other processes, snapshot cells · a cross-process event, and a mutex that survives its owner's death |
//! | [`region`] | one shared mapping: create, open and validate, header, sections, peers; handing it to a child process |
//! | [`sync`] | a futex shared across processes, the spin-then-sleep wait protocol, process identity and liveness, the clock, the loom shim |
//!
//! Every layer speaks the same vocabulary: `Type::attach(&region, id)`
//! and one [`AttachError`]; `try_op` / `op` / `op_timeout` / `op_deadline`
//! forms of every wait, with the `try_` errors apart from the blocking
//! ones; `HeapX` twins on the heap for threads, tests and loom models.
//!
//! ```
//! use polycephaly::region::{Region, SectionId};
//! use polycephaly::ring::{Receiver, Sender, spsc};
//!
//! let region = Region::builder().with(spsc::Spec::new(4096)?).build()?;
//! let mut tx = spsc::Producer::attach(&region, SectionId(0))?;
//! let mut rx = spsc::Consumer::attach(&region, SectionId(0))?;
//! // In real use the consumer is another process: it gets the region with
//! // `Region::inherited` after the parent's `region.share_with(&mut command)`.
//! tx.send_value(&42u64)?;
//! assert_eq!(rx.recv_value::<u64>()?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Trust model
//!
//! Peers are processes of the same user that cooperate. A buggy or hostile
//! peer can make the data it sends wrong; it cannot make another process
//! crash, hang forever, touch memory outside the mapping, or leak the segment.
//! Everything read from shared memory is checked before it is used.

#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use error::AttachError;

pub mod arena;
#[cfg(not(loom))]
pub mod channel;
mod error;
pub mod lock;
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod region;
/// Under loom, only the peer id: there is no mapping to model, and the
/// heap structures of the models hand out ids of the same form.
#[cfg(loom)]
pub mod region {
    #[path = "peer_id.rs"]
    mod peer_id;
    pub use peer_id::{MAX_PEERS, PeerId};
}
pub mod ring;
pub mod sync;

/// Entry points of the fuzz targets, and the test hooks' home (not a
/// stable API: behind the `testing` feature).
#[cfg(all(feature = "testing", not(loom)))]
pub mod fuzzing;
