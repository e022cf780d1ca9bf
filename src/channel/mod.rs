//! Request/response between processes: many clients, one server, results
//! matched to their requests, arguments and results of any size.
//!
//! A [`Server`] and its [`Client`]s share one region (named, for unrelated
//! processes: [`Server::bind`] and [`Client::connect`]; or a memfd the
//! server's process hands to its children: [`Server::anonymous`],
//! [`Server::share_with`], [`Client::attach`]). Requests travel to the
//! server in one MPSC ring; each client slot has an SPSC ring of replies.
//! Every request carries a correlation id, so a client may have many in
//! flight ([`Client::send`] gives a [`Ticket`]) and wait on them in any
//! order; [`Client::call`] is a send and a wait.
//!
//! - **Payloads** are plain-old-data values (`T: Pod`) or slices of them
//!   (`[T]`, bytes as `[u8]`): the [`Shape`] of a method's argument and
//!   result. Up to `inline_max` bytes travel in the frame; larger ones are
//!   built in (or copied into) a block of the sender's arena lane and go
//!   by handle, read in place by the receiver: the caller does not
//!   choose, the same call carries 8 bytes or 80 MB. Slices are received
//!   as a [`Payload`], a guard that reads in place and releases the block
//!   on drop (copy before you validate: see its docs). [`Client::call_with`]
//!   and [`Server::method_in_place`] build large arguments and results in
//!   place, so nothing is copied either way.
//! - **Methods** are registered on the server by name and get small ids;
//!   the server publishes a method table in the region, and a client looks
//!   a name up once ([`Client::method`], checked against the shapes the
//!   server registered) and calls by id. A request for an id the server
//!   does not have is answered with [`CallError::UnknownMethod`].
//! - **Failures.** A handler that panics is caught: its caller gets
//!   [`CallError::HandlerPanicked`], the server goes on; a handler that
//!   returns an error gets its caller the matching one. Every request of a
//!   live client is answered. A client that
//!   dies is dropped by the server: its queued requests are not run, its
//!   slot and reply ring go to the next client (replies left in the ring
//!   carry the old session in their route and are skipped), its arena
//!   blocks are reclaimed (the arena handles dead readers and writers). A
//!   server that dies ends every client's wait with
//!   [`CallError::PeerDead`] within a wait slice. Every wait has
//!   `_timeout` and `_deadline` forms; a reply that comes after its ticket
//!   timed out is dropped, never delivered to another ticket.
//!
//! ```
//! use polycephaly::channel::{ChannelSpec, Client, Server};
//!
//! let mut server = Server::anonymous(ChannelSpec::new())?;
//! server.method("echo", |b: &[u8]| b.len() as u64)?;
//! server.method_slice("double", |xs: &[u32]| xs.iter().map(|x| 2 * x).collect())?;
//! // Another process in real use (see `Server::share_with`): here a thread
//! // with a handle of its own.
//! let region = server.region().reopen(&Default::default())?;
//! std::thread::scope(|s| {
//!     let worker = s.spawn(move || {
//!         for _ in 0..3 {
//!             server.serve_one().unwrap();
//!         }
//!     });
//!     let client = Client::attach(&region).unwrap();
//!     let echo = client.method::<[u8], u64>("echo").unwrap();
//!     let double = client.method::<[u32], [u32]>("double").unwrap();
//!     let t = client.send(&echo, b"hello").unwrap(); // in flight
//!     let big: Vec<u32> = (0..100_000).collect(); // 400 KB: by handle
//!     let twice = client.call(&double, &big[..]).unwrap();
//!     assert!(twice.is_in_place()); // read in place from the server's lane
//!     assert_eq!(twice[99_999], 199_998);
//!     assert_eq!(t.wait().unwrap(), 5);
//!     assert_eq!(client.call(&echo, &[0u8; 10][..]).unwrap(), 10);
//!     worker.join().unwrap();
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! The region's sections: 0 the control section (a header, one line per
//! client slot, the method table: see `layout.rs`), 1 the request ring
//! (MPSC), 2 the arena (two lanes per client slot: the client's, and the
//! server's for that slot's results alone), 3.. one reply ring (SPSC) per
//! client slot, sized so that the
//! replies of a client's `max_in_flight` requests always fit: a server
//! never waits on a client that follows the protocol.
//!
//! # Parts the pool reuses
//!
//! [`wire`] (the frame header and its checked decoder), the payload rules
//! and guards ([`Payload`], [`Out`]), the method registry (names, ids,
//! typed handlers, dispatch under `catch_unwind`) and ticket matching do
//! not assume this topology: they work over any [`Sender`](crate::ring::Sender),
//! any lane and any reader.

mod call;
mod client;
mod error;
mod in_place;
mod layout;
mod method;
mod open;
mod payload;
mod registry;
mod serve;
mod server;
mod shape;
mod spec;
mod ticket;
pub(crate) mod tickets;
pub mod wire;

pub use client::Client;
pub use error::{
    BindError, CallError, ConnectError, LookupError, RegisterError, SendError, ServeError,
    SpecError, TrySendError, TryServeError, TryWaitError,
};
pub use layout::{CONTROL_KIND, MAX_NAME_LEN};
pub use method::Method;
pub use payload::{Out, OutError, Payload};
pub use server::{ClientInfo, DEFAULT_STALL, Server, ServerStats};
pub use shape::{Shape, ShapeKind, Signature};
pub use spec::{ChannelSpec, MAX_CLIENTS, MAX_IN_FLIGHT, MAX_INLINE};
pub use ticket::Ticket;
