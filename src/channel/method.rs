//! [`Method`]: a typed handle on a server's method.

use core::fmt;
use core::marker::PhantomData;

/// A method of a server, by id, with the shapes of its argument `A` and
/// result `R` (each a `T: Pod` or a slice `[T]`, see
/// [`Shape`](super::Shape)).
///
/// Get one from [`Client::method`](super::Client::method) (looked up by
/// name once, and checked against the shapes the server registered) or
/// from registering it on the [`Server`](super::Server). One made with
/// [`from_id`](Self::from_id) is not checked: a call with it that the
/// server cannot run is answered with an error
/// ([`CallError::UnknownMethod`](super::CallError::UnknownMethod),
/// [`CallError::BadArgument`](super::CallError::BadArgument)).
pub struct Method<A: ?Sized, R: ?Sized> {
    id: u16,
    _shapes: PhantomData<fn(&A) -> *const R>,
}

impl<A: ?Sized, R: ?Sized> Method<A, R> {
    /// The method `id`, unchecked.
    pub const fn from_id(id: u16) -> Self {
        Self {
            id,
            _shapes: PhantomData,
        }
    }

    /// Its id.
    pub const fn id(&self) -> u16 {
        self.id
    }
}

impl<A: ?Sized, R: ?Sized> Clone for Method<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: ?Sized, R: ?Sized> Copy for Method<A, R> {}

impl<A: ?Sized, R: ?Sized> fmt::Debug for Method<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method").field("id", &self.id).finish()
    }
}
