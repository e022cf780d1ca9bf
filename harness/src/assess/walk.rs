//! Walking a source tree with `std::fs`: directories in name order,
//! symbolic links never followed (so a link loop is just a link), `.git`,
//! `.hg` and `.svn` left out, unreadable directories reported and
//! skipped. The files of our languages are grouped into units of work,
//! at most [`UNIT_FILES`] files of one directory each, and each unit
//! belongs to a package:
//!
//! - a directory with a manifest (`Cargo.toml`, `package.json`,
//!   `pyproject.toml`, `setup.py`, `pom.xml`, `build.gradle(.kts)`,
//!   `go.mod`) starts a package;
//! - so does the outermost of a chain of directories with an
//!   `__init__.py` (a top-level Python package);
//! - any other directory is in its parent's package if that one was
//!   started so, or has no source files of its own; else it starts a
//!   package of its own (`/usr/include/linux`, `lib/python3.11`). The
//!   root's package is `.`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use super::metrics::Language;

/// The most files in one unit of work.
pub const UNIT_FILES: usize = 64;

const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "package.json",
    "pyproject.toml",
    "setup.py",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "go.mod",
];

const VCS: &[&str] = &[".git", ".hg", ".svn"];

/// Some files of one directory, analysed together.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Index into [`Walk::packages`].
    pub package: usize,
    /// The files' paths.
    pub files: Vec<PathBuf>,
}

/// Something the walk could not look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// What the walk found.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The root, as given.
    pub root: PathBuf,
    /// Package names: paths relative to the root (`.` for the root).
    pub packages: Vec<String>,
    /// The units of work, in walk order.
    pub units: Vec<Unit>,
    /// Files of our languages (in the units).
    pub source_files: u64,
    /// Other regular files (not read).
    pub other_files: u64,
    /// Directories walked.
    pub dirs: u64,
    /// Symbolic links, not followed.
    pub symlinks: u64,
    /// Entries that are neither files, directories nor links (FIFOs,
    /// sockets, devices).
    pub special: u64,
    /// Directories (and entries) that could not be read.
    pub skipped: Vec<Skipped>,
}

/// The package a directory is in, and how it got it.
#[derive(Debug, Clone, Copy)]
struct Pkg {
    index: usize,
    kind: PkgKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PkgKind {
    /// Started by a manifest.
    Manifest,
    /// Started by the outermost of a chain of `__init__.py`.
    Python,
    /// Neither: the nearest directory with source files.
    Dir,
}

/// Walks the tree at `root` (a directory, or a single file).
///
/// # Errors
/// The root itself cannot be read (it does not exist, say).
pub fn walk(root: &Path, mut tick: impl FnMut(u64)) -> Result<Walk, String> {
    let meta =
        std::fs::metadata(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let mut w = Walk {
        root: root.to_path_buf(),
        packages: vec![".".to_owned()],
        ..Walk::default()
    };
    if !meta.is_dir() {
        if Language::of_path(root).is_some() {
            w.source_files = 1;
            w.units.push(Unit {
                package: 0,
                files: vec![root.to_path_buf()],
            });
        } else {
            w.other_files = 1;
        }
        return Ok(w);
    }
    // Depth first, in name order: a stack of (directory, its parent's
    // package).
    let mut stack: Vec<(PathBuf, Option<Pkg>)> = vec![(root.to_path_buf(), None)];
    while let Some((dir, inherited)) = stack.pop() {
        w.dirs += 1;
        tick(w.dirs);
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                w.skipped.push(Skipped {
                    path: dir,
                    reason: format!("unreadable directory: {e}"),
                });
                continue;
            }
        };
        let mut files: Vec<OsString> = Vec::new();
        let mut subdirs: Vec<OsString> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    w.skipped.push(Skipped {
                        path: dir.clone(),
                        reason: format!("unreadable directory entry: {e}"),
                    });
                    continue;
                }
            };
            // The entry's own type: a link is a link, whatever it points to.
            match entry.file_type() {
                Ok(t) if t.is_symlink() => w.symlinks += 1,
                Ok(t) if t.is_dir() => {
                    let name = entry.file_name();
                    if !VCS.iter().any(|v| name.as_bytes() == v.as_bytes()) {
                        subdirs.push(name);
                    }
                }
                Ok(t) if t.is_file() => files.push(entry.file_name()),
                Ok(_) => w.special += 1,
                Err(e) => w.skipped.push(Skipped {
                    path: entry.path(),
                    reason: format!("cannot tell what it is: {e}"),
                }),
            }
        }
        files.sort();
        subdirs.sort();
        let has = |name: &str| files.iter().any(|f| f.as_bytes() == name.as_bytes());
        let manifest = MANIFESTS.iter().any(|m| has(m));
        let init = has("__init__.py");
        let has_source = files
            .iter()
            .any(|f| Language::of_path(Path::new(f)).is_some());
        let kind = if manifest {
            Some(PkgKind::Manifest)
        } else if init && inherited.is_none_or(|p| p.kind != PkgKind::Python) {
            Some(PkgKind::Python)
        } else {
            None
        };
        let pkg = match (kind, inherited) {
            (Some(kind), _) => new_package(&mut w, root, &dir, kind),
            // A directory of a real package, or one without source files
            // of its own, is in its parent's.
            (None, Some(p)) if p.kind != PkgKind::Dir || !has_source => p,
            (None, _) if dir == root => Pkg {
                index: 0,
                kind: PkgKind::Dir,
            },
            (None, _) => new_package(&mut w, root, &dir, PkgKind::Dir),
        };
        let ours: Vec<PathBuf> = files
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| Language::of_path(p).is_some())
            .collect();
        w.other_files += (files.len() - ours.len()) as u64;
        w.source_files += ours.len() as u64;
        for part in ours.chunks(UNIT_FILES) {
            w.units.push(Unit {
                package: pkg.index,
                files: part.to_vec(),
            });
        }
        // Pushed in reverse so that they pop in name order.
        for sub in subdirs.into_iter().rev() {
            stack.push((dir.join(sub), Some(pkg)));
        }
    }
    Ok(w)
}

fn new_package(w: &mut Walk, root: &Path, dir: &Path, kind: PkgKind) -> Pkg {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let name = if rel.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        rel.to_string_lossy().into_owned()
    };
    if name == "." {
        // The root's own package is there from the start.
        return Pkg { index: 0, kind };
    }
    w.packages.push(name);
    Pkg {
        index: w.packages.len() - 1,
        kind,
    }
}
