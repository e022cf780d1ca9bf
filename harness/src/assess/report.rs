//! What `assess` says: the summary tables (languages, largest packages,
//! most complex functions, what was skipped) and the report file, JSON
//! or CSV, one entry per file.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::metrics::{FileMetrics, Language};
use super::task::Outcome;
use super::walk::Walk;
use crate::human::{say, thousands};
use crate::report::json_string;

/// One file's place and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Its path, relative to the root (the root itself for a single file).
    pub path: PathBuf,
    /// Its package's index in [`Walk::packages`].
    pub package: usize,
    /// What became of it.
    pub outcome: Outcome,
}

impl FileRecord {
    fn path_text(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// Sums of metrics over some files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files analysed.
    pub files: u64,
    /// `wc -l` lines.
    pub lines: u64,
    /// Code lines.
    pub code: u64,
    /// Comment lines.
    pub comment: u64,
    /// Blank lines.
    pub blank: u64,
    /// Functions.
    pub functions: u64,
    /// The largest function complexity.
    pub max_complexity: u64,
}

impl Totals {
    fn add(&mut self, m: &FileMetrics) {
        self.files += 1;
        self.lines += m.lines;
        self.code += m.code;
        self.comment += m.comment;
        self.blank += m.blank;
        self.functions += m.functions;
        self.max_complexity = self.max_complexity.max(m.max_complexity);
    }
}

/// The totals of every analysed file.
pub fn totals(files: &[FileRecord]) -> Totals {
    let mut t = Totals::default();
    for f in files {
        if let Outcome::Analysed(m) = &f.outcome {
            t.add(m);
        }
    }
    t
}

/// Prints the summary tables.
pub fn summary(walk: &Walk, files: &[FileRecord]) {
    let mut by_lang: BTreeMap<Language, Totals> = BTreeMap::new();
    let mut by_pkg: BTreeMap<usize, Totals> = BTreeMap::new();
    for f in files {
        if let Outcome::Analysed(m) = &f.outcome {
            by_lang.entry(m.language).or_default().add(m);
            by_pkg.entry(f.package).or_default().add(m);
        }
    }
    let all = totals(files);
    say!("");
    say!(
        "{:<12} {:>8} {:>11} {:>11} {:>10} {:>10} {:>10}",
        "language",
        "files",
        "lines",
        "code",
        "comment",
        "blank",
        "functions"
    );
    let mut langs: Vec<_> = by_lang.into_iter().collect();
    langs.sort_by_key(|(l, t)| (Reverse(t.code), *l));
    for (l, t) in langs
        .iter()
        .map(|(l, t)| (l.name(), t))
        .chain([("total", &all)])
    {
        say!(
            "{:<12} {:>8} {:>11} {:>11} {:>10} {:>10} {:>10}",
            l,
            thousands(t.files),
            thousands(t.lines),
            thousands(t.code),
            thousands(t.comment),
            thousands(t.blank),
            thousands(t.functions)
        );
    }

    say!("");
    say!(
        "largest packages (by code lines), of {}",
        thousands(walk.packages.len() as u64)
    );
    let mut pkgs: Vec<_> = by_pkg.into_iter().collect();
    pkgs.sort_by_key(|(i, t)| (Reverse(t.code), *i));
    say!(
        "  {:>11} {:>7} {:>9} {:>7}  package",
        "code",
        "files",
        "functions",
        "max cc"
    );
    for (i, t) in pkgs.iter().take(10) {
        say!(
            "  {:>11} {:>7} {:>9} {:>7}  {}",
            thousands(t.code),
            thousands(t.files),
            thousands(t.functions),
            t.max_complexity,
            walk.packages[*i]
        );
    }

    say!("");
    say!("most complex functions (1 + branch points)");
    let mut funcs: Vec<_> = files
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Analysed(m) => Some(m.top.iter().map(move |g| (f, g))),
            _ => None,
        })
        .flatten()
        .collect();
    funcs.sort_by(|a, b| {
        (
            Reverse(a.1.complexity),
            Reverse(a.1.lines),
            &a.0.path,
            a.1.line,
        )
            .cmp(&(
                Reverse(b.1.complexity),
                Reverse(b.1.lines),
                &b.0.path,
                b.1.line,
            ))
    });
    say!("  {:>5} {:>6}  function  (file:line)", "cc", "lines");
    for (f, g) in funcs.iter().take(10) {
        say!(
            "  {:>5} {:>6}  {}  ({}:{})",
            g.complexity,
            g.lines,
            g.name,
            f.path.display(),
            g.line
        );
    }

    let skipped = skipped(walk, files);
    if !skipped.is_empty() {
        say!("");
        say!("skipped ({}):", thousands(skipped.len() as u64));
        for (path, why) in skipped.iter().take(10) {
            say!("  {path}: {why}");
        }
        if skipped.len() > 10 {
            say!(
                "  ... and {} more (the report lists them all)",
                skipped.len() - 10
            );
        }
    }
}

/// Everything skipped, with why: the walk's, unreadable files, files not
/// in UTF-8.
pub fn skipped(walk: &Walk, files: &[FileRecord]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walk
        .skipped
        .iter()
        .map(|s| {
            let rel = s.path.strip_prefix(&walk.root).unwrap_or(&s.path);
            (rel.to_string_lossy().into_owned(), s.reason.clone())
        })
        .collect();
    for f in files {
        match &f.outcome {
            Outcome::Unreadable(why) => out.push((f.path_text(), format!("unreadable: {why}"))),
            Outcome::NotUtf8(at) => out.push((
                f.path_text(),
                format!("not UTF-8 (byte {at} is not), skipped"),
            )),
            Outcome::Analysed(_) => {}
        }
    }
    out
}

/// The report as JSON: the root, the totals, one object per file
/// analysed (with its most complex functions), what was skipped.
pub fn json(walk: &Walk, files: &[FileRecord]) -> String {
    let mut s = String::new();
    let t = totals(files);
    let _ = writeln!(
        s,
        "{{\"root\": {},",
        json_string(&walk.root.to_string_lossy())
    );
    let _ = writeln!(
        s,
        " \"totals\": {{\"files\": {}, \"lines\": {}, \"code\": {}, \"comment\": {}, \"blank\": {}, \"functions\": {}}},",
        t.files, t.lines, t.code, t.comment, t.blank, t.functions
    );
    s.push_str(" \"files\": [");
    let mut first = true;
    for f in files {
        let Outcome::Analysed(m) = &f.outcome else {
            continue;
        };
        s.push_str(if first { "\n  " } else { ",\n  " });
        first = false;
        let _ = write!(
            s,
            "{{\"path\": {}, \"package\": {}, \"language\": \"{}\", \"lines\": {}, \"code\": {}, \
             \"comment\": {}, \"blank\": {}, \"functions\": {}, \"branches\": {}, \
             \"max_complexity\": {}, \"longest_function\": {}, \"most_complex\": [",
            json_string(&f.path_text()),
            json_string(&walk.packages[f.package]),
            m.language.name(),
            m.lines,
            m.code,
            m.comment,
            m.blank,
            m.functions,
            m.branches,
            m.max_complexity,
            m.longest_function
        );
        for (i, g) in m.top.iter().enumerate() {
            let _ = write!(
                s,
                "{}{{\"name\": {}, \"line\": {}, \"lines\": {}, \"complexity\": {}}}",
                if i > 0 { ", " } else { "" },
                json_string(&g.name),
                g.line,
                g.lines,
                g.complexity
            );
        }
        s.push_str("]}");
    }
    s.push_str("\n ],\n \"skipped\": [");
    for (i, (path, why)) in skipped(walk, files).iter().enumerate() {
        let _ = write!(
            s,
            "{}{{\"path\": {}, \"reason\": {}}}",
            if i > 0 { ",\n  " } else { "\n  " },
            json_string(path),
            json_string(why)
        );
    }
    s.push_str("\n ]\n}\n");
    s
}

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The report as CSV: a header, then one row per file (analysed or
/// not: `status` says), metrics empty for those skipped.
pub fn csv(walk: &Walk, files: &[FileRecord]) -> String {
    let mut s = String::from(
        "path,package,language,lines,code,comment,blank,functions,branches,max_complexity,longest_function,most_complex_function,status\n",
    );
    for f in files {
        let (path, pkg) = (
            csv_field(&f.path_text()),
            csv_field(&walk.packages[f.package]),
        );
        let _ = match &f.outcome {
            Outcome::Analysed(m) => writeln!(
                s,
                "{path},{pkg},{},{},{},{},{},{},{},{},{},{},ok",
                m.language.name(),
                m.lines,
                m.code,
                m.comment,
                m.blank,
                m.functions,
                m.branches,
                m.max_complexity,
                m.longest_function,
                csv_field(m.top.first().map_or("", |g| g.name.as_str()))
            ),
            Outcome::Unreadable(why) => {
                writeln!(
                    s,
                    "{path},{pkg},,,,,,,,,,,{}",
                    csv_field(&format!("unreadable: {why}"))
                )
            }
            Outcome::NotUtf8(at) => {
                writeln!(s, "{path},{pkg},,,,,,,,,,,not UTF-8 at byte {at}")
            }
        };
    }
    s
}
