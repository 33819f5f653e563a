//! I-Regexp (RFC 9485), the pattern language of `match` and `search`: a pattern is checked
//! against I-Regexp's grammar, then translated for the `regex` crate (`.` matches anything but a
//! line break).

/// Checks `pattern` against I-Regexp (RFC 9485) and translates it for the `regex` crate: the
/// whole-string form (`match`) and the substring form (`search`). `None`: not an I-Regexp.
pub(super) fn compile_regex(pattern: &str) -> Option<(regex::Regex, regex::Regex)> {
    let translated = i_regexp(pattern)?;
    let anchored = regex::Regex::new(&format!(r"\A(?:{translated})\z")).ok()?;
    let unanchored = regex::Regex::new(&translated).ok()?;
    Some((anchored, unanchored))
}

/// RFC 9485 §5.3's grammar, checked as the pattern is rewritten: `.` becomes "anything but CR
/// and LF", and anything outside the grammar (`\d`, `\w`, `\b`, `(?:`, lazy quantifiers, back
/// references) refuses the pattern. `^` and `$` anchor the start and end, as the compliance suite
/// reads them (a no-op under `match`).
fn i_regexp(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    // Whether the last piece can take a quantifier (an atom with none yet).
    let mut quantifiable = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '.' => {
                out.push_str("[^\\n\\r]");
                quantifiable = true;
            }
            '^' | '$' => {
                out.push(c);
                quantifiable = false;
            }
            '\\' => {
                let (escape, used) = escape(&chars[i + 1..])?;
                out.push_str(&escape);
                i += used;
                quantifiable = true;
            }
            '[' => {
                let (class, used) = class(&chars[i + 1..])?;
                out.push_str(&class);
                i += used;
                quantifiable = true;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    return None;
                }
                out.push('(');
                quantifiable = false;
            }
            ')' => {
                out.push(')');
                quantifiable = true;
            }
            '|' => {
                out.push('|');
                quantifiable = false;
            }
            '*' | '+' | '?' => {
                if !quantifiable {
                    return None;
                }
                out.push(c);
                quantifiable = false;
            }
            '{' => {
                if !quantifiable {
                    return None;
                }
                let close = chars[i..].iter().position(|&c| c == '}')? + i;
                let body: String = chars[i + 1..close].iter().collect();
                let valid = match body.split_once(',') {
                    None => !body.is_empty() && body.chars().all(|c| c.is_ascii_digit()),
                    Some((lo, hi)) => {
                        !lo.is_empty()
                            && lo.chars().all(|c| c.is_ascii_digit())
                            && hi.chars().all(|c| c.is_ascii_digit())
                    }
                };
                if !valid {
                    return None;
                }
                out.push_str(&format!("{{{body}}}"));
                i = close;
                quantifiable = false;
            }
            '}' | ']' => return None,
            c => {
                push_literal(&mut out, c);
                quantifiable = true;
            }
        }
        i += 1;
    }
    Some(out)
}

fn push_literal(out: &mut String, c: char) {
    if regex_syntax_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// A single-character escape or a `\p{…}` category after a backslash: the translation and the
/// number of characters read after the backslash.
fn escape(rest: &[char]) -> Option<(String, usize)> {
    let c = *rest.first()?;
    match c {
        '(' | ')' | '*' | '+' | '-' | '.' | '?' | '[' | '\\' | ']' | '^' | '{' | '|' | '}' => {
            Some((format!("\\{c}"), 1))
        }
        'n' => Some(("\\n".into(), 1)),
        'r' => Some(("\\r".into(), 1)),
        't' => Some(("\\t".into(), 1)),
        'p' | 'P' => {
            if rest.get(1) != Some(&'{') {
                return None;
            }
            let close = rest.iter().position(|&c| c == '}')?;
            let name: String = rest[2..close].iter().collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic()) {
                return None;
            }
            Some((format!("\\{c}{{{name}}}"), close + 1))
        }
        _ => None,
    }
}

/// A character class after `[`: the translation and the characters read, `]` included.
fn class(rest: &[char]) -> Option<(String, usize)> {
    let mut out = String::from("[");
    let mut i = 0;
    if rest.first() == Some(&'^') {
        out.push('^');
        i = 1;
    }
    let start = i;
    loop {
        let c = *rest.get(i)?;
        match c {
            ']' if i > start => {
                out.push(']');
                return Some((out, i + 1));
            }
            '\\' => {
                let (escape, used) = escape(&rest[i + 1..])?;
                out.push_str(&escape);
                i += used;
            }
            '[' => return None,
            '-' => {
                // A range's dash, or a literal dash at the class's edges.
                let edge = i == start || rest.get(i + 1) == Some(&']');
                if edge {
                    out.push_str("\\-");
                } else {
                    out.push('-');
                }
            }
            c => push_literal(&mut out, c),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i_regexp_is_checked_and_translated() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a.c", Some("a[^\\n\\r]c")),
            ("^ab$", Some("^ab$")),
            ("[a-z]+", Some("[a-z]+")),
            ("\\p{Lu}", Some("\\p{Lu}")),
            ("a{2,3}", Some("a{2,3}")),
            ("\\d", None),
            ("\\w+", None),
            ("(?:a)", None),
            ("a*?", None),
            ("a{,3}", None),
            ("[", None),
            ("a)", Some("a)")),
        ];
        for (pattern, want) in cases {
            assert_eq!(i_regexp(pattern).as_deref(), *want, "{pattern}");
        }
    }
}
