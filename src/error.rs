//! The error every layer gives when a handle is attached to shared memory.

use crate::region::PeerId;

/// Why attaching a handle (a ring's producer or consumer, an event, a
/// mutex) to a section of a region, or to memory on the heap, failed.
///
/// Every layer attaches the same way and fails for the same reasons, so
/// there is one enum for all of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The region has no such section, or the handle is a copy that a
    /// child made by `fork` inherited (see
    /// [`SectionError`](crate::region::SectionError)).
    #[cfg(not(loom))]
    #[error(transparent)]
    Section(#[from] crate::region::SectionError),
    /// The section is of another kind than the handle needs.
    #[cfg(not(loom))]
    #[error("the section is a {found:?} section, not {wanted:?}")]
    WrongKind {
        /// The section's kind.
        found: crate::region::SectionKind,
        /// The kind the handle needs.
        wanted: crate::region::SectionKind,
    },
    /// The section's length is not one the structure can have (for a ring:
    /// its control block plus a capacity that is a power of two in range;
    /// use the structure's `Spec` to build the region).
    #[error("a section of {len} bytes is not the length of {what}")]
    WrongLength {
        /// The section's length.
        len: usize,
        /// What it should hold, in words.
        what: &'static str,
    },
    /// The memory is not aligned as the layout needs.
    #[error("the memory is not {need}-byte aligned")]
    Misaligned {
        /// The alignment needed.
        need: usize,
    },
    /// Another live peer holds the role (`None`: a word that names no
    /// peer, e.g. written by a hostile process).
    #[error("the role is held by live peer {}", holder.map_or("(an invalid id)".to_string(), |h| h.to_string()))]
    RoleTaken {
        /// The holder.
        holder: Option<PeerId>,
    },
    /// Every entry of a table the handle needs one of is held by a live
    /// peer (an MPSC ring's producer table).
    #[error("all {max} entries are held by live peers")]
    NoFreeEntry {
        /// The table's size.
        max: usize,
    },
    /// The handle's owner check gave a tag no lock word can hold (a mutex).
    #[error("invalid owner tag {tag:#x}")]
    BadTag {
        /// The tag.
        tag: u32,
    },
    /// The event was first attached in the other mode; all handles of one
    /// event must use the same.
    #[error("the event is {found:?}, not {wanted:?}")]
    ModeMismatch {
        /// The mode recorded in the event.
        found: crate::lock::EventMode,
        /// The mode asked for.
        wanted: crate::lock::EventMode,
    },
    /// The section holds no structure of the kind asked for yet (an arena
    /// section its creator has not formatted), or another one (lanes where a
    /// snapshot cell was asked for, or the reverse).
    #[error("the section holds no {what}")]
    NotFormatted {
        /// What was looked for.
        what: &'static str,
    },
    /// The arena lane asked for does not exist.
    #[error("lane {lane} does not exist (the arena has {lanes})")]
    NoSuchLane {
        /// The lane asked for.
        lane: u16,
        /// How many lanes the arena has.
        lanes: u32,
    },
    /// A snapshot cell holds values of another size.
    #[error("the cell holds values of {found} bytes, not {expected}")]
    WrongValueSize {
        /// `size_of::<T>()`.
        expected: usize,
        /// What the cell was first attached with.
        found: usize,
    },
    /// The shared state is inconsistent (a value no correct peer writes),
    /// or a peer found it so and poisoned it.
    #[error("corrupted {what}")]
    Corrupted {
        /// What was found wrong.
        what: &'static str,
    },
}
