//! [`ChannelSpec`]: the shape of a channel and the region it needs.

use crate::arena::ArenaSpec;
use crate::region::layout::MAX_PEERS;
use crate::region::{RegionBuilder, SectionId};
use crate::ring::{FRAME_ALIGN, FRAME_HEADER_LEN, MIN_CAPACITY, mpsc, spsc};

use super::error::SpecError;
use super::layout::{CONTROL_KIND, MAX_NAME_LEN, control_len};
use super::payload::ERROR_MESSAGE_MAX;
use super::wire::{BLOCK_FRAME_LEN, HEADER_LEN};

/// Section 0: the control section (header, slots, method table).
pub(crate) const CONTROL: SectionId = SectionId(0);
/// Section 1: the request ring (MPSC, clients to the server).
pub(crate) const REQUESTS: SectionId = SectionId(1);
/// Section 2: the arena: lane `i` the client of slot `i` writes (its
/// requests), lane `clients + i` the server writes for it (its replies).
pub(crate) const ARENA: SectionId = SectionId(2);
/// Sections 3..: the reply rings (SPSC, one per client slot).
pub(crate) const FIRST_REPLY: u16 = 3;

/// The most client slots a channel can have: the region's peer table less
/// the server.
pub const MAX_CLIENTS: u16 = MAX_PEERS as u16 - 1;
/// The largest inline payload a channel accepts (1 MiB).
pub const MAX_INLINE: usize = 1 << 20;
/// The most requests a client can have in flight.
pub const MAX_IN_FLIGHT: u32 = 1024;

/// The shape of a channel: how many clients, how many requests each may
/// have in flight, which payloads travel inline, how large the arena lanes
/// for the rest are.
///
/// The region holds a control section, one MPSC ring of requests, an arena
/// with two lanes per client slot (the client's, for its requests, and the
/// server's, for the replies to that slot alone: what one client holds
/// never takes room from another's results), and one SPSC ring of replies
/// per client slot, sized so that the replies to every request a client
/// may have in flight always fit (the server never waits for a client that
/// follows the protocol).
///
/// ```
/// use polycephaly::channel::ChannelSpec;
///
/// let spec = ChannelSpec::new()
///     .with_clients(4)
///     .with_lane_len(128 << 20); // calls of up to 128 MiB each way
/// assert_eq!(spec.clients(), 4);
/// assert!(spec.check().is_ok());
/// assert!(ChannelSpec::new().with_clients(0).check().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSpec {
    clients: u16,
    max_in_flight: u32,
    inline_max: u32,
    request_ring: usize,
    lane_len: usize,
    methods: u16,
}

impl Default for ChannelSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl ChannelSpec {
    /// 8 clients, 16 requests in flight each, payloads of up to 4 KiB
    /// inline, a 256 KiB request ring, 64 MiB lanes, 64 methods. (Shared
    /// memory pages are only taken as they are first used.)
    pub const fn new() -> Self {
        Self {
            clients: 8,
            max_in_flight: 16,
            inline_max: 4096,
            request_ring: 256 << 10,
            lane_len: 64 << 20,
            methods: 64,
        }
    }

    /// Client slots (1 to [`MAX_CLIENTS`]).
    pub const fn with_clients(self, clients: u16) -> Self {
        Self { clients, ..self }
    }

    /// Requests each client may have in flight (1 to [`MAX_IN_FLIGHT`]).
    pub const fn with_max_in_flight(self, n: u32) -> Self {
        Self {
            max_in_flight: n,
            ..self
        }
    }

    /// The largest payload sent inline in a frame (at most [`MAX_INLINE`],
    /// and a request frame must fit the request ring); larger ones go
    /// through the sender's arena lane.
    pub const fn with_inline_max(self, bytes: u32) -> Self {
        Self {
            inline_max: bytes,
            ..self
        }
    }

    /// The request ring's capacity (a power of two, see
    /// [`mpsc::Spec`](crate::ring::mpsc::Spec)).
    pub const fn with_request_ring(self, bytes: usize) -> Self {
        Self {
            request_ring: bytes,
            ..self
        }
    }

    /// Each arena lane's data bytes: the largest payload a call carries by
    /// handle, each way.
    pub const fn with_lane_len(self, bytes: usize) -> Self {
        Self {
            lane_len: bytes,
            ..self
        }
    }

    /// Method table entries (1 to 65535).
    pub const fn with_methods(self, n: u16) -> Self {
        Self { methods: n, ..self }
    }

    /// Client slots.
    pub const fn clients(&self) -> u16 {
        self.clients
    }

    /// Requests each client may have in flight.
    pub const fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// The largest inline payload.
    pub const fn inline_max(&self) -> u32 {
        self.inline_max
    }

    /// The request ring's capacity.
    pub const fn request_ring(&self) -> usize {
        self.request_ring
    }

    /// Each arena lane's data bytes.
    pub const fn lane_len(&self) -> usize {
        self.lane_len
    }

    /// Method table entries.
    pub const fn methods(&self) -> u16 {
        self.methods
    }

    /// The capacity of each client's reply ring: room for twice the
    /// replies of `max_in_flight + 1` requests at their largest (inline
    /// payloads of `inline_max`), so that replies in flight and the
    /// releases the client has not published yet (at most a quarter of
    /// the ring) never fill it.
    pub fn reply_ring(&self) -> usize {
        reply_ring_for(self.max_in_flight, self.inline_max as usize)
    }

    /// The arena's shape: two lanes per client slot, lane `i` the client's
    /// (its requests' large arguments) and lane `clients + i` the server's
    /// for that slot (its large results). Each lane serves one client, so
    /// each has room for eight times its requests in flight in blocks (at
    /// least 64): results kept for tickets not waited on yet, and
    /// payloads held, count too.
    pub fn arena(&self) -> ArenaSpec {
        let blocks = self
            .max_in_flight
            .saturating_mul(8)
            .max(64)
            .next_power_of_two()
            .min(crate::arena::layout::MAX_BLOCKS);
        ArenaSpec::new(2 * self.clients, self.lane_len).with_blocks(blocks)
    }

    /// Checks every field and what they imply together.
    ///
    /// # Errors
    /// The [`SpecError`] naming the field out of range.
    pub fn check(&self) -> Result<(), SpecError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(SpecError::Clients {
                clients: self.clients,
                max: MAX_CLIENTS,
            });
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT {
            return Err(SpecError::InFlight {
                n: self.max_in_flight,
                max: MAX_IN_FLIGHT,
            });
        }
        if self.methods == 0 {
            return Err(SpecError::Methods);
        }
        let requests = mpsc::Spec::new(self.request_ring).map_err(SpecError::RequestRing)?;
        let inline = self.inline_max as usize;
        if inline > MAX_INLINE || HEADER_LEN + inline > requests.max_payload() {
            return Err(SpecError::InlineMax {
                bytes: self.inline_max,
                max: MAX_INLINE.min(requests.max_payload().saturating_sub(HEADER_LEN)),
            });
        }
        spsc::Spec::new(self.reply_ring()).map_err(SpecError::ReplyRing)?;
        if self.lane_len < 4096 {
            return Err(SpecError::LaneLen {
                bytes: self.lane_len,
            });
        }
        self.arena().section_len().map_err(SpecError::Arena)?;
        Ok(())
    }

    /// Adds the channel's sections to `builder`, in order: the control
    /// section, the request ring, the arena, the reply rings.
    pub(crate) fn sections(&self, mut builder: RegionBuilder) -> Result<RegionBuilder, SpecError> {
        self.check()?;
        let control = control_len(usize::from(self.clients), usize::from(self.methods));
        builder = builder
            .section(CONTROL_KIND, control)
            .with(mpsc::Spec::new(self.request_ring).map_err(SpecError::RequestRing)?)
            .with(self.arena());
        let reply = spsc::Spec::new(self.reply_ring()).map_err(SpecError::ReplyRing)?;
        for _ in 0..self.clients {
            builder = builder.with(reply);
        }
        Ok(builder)
    }
}

/// Bytes of a ring frame carrying a `payload`-byte channel frame.
pub(crate) const fn ring_frame_len(payload: usize) -> usize {
    FRAME_HEADER_LEN + payload.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The largest ring frame a reply takes with inline payloads of up to
/// `inline_max` bytes (an error reply's message counts as one).
pub(crate) const fn max_reply_frame(inline_max: usize) -> usize {
    let body = if inline_max > ERROR_MESSAGE_MAX {
        inline_max
    } else {
        ERROR_MESSAGE_MAX
    };
    let inline = ring_frame_len(HEADER_LEN + body);
    let block = ring_frame_len(BLOCK_FRAME_LEN);
    if inline > block { inline } else { block }
}

/// See [`ChannelSpec::reply_ring`].
fn reply_ring_for(max_in_flight: u32, inline_max: usize) -> usize {
    let need = 2usize
        .saturating_mul(max_in_flight as usize + 1)
        .saturating_mul(max_reply_frame(inline_max));
    need.max(MIN_CAPACITY)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

/// How many requests a client may have in flight on a reply ring of
/// `capacity` bytes (the inverse of [`ChannelSpec::reply_ring`]), at most
/// `announced` (what the server wrote, not trusted beyond this).
pub(crate) fn in_flight_for(capacity: usize, inline_max: usize, announced: u32) -> usize {
    let fits = (capacity / 2 / max_reply_frame(inline_max)).saturating_sub(1);
    fits.min(announced as usize).min(MAX_IN_FLIGHT as usize)
}

const _: () = assert!(MAX_NAME_LEN <= 255);
