//! The rule vocabulary: what a rule file says, compiled. It lives with the engine that applies
//! it; `config` reads rule files into these types, and nothing here knows about config files.

use std::path::PathBuf;

use serde::Deserialize;

use super::path::Path as JsonPath;

/// A redaction rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id; metric label.
    pub id: String,
    /// The rule file it came from (for reports).
    pub file: PathBuf,
    /// Compiled path.
    pub path: JsonPath,
    /// What happens to matches.
    pub action: Action,
    /// Characters kept by `mask`: (first, last).
    pub mask: (usize, usize),
    /// Data category.
    pub category: String,
    /// Why the rule exists.
    pub reason: String,
    /// Record- or body-relative.
    pub scope: RuleScope,
    /// Direction filter.
    pub direction: DirectionFilter,
    /// Caller-relation filter.
    pub caller: CallerFilter,
    /// Purposes the rule applies to (every purpose when not configured).
    pub purposes: Vec<Purpose>,
}

impl Rule {
    /// A record-scoped rule that applies in every situation (both directions, any caller, every
    /// purpose); its public fields narrow it. For tools and tests that build rules in code.
    pub fn new(id: &str, path: &str, action: Action) -> Result<Rule, String> {
        Ok(Rule {
            id: id.to_string(),
            file: PathBuf::from("(in code)"),
            path: JsonPath::compile(path)?,
            action,
            mask: (0, 0),
            category: "user".to_string(),
            reason: format!("rule `{id}` built in code"),
            scope: RuleScope::Record,
            direction: DirectionFilter::Both,
            caller: CallerFilter::Any,
            purposes: Purpose::ALL.to_vec(),
        })
    }
}

/// Why a route's callers use recipient data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Creating and shipping parcels.
    #[default]
    Fulfillment,
    /// Customer support.
    Support,
    /// The platform's own statistics: pseudonyms only.
    Analytics,
    /// Marketing.
    Marketing,
}

impl Purpose {
    /// Every purpose, for reports and "default: every purpose".
    pub const ALL: [Purpose; 4] = [
        Purpose::Fulfillment,
        Purpose::Support,
        Purpose::Analytics,
        Purpose::Marketing,
    ];

    /// The name used in config files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Fulfillment => "fulfillment",
            Purpose::Support => "support",
            Purpose::Analytics => "analytics",
            Purpose::Marketing => "marketing",
        }
    }
}

/// What a rule does to a matched value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Delete the member or array element.
    Remove,
    /// Replace the value with `"[REDACTED]"`.
    Redact,
    /// Keep some characters of a string, the rest become `*`.
    Mask,
    /// Replace with a per-controller pseudonym `h:<32 hex>`.
    Hash,
}

impl Action {
    /// The name used in config files, reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Remove => "remove",
            Action::Redact => "redact",
            Action::Mask => "mask",
            Action::Hash => "hash",
        }
    }
}

/// Where a rule's path starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// `$` is each record.
    #[default]
    Record,
    /// `$` is the whole body.
    Body,
}

/// Body direction a rule applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionFilter {
    /// Client to upstream only.
    Request,
    /// Upstream to client only.
    Response,
    /// Both directions.
    #[default]
    Both,
}

/// Caller relation a rule applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerFilter {
    /// Every caller.
    #[default]
    Any,
    /// Only the record's controller.
    Controller,
    /// Everyone but the record's controller.
    NotController,
}
