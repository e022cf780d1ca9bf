//! The drones' side of `assess`: a unit of work (the paths of some files
//! of one directory) in, each file's outcome out, as bytes: the pool's
//! tasks take and give `Pod` slices, and a unit's result holds names of
//! any length. The master decodes with [`decode`]; the one-process run
//! calls the same [`analyse_unit`] and [`decode`], so the two results
//! can be compared whole.
//!
//! Input: the paths, each followed by a NUL byte. Output, per path:
//!
//! ```text
//! 0 (analysed)    u8 language, u64 x 8 (lines, code, comment, blank, functions,
//!                 branches, max_complexity, longest_function), u32 n, then n x
//!                 (u32 line, u32 lines, u32 complexity, u32 len, name bytes)
//! 1 (unreadable)  u32 len, the error's text
//! 2 (not UTF-8)   u64 offset of the first byte that is not
//! ```
//!
//! Integers are little-endian.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use polycephaly::pool::SliceTask;

use super::metrics::{FileMetrics, Function, Language, analyse};

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its metrics.
    Analysed(FileMetrics),
    /// It could not be read: why.
    Unreadable(String),
    /// It is not UTF-8: the offset of the first bad byte.
    NotUtf8(u64),
}

/// The pool's task: analyses the files of one unit.
pub static ANALYSE: SliceTask<u8, Vec<u8>> = SliceTask::new_vec("assess_files", analyse_unit);

/// The input of a unit of `paths`.
pub fn unit_input<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(p.as_os_str().as_bytes());
        out.push(0);
    }
    out
}

/// Reads and analyses each file whose path is in `input`; the outcomes,
/// encoded.
pub fn analyse_unit(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for raw in input.split(|&b| b == 0) {
        if raw.is_empty() {
            continue;
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(raw));
        encode(&mut out, &analyse_file(path));
    }
    out
}

/// The outcome of one file (its language by its extension; a file of
/// none is read as C, which does not happen: the walk sends only ours).
pub fn analyse_file(path: &Path) -> Outcome {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Outcome::Unreadable(e.to_string()),
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => {
            let language = Language::of_path(path).unwrap_or(Language::C);
            Outcome::Analysed(analyse(language, text))
        }
        Err(e) => Outcome::NotUtf8(e.valid_up_to() as u64),
    }
}

fn encode(out: &mut Vec<u8>, outcome: &Outcome) {
    let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match outcome {
        Outcome::Analysed(m) => {
            out.push(0);
            out.push(m.language as u8);
            for v in [
                m.lines,
                m.code,
                m.comment,
                m.blank,
                m.functions,
                m.branches,
                m.max_complexity,
                m.longest_function,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&u32_of(m.top.len()).to_le_bytes());
            for f in &m.top {
                for v in [f.line, f.lines, f.complexity] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                // Names are cut at 4 KiB (on a character boundary).
                let mut end = f.name.len().min(4096);
                while !f.name.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&u32_of(end).to_le_bytes());
                out.extend_from_slice(&f.name.as_bytes()[..end]);
            }
        }
        Outcome::Unreadable(why) => {
            out.push(1);
            out.extend_from_slice(&u32_of(why.len()).to_le_bytes());
            out.extend_from_slice(why.as_bytes());
        }
        Outcome::NotUtf8(at) => {
            out.push(2);
            out.extend_from_slice(&at.to_le_bytes());
        }
    }
}

/// Reads what [`analyse_unit`] wrote; `None` if it does not add up.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// The outcomes a unit's output holds, in order; `None` if it does not
/// add up.
pub fn decode(bytes: &[u8]) -> Option<Vec<Outcome>> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        out.push(match r.u8()? {
            0 => {
                let language = Language::from_u8(r.u8()?)?;
                let mut v = [0u64; 8];
                for x in &mut v {
                    *x = r.u64()?;
                }
                let n = r.u32()? as usize;
                let mut top = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let (line, lines, complexity) = (r.u32()?, r.u32()?, r.u32()?);
                    top.push(Function {
                        name: r.string()?,
                        line,
                        lines,
                        complexity,
                    });
                }
                let [
                    lines,
                    code,
                    comment,
                    blank,
                    functions,
                    branches,
                    max_complexity,
                    longest,
                ] = v;
                Outcome::Analysed(FileMetrics {
                    language,
                    lines,
                    code,
                    comment,
                    blank,
                    functions,
                    branches,
                    max_complexity,
                    longest_function: longest,
                    top,
                })
            }
            1 => Outcome::Unreadable(r.string()?),
            2 => Outcome::NotUtf8(r.u64()?),
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        let m = analyse(Language::Rust, "fn main() {\n    if x { y() }\n}\n");
        let all = [
            Outcome::Analysed(m),
            Outcome::Unreadable("Permission denied (os error 13)".into()),
            Outcome::NotUtf8(17),
        ];
        let mut bytes = Vec::new();
        for o in &all {
            encode(&mut bytes, o);
        }
        assert_eq!(decode(&bytes).unwrap(), all);
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode(&[9]).is_none());
    }
}
