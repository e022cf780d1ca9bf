//! The scanner for the languages of the C family: Rust, C, C++, Java,
//! JavaScript, TypeScript. One lexer (comments, strings, characters and
//! each language's special literals: Rust raw strings and lifetimes, C++
//! raw strings, Java text blocks, JavaScript templates and regular
//! expressions) and a look at the tokens before each `{` to tell a
//! function's body from any other block.
//!
//! Functions: Rust, an `fn NAME` before the `{`; JavaScript and
//! TypeScript, a `function` or an arrow `=>` before it, or the general
//! form; C, C++ and Java, the general form outside any function body:
//! `NAME(...)` followed by nothing or by qualifiers (`const`, `throws
//! ...`, `: init(...)`, `-> T`, ...), the name not a keyword.
//!
//! Branch points: `if`, `for`, `while`, `case`, `catch`, `&&`, `||`, the
//! ternary `?` and `??`; in Rust `if`, `for`, `while`, each match arm
//! (`=>`), `&&`, `||`. `&&` and `||` count only after an operand (so
//! Rust's closures `|| x` and references `&&x` do not).

use super::metrics::{Language, Scan, char_len, is_ident};

/// Tokens kept from the start of a statement (beyond: not a function).
const MAX_HEADER: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    Lit,
    Punct(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    line: u32,
}

/// Words that are not operands: after them `&&`, `||` and `/` are
/// prefix forms (a closure, a reference, a regular expression).
const NOT_OPERAND: &[&str] = &[
    "return",
    "move",
    "in",
    "of",
    "else",
    "if",
    "while",
    "match",
    "let",
    "mut",
    "yield",
    "case",
    "do",
    "new",
    "delete",
    "void",
    "throw",
    "typeof",
    "instanceof",
];

/// Words that look like calls before a `{` but are not functions.
const CONTROL: &[&str] = &[
    "if",
    "for",
    "while",
    "switch",
    "catch",
    "return",
    "sizeof",
    "alignof",
    "do",
    "else",
    "new",
    "delete",
    "throw",
    "typeof",
    "case",
    "with",
    "await",
    "yield",
    "decltype",
    "synchronized",
    "defined",
    "foreach",
];

/// Call-like words before a function's name, skipped: `__attribute__((...))`.
const SKIPPED_CALLS: &[&str] = &[
    "__attribute__",
    "__attribute",
    "__declspec",
    "alignas",
    "_Alignas",
];

/// What may follow a function's parameter list before its body.
const QUALIFIERS: &[&str] = &[
    "const", "noexcept", "override", "final", "volatile", "mutable", "throws", "throw", "requires",
    "try", ":", "->", "&", "&&",
];

/// The two- and three-byte punctuation we tell apart; anything else is a
/// one-byte token. `<`, `>` stay single (generics), `?.`, `??` are
/// JavaScript's.
const PUNCTS: &[&str] = &[
    "::", "->", "=>", "&&", "||", "===", "!==", "==", "!=", "<=", ">=", "??", "?.",
];

struct CLike<'a> {
    lang: Language,
    text: &'a [u8],
    header: Vec<Tok>,
    overflow: bool,
    /// For each open `{`: whether it opened a function's body.
    braces: Vec<bool>,
    prev: Option<Tok>,
}

/// Scans a file of the C family into `s`.
pub(crate) fn scan(s: &mut Scan<'_>, lang: Language) {
    let mut c = CLike {
        lang,
        text: s.text,
        header: Vec::new(),
        overflow: false,
        braces: Vec::new(),
        prev: None,
    };
    let text = s.text;
    let n = text.len();
    let mut i = 0;
    let mut line_start = true;
    while i < n {
        let b = text[i];
        let next = text.get(i + 1).copied().unwrap_or(0);
        if b == b'\n' {
            s.newline();
            line_start = true;
            i += 1;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let at_line_start = std::mem::replace(&mut line_start, false);
        i = match b {
            b'/' if next == b'/' => {
                s.comment();
                memchr(text, i, b'\n')
            }
            b'/' if next == b'*' => c.block_comment(s, i),
            b'#' if at_line_start && matches!(lang, Language::C | Language::Cpp) => {
                c.directive(s, i)
            }
            b'"' | b'\'' | b'`' => c.quoted(s, i),
            b'/' if c.is_js() && !c.prev_is_operand() => c.regex(s, i),
            b'0'..=b'9' => {
                let end = number_end(text, i);
                c.push(s, Kind::Lit, i, end);
                end
            }
            b if is_ident(b) => c.word(s, i),
            _ => c.punct(s, i),
        };
    }
}

/// The index of the next `byte` from `i`, or the end.
fn memchr(text: &[u8], i: usize, byte: u8) -> usize {
    text[i..]
        .iter()
        .position(|&b| b == byte)
        .map_or(text.len(), |p| i + p)
}

fn number_end(text: &[u8], mut i: usize) -> usize {
    while i < text.len() {
        let b = text[i];
        let exp = matches!(b, b'+' | b'-') && matches!(text[i - 1], b'e' | b'E' | b'p' | b'P');
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'\'' || exp {
            // `1..2` is a range, `x.0.1` a field: stop before a second dot.
            if b == b'.' && text.get(i + 1) == Some(&b'.') {
                break;
            }
            i += 1;
        } else {
            break;
        }
    }
    i
}

impl CLike<'_> {
    fn is_js(&self) -> bool {
        matches!(self.lang, Language::JavaScript | Language::TypeScript)
    }

    fn word_at(&self, t: &Tok) -> &str {
        std::str::from_utf8(&self.text[t.start..t.end]).unwrap_or("")
    }

    fn is_word(&self, t: &Tok, w: &str) -> bool {
        t.kind == Kind::Ident && self.word_at(t) == w
    }

    fn prev_is_operand(&self) -> bool {
        match self.prev {
            Some(t) => match t.kind {
                Kind::Lit => true,
                Kind::Ident => !NOT_OPERAND.contains(&self.word_at(&t)),
                // Rust's `x?` ends an operand; elsewhere `?` starts a branch.
                Kind::Punct(p) => {
                    matches!(p, ")" | "]") || (p == "?" && self.lang == Language::Rust)
                }
            },
            None => false,
        }
    }

    fn push(&mut self, s: &mut Scan<'_>, kind: Kind, start: usize, end: usize) {
        s.code();
        let tok = Tok {
            kind,
            start,
            end,
            line: s.line,
        };
        self.prev = Some(tok);
        if self.header.len() < MAX_HEADER {
            self.header.push(tok);
        } else {
            self.overflow = true;
        }
    }

    fn reset_header(&mut self) {
        self.header.clear();
        self.overflow = false;
    }

    /// `/* ... */` (nested in Rust), each line it touches a comment line.
    fn block_comment(&mut self, s: &mut Scan<'_>, mut i: usize) -> usize {
        let nests = self.lang == Language::Rust;
        let text = self.text;
        let mut depth = 0usize;
        s.comment();
        while i < text.len() {
            let (b, next) = (text[i], text.get(i + 1).copied().unwrap_or(0));
            if b == b'/' && next == b'*' && (depth == 0 || nests) {
                depth += 1;
                i += 2;
            } else if b == b'*' && next == b'/' {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            } else {
                if b == b'\n' {
                    s.newline();
                    s.comment();
                }
                i += 1;
            }
        }
        i
    }

    /// A preprocessor line (with its `\` continuations): code, and the
    /// end of a statement.
    fn directive(&mut self, s: &mut Scan<'_>, mut i: usize) -> usize {
        let text = self.text;
        s.code();
        while i < text.len() && text[i] != b'\n' {
            if text[i] == b'\\' && text.get(i + 1) == Some(&b'\n') {
                s.newline();
                s.code();
                i += 2;
                continue;
            }
            // A comment on the directive's line.
            if text[i] == b'/' && text.get(i + 1) == Some(&b'*') {
                i = self.block_comment(s, i);
                s.code();
                continue;
            }
            if text[i] == b'/' && text.get(i + 1) == Some(&b'/') {
                return memchr(text, i, b'\n');
            }
            i += 1;
        }
        self.reset_header();
        self.prev = None;
        i
    }

    /// A string, character or template starting at the quote at `i`.
    fn quoted(&mut self, s: &mut Scan<'_>, i: usize) -> usize {
        let text = self.text;
        let q = text[i];
        if q == b'\'' && self.lang == Language::Rust {
            // A character literal, or a lifetime / label.
            let next = text.get(i + 1).copied().unwrap_or(0);
            let len = char_len(next);
            if next != b'\\' && text.get(i + 1 + len) != Some(&b'\'') {
                let mut end = i + 1;
                while end < text.len() && is_ident(text[end]) {
                    end += 1;
                }
                self.push(s, Kind::Ident, i, end);
                return end;
            }
        }
        if q == b'"' && self.lang == Language::Java && text[i..].starts_with(b"\"\"\"") {
            let end = self.until(s, i + 3, b"\"\"\"", false);
            self.push(s, Kind::Lit, i, end);
            return end;
        }
        // Rust strings and JavaScript templates span lines; others end at
        // a newline if unclosed.
        let multiline = (q == b'"' && self.lang == Language::Rust) || q == b'`';
        let mut j = i + 1;
        while j < text.len() {
            match text[j] {
                b'\\' => {
                    if text.get(j + 1) == Some(&b'\n') {
                        s.code();
                        s.newline();
                    }
                    j += 2;
                    continue;
                }
                b'\n' if multiline => {
                    s.code();
                    s.newline();
                }
                b'\n' => break,
                b if b == q => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let end = j.min(text.len());
        self.push(s, Kind::Lit, i, end);
        end
    }

    /// Scans from `j` past `close`, marking lines as code; `escapes`:
    /// a backslash escapes the next byte.
    fn until(&mut self, s: &mut Scan<'_>, mut j: usize, close: &[u8], escapes: bool) -> usize {
        let text = self.text;
        while j < text.len() {
            if text[j..].starts_with(close) {
                return j + close.len();
            }
            if escapes && text[j] == b'\\' {
                j += 1;
            }
            if text.get(j) == Some(&b'\n') {
                s.code();
                s.newline();
            }
            j += 1;
        }
        s.code();
        text.len()
    }

    /// A JavaScript regular expression literal `/.../flags` on one line.
    fn regex(&mut self, s: &mut Scan<'_>, i: usize) -> usize {
        let text = self.text;
        let mut j = i + 1;
        let mut class = false;
        while j < text.len() && text[j] != b'\n' {
            match text[j] {
                b'\\' => j += 1,
                b'[' => class = true,
                b']' => class = false,
                b'/' if !class => {
                    j += 1;
                    while j < text.len() && is_ident(text[j]) {
                        j += 1;
                    }
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let end = j.min(text.len());
        self.push(s, Kind::Lit, i, end);
        end
    }

    /// An identifier or keyword, or the prefix of a literal (`r#"..."#`,
    /// `b'x'`, `R"(...)"`, `u8"..."`).
    fn word(&mut self, s: &mut Scan<'_>, i: usize) -> usize {
        let text = self.text;
        let mut end = i;
        while end < text.len() && is_ident(text[end]) {
            end += 1;
        }
        let w = &text[i..end];
        let after = text.get(end).copied().unwrap_or(0);
        if self.lang == Language::Rust {
            if matches!(w, b"r" | b"br" | b"cr") && matches!(after, b'"' | b'#') {
                let hashes = text[end..].iter().take_while(|&&b| b == b'#').count();
                if text.get(end + hashes) == Some(&b'"') {
                    let mut close = vec![b'"'];
                    close.extend(std::iter::repeat_n(b'#', hashes));
                    let stop = self.until(s, end + hashes + 1, &close, false);
                    self.push(s, Kind::Lit, i, stop);
                    return stop;
                }
            }
            if matches!(w, b"b" | b"c") && matches!(after, b'"' | b'\'') {
                let stop = self.quoted(s, end);
                self.prev = Some(Tok {
                    kind: Kind::Lit,
                    start: i,
                    end: stop,
                    line: s.line,
                });
                return stop;
            }
        }
        if matches!(self.lang, Language::C | Language::Cpp) && after == b'"' {
            if matches!(w, b"R" | b"u8R" | b"uR" | b"UR" | b"LR") {
                let open = memchr(text, end, b'(');
                let delim = &text[end + 1..open.min(text.len())];
                let mut close = vec![b')'];
                close.extend_from_slice(delim);
                close.push(b'"');
                let stop = self.until(s, open + 1, &close, false);
                self.push(s, Kind::Lit, i, stop);
                return stop;
            }
            if matches!(w, b"u8" | b"u" | b"U" | b"L") {
                return self.quoted(s, end);
            }
        }
        self.push(s, Kind::Ident, i, end);
        let word = &text[i..end];
        let branch = match self.lang {
            Language::Rust => matches!(word, b"if" | b"for" | b"while"),
            _ => matches!(word, b"if" | b"for" | b"while" | b"case" | b"catch"),
        };
        if branch {
            s.branch();
        }
        end
    }

    fn punct(&mut self, s: &mut Scan<'_>, i: usize) -> usize {
        let text = self.text;
        let p: &'static str = PUNCTS
            .iter()
            .find(|p| text[i..].starts_with(p.as_bytes()))
            .copied()
            .unwrap_or_else(|| one_byte(text[i]));
        let operand_before = self.prev_is_operand();
        let end = i + p.len().max(1);
        match p {
            "{" => {
                let f = self.function_here();
                self.braces.push(f.is_some());
                if let Some((name, line)) = f {
                    s.open(name, line);
                }
                self.reset_header();
                s.code();
                self.prev = Some(Tok {
                    kind: Kind::Punct("{"),
                    start: i,
                    end,
                    line: s.line,
                });
                return end;
            }
            "}" => {
                if self.braces.pop() == Some(true) {
                    s.code();
                    s.close(s.line);
                }
                self.reset_header();
                s.code();
                self.prev = Some(Tok {
                    kind: Kind::Punct("}"),
                    start: i,
                    end,
                    line: s.line,
                });
                return end;
            }
            ";" => {
                self.reset_header();
                s.code();
                self.prev = Some(Tok {
                    kind: Kind::Punct(";"),
                    start: i,
                    end,
                    line: s.line,
                });
                return end;
            }
            "&&" | "||" if operand_before => s.branch(),
            "??" if self.is_js() => s.branch(),
            "=>" if self.lang == Language::Rust => s.branch(),
            "?" if self.lang != Language::Rust && operand_before => {
                let next = text.get(i + 1).copied().unwrap_or(0);
                if !matches!(next, b':' | b')' | b',' | b'=') {
                    s.branch();
                }
            }
            _ => {}
        }
        self.push(s, Kind::Punct(p), i, end);
        end
    }

    /// Whether the `{` about to open is a function's body, and its name
    /// and line if so.
    fn function_here(&self) -> Option<(String, u32)> {
        if self.overflow {
            return None;
        }
        let h = &self.header;
        if self.lang == Language::Rust {
            let k = h
                .windows(2)
                .position(|w| self.is_word(&w[0], "fn") && w[1].kind == Kind::Ident)?;
            return Some((self.word_at(&h[k + 1]).to_owned(), h[k].line));
        }
        if self.is_js() {
            if let Some(k) = h.iter().rposition(|t| self.is_word(t, "function")) {
                let mut j = k + 1;
                if h.get(j).is_some_and(|t| t.kind == Kind::Punct("*")) {
                    j += 1;
                }
                if let Some(t) = h.get(j)
                    && t.kind == Kind::Ident
                {
                    return Some((self.word_at(t).to_owned(), t.line));
                }
                return Some((self.assigned_name(&h[..k]), h[k].line));
            }
            if let Some(last) = h.last()
                && last.kind == Kind::Punct("=>")
            {
                return Some((self.assigned_name(h), last.line));
            }
        } else if !self.braces.is_empty() && self.braces.iter().any(|&f| f) {
            // C, C++, Java: no functions inside functions (a macro loop
            // `list_for_each(...) {` is a block).
            return None;
        }
        self.general_form(h)
    }

    /// `NAME(...) [qualifiers]` at the statement's top level.
    fn general_form(&self, h: &[Tok]) -> Option<(String, u32)> {
        let mut k = 0;
        loop {
            let open = k + h[k..].iter().position(|t| t.kind == Kind::Punct("("))?;
            let close = matching(h, open, "(", ")")?;
            let mut name = open.checked_sub(1)?;
            if h[name].kind == Kind::Punct(">") {
                // A generic method: `name<T>(...)`.
                name = back_to_open_angle(h, name)?.checked_sub(1)?;
            }
            let t = &h[name];
            if t.kind != Kind::Ident {
                return None;
            }
            let word = self.word_at(t);
            let annotation = name > 0 && h[name - 1].kind == Kind::Punct("@");
            if SKIPPED_CALLS.contains(&word) || annotation {
                k = close + 1;
                continue;
            }
            if CONTROL.contains(&word) {
                return None;
            }
            if name > 0
                && (self.is_word(&h[name - 1], "new") || h[name - 1].kind == Kind::Punct("."))
            {
                return None;
            }
            let trailer_ok = h.get(close + 1).is_none_or(|t| match t.kind {
                Kind::Punct(p) => QUALIFIERS.contains(&p),
                Kind::Ident => QUALIFIERS.contains(&self.word_at(t)),
                Kind::Lit => false,
            });
            if !trailer_ok {
                return None;
            }
            // `A::B::name`, `A::~A`.
            let mut full = word.to_owned();
            let mut j = name;
            if j >= 1 && h[j - 1].kind == Kind::Punct("~") {
                full.insert(0, '~');
                j -= 1;
            }
            while j >= 2 && h[j - 1].kind == Kind::Punct("::") && h[j - 2].kind == Kind::Ident {
                full = format!("{}::{full}", self.word_at(&h[j - 2]));
                j -= 2;
            }
            return Some((full, t.line));
        }
    }

    /// The name a function expression is given: the word before the
    /// first `=` or `:` at the top level (`const f = ...`, `f: ...`).
    fn assigned_name(&self, h: &[Tok]) -> String {
        let mut depth = 0i32;
        for (i, t) in h.iter().enumerate() {
            match t.kind {
                Kind::Punct("(" | "[") => depth += 1,
                Kind::Punct(")" | "]") => depth -= 1,
                Kind::Punct("=" | ":") if depth == 0 => {
                    return match i.checked_sub(1).map(|p| &h[p]) {
                        Some(t) if t.kind == Kind::Ident => self.word_at(t).to_owned(),
                        _ => "<anonymous>".to_owned(),
                    };
                }
                _ => {}
            }
        }
        "<anonymous>".to_owned()
    }
}

/// The index of the token closing the bracket opened at `open`.
fn matching(h: &[Tok], open: usize, o: &'static str, c: &'static str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in h.iter().enumerate().skip(open) {
        if t.kind == Kind::Punct(o) {
            depth += 1;
        } else if t.kind == Kind::Punct(c) {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The index of the `<` matching the `>` at `close`.
fn back_to_open_angle(h: &[Tok], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..=close).rev() {
        match h[i].kind {
            Kind::Punct(">") => depth += 1,
            Kind::Punct("<") => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// A one-byte punctuation token as a static string.
fn one_byte(b: u8) -> &'static str {
    const ALL: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~";
    match ALL.as_bytes().iter().position(|&c| c == b) {
        Some(p) => &ALL[p..p + 1],
        None => "?other",
    }
}

#[cfg(test)]
mod tests {
    use crate::assess::metrics::{Language, analyse};

    fn names(lang: Language, src: &str) -> Vec<(String, u32, u32)> {
        let mut v: Vec<_> = analyse(lang, src)
            .top
            .into_iter()
            .map(|f| (f.name, f.line, f.complexity))
            .collect();
        v.sort_by_key(|f| f.1);
        v
    }

    #[test]
    fn rust_functions_lines_and_branches() {
        let src = "\
//! Doc.

/// Adds.
fn add(a: u8, b: u8) -> u8 {
    if a > 0 && b > 0 { a + b } else { 0 } // sum
}

/* block
   comment */
impl X {
    pub fn pick<'a>(&self, x: &'a str) -> char {
        let c = 'x';
        let s = r#\"fn fake() { if }\"#;
        match x.len() {
            0 => c,
            _ => '\\n',
        }
    }
}
fn closures() { let f = || 1; let g = move || &&3; }";
        let m = analyse(Language::Rust, src);
        assert_eq!(m.lines, 19);
        assert_eq!((m.code, m.comment, m.blank), (14, 4, 2));
        assert_eq!(m.functions, 3);
        assert_eq!(
            names(Language::Rust, src),
            [
                ("add".into(), 4, 3),
                ("pick".into(), 11, 3),
                ("closures".into(), 20, 1)
            ]
        );
        assert_eq!(m.longest_function, 8);
    }

    #[test]
    fn c_functions_and_preprocessor() {
        let src = "\
#include <stdio.h>
#define MAX(a, b) ((a) > (b) ? (a) : (b))
static const char *s = \"{ not a block\";
struct point { int x, y; };
__attribute__((noreturn)) static void die(const char *m) {
    for (;;) { }
}
int
main(int argc, char **argv)
{
    int c = argc > 1 ? 1 : 0;
    switch (c) { case 0: break; case 1: break; }
    list_for_each(x, y) { if (x) { } }
    return c;
}
";
        assert_eq!(
            names(Language::C, src),
            [("die".into(), 5, 2), ("main".into(), 9, 5)]
        );
    }

    #[test]
    fn cpp_and_java_forms() {
        let src = "\
namespace n {
Foo::Foo(int a) : x_(a), y_(f(a)) {
    if (a) {}
}
Foo::~Foo() {}
int Foo::get() const noexcept { return x_; }
auto g = [](int x) { return x ? 1 : 2; };
const char *r = R\"d(if { while )d\";
}
";
        assert_eq!(
            names(Language::Cpp, src),
            [
                ("Foo::Foo".into(), 2, 2),
                ("Foo::~Foo".into(), 5, 1),
                ("Foo::get".into(), 6, 1)
            ]
        );
        let java = "\
public class A extends B {
    @Override
    public <T> void run(T t) throws IOException, X {
        Runnable r = new Runnable() { public void run() { } };
        String s = \"\"\"
            if (x) {
            \"\"\";
        try { } catch (E e) { }
    }
}
";
        assert_eq!(names(Language::Java, java), [("run".into(), 3, 2)]);
    }

    #[test]
    fn javascript_forms() {
        let src = "\
const re = /[/{]/g; const t = `a ${x} {`;
function foo(a) {
  return a ?? b ? 1 : 2;
}
const bar = async (x) => {
  if (x?.y) { }
};
class C {
  baz(x) { return x / 2 / 3; }
}
arr.forEach(function (x) { });
";
        assert_eq!(
            names(Language::JavaScript, src),
            [
                ("foo".into(), 2, 3),
                ("bar".into(), 5, 2),
                ("baz".into(), 9, 1),
                ("<anonymous>".into(), 11, 1)
            ]
        );
    }
}
