//! Arenas in a region section: formatting one, attaching writers and
//! readers to it, and asking for transparent huge pages on big lanes.

use super::error::FormatError;
use super::view::{ArenaView, Backing, format_raw, read_geometry};
use super::{ArenaReader, ArenaSpec, ArenaWriter};
use crate::AttachError;
use crate::region::{Region, Section, SectionId, SectionKind};

/// Section `id` of `region`, checked to be an arena section, 64-aligned.
fn arena_section(region: &Region, id: SectionId) -> Result<Section, AttachError> {
    let s = region.section(id)?;
    if s.kind != SectionKind::Arena {
        return Err(AttachError::WrongKind {
            found: s.kind,
            wanted: SectionKind::Arena,
        });
    }
    // The region promises 64-byte alignment; the layout needs it.
    if s.ptr.as_ptr() as usize % 64 != 0 {
        return Err(AttachError::Misaligned { need: 64 });
    }
    Ok(s)
}

/// A view of the formatted arena in section `id` of `region`.
fn region_view(region: &Region, id: SectionId) -> Result<ArenaView, AttachError> {
    let s = arena_section(region, id)?;
    // SAFETY: the section is valid for `s.len` bytes while `region` (kept
    // in the view's backing) lives, 64-aligned, shared only through
    // atomics and the lane protocol.
    let geom = unsafe { read_geometry(s.ptr, s.len) }?;
    // SAFETY: read_geometry checked `geom.total <= s.len`; the section is
    // laid out for `geom` (formatted so); the backing keeps it mapped.
    let view = unsafe { ArenaView::new(s.ptr, geom, Backing::Region(region.clone())) };
    // SAFETY: the section holds `geom.total` bytes of the region's mapping.
    unsafe { super::huge::advise(s.ptr, &geom, true) };
    Ok(view)
}

impl ArenaSpec {
    /// Formats section `id` of `region` (kind [`SectionKind::Arena`], at
    /// least [`section_len`](Self::section_len) bytes) as an arena of this
    /// shape: once, by the region's creator, before writers and readers
    /// attach. Formatting an arena of the same shape again does nothing.
    ///
    /// # Errors
    /// [`FormatError::Section`], [`FormatError::WrongKind`],
    /// [`FormatError::Spec`], [`FormatError::TooShort`];
    /// [`FormatError::Mismatch`] if it holds an arena of another shape,
    /// [`FormatError::Busy`] while another process formats it.
    pub fn format(&self, region: &Region, id: SectionId) -> Result<(), FormatError> {
        let geom = self.geometry()?;
        let s = region.section(id)?;
        if s.kind != SectionKind::Arena {
            return Err(FormatError::WrongKind);
        }
        if s.ptr.as_ptr() as usize % 64 != 0 {
            return Err(FormatError::Mismatch);
        }
        // SAFETY: the section is valid for `s.len` bytes while `region`
        // lives (the call), 64-aligned, zero-filled at creation, shared
        // only through atomics.
        unsafe { format_raw(s.ptr, s.len, &geom) }
    }
}

impl ArenaWriter {
    /// Attaches as the writer of a lane of the arena in section `id` of
    /// `region`: the first free lane, else the first whose writer is dead
    /// (taken over: see [`attach_lane`](Self::attach_lane)).
    ///
    /// # Errors
    /// [`AttachError::Section`], [`AttachError::WrongKind`],
    /// [`AttachError::NotFormatted`], [`AttachError::WrongLength`] (too short),
    /// [`AttachError::Corrupted`] (a header no correct peer writes);
    /// [`AttachError::RoleTaken`] when every lane has a live writer.
    pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
        Self::attach_view(region_view(region, id)?, None)
    }

    /// Attaches as the writer of lane `lane`, free or held by a dead
    /// writer. Taking a lane over adopts the previous writer's live blocks
    /// (they stay readable, and are reclaimed as their readers finish);
    /// a block it had allocated but not published is reclaimed at once. If
    /// the lane's bookkeeping does not add up (a hostile peer wrote it),
    /// the lane is reset instead: every block is retired (readers then get
    /// [`Stale`](super::ReadError::Stale)) and allocation waits until no
    /// live peer holds any.
    ///
    /// # Errors
    /// As [`attach`](Self::attach), and [`AttachError::NoSuchLane`];
    /// [`AttachError::RoleTaken`] while a live writer holds the lane.
    pub fn attach_lane(region: &Region, id: SectionId, lane: u16) -> Result<Self, AttachError> {
        Self::attach_view(region_view(region, id)?, Some(lane))
    }
}

impl ArenaReader {
    /// Attaches a reader to the arena in section `id` of `region` (any
    /// number of readers, in any processes; blocks are held under the
    /// region handle's peer id).
    ///
    /// # Errors
    /// As [`ArenaWriter::attach`], except `RoleTaken`.
    pub fn attach(region: &Region, id: SectionId) -> Result<Self, AttachError> {
        Self::from_view(region_view(region, id)?)
    }
}
