//! # polycephaly
//!
//! Commands and large arrays between processes on one machine, through shared
//! memory, at the speed of the memory system; and a pool of worker processes
//! ("drones") built on it.
//!
//! ## Layers
//!
//! Each layer uses only the ones below it.
//!
//! | layer | what it holds |
//! | --- | --- |
//! | [`arena`] | writer-owned lanes of bulk memory: arrays built in place and read in place by other processes; snapshot cells |
//! | [`lock`] | a cross-process event, and a mutex that survives its owner's death |
//! | [`ring`] | SPSC and MPSC rings of variable-length frames in a shared section |
//! | [`region`] | one shared mapping: create, open and validate, header, sections, peers |
//! | [`sync`] | a futex shared across processes, the spin-then-sleep wait protocol, the loom shim |
//!
//! ## Trust model
//!
//! Peers are processes of the same user that cooperate. A buggy or hostile
//! peer can make the data it sends wrong; it cannot make another process
//! crash, hang forever, touch memory outside the mapping, or leak the segment.
//! Everything read from shared memory is checked before it is used.

#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod arena;
pub mod lock;
#[cfg(not(loom))]
pub mod region;
pub mod ring;
pub mod sync;

#[doc(hidden)]
#[cfg(not(loom))]
#[doc(hidden)]
#[cfg(not(loom))]
pub mod fuzzing;
