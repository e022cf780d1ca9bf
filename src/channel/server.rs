//! The server: binds a channel, registers methods, serves requests one at
//! a time, and drops the clients that die.

use core::fmt;
use core::time::Duration;
use std::process::Command;

use bytemuck::Pod;

use super::error::{BindError, RegisterError, ServeError, TryServeError};
use super::layout::{BOUND, CLOSED, FORMATTING};
use super::method::Method;
use super::open::control_for;
use super::payload::{Out, OutError};
use super::registry::{self, Handler, Registry};
use super::serve::{ClientState, Core};
use super::shape::{Shape, Signature};
use super::spec::{ARENA, ChannelSpec, FIRST_REPLY, REQUESTS};
use crate::arena::{ArenaReader, ArenaWriter};
use crate::region::{PeerId, Region, SectionId};
use crate::ring::{RecvError, TryRecvError, mpsc, spsc};
use crate::sync::WaitStrategy;
use crate::sync::clock::Instant;
use crate::sync::shim::Ordering;

/// How many times a server that spins looks at the request ring at once
/// before it waits on it (see `serve_one_deadline`).
const EAGER_POLLS: u32 = 256;

/// How long the server waits for room for a reply by default.
pub const DEFAULT_STALL: Duration = Duration::from_secs(1);

/// What a server has done so far (see [`Server::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Request frames read.
    pub requests: u64,
    /// Replies sent.
    pub replies: u64,
    /// Error replies sent (unknown method, bad argument, panicked
    /// handler, no room for the result).
    pub errors: u64,
    /// Frames dropped unanswered: malformed, or from a client that is gone
    /// (or replies to one).
    pub dropped: u64,
    /// Clients found dead and dropped.
    pub clients_dropped: u64,
}

/// A connected client, as [`Server::clients`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its slot (its reply ring is section `3 + slot`).
    pub slot: usize,
    /// Its peer id.
    pub peer: PeerId,
}

/// The server of a channel: one process that answers the requests of many
/// clients, one at a time, in the order they arrive.
///
/// Register methods ([`method`](Self::method), [`method_slice`](Self::method_slice),
/// [`method_in_place`](Self::method_in_place)), then serve: [`serve`](Self::serve)
/// for ever, [`serve_until`](Self::serve_until) a condition, or one request
/// at a time ([`try_serve_one`](Self::try_serve_one),
/// [`serve_one_deadline`](Self::serve_one_deadline), ...) in a loop of your
/// own. Clients can connect once it serves. A handler that panics gets its
/// caller an error reply; the server goes on. Clients that die are
/// noticed (within about 100 ms while busy, a wait slice while idle) and
/// dropped: their requests still queued are not run, their slot and reply
/// ring go to the next client, their arena blocks are reclaimed.
///
/// A handler's argument is read in place (in the request's frame, or the
/// client's arena block): a live view of shared memory that a correct
/// client no longer writes but a hostile one could. Copy before you
/// validate when a value must stay what you checked.
///
/// `Send` (handlers are `Send`), not `Sync`.
///
/// ```
/// use polycephaly::channel::{ChannelSpec, Client, Server};
///
/// let mut server = Server::anonymous(ChannelSpec::new().with_clients(2))?;
/// server.method("add", |a: &[u64; 2]| a[0] + a[1])?;
/// server.method("sum", |xs: &[u64]| xs.iter().sum::<u64>())?;
/// // In real use the client is another process: `server.share_with(&mut
/// // command)` in the parent, `Region::inherited` and `Client::attach` in
/// // the child (or `Server::bind(name, ..)` and `Client::connect(name)`).
/// let region = server.region().reopen(&Default::default())?;
/// let stop = std::sync::atomic::AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| server.serve_until(|| stop.load(std::sync::atomic::Ordering::Relaxed)));
///     let client = Client::attach(&region).unwrap();
///     let add = client.method::<[u64; 2], u64>("add").unwrap();
///     assert_eq!(client.call(&add, &[2, 3]).unwrap(), 5);
///     let sum = client.method::<[u64], u64>("sum").unwrap();
///     let big: Vec<u64> = (0..1_000_000).collect(); // 8 MB: by handle
///     assert_eq!(client.call(&sum, &big[..]).unwrap(), 999_999 * 1_000_000 / 2);
///     stop.store(true, std::sync::atomic::Ordering::Relaxed);
/// });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    requests: mpsc::Consumer,
    core: Core,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.core.region.name())
            .field("slots", &self.core.clients.len())
            .field("methods", &self.core.registry.len())
            .field("stats", &self.core.stats)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds a channel to the name `/dev/shm/NAME`, for unrelated
    /// processes to [`connect`](super::Client::connect) to. A name left by
    /// a server that died is taken over (the old segment is unlinked; its
    /// clients keep their mapping and see the old server dead). The name
    /// is unlinked when the server is dropped.
    ///
    /// Two processes that take over the same stale name at the same moment
    /// may unlink each other's fresh segment; bind a name from one place.
    ///
    /// # Errors
    /// [`BindError::InUse`] when a live server holds the name,
    /// [`BindError::NameTaken`] when something else does; the errors of
    /// [`anonymous`](Self::anonymous).
    pub fn bind(name: &str, spec: ChannelSpec) -> Result<Server, BindError> {
        let build = || -> Result<Region, BindError> {
            Ok(spec.sections(Region::builder().named(name))?.build()?)
        };
        let region = match build() {
            Err(BindError::Create(crate::region::CreateError::NameTaken { .. })) => {
                take_over_stale(name)?;
                build()?
            }
            r => r?,
        };
        Self::on(region, spec)
    }

    /// A channel in an anonymous memfd, for child processes: hand it over
    /// with [`share_with`](Self::share_with) (the child calls
    /// [`Region::inherited`] and [`Client::attach`](super::Client::attach)).
    ///
    /// # Errors
    /// [`BindError::Spec`] (see [`ChannelSpec::check`]),
    /// [`BindError::Create`], and, in a region that does not behave,
    /// [`BindError::Format`] or [`BindError::Attach`].
    pub fn anonymous(spec: ChannelSpec) -> Result<Server, BindError> {
        let region = spec.sections(Region::builder().memfd())?.build()?;
        Self::on(region, spec)
    }

    /// Formats the control section and the arena of a fresh `region` laid
    /// out by `spec`, and takes the server's roles.
    fn on(region: Region, spec: ChannelSpec) -> Result<Server, BindError> {
        let slots = usize::from(spec.clients());
        let ctl = control_for(&region, slots, usize::from(spec.methods()))
            .map_err(|what| BindError::Attach(crate::AttachError::Corrupted { what }))?;
        spec.arena().format(&region, ARENA)?;
        let requests = mpsc::Consumer::attach(&region, REQUESTS)?;
        let replies = (0..spec.clients())
            .map(|s| spsc::Producer::attach(&region, SectionId(FIRST_REPLY + s)))
            .collect::<Result<Vec<_>, _>>()?;
        // Lanes clients.. are the server's, one per slot (a process may
        // write several lanes); client `i` writes lane `i`.
        let writers = (0..spec.clients())
            .map(|s| ArenaWriter::attach_lane(&region, ARENA, spec.clients() + s))
            .collect::<Result<Vec<_>, _>>()?;
        let reader = ArenaReader::attach(&region, ARENA)?;
        let h = ctl.header();
        // Relaxed (all): published by the Release store of BOUND below.
        h.slots.store(slots as u32, Ordering::Relaxed);
        h.methods_cap
            .store(u32::from(spec.methods()), Ordering::Relaxed);
        h.inline_max.store(spec.inline_max(), Ordering::Relaxed);
        h.max_in_flight
            .store(spec.max_in_flight(), Ordering::Relaxed);
        h.server.store(region.peer_id().to_raw(), Ordering::Relaxed);
        h.version.store(super::layout::VERSION, Ordering::Relaxed);
        h.magic.store(super::layout::MAGIC, Ordering::Relaxed);
        // Release: pairs with the clients' Acquire load of the state; the
        // fields above are visible to a client that sees BOUND or later.
        h.state.word().store(BOUND, Ordering::Release);
        let mut server = Server {
            requests,
            core: Core {
                replies,
                writers,
                reader,
                registry: Registry::new(usize::from(spec.methods())),
                clients: vec![ClientState::default(); slots],
                ctl,
                region,
                inline_max: spec.inline_max() as usize,
                stall: DEFAULT_STALL,
                strategy: WaitStrategy::BLOCK,
                scratch: Vec::new(),
                stats: ServerStats::default(),
                serving: false,
                last_scan: None,
                slice_end: None,
                since_scan: 0,
            },
        };
        server.set_wait_strategy(WaitStrategy::BLOCK);
        Ok(server)
    }

    /// The channel's region (to [`share_with`](Region::share_with) a child,
    /// or [`reopen`](Region::reopen) in a forked one).
    pub fn region(&self) -> &Region {
        &self.core.region
    }

    /// Prepares `cmd` so that the child it starts inherits the channel's
    /// region (see [`Region::share_with`]); the child attaches with
    /// [`Client::attach`](super::Client::attach) on
    /// [`Region::inherited`].
    ///
    /// # Errors
    /// As [`Region::share_with`].
    pub fn share_with(&self, cmd: &mut Command) -> std::io::Result<()> {
        self.core.region.share_with(cmd)
    }

    /// What the server has done so far.
    pub fn stats(&self) -> ServerStats {
        self.core.stats
    }

    /// The clients that hold a slot now (live or not yet found dead).
    pub fn clients(&self) -> Vec<ClientInfo> {
        (0..self.core.clients.len())
            .filter_map(|slot| {
                // Acquire: pairs with the client's claim of the slot.
                let w = self.core.ctl.slot(slot).word.load(Ordering::Acquire);
                PeerId::from_raw(super::layout::slot_owner(w)).map(|peer| ClientInfo { slot, peer })
            })
            .collect()
    }

    /// How the server waits for requests and for room (default
    /// [`WaitStrategy::BLOCK`]); its slice is also how often an idle
    /// server looks for dead clients.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.strategy = strategy;
        self.requests.set_wait_strategy(strategy);
        for w in &mut self.core.writers {
            w.set_wait_strategy(strategy);
        }
        for r in &mut self.core.replies {
            r.set_wait_strategy(strategy);
        }
    }

    /// How long the server waits for room for a reply (in a client's reply
    /// ring, or its own lane) before it gives up on that reply (default
    /// [`DEFAULT_STALL`]). A client that follows the protocol never makes
    /// it wait for ring room; a full lane sends the caller
    /// [`CallError::Busy`](super::CallError::Busy).
    pub fn set_stall_timeout(&mut self, stall: Duration) {
        self.core.stall = stall;
    }

    /// Registers `f` as method `name`: it takes an `A` (a `T: Pod`, or a
    /// slice `[T]`) and gives one value `R`.
    ///
    /// ```
    /// # let mut server = polycephaly::channel::Server::anonymous(Default::default())?;
    /// server.method("add", |a: &[u64; 2]| a[0] + a[1])?;
    /// server.method("len", |b: &[u8]| b.len() as u64)?;
    /// assert!(server.method("add", |_: &u8| 0u8).is_err()); // taken
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`RegisterError`].
    pub fn method<A, R, F>(&mut self, name: &str, f: F) -> Result<Method<A, R>, RegisterError>
    where
        A: ?Sized + Shape,
        R: Pod,
        F: Fn(&A) -> R + Send + 'static,
    {
        let id = self.register(name, A::SIGNATURE, R::SIGNATURE, registry::value(f))?;
        Ok(Method::from_id(id))
    }

    /// Registers `f` as method `name` giving a slice, returned as a
    /// vector (copied to where it travels: into the reply frame, or a
    /// block when large). To build a large result in place instead, see
    /// [`method_in_place`](Self::method_in_place).
    ///
    /// # Errors
    /// See [`RegisterError`].
    pub fn method_slice<A, R, F>(
        &mut self,
        name: &str,
        f: F,
    ) -> Result<Method<A, [R]>, RegisterError>
    where
        A: ?Sized + Shape,
        R: Pod,
        F: Fn(&A) -> Vec<R> + Send + 'static,
    {
        let id = self.register(name, A::SIGNATURE, <[R]>::SIGNATURE, registry::slice(f))?;
        Ok(Method::from_id(id))
    }

    /// Registers `f` as method `name` building its slice result in place:
    /// [`Out::alloc`] gives room where the result travels (the reply frame,
    /// or a block of the server's lane that the caller then reads in
    /// place: no copy either way).
    ///
    /// ```
    /// # let mut server = polycephaly::channel::Server::anonymous(Default::default())?;
    /// server.method_in_place("iota", |n: &u64, out| {
    ///     for (i, x) in out.alloc(*n as usize)?.iter_mut().enumerate() {
    ///         *x = i as u64;
    ///     }
    ///     Ok(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`RegisterError`].
    pub fn method_in_place<A, R, F>(
        &mut self,
        name: &str,
        f: F,
    ) -> Result<Method<A, [R]>, RegisterError>
    where
        A: ?Sized + Shape,
        R: Pod,
        F: Fn(&A, &mut Out<'_, R>) -> Result<(), OutError> + Send + 'static,
    {
        let id = self.register(name, A::SIGNATURE, <[R]>::SIGNATURE, registry::in_place(f))?;
        Ok(Method::from_id(id))
    }

    /// Adds a method to the registry and publishes its entry.
    fn register(
        &mut self,
        name: &str,
        arg: Signature,
        result: Signature,
        handler: Handler,
    ) -> Result<u16, RegisterError> {
        let id = self.core.registry.add(name, arg, result, handler)?;
        let e = self.core.ctl.method(usize::from(id));
        let mut words = [0u64; super::layout::MAX_NAME_LEN / 8];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        // Relaxed (all): published by the Release store of the count.
        e.meta.store(name.len() as u64, Ordering::Relaxed);
        e.arg.store(arg.to_word(), Ordering::Relaxed);
        e.result.store(result.to_word(), Ordering::Relaxed);
        for (slot, w) in e.name.iter().zip(words) {
            slot.store(u64::from_le(w), Ordering::Relaxed);
        }
        // Release: pairs with the clients' Acquire load of the count; the
        // entry is complete for whoever sees it counted.
        self.core
            .ctl
            .header()
            .methods
            .store(u32::from(id) + 1, Ordering::Release);
        Ok(id)
    }

    /// Serves for ever (returns only on an error).
    ///
    /// # Errors
    /// [`ServeError::Corrupted`] if the request ring is corrupted.
    pub fn serve(&mut self) -> Result<(), ServeError> {
        loop {
            self.serve_one()?;
        }
    }

    /// Serves until `stop` returns true; it is asked after every request,
    /// and at least once per wait slice while no request comes.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub fn serve_until(&mut self, mut stop: impl FnMut() -> bool) -> Result<(), ServeError> {
        while !stop() {
            let slice = self.core.strategy.slice;
            match self.serve_one_deadline(Instant::now().checked_add(slice)) {
                Ok(()) | Err(ServeError::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Serves one request frame if one is waiting (answers it, or drops it
    /// if its client is gone), without waiting.
    ///
    /// # Errors
    /// [`TryServeError::Empty`], [`TryServeError::Corrupted`].
    pub fn try_serve_one(&mut self) -> Result<(), TryServeError> {
        self.core.start();
        self.core.tick();
        match self.requests.try_read() {
            Ok(frame) => {
                self.core.handle(&frame);
                Ok(())
            }
            Err(TryRecvError::Empty) => Err(TryServeError::Empty),
            Err(_) => Err(TryServeError::Corrupted),
        }
    }

    /// Serves one request frame, waiting for it without limit.
    ///
    /// # Errors
    /// [`ServeError::Corrupted`].
    pub fn serve_one(&mut self) -> Result<(), ServeError> {
        self.serve_one_deadline(None)
    }

    /// As [`serve_one`](Self::serve_one), giving up after `timeout`.
    ///
    /// # Errors
    /// [`ServeError::TimedOut`], [`ServeError::Corrupted`].
    pub fn serve_one_timeout(&mut self, timeout: Duration) -> Result<(), ServeError> {
        self.serve_one_deadline(Instant::now().checked_add(timeout))
    }

    /// As [`serve_one`](Self::serve_one), giving up at `deadline` (`None`:
    /// never). While it waits it looks for dead clients once per slice. A
    /// server whose strategy spins first looks at the request ring at
    /// once, a few hundred times (requests come in bursts), before it
    /// waits on the ring (which polls gently, then sleeps if the strategy
    /// does).
    ///
    /// # Errors
    /// [`ServeError::TimedOut`], [`ServeError::Corrupted`].
    pub fn serve_one_deadline(&mut self, deadline: Option<Instant>) -> Result<(), ServeError> {
        self.core.start();
        // Requests come in bursts: look again at once a few hundred times
        // (a few microseconds) before the ring's own wait, which polls
        // gently (it pauses between looks, to leave the line to a producer
        // writing it) and then sleeps. A strategy that does not spin
        // (`WaitStrategy::SLEEP`) goes to sleep at once.
        if self.core.strategy.spin_only || !self.core.strategy.spin.is_zero() {
            for _ in 0..EAGER_POLLS {
                match self.requests.try_read() {
                    Ok(frame) => {
                        self.core.tick();
                        self.core.handle(&frame);
                        return Ok(());
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(_) => return Err(ServeError::Corrupted),
                }
            }
        }
        loop {
            self.core.tick();
            // While idle, wake at the end of each slice to look for dead
            // clients. The slice's end is kept across requests, so that a
            // busy server does not read the clock for every one.
            let slice_end = match self.core.slice_end {
                Some(t) => Some(t),
                None => {
                    let t = Instant::now().checked_add(self.core.strategy.slice);
                    self.core.slice_end = t;
                    t
                }
            };
            let until = match (deadline, slice_end) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            match self.requests.read_deadline(until) {
                Ok(frame) => {
                    self.core.handle(&frame);
                    return Ok(());
                }
                Err(RecvError::Corrupted) => return Err(ServeError::Corrupted),
                // The slice or the deadline passed (an MPSC consumer never
                // sees its producers dead: they come and go).
                Err(_) => {
                    self.core.slice_end = None;
                    self.core.scan();
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(ServeError::TimedOut);
                    }
                }
            }
        }
    }
}

/// Unlinks `name` if it holds the channel of a dead (or closed) server.
fn take_over_stale(name: &str) -> Result<(), BindError> {
    let taken = || BindError::NameTaken {
        name: name.to_owned(),
    };
    let old = Region::open(name).map_err(|_| taken())?;
    let probe = control_for(&old, 1, 1).map_err(|_| taken())?;
    // Acquire: pairs with the old server's Release stores of the state.
    let state = probe.header().state.word().load(Ordering::Acquire);
    let alive = if state == FORMATTING {
        // It died (or lives) before it announced itself: it created the
        // region.
        old.creator().is_alive()
    } else {
        let (_, announced) = super::open::announced(&old).map_err(|_| taken())?;
        PeerId::from_raw(announced.server).is_some_and(|p| old.peer_alive(p))
    };
    if alive && state != CLOSED {
        return Err(BindError::InUse {
            name: name.to_owned(),
        });
    }
    drop(probe);
    drop(old);
    // Somebody may have unlinked it meanwhile: then there is nothing to do.
    let _ = rustix::shm::unlink(name);
    Ok(())
}

impl Drop for Server {
    /// Closes the channel: clients waiting on it get `PeerDead`.
    fn drop(&mut self) {
        if !self.core.region.opened_by_current_process() {
            return;
        }
        let state = &self.core.ctl.header().state;
        // Release: pairs with the clients' Acquire loads of the state.
        state.word().store(CLOSED, Ordering::Release);
        state.wake_all();
    }
}

// A server can serve from a thread of its own.
const _: () = {
    const fn send<T: Send>() {}
    send::<Server>();
};
