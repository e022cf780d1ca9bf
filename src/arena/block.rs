//! The writer's guards over a block it allocated: [`BlockMut`] (initialised)
//! and [`UninitBlock`]; publishing one gives its [`BlockHandle`], dropping
//! one unpublished gives its room back.

use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use bytemuck::Pod;

use super::handle::{BlockHandle, Readers};
use super::writer::{ArenaWriter, Reserved};
use crate::region::PeerId;

/// A block being built: the writer's borrow and where the block is.
/// Dropped unpublished, it rolls the allocation back.
struct Pending<'a> {
    writer: &'a mut ArenaWriter,
    seq: u64,
    done: bool,
}

impl Pending<'_> {
    fn publish<T: Pod>(mut self, len: usize, readers: Readers<'_>) -> BlockHandle {
        self.done = true;
        let align_log2 = align_of::<T>().trailing_zeros() as u8;
        self.writer.publish(
            self.seq,
            len as u64,
            size_of::<T>() as u32,
            align_log2,
            readers,
        )
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.writer.rollback(self.seq);
        }
    }
}

/// A block of `T`s allocated by an [`ArenaWriter`], initialised, writable
/// in place: it dereferences to `&mut [T]`. Nobody else reads or writes it
/// until [`publish`](Self::publish)ed; after that nobody writes it
/// (protected write). Dropping it unpublished gives its room back.
#[must_use = "a block is readable only once published"]
pub struct BlockMut<'a, T: Pod> {
    p: Pending<'a>,
    ptr: NonNull<T>,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: Pod> fmt::Debug for BlockMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockMut")
            .field("seq", &self.p.seq)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> BlockMut<'a, T> {
    /// The guard over `len` elements at `r`, whose bytes are initialised.
    pub(crate) fn new(writer: &'a mut ArenaWriter, r: Reserved, len: usize) -> Self {
        Self {
            p: Pending {
                writer,
                seq: r.seq,
                done: false,
            },
            // Lane data is 64-aligned and so is every block (MAX_ELEM_ALIGN
            // is 64); a null pointer cannot come from a mapping.
            ptr: NonNull::new(r.ptr.cast::<T>()).unwrap_or(NonNull::dangling()),
            len,
            _t: PhantomData,
        }
    }

    /// Publishes the block for `readers` and returns the handle to send
    /// them. The block is reclaimed once they are done with it (see
    /// [`Readers`]).
    pub fn publish(self, readers: Readers<'_>) -> BlockHandle {
        let len = self.len;
        self.p.publish::<T>(len, readers)
    }

    /// Publishes the block for `k` reads by anybody (see
    /// [`Readers::Count`]).
    pub fn publish_for(self, k: u32) -> BlockHandle {
        self.publish(Readers::Count(k))
    }

    /// Publishes the block for one read by `peer` (see [`Readers::Peers`]):
    /// reclaimed once `peer` read and released it, or died.
    pub fn publish_to(self, peer: PeerId) -> BlockHandle {
        self.publish(Readers::Peers(&[peer]))
    }
}

impl<T: Pod> Deref for BlockMut<'_, T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: the block's `len` elements lie inside the lane (placement
        // checked bytes <= lane length), aligned for T (64-aligned start,
        // align_of::<T>() <= 64), initialised (zeroed, or by an
        // UninitBlock's initialiser); the block is this writer's alone until
        // published, and `&self` ties the slice to the guard.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Pod> DerefMut for BlockMut<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes the slice exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// A block of `T`s allocated by an [`ArenaWriter`] and not initialised
/// (it holds whatever earlier blocks left): a `&mut [MaybeUninit<T>]` to
/// write in place. Turn it into a [`BlockMut`] with one of the initialisers
/// (or, having written every element, [`assume_init`](Self::assume_init)).
/// Dropping it gives its room back.
#[must_use = "an uninitialised block must be initialised and published"]
pub struct UninitBlock<'a, T: Pod> {
    p: Pending<'a>,
    ptr: NonNull<MaybeUninit<T>>,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: Pod> fmt::Debug for UninitBlock<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UninitBlock")
            .field("seq", &self.p.seq)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> UninitBlock<'a, T> {
    pub(crate) fn new(writer: &'a mut ArenaWriter, r: Reserved, len: usize) -> Self {
        Self {
            p: Pending {
                writer,
                seq: r.seq,
                done: false,
            },
            ptr: NonNull::new(r.ptr.cast::<MaybeUninit<T>>()).unwrap_or(NonNull::dangling()),
            len,
            _t: PhantomData,
        }
    }

    /// Sets every element to `value`.
    pub fn fill(mut self, value: T) -> BlockMut<'a, T> {
        for x in self.iter_mut() {
            x.write(value);
        }
        // SAFETY: every element was just written.
        unsafe { self.assume_init() }
    }

    /// Sets element `i` to `f(i)`, for every `i` in order.
    pub fn init_with(mut self, mut f: impl FnMut(usize) -> T) -> BlockMut<'a, T> {
        for (i, x) in self.iter_mut().enumerate() {
            x.write(f(i));
        }
        // SAFETY: every element was just written.
        unsafe { self.assume_init() }
    }

    /// Copies `src` in, if it has exactly the block's length; gives the
    /// block back otherwise.
    ///
    /// # Errors
    /// `Err(self)` when `src.len()` is not the block's length.
    pub fn copy_from_slice(mut self, src: &[T]) -> Result<BlockMut<'a, T>, Self> {
        if src.len() != self.len {
            return Err(self);
        }
        for (x, &v) in self.iter_mut().zip(src) {
            x.write(v);
        }
        // SAFETY: every element was just written.
        Ok(unsafe { self.assume_init() })
    }

    /// The block, initialised.
    ///
    /// # Safety
    /// Every element was written through this guard.
    pub unsafe fn assume_init(self) -> BlockMut<'a, T> {
        BlockMut {
            p: self.p,
            ptr: self.ptr.cast::<T>(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Deref for UninitBlock<'_, T> {
    type Target = [MaybeUninit<T>];
    #[inline]
    fn deref(&self) -> &[MaybeUninit<T>] {
        // SAFETY: as in `BlockMut::deref`, without the initialisation
        // (MaybeUninit<T> needs none).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Pod> DerefMut for UninitBlock<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [MaybeUninit<T>] {
        // SAFETY: as in `deref`; `&mut self` makes the slice exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
