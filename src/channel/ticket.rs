//! [`Ticket`]: a request in flight, to wait on for its reply.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use super::client::Client;
use super::error::{CallError, TryWaitError};
use super::shape::Shape;
use crate::sync::clock::Instant;

/// A request sent with [`Client::send`] and not yet answered: wait on it
/// for the result ([`wait`](Self::wait), [`wait_timeout`](Self::wait_timeout),
/// [`wait_deadline`](Self::wait_deadline), [`try_wait`](Self::try_wait)).
///
/// Tickets may be waited on in any order; a reply that arrives while
/// another ticket is waited on is kept for its own. A ticket that times
/// out, fails, or is dropped unwaited is given up: its reply, when it
/// comes, is dropped (and its block released), never delivered to another
/// ticket. Until then it still counts against the client's
/// [`max_in_flight`](Client::max_in_flight).
#[must_use = "a ticket is the only way to the reply"]
pub struct Ticket<'c, R: ?Sized + Shape> {
    client: &'c Client,
    id: u64,
    /// Not waited on to the end yet (dropping it gives it up).
    live: bool,
    _result: PhantomData<fn() -> *const R>,
}

impl<R: ?Sized + Shape> fmt::Debug for Ticket<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("live", &self.live)
            .finish()
    }
}

impl<'c, R: ?Sized + Shape> Ticket<'c, R> {
    pub(super) fn new(client: &'c Client, id: u64) -> Self {
        Self {
            client,
            id,
            live: true,
            _result: PhantomData,
        }
    }

    /// The request's correlation id (unique for the client's life).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the result without limit (until the server answers or
    /// dies).
    ///
    /// # Errors
    /// See [`CallError`] (never `TimedOut`).
    #[inline]
    pub fn wait(self) -> Result<R::Received<'c>, CallError> {
        self.wait_deadline(None)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub fn wait_timeout(self, timeout: Duration) -> Result<R::Received<'c>, CallError> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// As [`wait`](Self::wait), giving up at `deadline` (`None`: never);
    /// the ticket is then given up (its late reply dropped).
    ///
    /// # Errors
    /// See [`CallError`].
    #[inline]
    pub fn wait_deadline(
        mut self,
        deadline: Option<Instant>,
    ) -> Result<R::Received<'c>, CallError> {
        let r = self.client.wait_for::<R>(self.id, deadline);
        if r.is_ok() {
            self.live = false;
        }
        // On an error, dropping `self` gives the ticket up (nothing to
        // give up if its error reply was what came).
        r
    }

    /// The result if its reply has come (reading the replies there are
    /// now), without waiting; else the ticket back.
    ///
    /// # Errors
    /// [`TryWaitError::NotReady`] with the ticket;
    /// [`TryWaitError::Failed`] (the ticket is given up).
    pub fn try_wait(mut self) -> Result<R::Received<'c>, TryWaitError<Self>> {
        match self.client.poll_for::<R>(self.id) {
            Ok(Some(r)) => {
                self.live = false;
                Ok(r)
            }
            Ok(None) => Err(TryWaitError::NotReady(self)),
            Err(e) => Err(TryWaitError::Failed(e)),
        }
    }
}

impl<R: ?Sized + Shape> Drop for Ticket<'_, R> {
    fn drop(&mut self) {
        if self.live {
            self.client.abandon(self.id);
        }
    }
}
