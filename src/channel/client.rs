//! The client: connects to a server, claims a slot, looks methods up.
//! Calls, sends and tickets are in `call.rs` and `ticket.rs`.

use core::cell::RefCell;
use core::fmt;
use core::time::Duration;

use super::error::{ConnectError, LookupError};
use super::layout::{CLOSED, ControlView, FORMATTING, SERVING, next_session, route};
use super::method::Method;
use super::open::announced;
use super::shape::{Shape, Signature};
use super::spec::{ARENA, FIRST_REPLY, MAX_INLINE, REQUESTS, in_flight_for};
use super::tickets::Tickets;
use super::wire::HEADER_LEN;
use crate::arena::{ArenaReader, ArenaWriter, BlockHandle};
use crate::region::{OpenError, PeerId, Region, SectionId};
use crate::ring::{mpsc, spsc};
use crate::sync::WaitStrategy;
use crate::sync::clock::Instant;
use crate::sync::shim::Ordering;

/// The longest pause between two looks for a server that is not there
/// yet (or not serving yet).
const POLL_MAX: Duration = Duration::from_millis(50);

/// The client's ring and lane handles: used by one operation at a time.
pub(super) struct Io {
    pub(super) requests: mpsc::Producer,
    pub(super) replies: spsc::Consumer,
    pub(super) writer: ArenaWriter,
}

/// A reply that arrived before its ticket was waited on.
#[derive(Debug)]
pub(super) enum Stashed {
    /// A reply: its payload copied out of the frame, or its block's handle.
    Reply(StashedBody),
    /// An error reply: its status byte, method and message.
    Error {
        status: u8,
        method: u16,
        message: String,
    },
}

/// Where a stashed reply's payload is.
#[derive(Debug)]
pub(super) enum StashedBody {
    Inline(Vec<u8>),
    Block(BlockHandle),
}

/// The slot this client holds; given back when dropped (after the ring
/// roles, which are dropped before it: see the field order of [`Client`]).
struct Lease {
    ctl: ControlView,
    slot: usize,
    me: u32,
    region: Region,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.region.opened_by_current_process() {
            return;
        }
        // Release: pairs with the Acquire of the next claimer and of the
        // server's scan; our roles were released before.
        let _ = self.ctl.slot(self.slot).owner.compare_exchange(
            self.me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// A client of a channel: calls a server's methods, many requests in
/// flight, replies matched to their tickets.
///
/// [`connect`](Self::connect) by name (a server that
/// [`bind`](super::Server::bind)s it), or [`attach`](Self::attach) to a
/// region handed down by the server's process. Look each method up once
/// ([`method`](Self::method)), then [`call`](Self::call) it (or
/// [`send`](Self::send) and wait on the [`Ticket`](super::Ticket) later).
/// Arguments and results of any size travel the same way: small ones in
/// the frame, large ones through an arena lane, read in place.
///
/// `Send` but not `Sync` (one thread calls at a time; use one client per
/// thread). Methods take `&self`, so that several tickets and received
/// payloads can be held at once. Every wait has a deadline form, and ends
/// with [`CallError::PeerDead`](super::CallError::PeerDead) within a wait
/// slice of the server's death.
pub struct Client {
    pub(super) io: RefCell<Io>,
    pub(super) tickets: RefCell<Tickets<Stashed>>,
    pub(super) reader: ArenaReader,
    pub(super) route: u32,
    pub(super) server: PeerId,
    pub(super) inline_max: usize,
    pub(super) max_in_flight: usize,
    ctl: ControlView,
    slot: usize,
    // Last: released after the ring roles (see `Lease`).
    lease: Lease,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("slot", &self.slot)
            .field("server", &self.server)
            .field("inline_max", &self.inline_max)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// How long a connect may wait.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Never,
    Until(Option<Instant>),
}

impl Wait {
    fn expired(self) -> bool {
        match self {
            Wait::Never => true,
            Wait::Until(d) => d.is_some_and(|d| Instant::now() >= d),
        }
    }

    /// The next pause: `pause`, cut at the deadline.
    fn pause(self, pause: Duration) -> Duration {
        match self {
            Wait::Until(Some(d)) => d.saturating_duration_since(Instant::now()).min(pause),
            _ => pause,
        }
    }
}

impl Client {
    /// Connects to the channel bound to `name`, waiting without limit for
    /// its server to appear and start serving.
    ///
    /// # Errors
    /// As [`connect_deadline`](Self::connect_deadline), never `TimedOut`.
    pub fn connect(name: &str) -> Result<Client, ConnectError> {
        Self::connect_deadline(name, None)
    }

    /// As [`connect`](Self::connect), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`connect_deadline`](Self::connect_deadline).
    pub fn connect_timeout(name: &str, timeout: Duration) -> Result<Client, ConnectError> {
        Self::connect_deadline(name, Instant::now().checked_add(timeout))
    }

    /// As [`connect`](Self::connect), giving up at `deadline` (`None`:
    /// never).
    ///
    /// # Errors
    /// [`ConnectError::TimedOut`]; [`ConnectError::Open`] for a name that
    /// is not a valid region; then as [`attach_deadline`](Self::attach_deadline).
    pub fn connect_deadline(name: &str, deadline: Option<Instant>) -> Result<Client, ConnectError> {
        Self::connect_with(name, Wait::Until(deadline))
    }

    /// Connects to the channel bound to `name` if its server serves now,
    /// without waiting.
    ///
    /// # Errors
    /// [`ConnectError::Open`] (no such name), [`ConnectError::NotServing`],
    /// then as [`attach_deadline`](Self::attach_deadline).
    pub fn try_connect(name: &str) -> Result<Client, ConnectError> {
        Self::connect_with(name, Wait::Never)
    }

    fn connect_with(name: &str, wait: Wait) -> Result<Client, ConnectError> {
        let mut pause = Duration::from_millis(1);
        let region = loop {
            match Region::open(name) {
                Ok(r) => break r,
                Err(OpenError::NotFound { .. } | OpenError::NotInitialized)
                    if matches!(wait, Wait::Until(_)) =>
                {
                    if wait.expired() {
                        return Err(ConnectError::TimedOut);
                    }
                    // A bounded poll: nothing signals a name's creation.
                    std::thread::sleep(wait.pause(pause));
                    pause = (pause * 2).min(POLL_MAX);
                }
                Err(e) => return Err(e.into()),
            }
        };
        Self::attach_with(&region, wait)
    }

    /// Attaches to the channel in `region` (a handle of this process:
    /// [`Region::inherited`] in a child the server's process started after
    /// [`Server::share_with`](super::Server::share_with), or one opened by
    /// name), waiting without limit for its server to start serving.
    ///
    /// # Errors
    /// As [`attach_deadline`](Self::attach_deadline), never `TimedOut`.
    pub fn attach(region: &Region) -> Result<Client, ConnectError> {
        Self::attach_deadline(region, None)
    }

    /// As [`attach`](Self::attach), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`attach_deadline`](Self::attach_deadline).
    pub fn attach_timeout(region: &Region, timeout: Duration) -> Result<Client, ConnectError> {
        Self::attach_deadline(region, Instant::now().checked_add(timeout))
    }

    /// As [`attach`](Self::attach), giving up at `deadline` (`None`:
    /// never).
    ///
    /// # Errors
    /// [`ConnectError::NotAChannel`], [`ConnectError::TimedOut`],
    /// [`ConnectError::PeerDead`] (the server died or closed),
    /// [`ConnectError::Full`] (every slot held by a live client),
    /// [`ConnectError::Attach`].
    pub fn attach_deadline(
        region: &Region,
        deadline: Option<Instant>,
    ) -> Result<Client, ConnectError> {
        Self::attach_with(region, Wait::Until(deadline))
    }

    /// Attaches to the channel in `region` if its server serves now.
    ///
    /// # Errors
    /// [`ConnectError::NotServing`], then as
    /// [`attach_deadline`](Self::attach_deadline).
    pub fn try_attach(region: &Region) -> Result<Client, ConnectError> {
        Self::attach_with(region, Wait::Never)
    }

    fn attach_with(region: &Region, wait: Wait) -> Result<Client, ConnectError> {
        let not = |what| ConnectError::NotAChannel { what };
        // The header line, to wait on the state.
        let probe = super::open::control_for(region, 1, 1).map_err(not)?;
        let state = &probe.header().state;
        loop {
            // Acquire: pairs with the server's Release stores of the state.
            let s = state.word().load(Ordering::Acquire);
            match s {
                SERVING => break,
                CLOSED => return Err(ConnectError::PeerDead),
                s if s > CLOSED => return Err(not("unknown channel state")),
                _ => {}
            }
            if s > FORMATTING {
                let (_, a) = announced(region).map_err(not)?;
                if !PeerId::from_raw(a.server).is_some_and(|p| region.peer_alive(p)) {
                    return Err(ConnectError::PeerDead);
                }
            } else if !region.creator_alive() {
                // The server created the region and died before it stored
                // BOUND (with its id): nothing will ever change the state.
                return Err(ConnectError::PeerDead);
            }
            if wait.expired() {
                return Err(match wait {
                    Wait::Never => ConnectError::NotServing,
                    Wait::Until(_) => ConnectError::TimedOut,
                });
            }
            state.wait(s, Some(wait.pause(POLL_MAX)));
        }
        let (ctl, a) = announced(region).map_err(not)?;
        let server = PeerId::from_raw(a.server)
            .filter(|p| region.peer_alive(*p))
            .ok_or(ConnectError::PeerDead)?;
        let me = region.peer_id().to_raw();
        let slot = claim_slot(region, &ctl, me).ok_or(ConnectError::Full { slots: a.slots })?;
        let lease = Lease {
            ctl: ctl.clone(),
            slot,
            me,
            region: region.clone(),
        };
        let line = ctl.slot(slot);
        // Only the slot's owner writes the session. Relaxed load: our own
        // or a previous owner's value (whose claim we acquired).
        let session = next_session(line.session.load(Ordering::Relaxed));
        // Release: pairs with the server's Acquire load in `admit` (our
        // requests' commits order it as well).
        line.session.store(session, Ordering::Release);
        // Dropping `lease` on an error below gives the slot back.
        let replies = spsc::Consumer::attach(region, SectionId(FIRST_REPLY + slot as u16))?;
        let requests = mpsc::Producer::attach(region, REQUESTS)?;
        let writer = ArenaWriter::attach(region, ARENA)?;
        let reader = ArenaReader::attach(region, ARENA)?;
        // The inline threshold as the server announced it, within what both
        // rings can carry; in flight, what the reply ring has room for.
        let inline_max = a
            .inline_max
            .min(MAX_INLINE)
            .min(requests.max_payload().saturating_sub(HEADER_LEN))
            .min(replies.max_payload().saturating_sub(HEADER_LEN));
        let max_in_flight = in_flight_for(replies.capacity(), a.inline_max, a.max_in_flight);
        if max_in_flight == 0 {
            return Err(not("the reply ring has no room for a reply"));
        }
        let mut client = Client {
            io: RefCell::new(Io {
                requests,
                replies,
                writer,
            }),
            tickets: RefCell::new(Tickets::new()),
            reader,
            route: route(slot, session),
            server,
            inline_max,
            max_in_flight,
            ctl,
            slot,
            lease,
        };
        client.set_wait_strategy(WaitStrategy::BLOCK);
        Ok(client)
    }

    /// The client's slot (its reply ring is section `3 + slot`).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The client's peer id (the region handle's).
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_raw(self.lease.me).unwrap_or(self.server)
    }

    /// The server's peer id.
    pub fn server(&self) -> PeerId {
        self.server
    }

    /// The largest payload this client sends inline; larger ones go by
    /// handle.
    pub fn inline_max(&self) -> usize {
        self.inline_max
    }

    /// How many requests may be in flight at once; a send beyond that
    /// first reads replies (keeping them for their tickets) to make room.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Replies still expected (requests in flight, and requests given up
    /// on whose late replies have not come yet).
    pub fn in_flight(&self) -> usize {
        self.tickets.try_borrow().map_or(0, |t| t.expected())
    }

    /// The largest payload a call can carry: the client's arena lane.
    pub fn max_payload(&self) -> u64 {
        self.io.try_borrow().map_or(0, |io| io.writer.capacity())
    }

    /// Sets how the client waits (for room, for replies): default
    /// [`WaitStrategy::BLOCK`].
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        let io = self.io.get_mut();
        io.requests.set_wait_strategy(strategy);
        io.replies.set_wait_strategy(strategy);
        io.writer.set_wait_strategy(strategy);
    }

    /// Method `name` of the server, checked to take an `A` and give an
    /// `R`.
    ///
    /// # Errors
    /// [`LookupError::NotFound`] (also for a method registered after this
    /// call's look: look again), [`LookupError::WrongSignature`].
    pub fn method<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        name: &str,
    ) -> Result<Method<A, R>, LookupError> {
        let id = (0..self.published())
            .find(|&j| self.entry_name(j).as_deref() == Some(name))
            .ok_or_else(|| LookupError::NotFound {
                name: name.to_owned(),
            })?;
        self.check_signature::<A, R>(id, name)?;
        Ok(Method::from_id(id as u16))
    }

    /// Method `id` of the server, checked as [`method`](Self::method)
    /// checks a name.
    ///
    /// # Errors
    /// As [`method`](Self::method).
    pub fn method_by_id<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        id: u16,
    ) -> Result<Method<A, R>, LookupError> {
        let j = usize::from(id);
        let name = (j < self.published())
            .then(|| self.entry_name(j))
            .flatten()
            .ok_or_else(|| LookupError::NotFound {
                name: format!("#{id}"),
            })?;
        self.check_signature::<A, R>(j, &name)?;
        Ok(Method::from_id(id))
    }

    /// The names of the server's methods, by id.
    pub fn methods(&self) -> Vec<String> {
        (0..self.published())
            .map(|j| self.entry_name(j).unwrap_or_default())
            .collect()
    }

    /// Entries the server published (never more than the table holds).
    fn published(&self) -> usize {
        // Acquire: pairs with the server's Release store of the count; the
        // entries below it are complete.
        let n = self.ctl.header().methods.load(Ordering::Acquire) as usize;
        n.min(self.ctl.methods())
    }

    /// Entry `j`'s name (a copy, checked), `None` if it is not one.
    fn entry_name(&self, j: usize) -> Option<String> {
        let e = self.ctl.method(j);
        // Relaxed (all): ordered by the Acquire load of the count.
        let len = (e.meta.load(Ordering::Relaxed) & 0xFF) as usize;
        let mut words = [0u64; super::layout::MAX_NAME_LEN / 8];
        for (w, a) in words.iter_mut().zip(&e.name) {
            *w = a.load(Ordering::Relaxed).to_le();
        }
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        let name = bytes.get(..len)?;
        String::from_utf8(name.to_vec()).ok()
    }

    fn check_signature<A: ?Sized + Shape, R: ?Sized + Shape>(
        &self,
        j: usize,
        name: &str,
    ) -> Result<(), LookupError> {
        let e = self.ctl.method(j);
        // Relaxed: ordered by the Acquire load of the count.
        let arg = Signature::from_word(e.arg.load(Ordering::Relaxed));
        let result = Signature::from_word(e.result.load(Ordering::Relaxed));
        if arg == Some(A::SIGNATURE) && result == Some(R::SIGNATURE) {
            return Ok(());
        }
        let unknown = Signature {
            kind: super::shape::ShapeKind::Value,
            size: 0,
            align: 1,
        };
        Err(LookupError::WrongSignature {
            name: name.to_owned(),
            arg_wanted: A::SIGNATURE,
            result_wanted: R::SIGNATURE,
            arg_found: arg.unwrap_or(unknown),
            result_found: result.unwrap_or(unknown),
        })
    }
}

/// Claims a slot of `ctl` for `me`: a free one, or one whose owner is dead.
fn claim_slot(region: &Region, ctl: &ControlView, me: u32) -> Option<usize> {
    for take_dead in [false, true] {
        for slot in 0..ctl.slots() {
            let line = ctl.slot(slot);
            // Acquire: pairs with the Release of the previous owner's (or
            // the server's) release of the slot.
            let owner = line.owner.load(Ordering::Acquire);
            let free = owner == 0
                || (take_dead
                    && owner != me
                    && !PeerId::from_raw(owner).is_some_and(|p| region.peer_alive(p)));
            // AcqRel: Acquire as above; Release orders our claim before the
            // session we store next.
            if free
                && line
                    .owner
                    .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(slot);
            }
        }
    }
    None
}

// A client moves between threads (one uses it at a time).
const _: () = {
    const fn send<T: Send>() {}
    send::<Client>();
};
