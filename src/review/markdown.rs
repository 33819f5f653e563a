//! Text a config supplies, written into Markdown reports as text and never as markup.
//!
//! Rule ids, reasons, paths, categories, member names and sample file names are a pull request
//! author's words. Printed verbatim into a report that is posted as a pull-request comment, they
//! could rewrite it: an `<img>` or a link, an unclosed `<!--` that hides every row after it
//! (widenings included), a `|` that splits a table cell, a line break that ends a row. Everything
//! a config or a sample supplies goes through [`text`] or [`code`].

/// The characters that can start markup inside a line of CommonMark with GitHub's extensions:
/// code, emphasis, links and images (`!` only before `[`), HTML, autolinks and comments (`<`),
/// entities, table cells, strikethrough, and a heading after a list marker.
const MARKUP: &str = "\\`*_[]<>&|~#";

/// `s` as Markdown that renders as exactly that text: each character that could start markup
/// backslash-escaped (CommonMark allows it for any ASCII punctuation), line breaks as spaces (a
/// table row is one line).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            c if MARKUP.contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `s` in a code span, where nothing is markup: fenced by one backtick more than its longest run
/// of backticks, padded with spaces when it starts or ends with one, `|` escaped (a GFM table
/// splits cells before it reads code spans), line breaks as spaces.
pub fn code(s: &str) -> String {
    let longest = s
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    let inner: String = s
        .chars()
        .map(|c| match c {
            '\r' | '\n' => " ".to_string(),
            '|' => "\\|".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("{fence}{pad}{inner}{pad}{fence}")
}

/// A sentence of the gateway's own with config values between backticks (a warning), as
/// Markdown: each backtick-delimited part in a [`code`] span, the rest as [`text`]. A value that
/// itself holds a backtick only moves where the spans fall; every part is still text.
pub fn prose(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| match (i % 2, part.is_empty()) {
            (_, true) => String::new(),
            (0, false) => text(part),
            _ => code(part),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_every_character_that_could_start_markup() {
        assert_eq!(text("a <b> [c](d) | e_f"), r"a \<b\> \[c\](d) \| e\_f");
        assert_eq!(text("line\nbreak"), "line break");
        assert_eq!(text("plain words"), "plain words");
    }

    #[test]
    fn code_spans_hold_backticks_pipes_and_breaks() {
        assert_eq!(code("$.a"), "`$.a`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("a|b\nc"), r"`a\|b c`");
    }

    #[test]
    fn prose_keeps_code_spans_and_escapes_the_rest() {
        assert_eq!(prose("route `api` <b>"), r"route `api` \<b\>");
        assert_eq!(prose("`a<!--` then"), "`a<!--` then");
    }
}
