//! The server's side of each request: admitting it (the client's slot and
//! session), running its method, answering it; and finding dead clients.

use core::time::Duration;

use super::layout::{ControlView, SERVING, slot_owner, slot_session, slot_word, split_route};
use super::payload::{Fault, Lane, OutError, Patience, ReplyOut, send_error};
use super::registry::Registry;
use super::server::ServerStats;
use super::wire::{self, Body, Kind};
use crate::arena::{ArenaReader, ArenaWriter};
use crate::region::{PeerId, Region};
use crate::ring::spsc;
use crate::sync::WaitStrategy;
use crate::sync::clock::Instant;
use crate::sync::shim::Ordering;

/// How often a busy server looks for dead clients (an idle one looks
/// once per wait slice).
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// Requests between two readings of the clock for [`SCAN_EVERY`].
const SCAN_CHECK: u32 = 256;

/// What the server knows of one slot's current client.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ClientState {
    /// Its session (0: none seen yet).
    session: u32,
    /// Its raw peer id.
    peer: u32,
    /// Whether requests of this session are answered.
    live: bool,
}

impl ClientState {
    /// The slot's word while this session holds it.
    fn word(&self) -> u64 {
        slot_word(self.peer, self.session)
    }
}

/// Everything but the request ring, so that a request frame (a borrow of
/// the ring) can be handled by `&mut Core`.
pub(super) struct Core {
    pub(super) replies: Vec<spsc::Producer>,
    /// The server's lanes, one per slot: the replies to slot `i` are
    /// built in `writers[i]`, so that blocks one client holds (or leaves
    /// unread) never take room from another's.
    pub(super) writers: Vec<ArenaWriter>,
    pub(super) reader: ArenaReader,
    pub(super) registry: Registry,
    pub(super) clients: Vec<ClientState>,
    pub(super) ctl: ControlView,
    pub(super) region: Region,
    pub(super) inline_max: usize,
    pub(super) stall: Duration,
    pub(super) strategy: WaitStrategy,
    pub(super) scratch: Vec<u64>,
    pub(super) stats: ServerStats,
    pub(super) serving: bool,
    pub(super) last_scan: Option<Instant>,
    /// When an idle server next looks for dead clients.
    pub(super) slice_end: Option<Instant>,
    pub(super) since_scan: u32,
}

impl Core {
    /// Opens the channel to clients (once).
    pub(super) fn start(&mut self) {
        if !self.serving {
            self.serving = true;
            let state = &self.ctl.header().state;
            // Release: pairs with the clients' Acquire load; the methods
            // registered so far are visible to a client that sees SERVING.
            state.word().store(SERVING, Ordering::Release);
            state.wake_all();
        }
    }

    /// Counts a request; looks for dead clients every [`SCAN_EVERY`].
    #[inline]
    pub(super) fn tick(&mut self) {
        self.since_scan += 1;
        if self.since_scan < SCAN_CHECK && self.last_scan.is_some() {
            return;
        }
        self.since_scan = 0;
        let now = Instant::now();
        if self
            .last_scan
            .is_none_or(|t| now.saturating_duration_since(t) >= SCAN_EVERY)
        {
            self.scan();
        }
    }

    /// Looks at every slot: a client that left is no longer answered, a
    /// dead one is dropped and its slot freed for the next client.
    pub(super) fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        for (slot, (st, writer)) in self.clients.iter_mut().zip(&mut self.writers).enumerate() {
            let line = self.ctl.slot(slot);
            // Acquire: pairs with the client's claim (or release) of the
            // slot.
            let w = line.word.load(Ordering::Acquire);
            if st.live && w != st.word() {
                end_session(st, writer);
            }
            let owner = slot_owner(w);
            if owner == 0 {
                continue;
            }
            let alive = PeerId::from_raw(owner).is_some_and(|p| self.region.peer_alive(p));
            if !alive {
                if st.live {
                    end_session(st, writer);
                }
                // AcqRel: the slot goes back to the clients, its session
                // kept; a client that claims it next starts the next one.
                // Failure: a new client took it over already.
                if line
                    .word
                    .compare_exchange(
                        w,
                        slot_word(0, slot_session(w)),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.stats.clients_dropped += 1;
                }
            }
        }
    }

    /// The slot of a request's route if its session is the slot's current
    /// one (adopting a new session), `None` for a client that is gone
    /// (another session holds the slot, even one of the same process).
    #[inline]
    fn admit(&mut self, route: u32) -> Option<usize> {
        let (slot, session) = split_route(route);
        let st = self.clients.get_mut(slot)?;
        let line = self.ctl.slot(slot);
        // The fast path: the session we answer, still the slot's (owner
        // and session compared at once). Relaxed: compared only; any other
        // value goes the slow way.
        if st.live && st.session == session && line.word.load(Ordering::Relaxed) == st.word() {
            return Some(slot);
        }
        // Acquire: pairs with the client's claim of the slot (its CAS),
        // which happens before its request's commit (whose Release our
        // read of the frame acquired already).
        let w = line.word.load(Ordering::Acquire);
        if st.live && w != st.word() {
            if let Some(writer) = self.writers.get_mut(slot) {
                end_session(st, writer);
            }
        }
        if session == 0 || slot_session(w) != session || slot_owner(w) == 0 {
            return None;
        }
        *st = ClientState {
            session,
            peer: slot_owner(w),
            live: true,
        };
        Some(slot)
    }

    /// Answers one request frame (or drops it).
    pub(super) fn handle(&mut self, frame: &[u8]) {
        self.stats.requests += 1;
        let msg = match wire::decode(frame) {
            Ok(m) if m.head.kind == Kind::Request => m,
            _ => {
                self.stats.dropped += 1;
                return;
            }
        };
        let Some(slot) = self.admit(msg.head.route) else {
            self.stats.dropped += 1;
            // Its block was published for us: read and released, it goes
            // back to the lane (adopted by whoever writes it next).
            if let Body::Block(h) = msg.body {
                drop(self.reader.read_bytes(&h));
            }
            return;
        };
        let head = msg.head;
        let ours = self.clients[slot].word();
        let peer = self.clients[slot].peer;
        let Some(client) = PeerId::from_raw(peer) else {
            return;
        };
        let (Some(tx), Some(writer)) = (self.replies.get_mut(slot), self.writers.get_mut(slot))
        else {
            return;
        };
        let held = match msg.body {
            Body::Inline(_) => None,
            Body::Block(h) => match self.reader.read_bytes(&h) {
                Ok(g) => Some(g),
                Err(e) => {
                    let fault = Fault::BadArgument(format!("the argument's block: {e}"));
                    answer_fault(tx, &head, fault, self.stall, &mut self.stats);
                    return;
                }
            },
        };
        let arg: &[u8] = match (&held, msg.body) {
            (Some(g), _) => g,
            (None, Body::Inline(b)) => b,
            (None, Body::Block(_)) => &[],
        };
        let lane = Lane {
            writer,
            reader: client,
            inline_max: self.inline_max,
        };
        let mut out = ReplyOut::new(&mut *tx, lane, &mut self.scratch, head.reply(), self.stall);
        let ran = self.registry.dispatch(head.method, arg, &mut out);
        // The argument's block goes back to the client's lane now.
        drop(held);
        // A session that ended meanwhile gets nothing (its blocks would
        // wait for a reader that never comes), even if its process claimed
        // the slot again. Relaxed: compared only (see `admit`).
        let here = self.ctl.slot(slot).word.load(Ordering::Relaxed) == ours;
        if !here {
            // Sends nothing, and rolls a block it holds back.
            drop(out);
            self.stats.dropped += 1;
            return;
        }
        match ran {
            Ok(()) => match out.finish() {
                Ok(()) => self.stats.replies += 1,
                // Finishing found the client gone (the ring's consumer
                // role is free) or its ring corrupted: no reply can go.
                Err(OutError::ClientGone | OutError::Corrupted) => self.stats.dropped += 1,
                Err(e) => answer_fault(tx, &head, Fault::Out(e), self.stall, &mut self.stats),
            },
            // Whatever the handler's fault (even an `OutError` it made up,
            // or got from a corrupted lane), its caller gets an error
            // reply: otherwise it would wait for ever, and its ticket
            // count against its requests in flight for ever.
            Err(fault) => {
                // Sends nothing, and rolls a block it holds back.
                drop(out);
                answer_fault(tx, &head, fault, self.stall, &mut self.stats);
            }
        }
    }
}

/// The session the server answered on a slot ended (its client left or
/// died; the slot may have a new owner, even of the same process): its
/// requests are no longer answered, and the results the server published
/// for it that it did not read are forgiven, so that they do not hold up
/// the slot's lane (a reply sent just as the client left, after it looked
/// for unread ones, would otherwise be owed by a peer that may live on).
fn end_session(st: &mut ClientState, writer: &mut ArenaWriter) {
    st.live = false;
    writer.forgive_owed();
}

/// Sends the error reply a fault calls for (counting the request dropped
/// if it cannot be sent).
fn answer_fault(
    tx: &mut spsc::Producer,
    head: &wire::Head,
    fault: Fault,
    stall: Duration,
    stats: &mut ServerStats,
) {
    let (status, message) = fault.status();
    let patience = Patience::Until(Instant::now().checked_add(stall));
    match send_error(tx, head, status, &message, patience) {
        Ok(()) => stats.errors += 1,
        Err(_) => stats.dropped += 1,
    }
}
