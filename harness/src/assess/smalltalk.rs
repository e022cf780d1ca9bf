//! The Smalltalk scanner, for files in chunk format (the "file out" of
//! Squeak, Pharo, VisualWorks, GNU Smalltalk): chunks end with a `!` (a
//! doubled `!!` is a `!` inside a chunk); `!Foo methodsFor: 'x'!` starts a
//! run of method chunks, and an empty chunk (`! !`) ends it. Each method
//! is a function named `Foo>>selector:` from its message pattern to its
//! `!`. Comments are `"..."`, strings `'...'` (`''` inside), characters
//! `$c`, symbols `#foo:bar:`.
//!
//! Branch points: the conditional and loop keywords (`ifTrue:`,
//! `ifFalse:`, `ifNil:`, `ifNotNil:`, `ifEmpty:`, `ifNotEmpty:`,
//! `ifAbsent:`, `whileTrue(:)`, `whileFalse(:)`, `and:`, `or:`, `do:`,
//! `timesRepeat:`); the second half of a pair (`ifTrue: [] ifFalse: []`)
//! counts once with the first, as an `else` does.

use super::metrics::{Scan, char_len, is_ident};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Keyword(String),
    Word(String),
    Binary(String),
    Other,
}

/// Tokens of a chunk kept for its message pattern or `methodsFor:`.
const KEPT: usize = 32;

const BRANCHES: &[&[u8]] = &[
    b"ifTrue:",
    b"ifFalse:",
    b"ifNil:",
    b"ifNotNil:",
    b"ifEmpty:",
    b"ifNotEmpty:",
    b"ifAbsent:",
    b"whileTrue:",
    b"whileFalse:",
    b"whileTrue",
    b"whileFalse",
    b"and:",
    b"or:",
    b"do:",
    b"timesRepeat:",
];

/// `(first, second)`: `second` right after `first` in one message is
/// the other half of one branch.
const PAIRS: &[(&[u8], &[u8])] = &[
    (b"ifTrue:", b"ifFalse:"),
    (b"ifFalse:", b"ifTrue:"),
    (b"ifNil:", b"ifNotNil:"),
    (b"ifNotNil:", b"ifNil:"),
    (b"ifEmpty:", b"ifNotEmpty:"),
    (b"ifNotEmpty:", b"ifEmpty:"),
];

#[derive(Debug, Default)]
struct Chunk {
    tokens: Vec<(Tok, u32)>,
    branches: u32,
}

/// Scans a Smalltalk file into `s`.
pub(crate) fn scan(s: &mut Scan<'_>) {
    let text = s.text;
    let n = text.len();
    let mut i = 0;
    let mut chunk = Chunk::default();
    // `Some(class)` while reading the methods of `class`.
    let mut methods_of: Option<String> = None;
    // The last keyword of the current message at each bracket depth.
    let mut last_kw: Vec<Option<&[u8]>> = vec![None];
    while i < n {
        let b = text[i];
        let next = text.get(i + 1).copied().unwrap_or(0);
        match b {
            b'\n' => {
                s.newline();
                i += 1;
            }
            b if b.is_ascii_whitespace() => i += 1,
            b'"' => {
                s.comment();
                i += 1;
                while i < n && text[i] != b'"' {
                    if text[i] == b'\n' {
                        s.newline();
                        s.comment();
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' => {
                i = string(s, i);
                keep(&mut chunk, Tok::Other, s.line);
            }
            b'$' => {
                s.code();
                i += 1;
                if text.get(i..i + 2) == Some(b"!!") {
                    i += 2;
                } else if i < n {
                    if text[i] == b'\n' {
                        s.newline();
                    }
                    i += char_len(text[i]);
                }
                keep(&mut chunk, Tok::Other, s.line);
            }
            b'!' if next == b'!' => {
                s.code();
                keep(&mut chunk, Tok::Binary("!".into()), s.line);
                i += 2;
            }
            b'!' => {
                s.code();
                end_chunk(s, &mut chunk, &mut methods_of);
                last_kw = vec![None];
                i += 1;
            }
            b'#' => {
                s.code();
                i += 1;
                if text.get(i) == Some(&b'\'') {
                    i = string(s, i);
                } else {
                    while i < n && (is_ident(text[i]) || text[i] == b':') {
                        i += 1;
                    }
                }
                keep(&mut chunk, Tok::Other, s.line);
            }
            b if is_ident(b) && !b.is_ascii_digit() => {
                s.code();
                let start = i;
                while i < n && is_ident(text[i]) {
                    i += 1;
                }
                let keyword = text.get(i) == Some(&b':') && text.get(i + 1) != Some(&b'=');
                if keyword {
                    i += 1;
                }
                let word = &text[start..i];
                let name = String::from_utf8_lossy(word).into_owned();
                if keyword {
                    let slot = last_kw.last_mut().expect("never empty");
                    let paired = slot.is_some_and(|prev| PAIRS.contains(&(prev, word)));
                    if BRANCHES.contains(&word) && !paired {
                        s.branch();
                        chunk.branches += 1;
                    }
                    *slot = Some(word);
                    keep(&mut chunk, Tok::Keyword(name), s.line);
                } else {
                    if BRANCHES.contains(&word) {
                        s.branch();
                        chunk.branches += 1;
                    }
                    keep(&mut chunk, Tok::Word(name), s.line);
                }
            }
            b'0'..=b'9' => {
                s.code();
                while i < n && (text[i].is_ascii_alphanumeric() || text[i] == b'.') {
                    // A statement's final `.` is not part of the number.
                    if text[i] == b'.' && !text.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        break;
                    }
                    i += 1;
                }
                keep(&mut chunk, Tok::Other, s.line);
            }
            b'[' | b'(' | b'{' => {
                s.code();
                last_kw.push(None);
                keep(&mut chunk, Tok::Other, s.line);
                i += 1;
            }
            b']' | b')' | b'}' => {
                s.code();
                if last_kw.len() > 1 {
                    last_kw.pop();
                }
                keep(&mut chunk, Tok::Other, s.line);
                i += 1;
            }
            b'.' | b';' => {
                s.code();
                if let Some(slot) = last_kw.last_mut() {
                    *slot = None;
                }
                keep(&mut chunk, Tok::Other, s.line);
                i += 1;
            }
            _ => {
                s.code();
                let start = i;
                while i < n && b"+-*/\\<>=~@%|&?,".contains(&text[i]) {
                    i += 1;
                }
                if i == start {
                    i += char_len(b);
                    keep(&mut chunk, Tok::Other, s.line);
                } else {
                    let op = String::from_utf8_lossy(&text[start..i]).into_owned();
                    keep(&mut chunk, Tok::Binary(op), s.line);
                }
            }
        }
    }
}

fn keep(chunk: &mut Chunk, tok: Tok, line: u32) {
    if chunk.tokens.len() < KEPT {
        chunk.tokens.push((tok, line));
    }
}

/// A string from the quote at `i` (a doubled quote stays inside); the
/// index past it.
fn string(s: &mut Scan<'_>, mut i: usize) -> usize {
    let text = s.text;
    s.code();
    i += 1;
    while i < text.len() {
        match text[i] {
            b'\'' if text.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            b'\n' => {
                s.newline();
                s.code();
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// A chunk ended at the current line: a method, the start of a run of
/// methods, or the empty chunk that ends the run.
fn end_chunk(s: &mut Scan<'_>, chunk: &mut Chunk, methods_of: &mut Option<String>) {
    let c = std::mem::take(chunk);
    let Some(&(_, first_line)) = c.tokens.first() else {
        *methods_of = None;
        return;
    };
    if let Some(class) = methods_of {
        let name = format!("{class}>>{}", selector(&c.tokens));
        s.add_done(name, first_line, s.line, c.branches);
        return;
    }
    let at = c.tokens.iter().position(
        |(t, _)| matches!(t, Tok::Keyword(k) if k.ends_with("ethodsFor:") || k == "methods:"),
    );
    if let Some(at) = at {
        let class: Vec<&str> = c.tokens[..at]
            .iter()
            .filter_map(|(t, _)| match t {
                Tok::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        *methods_of = Some(class.join(" "));
    }
}

/// The selector of a method's message pattern: `at:put:`, `+`, `size`.
fn selector(tokens: &[(Tok, u32)]) -> String {
    match tokens.first().map(|(t, _)| t) {
        Some(Tok::Keyword(_)) => {
            let mut out = String::new();
            for pair in tokens.chunks(2) {
                match pair {
                    [(Tok::Keyword(k), _), (Tok::Word(_), _)] => out.push_str(k),
                    _ => break,
                }
            }
            out
        }
        Some(Tok::Binary(op) | Tok::Word(op)) => op.clone(),
        _ => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::assess::metrics::{Language, analyse};

    #[test]
    fn chunk_format_methods() {
        let src = "\
'From Squeak5.3 of 4 March 2020'!
\"A class comment,
over two lines\"
Object subclass: #Foo
\tinstanceVariableNames: 'a b'
\tcategory: 'Demo'!

!Foo methodsFor: 'accessing'!
at: i put: v
\t\"Store v at i.\"
\ti > 0 ifTrue: [^ self error: 'it''s bad!!'] ifFalse: [a := v].
\t(a isNil and: [b notNil]) ifTrue: [^ $!!].
\t^ v! !

!Foo class methodsFor: 'instance creation'!
new
\t^ super new init!
+ other
\t[other atEnd] whileFalse: [other next].
\t1 to: 3 do: [:k | a := a + k]! !
";
        let m = analyse(Language::Smalltalk, src);
        assert_eq!(m.lines, 20);
        assert_eq!((m.code, m.comment, m.blank), (15, 3, 2));
        let mut top: Vec<_> = m
            .top
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.lines, f.complexity))
            .collect();
        top.sort_by_key(|f| f.1);
        assert_eq!(
            top,
            [
                ("Foo>>at:put:", 9, 5, 4),
                ("Foo class>>new", 16, 2, 1),
                ("Foo class>>+", 18, 3, 3)
            ]
        );
    }
}
