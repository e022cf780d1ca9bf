//! Calls whose argument is built in place: `n` elements written by a
//! closure straight into a block of the client's lane (no copy of a large
//! argument), or, for an inline one, into a buffer of the client's that is
//! copied into the request's frame (so that no frame of the shared request
//! ring stays claimed while the closure runs).

use core::time::Duration;

use bytemuck::Pod;

use super::client::Client;
use super::error::{CallError, SendError, TrySendError};
use super::method::Method;
use super::payload::{Outgoing, Patience};
use super::shape::Shape;
use super::ticket::Ticket;
use crate::sync::clock::Instant;

impl Client {
    /// Calls method `m` with `n` elements built in place by `fill` (zeroed
    /// first, in a block of the client's lane: no copy of a large
    /// argument; an inline one is built in a buffer of the client's and
    /// copied into the request's frame), and waits for the result without
    /// limit. A slow `fill` delays only this call: no frame of the request
    /// ring, which every client shares, is claimed while it runs.
    ///
    /// `fill` must not use the client (it would get
    /// [`CallError::ClientBusy`]). If `fill` panics, nothing is sent, the
    /// request's ticket is withdrawn, and the panic goes on to the caller.
    ///
    /// ```no_run
    /// # fn f(client: &polycephaly::channel::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let sum = client.method::<[u64], u64>("sum")?;
    /// let total = client.call_with(&sum, 10_000_000, |xs| {
    ///     for (i, x) in xs.iter_mut().enumerate() {
    ///         *x = i as u64;
    ///     }
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`CallError`] (never `TimedOut`).
    pub fn call_with<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
    ) -> Result<R::Received<'_>, CallError> {
        self.call_with_deadline(m, n, fill, None)
    }

    /// As [`call_with`](Self::call_with), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`CallError`].
    pub fn call_with_timeout<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
        timeout: Duration,
    ) -> Result<R::Received<'_>, CallError> {
        self.call_with_deadline(m, n, fill, Instant::now().checked_add(timeout))
    }

    /// As [`call_with`](Self::call_with), giving up at `deadline` (`None`:
    /// never).
    ///
    /// # Errors
    /// See [`CallError`].
    pub fn call_with_deadline<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
        deadline: Option<Instant>,
    ) -> Result<R::Received<'_>, CallError> {
        self.send_with_deadline(m, n, fill, deadline)?
            .wait_deadline(deadline)
    }

    /// As [`send`](Self::send), with `n` elements built in place by `fill`
    /// (see [`call_with`](Self::call_with)), waiting for room without
    /// limit.
    ///
    /// # Errors
    /// See [`SendError`] (never `TimedOut`).
    pub fn send_with<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
    ) -> Result<Ticket<'_, R>, SendError> {
        self.send_with_deadline(m, n, fill, None)
    }

    /// As [`send_with`](Self::send_with), giving up after `timeout`.
    ///
    /// # Errors
    /// See [`SendError`].
    pub fn send_with_timeout<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
        timeout: Duration,
    ) -> Result<Ticket<'_, R>, SendError> {
        self.send_with_deadline(m, n, fill, Instant::now().checked_add(timeout))
    }

    /// As [`send_with`](Self::send_with), giving up at `deadline` (`None`:
    /// never).
    ///
    /// # Errors
    /// See [`SendError`].
    pub fn send_with_deadline<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
        deadline: Option<Instant>,
    ) -> Result<Ticket<'_, R>, SendError> {
        let payload = self.fill_payload(n, fill).ok_or(SendError::TooLarge {
            bytes: u64::MAX,
            max: self.max_payload(),
        })?;
        let id = self.post(m.id(), payload, Patience::Until(deadline))?;
        Ok(Ticket::new(self, id))
    }

    /// As [`send_with`](Self::send_with), without waiting (see
    /// [`try_send`](Self::try_send)).
    ///
    /// # Errors
    /// See [`TrySendError`].
    pub fn try_send_with<T: Pod, R: ?Sized + Shape>(
        &self,
        m: &Method<[T], R>,
        n: usize,
        fill: impl FnOnce(&mut [T]),
    ) -> Result<Ticket<'_, R>, TrySendError> {
        let payload = self.fill_payload(n, fill).ok_or(TrySendError::TooLarge {
            bytes: u64::MAX,
            max: self.max_payload(),
        })?;
        let id = self.post(m.id(), payload, Patience::Never)?;
        Ok(Ticket::new(self, id))
    }

    /// `n` elements of `T` written in place by `fill`, as bytes; `None` if
    /// their length overflows.
    fn fill_payload<T: Pod>(
        &self,
        n: usize,
        fill: impl FnOnce(&mut [T]),
    ) -> Option<Outgoing<'static, impl FnOnce(&mut [u8])>> {
        let len = n.checked_mul(size_of::<T>())?;
        Some(Outgoing {
            len,
            align: align_of::<T>(),
            src: None,
            // The room is `len` long and aligned for T (see
            // `payload::send`) unless T is aligned beyond an arena block's
            // 64 bytes: such elements (and elements of no size, which no
            // byte room can be cast to) are built in a buffer of T and
            // copied.
            fill: move |bytes: &mut [u8]| {
                if let Ok(xs) = bytemuck::try_cast_slice_mut::<u8, T>(bytes) {
                    return fill(xs);
                }
                let mut staged = vec![T::zeroed(); n];
                fill(&mut staged);
                if size_of::<T>() > 0 {
                    bytes.copy_from_slice(bytemuck::cast_slice(&staged));
                }
            },
        })
    }
}
