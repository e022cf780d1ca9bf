//! What a method takes and gives: a plain-old-data value `T`, or a slice
//! `[T]` (bytes are `[u8]`). [`Shape`] turns an argument into bytes to send
//! and received bytes back into a typed view; [`Signature`] is what the
//! method table records, so that a client's typed handle is checked
//! against the server's method once, at lookup.

use core::fmt;

use bytemuck::Pod;

use super::payload::Payload;
use crate::arena::ReadGuard;

/// Whether a shape is one value or a slice of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShapeKind {
    /// Exactly one `T`.
    Value,
    /// Any number of `T`s.
    Slice,
}

/// A shape as the method table records it: kind, element size and
/// alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Value or slice.
    pub kind: ShapeKind,
    /// `size_of::<T>()`.
    pub size: u32,
    /// `align_of::<T>()`.
    pub align: u32,
}

impl Signature {
    /// The table's word: kind (bits 56..64: 1 value, 2 slice), alignment's
    /// log2 (48..56), size (0..32).
    pub(crate) fn to_word(self) -> u64 {
        let kind: u64 = match self.kind {
            ShapeKind::Value => 1,
            ShapeKind::Slice => 2,
        };
        kind << 56 | u64::from(self.align.trailing_zeros()) << 48 | u64::from(self.size)
    }

    /// The signature a table word stands for, `None` for a word no server
    /// writes.
    pub(crate) fn from_word(w: u64) -> Option<Signature> {
        let kind = match w >> 56 {
            1 => ShapeKind::Value,
            2 => ShapeKind::Slice,
            _ => return None,
        };
        let log = (w >> 48) & 0xFF;
        if log >= 32 || (w >> 32) & 0xFFFF != 0 {
            return None;
        }
        Some(Signature {
            kind,
            size: w as u32,
            align: 1 << log,
        })
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ShapeKind::Value => write!(f, "a {}-byte value (align {})", self.size, self.align),
            ShapeKind::Slice => write!(
                f,
                "a slice of {}-byte elements (align {})",
                self.size, self.align
            ),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T: bytemuck::Pod> Sealed for T {}
    impl<T: bytemuck::Pod> Sealed for [T] {}
}

/// The shape of a method's argument or result: `T` (one plain-old-data
/// value, `T: Pod`) or `[T]` (a slice of them; `[u8]` for bytes). Sealed:
/// implemented for exactly those.
///
/// A client receives a `T` result as a value (copied out of the frame or
/// block) and a `[T]` result as a [`Payload`], read in place from an
/// arena block when it came by handle.
pub trait Shape: sealed::Sealed {
    /// The method table's record of this shape.
    const SIGNATURE: Signature;

    /// What a client receives for a result of this shape: `T`, or a
    /// [`Payload<'a, T>`](Payload).
    type Received<'a>;

    /// The bytes that carry a value of this shape.
    #[doc(hidden)]
    fn wire_bytes(&self) -> &[u8];

    /// Calls `f` with `bytes` seen as this shape: in place when they are
    /// aligned for it, else on a copy; `None` if the length does not fit
    /// the shape.
    #[doc(hidden)]
    fn with_ref<O>(bytes: &[u8], f: impl FnOnce(&Self) -> O) -> Option<O>;

    /// A received result from bytes of a frame (copied out of it); `None`
    /// if the length does not fit the shape.
    #[doc(hidden)]
    fn received_inline<'a>(bytes: &[u8]) -> Option<Self::Received<'a>>;

    /// A received result from a held arena block (values are copied out
    /// and the block released; slices keep the guard); `None` if the
    /// length does not fit the shape.
    #[doc(hidden)]
    fn received_block(guard: ReadGuard<'_, u8>) -> Option<Self::Received<'_>>;
}

impl<T: Pod> Shape for T {
    const SIGNATURE: Signature = Signature {
        kind: ShapeKind::Value,
        size: size_of::<T>() as u32,
        align: align_of::<T>() as u32,
    };
    type Received<'a> = T;

    #[inline]
    fn wire_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    #[inline]
    fn with_ref<O>(bytes: &[u8], f: impl FnOnce(&T) -> O) -> Option<O> {
        if bytes.len() != size_of::<T>() {
            return None;
        }
        match bytemuck::try_from_bytes::<T>(bytes) {
            Ok(v) => Some(f(v)),
            // Misaligned: a copy.
            Err(_) => Some(f(&bytemuck::pod_read_unaligned::<T>(bytes))),
        }
    }

    #[inline]
    fn received_inline<'a>(bytes: &[u8]) -> Option<Self::Received<'a>> {
        (bytes.len() == size_of::<T>()).then(|| bytemuck::pod_read_unaligned(bytes))
    }

    fn received_block(guard: ReadGuard<'_, u8>) -> Option<T> {
        Self::received_inline(&guard)
    }
}

impl<T: Pod> Shape for [T] {
    const SIGNATURE: Signature = Signature {
        kind: ShapeKind::Slice,
        size: size_of::<T>() as u32,
        align: align_of::<T>() as u32,
    };
    type Received<'a> = Payload<'a, T>;

    #[inline]
    fn wire_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }

    #[inline]
    fn with_ref<O>(bytes: &[u8], f: impl FnOnce(&[T]) -> O) -> Option<O> {
        if size_of::<T>() == 0 {
            // No length on the wire for elements of no size: only none.
            return bytes.is_empty().then(|| f(&[]));
        }
        if bytes.len() % size_of::<T>() != 0 {
            return None;
        }
        match bytemuck::try_cast_slice::<u8, T>(bytes) {
            Ok(s) => Some(f(s)),
            // Misaligned: a copy.
            Err(_) => Some(f(&super::payload::collect::<T>(bytes))),
        }
    }

    fn received_inline<'a>(bytes: &[u8]) -> Option<Payload<'a, T>> {
        Payload::copied(bytes)
    }

    fn received_block(guard: ReadGuard<'_, u8>) -> Option<Payload<'_, T>> {
        Payload::in_block(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip() {
        for s in [
            <u64 as Shape>::SIGNATURE,
            <[u8] as Shape>::SIGNATURE,
            <[u64; 3] as Shape>::SIGNATURE,
            <() as Shape>::SIGNATURE,
            <[u128] as Shape>::SIGNATURE,
        ] {
            assert_eq!(Signature::from_word(s.to_word()), Some(s));
        }
        assert_eq!(Signature::from_word(0), None);
        assert_eq!(Signature::from_word(3 << 56), None);
    }

    #[test]
    fn views_check_lengths_and_copy_when_misaligned() {
        let words = [1u64, 2, 3];
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert_eq!(<[u64]>::with_ref(bytes, |s| s.iter().sum::<u64>()), Some(6));
        assert_eq!(<[u64]>::with_ref(&bytes[..7], |s| s.len()), None);
        // 8-aligned storage, so that one byte in is misaligned for u64.
        let mut store = [0u64; 4];
        let shifted: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut store)[..25];
        shifted[1..].copy_from_slice(bytes);
        assert_eq!(
            <[u64]>::with_ref(&shifted[1..], |s| s.to_vec()),
            Some(words.to_vec())
        );
        assert_eq!(u64::with_ref(&shifted[1..9], |v| *v), Some(1));
        assert_eq!(u64::with_ref(&shifted[1..8], |v| *v), None);
        assert_eq!(<()>::with_ref(&[], |_| 7), Some(7));
        assert_eq!(<[()]>::with_ref(&[0], |_| 7), None);
    }
}
