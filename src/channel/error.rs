//! The channel's error enums: one per operation, the `try_` forms apart.

use crate::AttachError;
use crate::arena::{FormatError, ReadError};
use crate::region::{CreateError, OpenError};
use crate::ring::CapacityError;

use super::shape::Signature;
use super::wire::{Status, WireError};

/// A [`ChannelSpec`](super::ChannelSpec) field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Client slots out of 1..=max.
    #[error("{clients} client slots (1 to {max})")]
    Clients {
        /// Asked for.
        clients: u16,
        /// The most a channel can have.
        max: u16,
    },
    /// Requests in flight out of 1..=max.
    #[error("{n} requests in flight (1 to {max})")]
    InFlight {
        /// Asked for.
        n: u32,
        /// The most.
        max: u32,
    },
    /// A method table of 0 entries.
    #[error("a method table needs at least one entry")]
    Methods,
    /// The inline threshold is larger than a request frame can hold.
    #[error("inline payloads of {bytes} bytes (at most {max} here)")]
    InlineMax {
        /// Asked for.
        bytes: u32,
        /// The largest that fits.
        max: usize,
    },
    /// The request ring's capacity.
    #[error("request ring: {0}")]
    RequestRing(CapacityError),
    /// The reply ring this shape needs is out of range (too many requests
    /// in flight for the inline threshold).
    #[error("reply ring: {0}")]
    ReplyRing(CapacityError),
    /// Lanes shorter than 4 KiB.
    #[error("arena lanes of {bytes} bytes (at least 4096)")]
    LaneLen {
        /// Asked for.
        bytes: usize,
    },
    /// The arena this shape needs is out of range.
    #[error("arena: {0}")]
    Arena(crate::arena::SpecError),
}

/// Why [`Server::bind`](super::Server::bind) or
/// [`Server::anonymous`](super::Server::anonymous) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The spec is out of range.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The region could not be created.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// A live server is bound to the name.
    #[error("a live server is bound to {name}")]
    InUse {
        /// The name.
        name: String,
    },
    /// Something else than a channel holds the name.
    #[error("{name} is taken by something that is not a channel of a dead server")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// The arena could not be formatted.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A ring or the arena refused the server.
    #[error(transparent)]
    Attach(#[from] AttachError),
}

/// Why registering a method failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty or longer than
    /// [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes.
    #[error("method name {name:?} is empty or longer than {max} bytes")]
    BadName {
        /// The name.
        name: String,
        /// The longest name.
        max: usize,
    },
    /// A method of this name exists.
    #[error("method {name:?} is registered already")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The method table is full.
    #[error("the method table is full ({max} methods)")]
    TableFull {
        /// Its size.
        max: usize,
    },
}

/// Why [`Client::connect`](super::Client::connect) or
/// [`Client::attach`](super::Client::attach) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The region could not be opened (no such name, when not waiting;
    /// not a valid region).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A ring or the arena refused the client.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The region is not a channel, or one of another version or shape.
    #[error("not a channel: {what}")]
    NotAChannel {
        /// What is wrong.
        what: &'static str,
    },
    /// The server has not started serving (`try_` forms), or did not
    /// before the deadline.
    #[error("the server is not serving yet")]
    NotServing,
    /// The deadline passed before the server appeared or started serving.
    #[error("timed out waiting for the server")]
    TimedOut,
    /// The server is dead, or closed the channel.
    #[error("the server is dead")]
    PeerDead,
    /// Every client slot is held by a live client.
    #[error("all {slots} client slots are taken")]
    Full {
        /// How many there are.
        slots: usize,
    },
}

/// Why looking a method up failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The server registered no method of this name (or id).
    #[error("no method {name:?}")]
    NotFound {
        /// The name (or the id, written out).
        name: String,
    },
    /// The method's argument or result is not of the types asked for.
    #[error(
        "method {name:?} takes {arg_found} and gives {result_found}, not {arg_wanted} and {result_wanted}"
    )]
    WrongSignature {
        /// The name.
        name: String,
        /// What the caller asked for.
        arg_wanted: Signature,
        /// What the caller asked for.
        result_wanted: Signature,
        /// What the server registered.
        arg_found: Signature,
        /// What the server registered.
        result_found: Signature,
    },
}

/// Why a `try_send` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// No room now: the request ring or the lane is full, or the client has
    /// its most requests in flight.
    #[error("no room for the request now")]
    Full,
    /// The payload is larger than the client's arena lane.
    #[error("a payload of {bytes} bytes is larger than the lane ({max})")]
    TooLarge {
        /// The payload's length.
        bytes: u64,
        /// The lane's length.
        max: u64,
    },
    /// The server is dead.
    #[error("the server is dead")]
    PeerDead,
    /// The client is in the middle of another operation (a `send_with`
    /// fill closure called the client).
    #[error("the client is busy with another operation")]
    Busy,
    /// A ring or the lane is corrupted.
    #[error("the channel is corrupted")]
    Corrupted,
}

/// Why a blocking send (`send`, `send_timeout`, `send_deadline`, and
/// their `_with` forms) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The deadline passed before there was room.
    #[error("timed out waiting for room")]
    TimedOut,
    /// The payload is larger than the client's arena lane.
    #[error("a payload of {bytes} bytes is larger than the lane ({max})")]
    TooLarge {
        /// The payload's length.
        bytes: u64,
        /// The lane's length.
        max: u64,
    },
    /// The server is dead.
    #[error("the server is dead")]
    PeerDead,
    /// The client is in the middle of another operation.
    #[error("the client is busy with another operation")]
    Busy,
    /// A ring or the lane is corrupted.
    #[error("the channel is corrupted")]
    Corrupted,
}

/// Why a call (or waiting for a ticket) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The deadline passed before the reply came (it is dropped when it
    /// comes).
    #[error("timed out waiting for the reply")]
    TimedOut,
    /// The server is dead.
    #[error("the server is dead")]
    PeerDead,
    /// The request's payload is larger than the client's arena lane.
    #[error("a payload of {bytes} bytes is larger than the lane ({max})")]
    TooLarge {
        /// The payload's length.
        bytes: u64,
        /// The lane's length.
        max: u64,
    },
    /// The server has no method of this id.
    #[error("the server has no method {method}")]
    UnknownMethod {
        /// The id.
        method: u16,
    },
    /// The server found the argument not of the method's shape.
    #[error("the server refused the argument: {message}")]
    BadArgument {
        /// The server's words.
        message: String,
    },
    /// The handler panicked (the server lives on).
    #[error("the handler panicked: {message}")]
    HandlerPanicked {
        /// The panic message.
        message: String,
    },
    /// The result was larger than the server's arena lane.
    #[error("the result is too large: {message}")]
    ReplyTooLarge {
        /// The server's words.
        message: String,
    },
    /// The server found no room for the result in time.
    #[error("the server is busy: {message}")]
    Busy {
        /// The server's words.
        message: String,
    },
    /// The handler failed with an error of no other kind (it returned
    /// [`OutError::Corrupted`](super::OutError::Corrupted) or
    /// [`OutError::ClientGone`](super::OutError::ClientGone)).
    #[error("the handler failed: {message}")]
    HandlerFailed {
        /// The server's words.
        message: String,
    },
    /// An error reply with a status this version does not know.
    #[error("the server failed the call (status {status}): {message}")]
    Remote {
        /// The status code.
        status: u8,
        /// The server's words.
        message: String,
    },
    /// The reply is not of the method's result shape, or its block could
    /// not be read.
    #[error("bad reply: {what}")]
    BadReply {
        /// What is wrong.
        what: String,
    },
    /// The client is in the middle of another operation (a `send_with`
    /// fill closure called the client).
    #[error("the client is busy with another operation")]
    ClientBusy,
    /// A ring or the lane is corrupted.
    #[error("the channel is corrupted")]
    Corrupted,
}

/// Why a `try_wait` gave no reply; `NotReady` gives the ticket back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryWaitError<T> {
    /// The reply has not come yet: the ticket, to wait on again.
    #[error("the reply has not come yet")]
    NotReady(T),
    /// The call failed.
    #[error(transparent)]
    Failed(CallError),
}

/// Why `try_serve_one` served nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryServeError {
    /// No request is waiting.
    #[error("no request is waiting")]
    Empty,
    /// The request ring or the server's lane is corrupted.
    #[error("the channel is corrupted")]
    Corrupted,
}

/// Why serving stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The deadline passed with no request (`serve_one_deadline`).
    #[error("timed out waiting for a request")]
    TimedOut,
    /// The request ring is corrupted.
    #[error("the channel is corrupted")]
    Corrupted,
}

impl CallError {
    /// The error an error reply stands for.
    pub(crate) fn from_status(status: Status, method: u16, message: String) -> CallError {
        match status {
            Status::UnknownMethod => CallError::UnknownMethod { method },
            Status::BadArgument => CallError::BadArgument { message },
            Status::Panicked => CallError::HandlerPanicked { message },
            Status::ReplyTooLarge => CallError::ReplyTooLarge { message },
            Status::Busy => CallError::Busy { message },
            Status::Failed => CallError::HandlerFailed { message },
            other => CallError::Remote {
                status: other.code(),
                message,
            },
        }
    }

    pub(crate) fn bad_reply(what: impl core::fmt::Display) -> CallError {
        CallError::BadReply {
            what: what.to_string(),
        }
    }
}

impl From<SendError> for CallError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::TimedOut => CallError::TimedOut,
            SendError::TooLarge { bytes, max } => CallError::TooLarge { bytes, max },
            SendError::PeerDead => CallError::PeerDead,
            SendError::Busy => CallError::ClientBusy,
            SendError::Corrupted => CallError::Corrupted,
        }
    }
}

impl From<WireError> for CallError {
    fn from(e: WireError) -> Self {
        CallError::bad_reply(e)
    }
}

impl From<ReadError> for CallError {
    fn from(e: ReadError) -> Self {
        CallError::bad_reply(e)
    }
}
