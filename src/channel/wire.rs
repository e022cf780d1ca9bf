//! The wire codec: one frame format for every message a channel (and the
//! pool built on it) sends through a ring, and its checked decoder.
//!
//! A frame is a 32-byte [`FrameHeader`] followed by its body: the payload
//! bytes themselves (*inline*), or the 32-byte [`BlockHandle`] of an arena
//! block that holds them (*by handle*, flag [`BY_HANDLE`]).
//!
//! ```text
//! offset size  field        meaning
//!  0      1    version      WIRE_VERSION (1)
//!  1      1    kind         1 request, 2 reply, 3 error reply
//!  2      1    flags        bit 0: the body is a BlockHandle; others 0
//!  3      1    status       error replies: a Status code; otherwise 0
//!  4      2    method       the method id
//!  6      2    reserved     0
//!  8      4    route        whose message: opaque here (the channel puts
//!                           the client's slot and session in it)
//! 12      4    aux          free for the topology (0 in a channel)
//! 16      8    correlation  matches a reply to its request
//! 24      8    len          payload bytes (inline: the bytes that follow;
//!                           by handle: the block's byte length)
//! 32      ...  body         len bytes, or a 32-byte BlockHandle
//! ```
//!
//! Little-endian, like every layout of the crate (x86-64 and aarch64).
//! The codec knows nothing of clients, servers, drones or masters: it turns
//! a [`Head`] and a body into bytes and back. [`decode`] copies the header
//! out of the frame before it checks it (the frame is shared memory a
//! hostile peer could rewrite meanwhile: copy before you validate) and
//! accepts nothing a correct encoder does not write; an inline body is
//! returned as a view of the frame, a handle as a copy (the arena checks
//! it again when it is read).

use bytemuck::{Pod, Zeroable};

use crate::arena::BlockHandle;

/// The `version` byte of frames this code writes and accepts.
pub const WIRE_VERSION: u8 = 1;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 32;
/// Bytes of a frame whose body is a block handle.
pub const BLOCK_FRAME_LEN: usize = HEADER_LEN + size_of::<BlockHandle>();
/// Flag: the body is a [`BlockHandle`], not the payload.
pub const BY_HANDLE: u8 = 1;

/// The header of every frame, as it lies in the ring (see the module
/// docs). Plain data: read it from a frame with a copy
/// (`bytemuck::pod_read_unaligned`), never in place, and check it with
/// [`decode`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FrameHeader {
    /// [`WIRE_VERSION`].
    pub version: u8,
    /// A [`Kind`] as a byte.
    pub kind: u8,
    /// [`BY_HANDLE`] or 0.
    pub flags: u8,
    /// A [`Status`] code on error replies, 0 otherwise.
    pub status: u8,
    /// The method id.
    pub method: u16,
    /// Always 0.
    pub reserved: u16,
    /// Whose message (opaque to the codec).
    pub route: u32,
    /// Free for the topology above.
    pub aux: u32,
    /// Matches a reply to its request.
    pub correlation: u64,
    /// Payload bytes.
    pub len: u64,
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<FrameHeader>() == HEADER_LEN);
    assert!(align_of::<FrameHeader>() == 8);
    assert!(offset_of!(FrameHeader, kind) == 1);
    assert!(offset_of!(FrameHeader, flags) == 2);
    assert!(offset_of!(FrameHeader, status) == 3);
    assert!(offset_of!(FrameHeader, method) == 4);
    assert!(offset_of!(FrameHeader, reserved) == 6);
    assert!(offset_of!(FrameHeader, route) == 8);
    assert!(offset_of!(FrameHeader, aux) == 12);
    assert!(offset_of!(FrameHeader, correlation) == 16);
    assert!(offset_of!(FrameHeader, len) == 24);
    assert!(size_of::<BlockHandle>() == 32);
};

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A call: a method, a correlation id, an argument.
    Request = 1,
    /// The answer to a request: its result.
    Reply = 2,
    /// The answer to a request that failed: a [`Status`], and a message
    /// as its inline payload (UTF-8, may be empty).
    Error = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Error),
            _ => None,
        }
    }
}

/// Why a request failed, carried by an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// No method has this id.
    UnknownMethod,
    /// The argument is not of the method's shape (length or alignment), or
    /// its block could not be read.
    BadArgument,
    /// The handler panicked.
    Panicked,
    /// The result does not fit where it must travel (bigger than the
    /// sender's arena lane).
    ReplyTooLarge,
    /// No room for the result in time (the sender's lane stayed full).
    Busy,
    /// The handler failed with an error that has no status of its own
    /// (it returned [`OutError::Corrupted`](super::OutError::Corrupted) or
    /// [`OutError::ClientGone`](super::OutError::ClientGone)).
    Failed,
    /// A code this version does not know.
    Other(u8),
}

impl Status {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Status::UnknownMethod => 1,
            Status::BadArgument => 2,
            Status::Panicked => 3,
            Status::ReplyTooLarge => 4,
            Status::Busy => 5,
            Status::Failed => 6,
            Status::Other(c) => c,
        }
    }

    /// The status a byte stands for (0 is not one: `None`).
    pub fn from_code(c: u8) -> Option<Status> {
        Some(match c {
            0 => return None,
            1 => Status::UnknownMethod,
            2 => Status::BadArgument,
            3 => Status::Panicked,
            4 => Status::ReplyTooLarge,
            5 => Status::Busy,
            6 => Status::Failed,
            c => Status::Other(c),
        })
    }
}

/// Everything in a header but the body's form and length: what a sender
/// chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// What the frame is.
    pub kind: Kind,
    /// For [`Kind::Error`]: why; `None` otherwise.
    pub status: Option<Status>,
    /// The method id.
    pub method: u16,
    /// Whose message.
    pub route: u32,
    /// Free for the topology.
    pub aux: u32,
    /// Matches a reply to its request.
    pub correlation: u64,
}

impl Head {
    /// A request header.
    pub fn request(method: u16, route: u32, correlation: u64) -> Head {
        Head {
            kind: Kind::Request,
            status: None,
            method,
            route,
            aux: 0,
            correlation,
        }
    }

    /// The header of the reply to the request `self` heads.
    pub fn reply(&self) -> Head {
        Head {
            kind: Kind::Reply,
            status: None,
            ..*self
        }
    }

    /// The header of an error reply to the request `self` heads.
    pub fn error(&self, status: Status) -> Head {
        Head {
            kind: Kind::Error,
            status: Some(status),
            ..*self
        }
    }

    fn header(&self, flags: u8, len: u64) -> FrameHeader {
        FrameHeader {
            version: WIRE_VERSION,
            kind: self.kind as u8,
            flags,
            status: match (self.kind, self.status) {
                (Kind::Error, Some(s)) => s.code(),
                // An error reply needs a status: an unknown one.
                (Kind::Error, None) => Status::Other(u8::MAX).code(),
                _ => 0,
            },
            method: self.method,
            reserved: 0,
            route: self.route,
            aux: self.aux,
            correlation: self.correlation,
            len,
        }
    }
}

/// A frame's body, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// The payload, a view of the frame (live shared memory: copy before
    /// you validate).
    Inline(&'a [u8]),
    /// The arena block that holds the payload (a checked copy of the
    /// handle; the arena checks it again when it is read).
    Block(BlockHandle),
}

impl Body<'_> {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Inline(b) => b.len() as u64,
            // Checked by `decode`: the handle's byte length is the header's.
            Body::Block(h) => h.byte_len().unwrap_or(0),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded frame: the header's fields, checked, and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header (kind, status, method, route, aux, correlation).
    pub head: Head,
    /// The payload or its block.
    pub body: Body<'a>,
}

/// Why a frame is not one [`decode`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than a header.
    #[error("a frame of {len} bytes is shorter than a header")]
    Short {
        /// The frame's length.
        len: usize,
    },
    /// Another version of the format.
    #[error("wire version {found}, not {WIRE_VERSION}")]
    Version {
        /// The version byte.
        found: u8,
    },
    /// A kind byte that names no kind.
    #[error("unknown frame kind {found}")]
    Kind {
        /// The kind byte.
        found: u8,
    },
    /// Unknown flags, a reserved field not zero, or a status where none
    /// belongs (or none where one does).
    #[error("malformed header ({what})")]
    Malformed {
        /// The field at fault.
        what: &'static str,
    },
    /// The declared length does not match the body.
    #[error("the header declares {declared} payload bytes, the body holds {actual}")]
    Length {
        /// The header's `len`.
        declared: u64,
        /// What the frame holds (inline), or the handle's byte length.
        actual: u64,
    },
}

/// Writes the header of an inline frame of `payload_len` bytes into the
/// first [`HEADER_LEN`] bytes of `frame` (which must be exactly
/// `HEADER_LEN + payload_len` long: the caller writes the payload after
/// the header). Returns `false`, writing nothing, if `frame` is shorter
/// than a header.
pub fn encode_inline(frame: &mut [u8], head: &Head) -> bool {
    let Some(len) = frame.len().checked_sub(HEADER_LEN) else {
        return false;
    };
    let h = head.header(0, len as u64);
    frame[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&h));
    true
}

/// Writes a frame whose body is `handle` into `frame` (exactly
/// [`BLOCK_FRAME_LEN`] bytes; returns `false`, writing nothing, for
/// another length). The header's length is the block's byte length.
pub fn encode_block(frame: &mut [u8], head: &Head, handle: &BlockHandle) -> bool {
    if frame.len() != BLOCK_FRAME_LEN {
        return false;
    }
    let h = head.header(BY_HANDLE, handle.byte_len().unwrap_or(u64::MAX));
    frame[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&h));
    frame[HEADER_LEN..].copy_from_slice(bytemuck::bytes_of(handle));
    true
}

/// Decodes and checks a frame: version, kind, flags, reserved fields, the
/// status (present exactly on error replies), and the length against the
/// body. The header and a handle are copied out of `frame` before they
/// are checked.
///
/// ```
/// use polycephaly::channel::wire::{self, Body, Head, Kind};
///
/// let mut frame = vec![0u8; wire::HEADER_LEN + 3];
/// assert!(wire::encode_inline(&mut frame, &Head::request(7, 1, 42)));
/// frame[wire::HEADER_LEN..].copy_from_slice(b"abc");
/// let m = wire::decode(&frame)?;
/// assert_eq!((m.head.kind, m.head.method, m.head.correlation), (Kind::Request, 7, 42));
/// assert_eq!(m.body, Body::Inline(b"abc"));
/// frame[0] = 9; // another version
/// assert!(wire::decode(&frame).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The [`WireError`] naming the first check that failed.
pub fn decode(frame: &[u8]) -> Result<Message<'_>, WireError> {
    let Some(raw) = frame.get(..HEADER_LEN) else {
        return Err(WireError::Short { len: frame.len() });
    };
    // A copy: the checks below and every use after them see the same bytes.
    let h: FrameHeader = bytemuck::pod_read_unaligned(raw);
    if h.version != WIRE_VERSION {
        return Err(WireError::Version { found: h.version });
    }
    let kind = Kind::from_byte(h.kind).ok_or(WireError::Kind { found: h.kind })?;
    if h.flags & !BY_HANDLE != 0 {
        return Err(WireError::Malformed { what: "flags" });
    }
    if h.reserved != 0 {
        return Err(WireError::Malformed { what: "reserved" });
    }
    let status = Status::from_code(h.status);
    if (kind == Kind::Error) != status.is_some() {
        return Err(WireError::Malformed { what: "status" });
    }
    let rest = &frame[HEADER_LEN..];
    let body = if h.flags & BY_HANDLE != 0 {
        let Some(bytes) = rest.get(..size_of::<BlockHandle>()) else {
            return Err(WireError::Length {
                declared: h.len,
                actual: rest.len() as u64,
            });
        };
        if rest.len() != size_of::<BlockHandle>() {
            return Err(WireError::Malformed {
                what: "bytes after the handle",
            });
        }
        let handle: BlockHandle = bytemuck::pod_read_unaligned(bytes);
        let actual = handle.byte_len().unwrap_or(u64::MAX);
        if actual != h.len {
            return Err(WireError::Length {
                declared: h.len,
                actual,
            });
        }
        Body::Block(handle)
    } else {
        if rest.len() as u64 != h.len {
            return Err(WireError::Length {
                declared: h.len,
                actual: rest.len() as u64,
            });
        }
        Body::Inline(rest)
    };
    Ok(Message {
        head: Head {
            kind,
            status,
            method: h.method,
            route: h.route,
            aux: h.aux,
            correlation: h.correlation,
        },
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(head: &Head, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; HEADER_LEN + payload.len()];
        assert!(encode_inline(&mut f, head));
        f[HEADER_LEN..].copy_from_slice(payload);
        f
    }

    #[test]
    fn inline_round_trip() {
        let head = Head {
            aux: 9,
            ..Head::request(3, 0x0102_0304, u64::MAX)
        };
        let f = inline(&head, b"hello");
        let m = decode(&f).unwrap();
        assert_eq!(m.head, head);
        assert_eq!(m.body, Body::Inline(b"hello"));
        let e = head.error(Status::Panicked);
        let f = inline(&e, b"boom");
        let m = decode(&f).unwrap();
        assert_eq!(m.head.status, Some(Status::Panicked));
        assert_eq!(m.head.kind, Kind::Error);
    }

    #[test]
    fn block_round_trip() {
        let h = BlockHandle::from_parts(2, 5, 128, 1000, 8, 8);
        let head = Head::request(1, 2, 3).reply();
        let mut f = vec![0u8; BLOCK_FRAME_LEN];
        assert!(encode_block(&mut f, &head, &h));
        let m = decode(&f).unwrap();
        assert_eq!(m.body, Body::Block(h));
        assert_eq!(m.body.len(), 8000);
        assert!(!encode_block(&mut f[..40], &head, &h));
    }

    #[test]
    fn bad_frames_are_refused() {
        let head = Head::request(1, 1, 1);
        let good = inline(&head, b"xy");
        assert!(decode(&good[..31]).is_err());
        for (at, v) in [(0, 2u8), (1, 0), (1, 4), (2, 2), (3, 1), (6, 1)] {
            let mut f = good.clone();
            f[at] = v;
            assert!(decode(&f).is_err(), "byte {at} = {v}");
        }
        // An error reply without a status.
        let mut f = inline(&head.error(Status::Busy), b"");
        f[3] = 0;
        assert!(decode(&f).is_err());
        // Length mismatches.
        assert!(decode(&good[..33]).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        // A handle frame cut short, or with bytes after the handle.
        let mut f = vec![0u8; BLOCK_FRAME_LEN];
        assert!(encode_block(
            &mut f,
            &head,
            &BlockHandle::from_parts(0, 0, 0, 1, 1, 1)
        ));
        assert!(decode(&f[..60]).is_err());
        f.push(0);
        assert!(decode(&f).is_err());
    }

    #[test]
    fn status_codes_round_trip() {
        for c in 1..=255u8 {
            assert_eq!(Status::from_code(c).map(Status::code), Some(c));
        }
        assert_eq!(Status::from_code(0), None);
    }
}
