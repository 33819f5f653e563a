//! Configuration errors that name the file, the key, its line and column, and the problem.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One problem in a configuration file, reported as one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (the main file or a rule file).
    pub file: PathBuf,
    /// Dotted key path such as `route[1].upstream`, when the problem belongs to a key.
    pub key: Option<String>,
    /// 1-based line and column of the key, when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong, without the file or key.
    pub message: String,
}

impl ConfigError {
    /// A problem with the file as a whole (unreadable, not TOML).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: None,
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        // One line whatever the message's source (some parsers draw multi-line diagrams).
        let message = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        write!(f, ": {}", message.trim_end_matches('.'))?;
        f.write_str(".")
    }
}

impl std::error::Error for ConfigError {}

/// A parsed TOML document kept for locating keys named by later validation errors.
pub(crate) struct SourceMap<'a> {
    file: PathBuf,
    text: &'a str,
    table: Option<DeTable<'a>>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &Path, text: &'a str) -> Self {
        let table = DeTable::parse(text).ok().map(|t| t.into_inner());
        SourceMap {
            file: file.to_path_buf(),
            text,
            table,
        }
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// An error at `key` (e.g. `route[2].rules[0]`), located in the source when the key exists.
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: Some(key.to_string()),
            location: self
                .locate(key)
                .map(|offset| line_column(self.text, offset)),
            message: message.into(),
        }
    }

    /// A TOML syntax error, located.
    pub(crate) fn syntax_error(&self, err: &toml::de::Error) -> ConfigError {
        let offset = err.span().map(|span| span.start);
        ConfigError {
            file: self.file.clone(),
            key: offset.and_then(|offset| key_at(self.text, offset)),
            location: offset.map(|offset| line_column(self.text, offset)),
            message: err.message().replace('\n', " "),
        }
    }

    /// Converts a deserialization error (with its serde path) into a located error.
    pub(crate) fn deserialize_error(
        &self,
        err: serde_path_to_error::Error<toml::de::Error>,
    ) -> ConfigError {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // The key itself when it exists (toml points unknown fields at their table's header).
        let location = self
            .locate(&path)
            .or_else(|| inner.span().map(|span| span.start))
            // A problem with the whole document (a missing table) has no place to point at.
            .filter(|_| path != ".")
            .map(|offset| line_column(self.text, offset));
        ConfigError {
            file: self.file.clone(),
            key: (path != ".").then_some(path),
            location,
            message: inner.message().replace('\n', " "),
        }
    }

    /// Byte offset of the value (or table) named by a dotted key path.
    fn locate(&self, key: &str) -> Option<usize> {
        let table = self.table.as_ref()?;
        let mut current: Option<&DeValue<'_>> = None;
        let mut offset = None;
        for segment in parse_key_path(key) {
            let next = match (current, segment) {
                (None, KeySegment::Name(name)) => table.get(name),
                (Some(value), KeySegment::Name(name)) => value.get(name),
                (Some(value), KeySegment::Index(i)) => value.get(i),
                (None, KeySegment::Index(_)) => None,
            }?;
            offset = Some(next.span().start);
            current = Some(next.get_ref());
        }
        offset
    }
}

enum KeySegment<'k> {
    Name(&'k str),
    Index(usize),
}

/// The dotted key path of the `key = value` line holding `offset`, read from the text (a syntax
/// error has no parsed document to ask): the table header above it (`[[route]]` numbered as
/// `route[i]`) and the key before `=`. `None` off such a line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    let mut table = None;
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for header in text[..start].lines().map(str::trim) {
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = name.trim();
            let count = match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    counts.push((name, 0));
                    0
                }
            };
            table = Some(format!("{name}[{count}]"));
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = Some(name.trim().to_string());
        }
    }
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

fn parse_key_path(key: &str) -> Vec<KeySegment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(KeySegment::Name(name));
        }
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(KeySegment::Index(i));
            }
        }
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys() {
        let text = "[listen]\naddress = \"x\"\n\n[[route]]\nname = \"a\"\n\n[[route]]\nname = \"b\"\nupstream = \"nope\"\n";
        let map = SourceMap::new(Path::new("g.toml"), text);
        let err = map.error("route[1].upstream", "unknown upstream");
        assert_eq!(err.location, Some((9, 12)));
        assert_eq!(
            err.to_string(),
            "g.toml:9:12: key `route[1].upstream`: unknown upstream."
        );
        assert_eq!(map.error("listen.address", "x").location, Some((2, 11)));
        assert_eq!(map.error("missing.key", "x").location, None);
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
