//! Ticket matching: correlation ids for requests in flight, replies that
//! arrive before their ticket is waited on, and tickets given up on (timed
//! out or dropped) whose late replies must be dropped, never delivered to
//! another ticket.
//!
//! Pure bookkeeping, generic over what a reply is, with no ring or clock:
//! the client drives it, the pool's master will too, and the property test
//! checks it against a model. Correlation ids are issued in increasing
//! order and never reused, so a reply can only ever match the ticket its id
//! was issued to.

/// What became of an arrived reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<V> {
    /// Its ticket is waiting: kept until the ticket is waited on.
    Kept,
    /// Its ticket was given up on, or its id was never issued (a stale or
    /// forged reply): the reply, to release and forget.
    Dropped(V),
}

#[derive(Debug)]
enum State<V> {
    /// Issued, no reply yet.
    Waiting,
    /// The reply came before the ticket was waited on.
    Arrived(V),
    /// Given up on before its reply came; the reply is still expected.
    Abandoned,
}

/// The tickets in flight of one requester (see the module docs).
///
/// # Invariants
/// - `next` is above every id issued; ids start at 1.
/// - `entries` holds each id at most once, in issue order, and only ids
///   below `next`.
/// - An id leaves `entries` when its reply is taken by its ticket, or
///   when the reply of an abandoned ticket arrives, or when a ticket whose
///   reply already arrived is abandoned.
#[derive(Debug)]
pub struct Tickets<V> {
    next: u64,
    entries: Vec<(u64, State<V>)>,
}

impl<V> Default for Tickets<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Tickets<V> {
    /// No tickets; the first id issued is 1.
    pub fn new() -> Self {
        Self {
            next: 1,
            entries: Vec::new(),
        }
    }

    fn position(&self, id: u64) -> Option<usize> {
        // Newest first: the ticket waited on is usually the last issued.
        self.entries.iter().rposition(|(i, _)| *i == id)
    }

    /// Issues a new id (the ticket of a request about to be sent).
    pub fn issue(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        self.entries.push((id, State::Waiting));
        id
    }

    /// Withdraws `id`, issued for a request that was never sent.
    pub fn withdraw(&mut self, id: u64) {
        if let Some(p) = self.position(id) {
            self.entries.remove(p);
        }
    }

    /// Replies still expected: tickets waiting, or abandoned, whose reply
    /// has not arrived (each may still take room in the reply ring).
    pub fn expected(&self) -> usize {
        self.entries
            .iter()
            .filter(|(_, s)| !matches!(s, State::Arrived(_)))
            .count()
    }

    /// A reply for `id` arrived while its ticket was not being waited on.
    pub fn arrive(&mut self, id: u64, reply: V) -> Arrival<V> {
        let Some(p) = self.position(id) else {
            return Arrival::Dropped(reply);
        };
        match self.entries[p].1 {
            State::Waiting => {
                self.entries[p].1 = State::Arrived(reply);
                Arrival::Kept
            }
            State::Abandoned => {
                self.entries.remove(p);
                Arrival::Dropped(reply)
            }
            // A second reply for one request: not ours to believe.
            State::Arrived(_) => Arrival::Dropped(reply),
        }
    }

    /// The ticket `id` got its reply straight from the ring (it was waiting
    /// on it): forgets the ticket. False if `id` was not waiting (then the
    /// reply is not its to take).
    pub fn complete(&mut self, id: u64) -> bool {
        match self.position(id) {
            Some(p) if matches!(self.entries[p].1, State::Waiting) => {
                self.entries.remove(p);
                true
            }
            _ => false,
        }
    }

    /// The reply that arrived for ticket `id` before it was waited on, if
    /// any (the ticket is then finished).
    pub fn take(&mut self, id: u64) -> Option<V> {
        let p = self.position(id)?;
        if !matches!(self.entries[p].1, State::Arrived(_)) {
            return None;
        }
        match self.entries.remove(p).1 {
            State::Arrived(v) => Some(v),
            _ => None,
        }
    }

    /// Forgets every ticket (their requester is going away) and returns the
    /// replies that had arrived, to release.
    pub fn drain(&mut self) -> Vec<V> {
        self.entries
            .drain(..)
            .filter_map(|(_, s)| match s {
                State::Arrived(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    /// Gives up on ticket `id` (it timed out, or was dropped): a reply
    /// still to come will be dropped; one that already arrived is returned,
    /// to release.
    pub fn abandon(&mut self, id: u64) -> Option<V> {
        let p = self.position(id)?;
        match self.entries[p].1 {
            State::Waiting => {
                self.entries[p].1 = State::Abandoned;
                None
            }
            State::Arrived(_) => match self.entries.remove(p).1 {
                State::Arrived(v) => Some(v),
                _ => None,
            },
            State::Abandoned => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_and_late_replies() {
        let mut t = Tickets::new();
        let (a, b, c) = (t.issue(), t.issue(), t.issue());
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(t.expected(), 3);
        // c's reply first, while a is waited on: kept for c.
        assert_eq!(t.arrive(c, "c"), Arrival::Kept);
        assert_eq!(t.expected(), 2);
        assert!(t.complete(a));
        // b times out; its reply comes late and is dropped.
        assert_eq!(t.abandon(b), None);
        assert_eq!(t.expected(), 1);
        assert_eq!(t.arrive(b, "b"), Arrival::Dropped("b"));
        assert_eq!(t.expected(), 0);
        assert_eq!(t.take(c), Some("c"));
        assert_eq!(t.expected(), 0);
        // Unknown ids are dropped.
        assert_eq!(t.arrive(99, "x"), Arrival::Dropped("x"));
        assert!(!t.complete(99));
    }

    #[test]
    fn abandoning_an_arrived_reply_returns_it() {
        let mut t = Tickets::new();
        let a = t.issue();
        assert_eq!(t.arrive(a, 5), Arrival::Kept);
        assert_eq!(t.abandon(a), Some(5));
        assert_eq!(t.take(a), None);
        let b = t.issue();
        t.withdraw(b);
        assert_eq!(t.expected(), 0);
        let c = t.issue();
        assert_eq!(t.arrive(c, 1), Arrival::Kept);
        assert_eq!(t.arrive(c, 2), Arrival::Dropped(2));
        assert_eq!(t.take(c), Some(1));
        let (d, e, _f) = (t.issue(), t.issue(), t.issue());
        assert_eq!(t.arrive(e, 7), Arrival::Kept);
        assert_eq!(t.abandon(d), None);
        assert_eq!(t.drain(), vec![7]);
        assert_eq!(t.expected(), 0);
    }
}
