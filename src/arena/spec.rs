//! [`ArenaSpec`]: the shape of an arena, the section length it needs, and
//! formatting a region section for it.

use super::error::SpecError;
use super::layout::{DEFAULT_BLOCKS, Geometry};

/// The shape of an arena: how many lanes (one per writer process), how
/// many data bytes each, how many blocks each can have live at once.
///
/// ```
/// use polycephaly::arena::{ArenaReader, ArenaSpec, ArenaWriter};
/// use polycephaly::region::{Region, SectionId};
///
/// // Two writers' lanes of 8 MiB each.
/// let spec = ArenaSpec::new(2, 8 << 20);
/// let region = Region::builder().with(spec).build()?;
/// spec.format(&region, SectionId(0))?; // once, by the creator
/// let mut writer = ArenaWriter::attach(&region, SectionId(0))?;
/// let reader = ArenaReader::attach(&region, SectionId(0))?;
///
/// let block = writer.alloc_uninit::<u64>(1000)?.init_with(|i| i as u64);
/// let handle = block.publish_for(1); // send it through a ring
/// let data = reader.read::<u64>(&handle)?;
/// assert_eq!(data.iter().sum::<u64>(), 999 * 1000 / 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaSpec {
    lanes: u16,
    lane_len: usize,
    blocks: u32,
}

impl ArenaSpec {
    /// `lanes` lanes of `lane_len` data bytes (rounded up to a multiple of
    /// 64), each with room for [`DEFAULT_BLOCKS`] live blocks.
    pub const fn new(lanes: u16, lane_len: usize) -> Self {
        Self {
            lanes,
            lane_len,
            blocks: DEFAULT_BLOCKS,
        }
    }

    /// The same with room for `blocks` live blocks per lane (a power of
    /// two; each costs 256 bytes of descriptor).
    pub const fn with_blocks(self, blocks: u32) -> Self {
        Self { blocks, ..self }
    }

    /// Lanes.
    pub const fn lanes(&self) -> u16 {
        self.lanes
    }

    /// Data bytes per lane, as asked for.
    pub const fn lane_len(&self) -> usize {
        self.lane_len
    }

    /// Live blocks per lane.
    pub const fn blocks(&self) -> u32 {
        self.blocks
    }

    /// The section length to ask the region for.
    ///
    /// ```
    /// use polycephaly::arena::ArenaSpec;
    /// let len = ArenaSpec::new(4, 1 << 30).section_len().unwrap(); // 4 lanes of 1 GiB
    /// assert!(len > 4 << 30);
    /// assert!(ArenaSpec::new(0, 4096).section_len().is_err());
    /// ```
    ///
    /// # Errors
    /// [`SpecError`] naming the field out of range.
    pub fn section_len(&self) -> Result<usize, SpecError> {
        Ok(self.geometry()?.total as usize)
    }

    pub(crate) fn geometry(&self) -> Result<Geometry, SpecError> {
        Geometry::new(u32::from(self.lanes), self.blocks, self.lane_len as u64)
    }
}

/// The section of an arena for the region builder
/// ([`RegionBuilder::with`](crate::region::RegionBuilder::with)). A shape
/// out of range gives a zero length, which the builder refuses
/// (`CreateError::InvalidSize`); [`ArenaSpec::section_len`] names the field.
#[cfg(not(loom))]
impl crate::region::SectionSpec for ArenaSpec {
    fn kind(&self) -> crate::region::SectionKind {
        crate::region::SectionKind::Arena
    }
    fn section_len(&self) -> usize {
        ArenaSpec::section_len(self).unwrap_or(0)
    }
}
