//! Per-file metrics, the languages they are computed for, and the
//! bookkeeping every language's scanner shares: line classes, functions
//! and their branches.
//!
//! Definitions (the same for every language):
//!
//! - `lines`: newline characters, as `wc -l` counts them.
//! - `code`, `comment`, `blank`: each physical line is one of these, a
//!   final line without a newline included (so they add up to `lines`, or
//!   one more when the file does not end with a newline). A line with any
//!   code on it is code; a line with only comment text (a docstring
//!   standing alone, in Python) is comment; the rest is blank.
//! - `functions`: definitions with a body (Rust `fn`, C-family functions
//!   and methods, JavaScript functions and arrow functions with a block,
//!   Python `def`, Smalltalk methods in chunk format).
//! - `branches`: branch points: conditional and loop keywords, match arms,
//!   `&&`, `||`, `?:` and the like (see each scanner). A function's
//!   complexity is 1 plus the branch points in its own body (a nested
//!   function's are its own).
//! - `longest_function`: lines from a function's first line to its last.

use std::cmp::Reverse;

/// The languages assessed, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Language {
    /// `.rs`
    Rust = 1,
    /// `.c`, `.h`
    C,
    /// `.cc`, `.cpp`, `.cxx`, `.c++`, `.hh`, `.hpp`, `.hxx`, `.h++`
    Cpp,
    /// `.py`, `.pyw`, `.pyi`
    Python,
    /// `.java`
    Java,
    /// `.js`, `.mjs`, `.cjs`, `.jsx`
    JavaScript,
    /// `.ts`, `.tsx`, `.mts`, `.cts`
    TypeScript,
    /// `.st` (chunk format: methods between `!Class methodsFor: '...'!`
    /// and `! !`)
    Smalltalk,
}

impl Language {
    /// Every language, in table order.
    pub const ALL: [Language; 8] = [
        Self::Rust,
        Self::C,
        Self::Cpp,
        Self::Python,
        Self::Java,
        Self::JavaScript,
        Self::TypeScript,
        Self::Smalltalk,
    ];

    /// The language of a file name's extension, if it is one of ours.
    pub fn of_extension(ext: &[u8]) -> Option<Self> {
        let ext = std::str::from_utf8(ext).ok()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "rs" => Self::Rust,
            "c" | "h" => Self::C,
            "cc" | "cpp" | "cxx" | "c++" | "hh" | "hpp" | "hxx" | "h++" => Self::Cpp,
            "py" | "pyw" | "pyi" => Self::Python,
            "java" => Self::Java,
            "js" | "mjs" | "cjs" | "jsx" => Self::JavaScript,
            "ts" | "tsx" | "mts" | "cts" => Self::TypeScript,
            "st" => Self::Smalltalk,
            _ => return None,
        })
    }

    /// The language of a path, by its extension.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::ffi::OsStrExt as _;
        Self::of_extension(path.extension()?.as_bytes())
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rust => "Rust",
            Self::C => "C",
            Self::Cpp => "C++",
            Self::Python => "Python",
            Self::Java => "Java",
            Self::JavaScript => "JavaScript",
            Self::TypeScript => "TypeScript",
            Self::Smalltalk => "Smalltalk",
        }
    }

    /// The language of a byte written by [`Language as u8`](Self).
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|l| *l as u8 == b)
    }
}

/// A function, as the summary's "most complex functions" lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Its name (`Class>>selector:` for Smalltalk, `Type::name` where C++
    /// says so, `<anonymous>` for a nameless JavaScript function).
    pub name: String,
    /// Its first line (1-based).
    pub line: u32,
    /// Its length in lines.
    pub lines: u32,
    /// 1 plus the branch points of its body.
    pub complexity: u32,
}

/// How many of a file's functions its metrics keep, the most complex
/// first: enough for any top-10 across files.
pub const TOP_FUNCTIONS: usize = 10;

/// One file's metrics (see the [module](self) for the definitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMetrics {
    /// Its language.
    pub language: Language,
    /// Newline characters (`wc -l`).
    pub lines: u64,
    /// Lines with code.
    pub code: u64,
    /// Lines with only comments.
    pub comment: u64,
    /// Blank lines.
    pub blank: u64,
    /// Functions with a body.
    pub functions: u64,
    /// Branch points in the whole file.
    pub branches: u64,
    /// The largest function complexity (0 without functions).
    pub max_complexity: u64,
    /// The longest function, in lines (0 without functions).
    pub longest_function: u64,
    /// The most complex functions, at most [`TOP_FUNCTIONS`], most complex
    /// first.
    pub top: Vec<Function>,
}

/// The metrics of `text`, a source file in `language`.
pub fn analyse(language: Language, text: &str) -> FileMetrics {
    let mut s = Scan::new(text);
    match language {
        Language::Python => super::python::scan(&mut s),
        Language::Smalltalk => super::smalltalk::scan(&mut s),
        _ => super::clike::scan(&mut s, language),
    }
    s.finish(language)
}

/// A function being scanned or done.
#[derive(Debug)]
struct Open {
    name: String,
    line: u32,
    end: u32,
    branches: u32,
}

/// What a scanner fills in as it walks a file: the current line's class,
/// the counts, and the functions (a stack of open ones).
#[derive(Debug)]
pub(crate) struct Scan<'t> {
    /// The file's bytes (valid UTF-8).
    pub text: &'t [u8],
    /// The current line (1-based).
    pub line: u32,
    has_code: bool,
    has_comment: bool,
    code: u64,
    comment: u64,
    blank: u64,
    newlines: u64,
    branches: u64,
    funcs: Vec<Open>,
    /// Indices into `funcs` of the functions not closed yet, innermost
    /// last.
    open: Vec<usize>,
}

impl<'t> Scan<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text: text.as_bytes(),
            line: 1,
            has_code: false,
            has_comment: false,
            code: 0,
            comment: 0,
            blank: 0,
            newlines: 0,
            branches: 0,
            funcs: Vec::new(),
            open: Vec::new(),
        }
    }

    /// The current line has code.
    pub fn code(&mut self) {
        self.has_code = true;
    }

    /// The current line has comment text.
    pub fn comment(&mut self) {
        self.has_comment = true;
    }

    /// A newline: classifies the line that ends.
    pub fn newline(&mut self) {
        self.end_line();
        self.newlines += 1;
        self.line += 1;
    }

    fn end_line(&mut self) {
        if self.has_code {
            self.code += 1;
        } else if self.has_comment {
            self.comment += 1;
        } else {
            self.blank += 1;
        }
        self.has_code = false;
        self.has_comment = false;
    }

    /// A branch point, charged to the innermost open function.
    pub fn branch(&mut self) {
        self.branches += 1;
        if let Some(&i) = self.open.last() {
            self.funcs[i].branches += 1;
        }
    }

    /// A function named `name` starts at `line`; it is open until
    /// [`close`](Self::close).
    pub fn open(&mut self, name: String, line: u32) {
        self.open.push(self.funcs.len());
        self.funcs.push(Open {
            name,
            line,
            end: line,
            branches: 0,
        });
    }

    /// The innermost open function ends at `line`.
    pub fn close(&mut self, line: u32) {
        if let Some(i) = self.open.pop() {
            self.funcs[i].end = line.max(self.funcs[i].line);
        }
    }

    /// A function already scanned, with its branches (Smalltalk methods,
    /// known only at their end).
    pub fn add_done(&mut self, name: String, line: u32, end: u32, branches: u32) {
        self.funcs.push(Open {
            name,
            line,
            end: end.max(line),
            branches,
        });
    }

    fn finish(mut self, language: Language) -> FileMetrics {
        // The last line, if the file does not end with a newline.
        if self.text.last().is_some_and(|&b| b != b'\n') {
            self.end_line();
        }
        while !self.open.is_empty() {
            self.close(self.line);
        }
        let mut top: Vec<Function> = self
            .funcs
            .into_iter()
            .map(|f| Function {
                lines: f.end - f.line + 1,
                complexity: f.branches + 1,
                line: f.line,
                name: f.name,
            })
            .collect();
        let functions = top.len() as u64;
        let max_complexity = top.iter().map(|f| u64::from(f.complexity)).max();
        let longest = top.iter().map(|f| u64::from(f.lines)).max();
        top.sort_by_key(|f| (Reverse(f.complexity), Reverse(f.lines), f.line));
        top.truncate(TOP_FUNCTIONS);
        FileMetrics {
            language,
            lines: self.newlines,
            code: self.code,
            comment: self.comment,
            blank: self.blank,
            functions,
            branches: self.branches,
            max_complexity: max_complexity.unwrap_or(0),
            longest_function: longest.unwrap_or(0),
            top,
        }
    }
}

/// Whether `b` may be part of an identifier (bytes of non-ASCII
/// characters included).
pub(crate) fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The length of the UTF-8 character that starts with `b`.
pub(crate) fn char_len(b: u8) -> usize {
    match b {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}
