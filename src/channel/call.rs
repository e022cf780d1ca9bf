//! Calls: sending requests, reading replies, matching them to tickets.
//!
//! A request gets a correlation id from the client's [`Tickets`]; the
//! reply ring is read by whichever wait runs, and each reply goes to the
//! ticket waiting for it (returned at once), or is kept for its ticket
//! (waited on later), or dropped (its ticket was given up on, or it is a
//! reply meant for an earlier client of the slot: another session in its
//! route). A dropped reply's block is read and released, so the server's
//! lane can reclaim it.

use core::time::Duration;

use super::client::{Client, Stashed, StashedBody};
use super::error::{CallError, SendError, TrySendError};
use super::method::Method;
use super::payload::{Lane, Outgoing, Patience, SendFault, send};
use super::shape::Shape;
use super::ticket::Ticket;
use super::tickets::Arrival;
use super::wire::{self, Body, Head, Kind, Message, Status};
use crate::ring::{RecvError, TryRecvError};
use crate::sync::clock::Instant;

impl From<SendFault> for SendError {
    fn from(e: SendFault) -> Self {
        match e {
            SendFault::Full | SendFault::TimedOut => SendError::TimedOut,
            SendFault::TooLarge { bytes, max } => SendError::TooLarge { bytes, max },
            SendFault::PeerDead => SendError::PeerDead,
            SendFault::Corrupted => SendError::Corrupted,
        }
    }
}

impl From<SendFault> for TrySendError {
    fn from(e: SendFault) -> Self {
        match e {
            SendFault::Full | SendFault::TimedOut => TrySendError::Full,
            SendFault::TooLarge { bytes, max } => TrySendError::TooLarge { bytes, max },
            SendFault::PeerDead => TrySendError::PeerDead,
            SendFault::Corrupted => TrySendError::Corrupted,
        }
    }
}

fn recv_error(e: RecvError) -> CallError {
    match e {
        RecvError::TimedOut => CallError::TimedOut,
        RecvError::PeerDead => CallError::PeerDead,
        _ => CallError::Corrupted,
    }
}

/// A send's failure, before it is told in the caller's enum.
pub(super) enum PostError {
    Send(SendFault),
    Wait(CallError),
    Busy,
}

impl From<PostError> for SendError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::Send(f) => f.into(),
            PostError::Wait(CallError::TimedOut) => SendError::TimedOut,
            PostError::Wait(CallError::PeerDead) => SendError::PeerDead,
            PostError::Wait(_) => SendError::Corrupted,
            PostError::Busy => SendError::Busy,
        }
    }
}

impl From<PostError> for TrySendError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::Send(f) => f.into(),
            PostError::Wait(CallError::PeerDead) => TrySendError::PeerDead,
            PostError::Wait(_) => TrySendError::Corrupted,
            PostError::Busy => TrySendError::Busy,
        }
    }
}

impl Client {
    /// Calls method `m` with `arg` and waits for its result without limit
    /// (until the server answers or dies).
    ///
    /// The argument goes inline or by handle by its size, and so does the
    /// result: a value `R` is returned by value, a slice `[T]` as a
    /// [`Payload`](super::Payload) (read in place when it came by handle).
    ///
    /// # Errors
    /// See [`CallError`] (never `TimedOut`).
    #[inline]
    pub fn call<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
    ) -> Result<R::Received<'_>, CallError> {
        self.call_deadline(m, arg, None)
    }

    /// As [`call`](Self::call), giving up after `timeout` (for the send
    /// and the reply together).
    ///
    /// # Errors
    /// See [`CallError`].
    pub fn call_timeout<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
        timeout: Duration,
    ) -> Result<R::Received<'_>, CallError> {
        self.call_deadline(m, arg, Instant::now().checked_add(timeout))
    }

    /// As [`call`](Self::call), giving up at `deadline` (`None`: never). A
    /// reply that comes after the deadline is dropped when it arrives.
    ///
    /// # Errors
    /// See [`CallError`].
    #[inline]
    pub fn call_deadline<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
        deadline: Option<Instant>,
    ) -> Result<R::Received<'_>, CallError> {
        self.send_deadline(m, arg, deadline)?
            .wait_deadline(deadline)
    }

    /// Sends a request to method `m` without waiting for its reply,
    /// waiting for room without limit; wait on the returned ticket later.
    /// Many requests may be in flight; replies are matched to their
    /// tickets whatever order they are waited on.
    ///
    /// ```no_run
    /// # fn f(client: &polycephaly::channel::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let add = client.method::<[u64; 2], u64>("add")?;
    /// let tickets: Vec<_> = (0..8u64)
    ///     .map(|i| client.send(&add, &[i, i]))
    ///     .collect::<Result<_, _>>()?;
    /// for (i, t) in tickets.into_iter().enumerate().rev() {
    ///     assert_eq!(t.wait()?, 2 * i as u64);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`SendError`] (never `TimedOut`).
    pub fn send<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
    ) -> Result<Ticket<'_, R>, SendError> {
        self.send_deadline(m, arg, None)
    }

    /// As [`send`](Self::send), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`SendError`].
    pub fn send_timeout<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
        timeout: Duration,
    ) -> Result<Ticket<'_, R>, SendError> {
        self.send_deadline(m, arg, Instant::now().checked_add(timeout))
    }

    /// As [`send`](Self::send), giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// See [`SendError`].
    #[inline]
    pub fn send_deadline<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
        deadline: Option<Instant>,
    ) -> Result<Ticket<'_, R>, SendError> {
        let payload = Outgoing::copy(arg.wire_bytes(), A::SIGNATURE.align as usize);
        let id = self.post(m.id(), payload, Patience::Until(deadline))?;
        Ok(Ticket::new(self, id))
    }

    /// As [`send`](Self::send), without waiting: no room now (in the
    /// request ring, the lane, or for another request in flight) is
    /// [`TrySendError::Full`].
    ///
    /// # Errors
    /// See [`TrySendError`].
    pub fn try_send<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        m: &Method<A, R>,
        arg: &A,
    ) -> Result<Ticket<'_, R>, TrySendError> {
        let payload = Outgoing::copy(arg.wire_bytes(), A::SIGNATURE.align as usize);
        let id = self.post(m.id(), payload, Patience::Never)?;
        Ok(Ticket::new(self, id))
    }

    /// Issues a ticket and sends its request, first making room for its
    /// reply if the most requests are in flight.
    pub(super) fn post<F: FnOnce(&mut [u8])>(
        &self,
        method: u16,
        payload: Outgoing<'_, F>,
        patience: Patience,
    ) -> Result<u64, PostError> {
        let mut io = self.io.try_borrow_mut().map_err(|_| PostError::Busy)?;
        loop {
            let expected = self
                .tickets
                .try_borrow()
                .map_err(|_| PostError::Busy)?
                .expected();
            if expected < self.max_in_flight {
                break;
            }
            match patience {
                Patience::Never => {
                    if !self.pump_now(&mut io).map_err(PostError::Wait)? {
                        return Err(PostError::Send(SendFault::Full));
                    }
                }
                Patience::Until(deadline) => {
                    self.pump(&mut io, deadline).map_err(PostError::Wait)?;
                }
            }
        }
        let id = self
            .tickets
            .try_borrow_mut()
            .map_err(|_| PostError::Busy)?
            .issue();
        // Withdrawn unless the request is sent: on an error, and when the
        // caller's fill closure unwinds out of `send`.
        let unsent = Unsent { client: self, id };
        let head = Head::request(method, self.route, id);
        let io = &mut *io;
        let lane = Lane {
            writer: &mut io.writer,
            reader: self.server,
            inline_max: self.inline_max,
        };
        send(
            &mut io.requests,
            lane,
            &mut io.scratch,
            &head,
            payload,
            patience,
        )
        .map_err(PostError::Send)?;
        Ok(unsent.sent())
    }

    /// Reads one reply (waiting until `deadline`) and files it.
    fn pump(&self, io: &mut super::client::Io, deadline: Option<Instant>) -> Result<(), CallError> {
        let frame = io.replies.read_deadline(deadline).map_err(recv_error)?;
        self.file(&frame);
        Ok(())
    }

    /// Files every reply there is now; whether there was one.
    fn pump_now(&self, io: &mut super::client::Io) -> Result<bool, CallError> {
        let mut any = false;
        loop {
            match io.replies.try_read() {
                Ok(frame) => {
                    self.file(&frame);
                    any = true;
                }
                Err(TryRecvError::Empty) => return Ok(any),
                Err(_) => return Err(CallError::Corrupted),
            }
        }
    }

    /// Decodes a reply frame that nobody is waiting on in place: keeps it
    /// for its ticket, or drops it.
    fn file(&self, frame: &[u8]) {
        let Some(msg) = self.ours(frame) else {
            return;
        };
        let stashed = stash(&msg);
        let arrival = match self.tickets.try_borrow_mut() {
            Ok(mut t) => t.arrive(msg.head.correlation, stashed),
            Err(_) => Arrival::Dropped(stashed),
        };
        if let Arrival::Dropped(s) = arrival {
            self.discard(s);
        }
    }

    /// A frame decoded, if it is a reply (or error reply) to this client's
    /// session; a malformed or foreign frame is dropped. A foreign one's
    /// block was published for an earlier client of the slot: read and
    /// released, so that it holds nothing up if that client was of this
    /// process (the same peer, whose read it owes); for another peer the
    /// server forgave the read when the session ended.
    #[inline]
    fn ours<'f>(&self, frame: &'f [u8]) -> Option<Message<'f>> {
        let msg = wire::decode(frame).ok()?;
        if msg.head.route == self.route && msg.head.kind != Kind::Request {
            return Some(msg);
        }
        if let Body::Block(h) = msg.body {
            drop(self.reader.read_bytes(&h));
        }
        None
    }

    /// Releases what a dropped reply holds: a block published for us is
    /// read and released, so that its lane can reclaim it.
    pub(super) fn discard(&self, s: Stashed) {
        if let Stashed::Reply(StashedBody::Block(h)) = s {
            drop(self.reader.read_bytes(&h));
        }
    }

    /// Waits (until `deadline`) for the reply to ticket `id`, filing the
    /// others that come first. The ticket is finished on success; on
    /// `TimedOut` the caller gives it up.
    #[inline]
    pub(super) fn wait_for<R: ?Sized + Shape>(
        &self,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<R::Received<'_>, CallError> {
        if let Some(s) = self.take_stashed(id)? {
            return self.deliver_stashed::<R>(s);
        }
        let mut io = self
            .io
            .try_borrow_mut()
            .map_err(|_| CallError::ClientBusy)?;
        loop {
            let frame = io.replies.read_deadline(deadline).map_err(recv_error)?;
            if let Some(r) = self.match_frame::<R>(&frame, id) {
                return r;
            }
        }
    }

    /// As [`wait_for`](Self::wait_for) without waiting: `None` if the
    /// reply has not come.
    pub(super) fn poll_for<R: ?Sized + Shape>(
        &self,
        id: u64,
    ) -> Result<Option<R::Received<'_>>, CallError> {
        if let Some(s) = self.take_stashed(id)? {
            return self.deliver_stashed::<R>(s).map(Some);
        }
        let mut io = self
            .io
            .try_borrow_mut()
            .map_err(|_| CallError::ClientBusy)?;
        loop {
            let frame = match io.replies.try_read() {
                Ok(f) => f,
                Err(TryRecvError::Empty) => return Ok(None),
                Err(_) => return Err(CallError::Corrupted),
            };
            if let Some(r) = self.match_frame::<R>(&frame, id) {
                return r.map(Some);
            }
        }
    }

    fn take_stashed(&self, id: u64) -> Result<Option<Stashed>, CallError> {
        Ok(self
            .tickets
            .try_borrow_mut()
            .map_err(|_| CallError::ClientBusy)?
            .take(id))
    }

    /// The result, if `frame` is the reply to ticket `id`; else files it.
    #[inline]
    fn match_frame<R: ?Sized + Shape>(
        &self,
        frame: &[u8],
        id: u64,
    ) -> Option<Result<R::Received<'_>, CallError>> {
        let msg = self.ours(frame)?;
        if msg.head.correlation == id {
            let waiting = self
                .tickets
                .try_borrow_mut()
                .is_ok_and(|mut t| t.complete(id));
            if waiting {
                return Some(self.deliver::<R>(&msg));
            }
        }
        self.file(frame);
        None
    }

    /// A reply read in place turned into the caller's result (a value or
    /// slice copied out of the frame, or the block read).
    #[inline]
    fn deliver<R: ?Sized + Shape>(&self, msg: &Message<'_>) -> Result<R::Received<'_>, CallError> {
        match (msg.head.kind, msg.body) {
            (Kind::Error, body) => Err(error_reply(&msg.head, body)),
            (_, Body::Inline(bytes)) => {
                R::received_inline(bytes).ok_or_else(|| wrong_shape::<R>(bytes.len()))
            }
            (_, Body::Block(h)) => {
                let g = self.reader.read_bytes(&h)?;
                let len = g.len();
                R::received_block(g).ok_or_else(|| wrong_shape::<R>(len))
            }
        }
    }

    fn deliver_stashed<R: ?Sized + Shape>(&self, s: Stashed) -> Result<R::Received<'_>, CallError> {
        match s {
            Stashed::Error {
                status,
                method,
                message,
            } => Err(CallError::from_status(
                Status::from_code(status).unwrap_or(Status::Other(status)),
                method,
                message,
            )),
            Stashed::Reply(StashedBody::Inline(bytes)) => {
                R::received_inline(&bytes).ok_or_else(|| wrong_shape::<R>(bytes.len()))
            }
            Stashed::Reply(StashedBody::Block(h)) => {
                let g = self.reader.read_bytes(&h)?;
                let len = g.len();
                R::received_block(g).ok_or_else(|| wrong_shape::<R>(len))
            }
        }
    }

    /// Gives up on ticket `id`: its reply is dropped when it comes (or now,
    /// if it came).
    pub(super) fn abandon(&self, id: u64) {
        let kept = match self.tickets.try_borrow_mut() {
            Ok(mut t) => t.abandon(id),
            Err(_) => None,
        };
        if let Some(s) = kept {
            self.discard(s);
        }
    }
}

/// A ticket issued for a request that is not sent yet: dropping it (an
/// error, or a fill closure that panicked) withdraws the id, so that it
/// does not count against `max_in_flight` for ever.
struct Unsent<'c> {
    client: &'c Client,
    id: u64,
}

impl Unsent<'_> {
    /// The request went out: its ticket stays.
    fn sent(self) -> u64 {
        let id = self.id;
        core::mem::forget(self);
        id
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        // Not borrowed here: `post` holds no borrow of the tickets while
        // it sends, and a fill closure that reached them got ClientBusy.
        if let Ok(mut t) = self.client.tickets.try_borrow_mut() {
            t.withdraw(self.id);
        }
    }
}

/// A reply kept for its ticket: the payload copied out of the frame, or
/// the block's handle (the block stays where it is).
fn stash(msg: &Message<'_>) -> Stashed {
    match (msg.head.kind, msg.body) {
        (Kind::Error, body) => Stashed::Error {
            status: msg.head.status.map_or(0, Status::code),
            method: msg.head.method,
            message: message_of(body),
        },
        (_, Body::Inline(b)) => Stashed::Reply(StashedBody::Inline(b.to_vec())),
        (_, Body::Block(h)) => Stashed::Reply(StashedBody::Block(h)),
    }
}

fn message_of(body: Body<'_>) -> String {
    match body {
        Body::Inline(b) => String::from_utf8_lossy(b).into_owned(),
        Body::Block(_) => String::new(),
    }
}

fn error_reply(head: &Head, body: Body<'_>) -> CallError {
    CallError::from_status(
        head.status.unwrap_or(Status::Other(0)),
        head.method,
        message_of(body),
    )
}

fn wrong_shape<R: ?Sized + Shape>(len: usize) -> CallError {
    CallError::bad_reply(format!("{len} bytes are not {}", R::SIGNATURE))
}
