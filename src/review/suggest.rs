//! Suggested rules: for each uncovered personal-data candidate, the rule that would cover it, for a
//! reviewer to edit and add (`check --samples DIR --suggest-rules FILE` writes them as a rule
//! file).
//!
//! A suggestion is a starting point, not a decision: it hides the field from everyone but the
//! record's controller in responses, with the action the category usually calls for
//! ([`Candidate::suggested_action`]), and a reason that says it must be rewritten.

use std::fmt::Write;

use serde::Serialize;

use super::coverage::RouteCoverage;
use super::detect::Candidate;

/// One proposed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// A rule id derived from the path (`suggested-recipient-dob`).
    pub id: String,
    /// The path below the record, every index a wildcard.
    pub path: String,
    /// `redact` or `remove`.
    pub action: &'static str,
    /// The category found (fideslang).
    pub category: &'static str,
    /// What was found where; to be replaced by the reviewer's reason.
    pub reason: String,
    /// The routes whose samples showed it.
    pub routes: Vec<String>,
}

/// How a suggested rule's reason starts until a person writes one; `check` warns while it does, so
/// an adopted suggestion cannot pass a strict review unread.
pub const UNWRITTEN_REASON: &str = "EDIT ME:";

/// The suggestions for every uncovered candidate of each route's coverage (by route name), one per
/// path and category, in the report's category order.
pub fn suggest<'a>(
    coverage: impl IntoIterator<Item = (&'a str, &'a RouteCoverage)>,
) -> Vec<Suggestion> {
    let mut found: Vec<(Candidate, Suggestion)> = Vec::new();
    for (route, coverage) in coverage {
        for uncovered in &coverage.uncovered {
            if let Some((_, existing)) = found
                .iter_mut()
                .find(|(kind, s)| *kind == uncovered.kind && s.path == uncovered.record_path)
            {
                if !existing.routes.iter().any(|r| r == route) {
                    existing.routes.push(route.to_string());
                }
                continue;
            }
            let kind = uncovered.kind;
            found.push((
                kind,
                Suggestion {
                    id: rule_id(&uncovered.record_path, kind),
                    path: uncovered.record_path.clone(),
                    action: kind.suggested_action(),
                    category: kind.category(),
                    reason: format!(
                        "{UNWRITTEN_REASON} `check --samples` found data of kind `{}` ({}) in sample `{}` \
                         that callers other than the record's controller receive unchanged. Say \
                         why this field is personal and who may see it.",
                        kind.as_str(),
                        kind.category(),
                        uncovered.sample
                    ),
                    routes: vec![route.to_string()],
                },
            ));
        }
    }
    found.sort_by_key(|(kind, s)| {
        (
            Candidate::ALL.iter().position(|k| k == kind),
            s.path.clone(),
        )
    });
    let mut suggestions: Vec<Suggestion> = found.into_iter().map(|(_, s)| s).collect();
    // Two paths can slug alike (`$.a_b` and `$['a-b']`): number the later ones.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for suggestion in &mut suggestions {
        let n = seen.entry(suggestion.id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            suggestion.id = format!("{}-{n}", suggestion.id);
        }
    }
    suggestions
}

/// `suggested-` and the path's names in lower case joined by dashes, or the category's kind for
/// a path without names.
fn rule_id(path: &str, kind: Candidate) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        format!("suggested-{}", kind.as_str().replace('_', "-"))
    } else {
        format!("suggested-{}", words.join("-"))
    }
}

/// The suggestions as a rule file: each rule applies to responses for callers that do not
/// control the record, as the findings were.
pub fn to_toml(suggestions: &[Suggestion], config: &str) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rules suggested by `recipient-gateway check --samples` for {config}.\n\
         # Review each one (its action, who it applies to, and above all its reason), then add\n\
         # this file to the `rules` of the routes named in its comments.\n"
    );
    for s in suggestions {
        let _ = writeln!(
            out,
            "# route: {}\n[[rule]]\nid = {}\npath = {}\naction = {}\ncategory = {}\n\
             when.direction = \"response\"\nwhen.caller = \"not_controller\"\nreason = {}\n",
            s.routes.join(", "),
            quoted(&s.id),
            quoted(&s.path),
            quoted(s.action),
            quoted(s.category),
            quoted(&s.reason),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_path() {
        let cases = [
            ("$.recipient.dob", "suggested-recipient-dob"),
            ("$.pod['gps-fix']", "suggested-pod-gps-fix"),
            ("$.items[*].note", "suggested-items-note"),
            ("$", "suggested-name"),
        ];
        for (path, want) in cases {
            assert_eq!(rule_id(path, Candidate::Name), want, "{path}");
        }
    }
}
