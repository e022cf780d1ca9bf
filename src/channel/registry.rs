//! The method registry: names to small ids, typed handlers behind one
//! erased signature, and dispatch that survives a panicking handler.
//!
//! Nothing here knows where a request came from or where its reply goes: a
//! handler gets the argument's bytes (in place, in a frame or a block) and
//! an [`Outbox`] to put its result in. The channel's server and the pool's
//! drones dispatch through the same registry.

use core::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytemuck::Pod;

use super::error::RegisterError;
use super::layout::MAX_NAME_LEN;
use super::payload::{Fault, Out, OutError, Outbox};
use super::shape::{Shape, Signature};

/// A handler, typed away: the argument's bytes and where the result goes.
pub(crate) type Handler = Box<dyn Fn(&[u8], &mut dyn Outbox) -> Result<(), Fault> + Send>;

/// One registered method.
pub(crate) struct Entry {
    /// Its name.
    pub(crate) name: String,
    /// Its argument's shape.
    pub(crate) arg: Signature,
    /// Its result's shape.
    pub(crate) result: Signature,
    handler: Handler,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("arg", &self.arg)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

/// Methods by id (their index, in registration order).
#[derive(Debug)]
pub(crate) struct Registry {
    entries: Vec<Entry>,
    cap: usize,
}

impl Registry {
    /// An empty registry of at most `cap` methods (ids below 65536).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: Vec::new(),
            cap: cap.min(usize::from(u16::MAX) + 1),
        }
    }

    /// Registers `handler` as `name`; returns its id.
    pub(crate) fn add(
        &mut self,
        name: &str,
        arg: Signature,
        result: Signature,
        handler: Handler,
    ) -> Result<u16, RegisterError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(RegisterError::BadName {
                name: name.to_owned(),
                max: MAX_NAME_LEN,
            });
        }
        if self.find(name).is_some() {
            return Err(RegisterError::Duplicate {
                name: name.to_owned(),
            });
        }
        if self.entries.len() >= self.cap {
            return Err(RegisterError::TableFull { max: self.cap });
        }
        let id = self.entries.len() as u16;
        self.entries.push(Entry {
            name: name.to_owned(),
            arg,
            result,
            handler,
        });
        Ok(id)
    }

    /// The id of `name`.
    pub(crate) fn find(&self, name: &str) -> Option<u16> {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .map(|i| i as u16)
    }

    /// Method `id`.
    pub(crate) fn get(&self, id: u16) -> Option<&Entry> {
        self.entries.get(usize::from(id))
    }

    /// How many methods are registered.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Runs method `id` on `arg`, its result into `out`. A panic in the
    /// handler is caught and becomes [`Fault::Panicked`]; whatever room the
    /// handler had taken is the caller's to drop (which sends nothing).
    pub(crate) fn dispatch(&self, id: u16, arg: &[u8], out: &mut dyn Outbox) -> Result<(), Fault> {
        let Some(e) = self.get(id) else {
            return Err(Fault::UnknownMethod);
        };
        // AssertUnwindSafe: after a panic the caller drops `out` (whatever
        // it holds sends nothing) and answers with an error; the handler's
        // own captured state is the user's, as with `std::thread::spawn`.
        match catch_unwind(AssertUnwindSafe(|| (e.handler)(arg, out))) {
            Ok(r) => r,
            Err(payload) => Err(Fault::Panicked(panic_message(payload.as_ref()))),
        }
    }
}

/// The message of a panic payload (`&str` or `String`), else a stand-in.
fn panic_message(payload: &(dyn core::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// The argument's bytes seen as `A` (in place or copied), or the fault
/// that says why not.
fn with_arg<A: ?Sized + Shape, O>(arg: &[u8], f: impl FnOnce(&A) -> O) -> Result<O, Fault> {
    A::with_ref(arg, f)
        .ok_or_else(|| Fault::BadArgument(format!("{} bytes are not {}", arg.len(), A::SIGNATURE)))
}

/// A handler giving one value.
pub(crate) fn value<A, R, F>(f: F) -> Handler
where
    A: ?Sized + Shape,
    R: Pod,
    F: Fn(&A) -> R + Send + 'static,
{
    Box::new(move |arg, out| {
        let r = with_arg::<A, R>(arg, &f)?;
        let room = out
            .room(size_of::<R>(), align_of::<R>())
            .map_err(Fault::Out)?;
        room.copy_from_slice(bytemuck::bytes_of(&r));
        Ok(())
    })
}

/// A handler giving a vector (copied to where it travels).
pub(crate) fn slice<A, R, F>(f: F) -> Handler
where
    A: ?Sized + Shape,
    R: Pod,
    F: Fn(&A) -> Vec<R> + Send + 'static,
{
    Box::new(move |arg, out| {
        let v = with_arg::<A, Vec<R>>(arg, &f)?;
        let bytes: &[u8] = bytemuck::cast_slice(&v);
        let room = out.room(bytes.len(), align_of::<R>()).map_err(Fault::Out)?;
        room.copy_from_slice(bytes);
        Ok(())
    })
}

/// A handler that builds its result in place.
pub(crate) fn in_place<A, R, F>(f: F) -> Handler
where
    A: ?Sized + Shape,
    R: Pod,
    F: Fn(&A, &mut Out<'_, R>) -> Result<(), OutError> + Send + 'static,
{
    Box::new(move |arg, out| {
        with_arg::<A, _>(arg, |a| {
            let mut o = Out::new(out);
            f(a, &mut o)?;
            o.flush()
        })?
        .map_err(Fault::Out)
    })
}
