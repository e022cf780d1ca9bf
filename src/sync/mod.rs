//! The lowest layer: atomics that loom can replace, a futex shared between
//! processes, and the spin-then-sleep wait protocol.
//!
//! - [`shim`]: std or loom atomics on `cfg(loom)`.
//! - [`clock`]: std's monotonic clock, or a model clock under loom.
//! - [`process`]: [`ProcessId`], a process told apart from a later one
//!   that reuses its pid, and whether it still runs; [`ProcessWatch`], the
//!   same answer from a pidfd kept open.
//! - [`futex`]: [`Futex`], a 32-bit word to sleep on across processes.
//! - [`barrier`]: the asymmetric fence (membarrier) that keeps the
//!   publisher's side of the wait protocol free of a hardware fence.
//! - [`wait`]: [`Doorbell`], the announce / re-check / sleep protocol with
//!   timeouts and peer-liveness checks, and [`WaitStrategy`].

pub mod barrier;
pub mod clock;
pub mod futex;
#[cfg(not(loom))]
pub mod process;
pub mod shim;
pub mod wait;

pub use barrier::{light_fence_active, membarrier_calls};
pub use futex::{Futex, FutexCalls, WaitOutcome, futex_calls};
#[cfg(not(loom))]
pub use process::{ProcessId, ProcessWatch};
pub use wait::{Announced, Doorbell, WaitError, WaitStrategy};
