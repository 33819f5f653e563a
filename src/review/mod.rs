//! Tools for security reviewers: the `check` report, coverage from samples, rule tests and the
//! `redact` dry run.
//!
//! - [`report`]: which caller sees which field, per route, direction and relation (reference §7.1),
//!   and [`html`], the same as one page with a matrix per route; [`markdown`] keeps what a
//!   config supplies from becoming markup in the Markdown form;
//! - [`coverage`] with [`detect`]: dead rules and personal data no rule covers in samples (§7.2);
//! - [`suggest`]: the rule that would cover each uncovered finding (`--suggest-rules`);
//! - [`rule_tests`]: `test-rules` cases (§7.3);
//! - [`dry_run`]: one body through a route's rules.
//!
//! The dry run takes the same path as the proxy once a body is decoded: strict parse, record
//! selection and shape checks, relations, the route's compiled plan, rendering. Only the
//! controllers come from the command line instead of tags. `test-rules` runs through it.

pub mod change;
pub mod change_html;
pub mod coverage;
pub mod detect;
pub mod html;
pub mod markdown;
pub mod report;
pub mod rule_tests;
pub mod suggest;
pub mod treatment;

use std::sync::Arc;

use crate::config::Config;
use crate::inspect::Reason;
use crate::json::Document;
use crate::redact;
use crate::redact::Action;
use crate::vocabulary::Direction;

/// The body the gateway would forward, and what it changed.
#[derive(Debug)]
pub struct DryRun {
    /// Forwarded bytes (the input itself when nothing changed).
    pub body: Vec<u8>,
    /// Each change: rule id, concrete path, action.
    pub changes: Vec<(String, String, Action)>,
}

/// Why a dry run could not produce a body.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// No route has this name (the routes the config has, for the message).
    #[error(
        "no route is named `{0}` in this config (its routes: {1}); another config is given with `--config`"
    )]
    UnknownRoute(String, String),
    /// No client has this id.
    #[error("no client has the id `{0}`")]
    UnknownClient(String),
    /// The gateway would refuse the body.
    #[error("the gateway would refuse this body ({})", .0.label())]
    Refused(Reason),
}

impl DryRunError {
    /// Whether the problem is in the command's arguments (exit 2) rather than the body (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, DryRunError::Refused(_))
    }
}

/// Applies `route`'s rules to `body` as the gateway would in `direction` for `caller`, with every
/// record controlled by `controller` (`None`: unknown).
pub fn dry_run(
    config: &Config,
    route: &str,
    direction: Direction,
    caller: &str,
    controller: Option<&str>,
    body: &[u8],
) -> Result<DryRun, DryRunError> {
    let route = config
        .routes
        .iter()
        .find(|r| r.name == route)
        .ok_or_else(|| {
            let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
            DryRunError::UnknownRoute(route.to_string(), names.join(", "))
        })?;
    let caller = config
        .client(caller)
        .ok_or_else(|| DryRunError::UnknownClient(caller.to_string()))?;
    let controller: Option<Arc<str>> = match controller {
        Some(id) => Some(
            config
                .client(id)
                .map(|c| c.id.clone())
                .ok_or_else(|| DryRunError::UnknownClient(id.to_string()))?,
        ),
        None => None,
    };
    let doc = Document::parse(body).map_err(|e| DryRunError::Refused(e.into()))?;
    let records = route
        .plan
        .find_records(&doc)
        .map_err(|e| DryRunError::Refused(e.into()))?;
    let applied = redact::redact_records(
        &route.plan,
        &doc,
        direction,
        route.caller(Some(caller)),
        records.iter().map(|&node| (node, controller.as_deref())),
        &config.hash_keys(),
    );
    let changes = applied
        .changes
        .iter()
        .map(|c| (c.rule.id.clone(), doc.path_of(c.node), c.action))
        .collect();
    Ok(DryRun {
        body: redact::render_if_changed(&doc, &applied).unwrap_or_else(|| body.to_vec()),
        changes,
    })
}
