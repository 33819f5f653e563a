//! Rule files: each read and compiled once however many routes list it, with rule ids unique
//! across all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::error::SourceMap;
use super::super::schema::RuleFileDoc;
use super::{Loader, parse};
use crate::config::ConfigError;
use crate::redact::path::Path as JsonPath;
use crate::redact::{Action, Purpose, Rule};

/// The rule files read so far.
#[derive(Default)]
pub(super) struct RuleFiles {
    /// Every rule id and the file that defined it.
    ids: HashMap<String, PathBuf>,
    /// Each file's rules, by resolved path.
    loaded: HashMap<PathBuf, Vec<Arc<Rule>>>,
}

impl RuleFiles {
    /// The rules of the files route `route` lists, in order.
    pub(super) fn rules_of(
        &mut self,
        loader: &Loader<'_>,
        route: usize,
        files: &[String],
    ) -> Result<Vec<Arc<Rule>>, ConfigError> {
        let mut rules = Vec::new();
        for (j, relative) in files.iter().enumerate() {
            let path = loader.resolve(relative);
            if let Some(loaded) = self.loaded.get(&path) {
                rules.extend(loaded.iter().cloned());
                continue;
            }
            let key = format!("route[{route}].rules[{j}]");
            let loaded = self.read(loader, &path, &key)?;
            rules.extend(loaded.iter().cloned());
            self.loaded.insert(path, loaded);
        }
        Ok(rules)
    }

    /// Reads and compiles one rule file; errors name the rule file's own keys and lines.
    fn read(
        &mut self,
        loader: &Loader<'_>,
        path: &Path,
        key: &str,
    ) -> Result<Vec<Arc<Rule>>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            loader.err(
                key,
                format!("cannot read rule file {}: {e}", path.display()),
            )
        })?;
        let source = SourceMap::new(path, &text);
        let doc: RuleFileDoc = parse(&source, &text)?;
        let mut rules = Vec::with_capacity(doc.rules.len());
        for (i, rule) in doc.rules.into_iter().enumerate() {
            let key = |k: &str| format!("rule[{i}].{k}");
            if rule.id.is_empty()
                || !rule
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(source.error(
                    &key("id"),
                    format!(
                        "`{}` is not a rule id: use letters, digits, `_`, `-`, `.`",
                        rule.id
                    ),
                ));
            }
            if let Some(other) = self.ids.insert(rule.id.clone(), path.to_path_buf()) {
                return Err(source.error(
                    &key("id"),
                    format!(
                        "rule id `{}` is already used in {}",
                        rule.id,
                        other.display()
                    ),
                ));
            }
            let compiled = JsonPath::compile(&rule.path)
                .map_err(|e| source.error(&key("path"), format!("rule `{}`: {e}", rule.id)))?;
            for (k, v) in [("category", &rule.category), ("reason", &rule.reason)] {
                if v.trim().is_empty() {
                    return Err(source.error(
                        &key(k),
                        format!("rule `{}` needs a non-empty `{k}`", rule.id),
                    ));
                }
            }
            if !is_category(&rule.category) {
                return Err(source.error(
                    &key("category"),
                    format!(
                        "rule `{}`: `category` is a fideslang-style key, dotted lower-case \
                         words such as `user.contact.email`",
                        rule.id
                    ),
                ));
            }
            let mask = match (rule.action, rule.mask) {
                (Action::Mask, Some(m)) => (m.keep_first, m.keep_last),
                (Action::Mask, None) => (0, 0),
                (_, Some(_)) => {
                    return Err(source.error(
                        &key("mask"),
                        format!(
                            "rule `{}`: `mask` settings need `action = \"mask\"`",
                            rule.id
                        ),
                    ));
                }
                (_, None) => (0, 0),
            };
            let purposes = match rule.when.purpose {
                Some(list) if list.is_empty() => {
                    return Err(source.error(&key("when.purpose"), format!("rule `{}`: an empty purpose list never applies; leave it out for every purpose", rule.id)));
                }
                Some(list) => list,
                None => Purpose::ALL.to_vec(),
            };
            rules.push(Arc::new(Rule {
                id: rule.id,
                file: path.to_path_buf(),
                path: compiled,
                action: rule.action,
                mask,
                category: rule.category,
                reason: rule.reason,
                scope: rule.scope,
                direction: rule.when.direction,
                caller: rule.when.caller,
                purposes,
            }));
        }
        Ok(rules)
    }
}

/// A data category in the shape of a fideslang key: dotted words of lower-case letters, digits
/// and `_`, each starting with a letter (`user.contact.email`). Reports print it as it is, so
/// nothing else is accepted.
fn is_category(s: &str) -> bool {
    s.len() <= 128
        && s.split('.').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}
