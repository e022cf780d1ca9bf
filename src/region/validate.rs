//! Every check an opener makes on a region's header, in one place.
//!
//! [`validate`] works on a private copy of the header's plain bytes and the
//! file's length, so the same code serves a real open and the fuzz target.

use zerocopy::FromBytes;

use super::SectionKind;
use super::error::OpenError;
use super::layout::{
    HEADER_LEN, HeaderFixed, LAYOUT_VERSION, MAGIC, MAX_PEERS, MAX_SECTIONS, MAX_TOTAL_LEN,
    SECTION_ALIGN, SECTION_TABLE_OFFSET, SectionEntry, decode_kind,
};
use crate::sync::ProcessId;

/// One section as validated: in bounds, aligned, of a known kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValidSection {
    pub kind: SectionKind,
    pub offset: usize,
    pub len: usize,
}

/// A header that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidLayout {
    pub total_len: usize,
    pub max_peers: u32,
    pub sections: Vec<ValidSection>,
    /// The creator's pid and start time, as the header records them.
    pub creator: ProcessId,
}

/// Checks the file length alone, before anything is mapped.
pub(crate) fn check_file_len(file_len: u64) -> Result<(), OpenError> {
    if file_len < HEADER_LEN as u64 {
        return Err(OpenError::TooSmall {
            len: file_len,
            min: HEADER_LEN as u64,
        });
    }
    if file_len > MAX_TOTAL_LEN {
        return Err(OpenError::TooLarge {
            len: file_len,
            max: MAX_TOTAL_LEN,
        });
    }
    Ok(())
}

/// Validates the header bytes `plain` (a copy of the start of the region:
/// at least the fixed part and the section table) against the file's
/// length `file_len`.
///
/// # Errors
/// The first failed check, in this order: [`OpenError::TooSmall`] /
/// [`OpenError::TooLarge`] (file length), [`OpenError::BadMagic`],
/// [`OpenError::VersionMismatch`], [`OpenError::InvalidHeader`] (header
/// length), [`OpenError::SizeMismatch`], [`OpenError::TooManySections`],
/// [`OpenError::TooManyPeers`], then per section
/// [`OpenError::UnknownSectionKind`], [`OpenError::SectionMisaligned`],
/// [`OpenError::SectionOutOfBounds`], and finally
/// [`OpenError::SectionsOverlap`].
pub(crate) fn validate(plain: &[u8], file_len: u64) -> Result<ValidLayout, OpenError> {
    check_file_len(file_len)?;
    let too_small = || OpenError::TooSmall {
        len: plain.len() as u64,
        min: HEADER_LEN as u64,
    };
    let (fixed, _) = HeaderFixed::read_from_prefix(plain).map_err(|_| too_small())?;
    if fixed.magic != MAGIC {
        return Err(OpenError::BadMagic);
    }
    if fixed.version != LAYOUT_VERSION {
        return Err(OpenError::VersionMismatch {
            found: fixed.version,
            expected: LAYOUT_VERSION,
        });
    }
    if fixed.header_len as usize != HEADER_LEN {
        return Err(OpenError::InvalidHeader {
            what: "header_len is not 4096",
        });
    }
    if fixed.total_len != file_len {
        return Err(OpenError::SizeMismatch {
            header: fixed.total_len,
            file: file_len,
        });
    }
    let total = fixed.total_len;
    let total_len = usize::try_from(total).map_err(|_| OpenError::TooLarge {
        len: total,
        max: MAX_TOTAL_LEN,
    })?;
    if fixed.section_count as usize > MAX_SECTIONS {
        return Err(OpenError::TooManySections {
            count: fixed.section_count,
            max: MAX_SECTIONS as u32,
        });
    }
    if fixed.max_peers == 0 || fixed.max_peers > MAX_PEERS {
        return Err(OpenError::TooManyPeers {
            count: fixed.max_peers,
            max: MAX_PEERS,
        });
    }
    let count = fixed.section_count as usize;
    let mut sections = Vec::with_capacity(count);
    for (index, i) in (0u16..).zip(0..count) {
        let at = SECTION_TABLE_OFFSET + i * size_of::<SectionEntry>();
        let bytes = plain
            .get(at..at + size_of::<SectionEntry>())
            .ok_or_else(too_small)?;
        // A copy: the byte slice need not be aligned for SectionEntry.
        let entry = SectionEntry::read_from_bytes(bytes).map_err(|_| too_small())?;
        sections.push(check_section(index, &entry, total)?);
    }
    for (i, a) in (0u16..).zip(&sections) {
        for (j, b) in (0u16..).zip(&sections).skip(usize::from(i) + 1) {
            // Both ranges are non-empty and in bounds: no overflow below.
            if a.offset < b.offset + b.len && b.offset < a.offset + a.len {
                return Err(OpenError::SectionsOverlap {
                    first: i,
                    second: j,
                });
            }
        }
    }
    Ok(ValidLayout {
        total_len,
        max_peers: fixed.max_peers,
        sections,
        creator: ProcessId {
            pid: fixed.creator_pid,
            start_time: fixed.creator_start_time,
        },
    })
}

fn check_section(index: u16, entry: &SectionEntry, total: u64) -> Result<ValidSection, OpenError> {
    let kind = decode_kind(entry.kind).ok_or(OpenError::UnknownSectionKind {
        index,
        kind: entry.kind,
    })?;
    let (offset, len) = (entry.offset, entry.len);
    if offset % SECTION_ALIGN as u64 != 0 {
        return Err(OpenError::SectionMisaligned { index, offset });
    }
    let out = OpenError::SectionOutOfBounds {
        index,
        offset,
        len,
        total,
    };
    let end = offset.checked_add(len);
    if len == 0 || offset < HEADER_LEN as u64 || end.is_none_or(|end| end > total) {
        return Err(out);
    }
    // In bounds of `total`, which fits a usize (checked by the caller).
    let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
        return Err(out);
    };
    Ok(ValidSection { kind, offset, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::layout::{PLAIN_LEN, encode_kind};
    use zerocopy::IntoBytes;

    fn header(sections: &[(SectionKind, u64, u64)], total: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; PLAIN_LEN];
        let fixed = HeaderFixed {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_len: HEADER_LEN as u32,
            total_len: total,
            creator_pid: 1,
            section_count: sections.len() as u32,
            creator_start_time: 1,
            max_peers: 4,
            flags: 0,
            reserved: [0; 16],
        };
        bytes[..64].copy_from_slice(fixed.as_bytes());
        for (i, &(kind, offset, len)) in sections.iter().enumerate() {
            let e = SectionEntry {
                kind: encode_kind(kind),
                offset,
                len,
                ..Default::default()
            };
            let at = SECTION_TABLE_OFFSET + i * 32;
            bytes[at..at + 32].copy_from_slice(e.as_bytes());
        }
        bytes
    }

    #[test]
    fn a_good_header_passes() {
        let h = header(
            &[
                (SectionKind::Raw, 4096, 100),
                (SectionKind::Arena, 4224, 10),
            ],
            8192,
        );
        let l = validate(&h, 8192).unwrap();
        assert_eq!(l.total_len, 8192);
        assert_eq!(l.sections.len(), 2);
        assert_eq!(l.sections[1].kind, SectionKind::Arena);
    }

    #[test]
    fn each_defect_has_its_error() {
        let ok = [(SectionKind::Raw, 4096, 64)];
        assert!(matches!(
            validate(&header(&ok, 8192), 100),
            Err(OpenError::TooSmall { .. })
        ));
        assert!(matches!(
            validate(&header(&ok, 8192), 8000),
            Err(OpenError::SizeMismatch { .. })
        ));
        let mut h = header(&ok, 8192);
        h[0] ^= 1;
        assert!(matches!(validate(&h, 8192), Err(OpenError::BadMagic)));
        let mut h = header(&ok, 8192);
        h[8] = 9;
        assert!(matches!(
            validate(&h, 8192),
            Err(OpenError::VersionMismatch {
                found: 9,
                expected: 1
            })
        ));
        let over = [(SectionKind::Raw, 4096, 128), (SectionKind::Raw, 4160, 64)];
        assert!(matches!(
            validate(&header(&over, 8192), 8192),
            Err(OpenError::SectionsOverlap {
                first: 0,
                second: 1
            })
        ));
        let oob = [(SectionKind::Raw, 8128, 128)];
        assert!(matches!(
            validate(&header(&oob, 8192), 8192),
            Err(OpenError::SectionOutOfBounds { index: 0, .. })
        ));
        let wrap = [(SectionKind::Raw, 4096, u64::MAX)];
        assert!(matches!(
            validate(&header(&wrap, 8192), 8192),
            Err(OpenError::SectionOutOfBounds { .. })
        ));
        let in_header = [(SectionKind::Raw, 0, 64)];
        assert!(matches!(
            validate(&header(&in_header, 8192), 8192),
            Err(OpenError::SectionOutOfBounds { .. })
        ));
        let odd = [(SectionKind::Raw, 4100, 64)];
        assert!(matches!(
            validate(&header(&odd, 8192), 8192),
            Err(OpenError::SectionMisaligned { .. })
        ));
        let mut h = header(&ok, 8192);
        h[SECTION_TABLE_OFFSET] = 0x77;
        assert!(matches!(
            validate(&h, 8192),
            Err(OpenError::UnknownSectionKind { .. })
        ));
        let mut h = header(&ok, 8192);
        h[28] = 17;
        assert!(matches!(
            validate(&h, 8192),
            Err(OpenError::TooManySections { .. })
        ));
        let mut h = header(&ok, 8192);
        h[40] = 0;
        assert!(matches!(
            validate(&h, 8192),
            Err(OpenError::TooManyPeers { .. })
        ));
    }

    #[test]
    fn short_copies_never_panic() {
        let h = header(&[(SectionKind::Raw, 4096, 64)], 8192);
        for n in 0..h.len() {
            let _ = validate(&h[..n], 8192);
        }
    }
}
