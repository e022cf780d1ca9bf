//! The Python scanner: `#` comments, strings with their prefixes and
//! triple quotes (a triple-quoted string that begins a logical line is a
//! docstring: its lines count as comment), logical lines (brackets and
//! `\` continue them), and functions by indentation: a `def` at
//! indentation `d` ends before the next logical line indented `d` or less.
//!
//! Branch points: `if`, `elif`, `for`, `while`, `except`, `and`, `or`
//! (comprehensions' and conditional expressions' included).

use super::metrics::{Scan, is_ident};

/// Scans a Python file into `s`.
pub(crate) fn scan(s: &mut Scan<'_>) {
    let text = s.text;
    let n = text.len();
    let mut i = 0;
    // Open brackets: a newline inside them does not end the logical line.
    let mut depth = 0u32;
    let mut logical_start = true;
    let mut continued = false;
    let mut indent = 0u32;
    let mut leading = true;
    // Indentation of each open function's `def`, innermost last.
    let mut defs: Vec<u32> = Vec::new();
    let mut last_token_line = 0u32;
    // The current token is the first of its logical line (or follows a
    // leading `async`).
    let mut head = false;
    let mut want_name = false;
    let mut def_line = 0u32;
    while i < n {
        let b = text[i];
        match b {
            b'\n' => {
                s.newline();
                if depth == 0 && !continued {
                    logical_start = true;
                }
                continued = false;
                indent = 0;
                leading = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' => {
                if leading {
                    indent = if b == b'\t' {
                        (indent / 8 + 1) * 8
                    } else {
                        indent + 1
                    };
                }
                i += 1;
                continue;
            }
            b'\r' | 0x0c | 0x0b => {
                i += 1;
                continue;
            }
            b'\\' if text.get(i + 1) == Some(&b'\n') => {
                continued = true;
                s.code();
                i += 1;
                continue;
            }
            b'#' => {
                s.comment();
                while i < n && text[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        leading = false;
        if logical_start {
            logical_start = false;
            head = true;
            while defs.last().is_some_and(|&d| d >= indent) {
                defs.pop();
                s.close(last_token_line);
            }
        }
        let was_head = std::mem::replace(&mut head, false);
        // A string, with or without a prefix.
        let prefix = if is_ident(b) && !b.is_ascii_digit() {
            text[i..]
                .iter()
                .take_while(|&&c| c.is_ascii_alphabetic())
                .count()
        } else {
            0
        };
        let quote_at = i + prefix;
        let is_string = matches!(text.get(quote_at), Some(b'"' | b'\''))
            && prefix <= 2
            && text[i..quote_at].iter().all(|c| b"rRbBuUfF".contains(c));
        if is_string {
            i = string(s, quote_at, was_head);
            last_token_line = s.line;
            continue;
        }
        s.code();
        last_token_line = s.line;
        if is_ident(b) && !b.is_ascii_digit() {
            let start = i;
            while i < n && is_ident(text[i]) {
                i += 1;
            }
            let word = &text[start..i];
            if want_name {
                want_name = false;
                s.open(String::from_utf8_lossy(word).into_owned(), def_line);
                defs.push(indent);
            } else if was_head && word == b"async" {
                head = true;
            } else if was_head && word == b"def" {
                want_name = true;
                def_line = s.line;
            } else if matches!(
                word,
                b"if" | b"elif" | b"for" | b"while" | b"except" | b"and" | b"or"
            ) {
                s.branch();
            }
            continue;
        }
        if b.is_ascii_digit() {
            while i < n && (text[i].is_ascii_alphanumeric() || text[i] == b'_' || text[i] == b'.') {
                i += 1;
            }
            continue;
        }
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    while !defs.is_empty() {
        defs.pop();
        s.close(last_token_line);
    }
}

/// A string whose quote is at `q`; returns the index past it. A
/// triple-quoted string at the head of a logical line is a docstring
/// (comment lines).
fn string(s: &mut Scan<'_>, q: usize, head: bool) -> usize {
    let text = s.text;
    let quote = text[q];
    let triple = text.get(q + 1) == Some(&quote) && text.get(q + 2) == Some(&quote);
    let doc = triple && head;
    let mark = |s: &mut Scan<'_>| if doc { s.comment() } else { s.code() };
    mark(s);
    let mut i = if triple { q + 3 } else { q + 1 };
    while i < text.len() {
        let b = text[i];
        if b == b'\\' {
            if text.get(i + 1) == Some(&b'\n') {
                s.newline();
                mark(s);
            }
            i += 2;
            continue;
        }
        if b == b'\n' {
            if !triple {
                return i;
            }
            s.newline();
            mark(s);
        } else if b == quote {
            if !triple {
                return i + 1;
            }
            if text.get(i + 1) == Some(&quote) && text.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        i += 1;
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use crate::assess::metrics::{Language, analyse};

    #[test]
    fn python_functions_docstrings_and_branches() {
        let src = "\
\"\"\"Module
docstring.\"\"\"
import os  # a comment

# alone
@decorator
def f(a,
      b):
    '''Doc.'''
    if a and b:
        return [x for x in a if x]
    s = \"# not a comment\"
    return rb'\\'' if b else None


class C:
    async def g(self):
        def inner():
            while True:
                pass
        try:
            pass
        except E:
            pass

x = f(1,
  2)
";
        let m = analyse(Language::Python, src);
        assert_eq!(m.lines, 27);
        assert_eq!((m.code, m.comment, m.blank), (19, 4, 4));
        let mut top: Vec<_> = m
            .top
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.lines, f.complexity))
            .collect();
        top.sort_by_key(|f| f.1);
        assert_eq!(top, [("f", 7, 7, 6), ("g", 17, 8, 2), ("inner", 18, 3, 2)]);
        assert_eq!(m.branches, 7);
    }
}
