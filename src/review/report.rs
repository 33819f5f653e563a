//! The `check` report (reference §7.1): for each route, which rules apply to which caller, in which
//! direction, at which concrete paths, and why; then warnings and, with samples, coverage.
//!
//! The tables come from each route's compiled plan ([`crate::redact::Plan::rules_for`]), the
//! same object the proxy applies, so the report cannot disagree with the traffic. The JSON form
//! (`--format json`) has a stable shape, documented in `docs/reviewing-redaction.md`; its
//! `format_version` changes only when a field is removed or changes meaning.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::coverage::{self, RouteCoverage};
use super::detect::Candidate;
use super::markdown::{code, prose, text};
use super::suggest::{self, Suggestion};
use crate::config::{Config, Route, RouteAuth};
use crate::redact::Relation;
use crate::redact::{Rule, RuleScope};
use crate::vocabulary::Direction;

/// Version of the JSON shape.
pub const FORMAT_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Shape version.
    pub format_version: u32,
    /// The config file, as given.
    pub config: String,
    /// One entry per route, in config order.
    pub routes: Vec<RouteReport>,
    /// Things that work but deserve a reviewer's attention.
    pub warnings: Vec<String>,
    /// A rule for each uncovered candidate (with samples), for the reviewer to edit and add.
    pub suggested_rules: Vec<Suggestion>,
    /// Counts.
    pub summary: Summary,
}

/// One route.
#[derive(Debug, Serialize)]
pub struct RouteReport {
    /// Route name.
    pub name: String,
    /// Path prefix.
    pub path_prefix: String,
    /// Upstream name.
    pub upstream: String,
    /// Purpose.
    pub purpose: &'static str,
    /// `client` or `none`.
    pub auth: &'static str,
    /// Whether bodies are inspected.
    pub inspected: bool,
    /// Record selectors.
    pub records: Vec<String>,
    /// Record key members.
    pub record_keys: Vec<String>,
    /// Recipient member.
    pub recipient: Option<String>,
    /// Recipient identifier members.
    pub recipient_identifiers: Vec<String>,
    /// Controller member.
    pub controller_member: Option<String>,
    /// `not_controller` or `caller`.
    pub unknown_controller: &'static str,
    /// Media types passed uninspected.
    pub passthrough_content_types: Vec<String>,
    /// Four tables: request/controller, request/not_controller, response/controller,
    /// response/not_controller (empty for plain routes).
    pub tables: Vec<Table>,
    /// Coverage findings, with `--samples`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<RouteCoverage>,
}

/// The rules that apply in one direction to one caller relation.
#[derive(Debug, Serialize)]
pub struct Table {
    /// `request` or `response`.
    pub direction: &'static str,
    /// `controller` or `not_controller`.
    pub relation: &'static str,
    /// In the order the plan holds them (file order).
    pub rules: Vec<RuleRow>,
}

/// One applicable rule.
#[derive(Debug, Serialize)]
pub struct RuleRow {
    /// Rule id.
    pub id: String,
    /// The path as written in the rule file.
    pub path: String,
    /// Concrete paths from the body root (one per record selector for record-scoped rules).
    pub paths: Vec<String>,
    /// Each filter selector of the path in words (`[?@.type == 'residential']`: "`@.type` is
    /// \"residential\""); absent without filters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// `remove`, `redact`, `mask` or `hash`.
    pub action: &'static str,
    /// For `mask`: characters kept at each end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<Mask>,
    /// Data category.
    pub category: String,
    /// Why the rule exists.
    pub reason: String,
    /// The rule file.
    pub file: String,
}

/// A mask's kept characters.
#[derive(Debug, Serialize)]
pub struct Mask {
    /// Kept at the start.
    pub keep_first: usize,
    /// Kept at the end.
    pub keep_last: usize,
}

/// Counts for the closing line.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Routes.
    pub routes: usize,
    /// Inspected routes.
    pub inspected_routes: usize,
    /// Distinct rules.
    pub rules: usize,
    /// Warnings.
    pub warnings: usize,
    /// Coverage findings (dead rules, uncovered candidates, refused samples).
    pub findings: usize,
}

impl Report {
    /// Builds the report; with `samples`, runs each route's samples too.
    pub fn build(
        config: &Config,
        shown_as: &str,
        samples: Option<&Path>,
    ) -> std::io::Result<Report> {
        let keys = config.hash_keys();
        // Rule files are shown relative to the config's folder, as the config names them.
        let base = config
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let mut warnings = config.warnings.clone();
        let mut routes = Vec::new();
        for route in &config.routes {
            let coverage = match samples {
                Some(dir) if route.inspected() => {
                    let samples = coverage::load_samples(dir, &route.name)?;
                    Some(coverage::analyse(route, &samples, &keys))
                }
                _ => None,
            };
            routes.push(route_report(route, coverage, &base));
        }
        warnings.extend(rule_warnings(config));
        warnings.extend(variant_warnings(config));
        if let Some(dir) = samples {
            let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
            for folder in coverage::unknown_folders(dir, &names)? {
                warnings.push(format!(
                    "samples folder `{folder}` names no route; its samples were not checked"
                ));
            }
            for route in &routes {
                if route.coverage.as_ref().is_some_and(|c| c.samples == 0) {
                    warnings.push(format!(
                        "inspected route `{}` has no samples in {}",
                        route.name,
                        dir.display()
                    ));
                }
            }
        }
        let rules: BTreeSet<&str> = config
            .routes
            .iter()
            .flat_map(|r| r.rules.iter().map(|rule| rule.id.as_str()))
            .collect();
        let summary = Summary {
            routes: routes.len(),
            inspected_routes: config.routes.iter().filter(|r| r.inspected()).count(),
            rules: rules.len(),
            warnings: warnings.len(),
            findings: routes
                .iter()
                .filter_map(|r| r.coverage.as_ref())
                .map(RouteCoverage::findings)
                .sum(),
        };
        Ok(Report {
            format_version: FORMAT_VERSION,
            config: shown_as.to_string(),
            suggested_rules: suggest::suggest(
                routes
                    .iter()
                    .filter_map(|r| Some((r.name.as_str(), r.coverage.as_ref()?))),
            ),
            routes,
            warnings,
            summary,
        })
    }

    /// Whether `--strict` fails: any warning or finding.
    pub fn has_findings(&self) -> bool {
        self.summary.warnings > 0 || self.summary.findings > 0
    }

    /// The closing line.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{} ({} inspected), {}, {}, {}.",
            count(s.routes, "route", "routes"),
            s.inspected_routes,
            count(s.rules, "rule", "rules"),
            count(s.warnings, "warning", "warnings"),
            count(s.findings, "coverage finding", "coverage findings"),
        )
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }

    /// The markdown form.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Redaction review: {}\n", code(&self.config));
        for route in &self.routes {
            route_markdown(&mut out, route);
        }
        if !self.suggested_rules.is_empty() {
            let _ = writeln!(
                out,
                "## Suggested rules\n\n\
                 One per uncovered finding; `--suggest-rules FILE` writes them as a rule file to \
                 edit and add.\n\n\
                 | id | path | action | category | routes |\n| --- | --- | --- | --- | --- |"
            );
            for s in &self.suggested_rules {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    code(&s.id),
                    code(&s.path),
                    s.action,
                    text(s.category),
                    text(&s.routes.join(", "))
                );
            }
            out.push('\n');
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "## Warnings\n");
            for warning in &self.warnings {
                let _ = writeln!(out, "- {}", prose(warning));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "**Summary:** {}", self.summary_line());
        out
    }
}

fn route_report(route: &Route, coverage: Option<RouteCoverage>, base: &Path) -> RouteReport {
    let tables = if route.inspected() {
        Direction::ALL
            .into_iter()
            .flat_map(|direction| Relation::ALL.into_iter().map(move |r| (direction, r)))
            .map(|(direction, relation)| Table {
                direction: direction.as_str(),
                relation: relation.as_str(),
                rules: route
                    .plan
                    .rules_for(direction, relation)
                    .iter()
                    .map(|rule| rule_row(route, rule, base))
                    .collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    RouteReport {
        name: route.name.clone(),
        path_prefix: route.path_prefix.clone(),
        upstream: route.upstream.clone(),
        purpose: route.purpose.as_str(),
        auth: route.auth.as_str(),
        inspected: route.inspected(),
        records: route.records.iter().map(|p| p.source.clone()).collect(),
        record_keys: route.record_keys.clone(),
        recipient: route.recipient.clone(),
        recipient_identifiers: route.recipient_identifiers.clone(),
        controller_member: route.controller_member.clone(),
        unknown_controller: route.unknown_controller.as_str(),
        passthrough_content_types: route.passthrough_content_types.clone(),
        tables,
        coverage,
    }
}

fn rule_row(route: &Route, rule: &Rule, base: &Path) -> RuleRow {
    RuleRow {
        id: rule.id.clone(),
        path: rule.path.source.clone(),
        paths: concrete_paths(route, rule),
        filters: rule.path.filters_in_words(),
        action: rule.action.as_str(),
        mask: (rule.action == crate::redact::Action::Mask).then_some(Mask {
            keep_first: rule.mask.0,
            keep_last: rule.mask.1,
        }),
        category: rule.category.clone(),
        reason: rule.reason.clone(),
        file: rule
            .file
            .strip_prefix(base)
            .unwrap_or(&rule.file)
            .display()
            .to_string(),
    }
}

/// A record-scoped rule's path below each record selector; a body-scoped rule's path as is.
pub fn concrete_paths(route: &Route, rule: &Rule) -> Vec<String> {
    if rule.scope == RuleScope::Body {
        return vec![rule.path.source.clone()];
    }
    let relative = rule
        .path
        .source
        .trim_start()
        .strip_prefix('$')
        .unwrap_or("");
    let mut paths: Vec<String> = route
        .records
        .iter()
        .map(|selector| format!("{}{relative}", selector.source))
        .collect();
    paths.dedup();
    paths
}

/// Passthrough or unauthenticated routes (a catch-all `/` included) that the gateway would let
/// receive a variant of an inspected route's prefix: the same path in other case, with a format
/// suffix, a trailing dot or space, or path parameters. The gateway refuses such variants
/// whenever the receiving route's upstream could read them as the inspected path; a variant that
/// still gets through does so because of a setting (`path_case = "sensitive"`,
/// `path_parameters = true`) that this warning asks the reviewer to confirm.
fn variant_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut reported = BTreeSet::new();
    for inspected in config.routes.iter().filter(|r| r.inspected()) {
        let prefix = inspected.path_prefix.trim_end_matches('/');
        if prefix.is_empty() {
            continue;
        }
        let capitalised: String = prefix
            .split('/')
            .map(capitalised)
            .collect::<Vec<_>>()
            .join("/");
        let variants = [
            (prefix.to_ascii_uppercase(), "in case"),
            (capitalised, "in case"),
            (format!("{prefix}.json"), "by a format suffix"),
            (format!("{prefix}."), "by a trailing dot"),
            (format!("{prefix}%20"), "by a trailing space"),
            (format!("{prefix};v=1"), "by a path parameter"),
        ];
        for (variant, how) in variants {
            // Frameworks strip a format suffix from the last segment only.
            let nested = (how != "by a format suffix").then(|| format!("{variant}/1"));
            for path in std::iter::once(variant.clone()).chain(nested) {
                let Ok(Some(receiver)) = config.judge(&path) else {
                    continue;
                };
                let exposed = !receiver.inspected() || receiver.auth == RouteAuth::None;
                if std::sync::Arc::ptr_eq(receiver, inspected) || !exposed {
                    continue;
                }
                if !reported.insert((receiver.name.clone(), inspected.name.clone(), how)) {
                    continue;
                }
                let kind = if receiver.inspected() {
                    "an `auth = \"none\"` route"
                } else {
                    "a passthrough route"
                };
                warnings.push(format!(
                    "route `{}` ({kind}, prefix `{}`) receives `{path}`, which differs from \
                     inspected route `{}` (`{}`) only {how}; the gateway forwards it because \
                     upstream `{}` is declared `path_case = \"sensitive\"` or the route allows \
                     `path_parameters`. If that upstream reads it as `{}`, it serves that \
                     route's data uninspected",
                    receiver.name,
                    receiver.path_prefix,
                    inspected.name,
                    inspected.path_prefix,
                    receiver.upstream,
                    inspected.path_prefix,
                ));
            }
        }
    }
    warnings
}

/// Rules that can never apply: on no route of theirs does the plan admit them, or they are
/// record-scoped on a route that selects no records. And suggested rules adopted without the
/// reason a reviewer reads.
fn rule_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut reported = BTreeSet::new();
    let all: Vec<&std::sync::Arc<Rule>> = config.routes.iter().flat_map(|r| &r.rules).collect();
    for rule in all {
        if !reported.insert(rule.id.clone()) {
            continue;
        }
        if rule.reason.starts_with(suggest::UNWRITTEN_REASON) {
            warnings.push(format!(
                "rule `{}` still has the reason `check --suggest-rules` wrote for it: say why the \
                 field is personal and who may see it",
                rule.id
            ));
        }
        let carrying: Vec<&Route> = config
            .routes
            .iter()
            .filter(|route| route.rules.iter().any(|r| r.id == rule.id))
            .map(|r| &**r)
            .collect();
        let applies = |route: &Route| {
            Direction::ALL.iter().any(|d| {
                Relation::ALL
                    .iter()
                    .any(|r| route.plan.rules_for(*d, *r).iter().any(|x| x.id == rule.id))
            }) && (rule.scope == RuleScope::Body || !route.records.is_empty())
        };
        if !carrying.iter().any(|route| applies(route)) {
            let names: Vec<&str> = carrying.iter().map(|r| r.name.as_str()).collect();
            let purposes: Vec<&str> = rule.purposes.iter().map(|p| p.as_str()).collect();
            warnings.push(format!(
                "rule `{}` can never apply: no route that lists it ({}) matches its `when` \
                 (purposes: {}) and selects records for it",
                rule.id,
                names.join(", "),
                purposes.join(", ")
            ));
        }
    }
    warnings
}

fn route_markdown(out: &mut String, route: &RouteReport) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.iter().map(|s| code(s)).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(out, "## Route {}\n", code(&route.name));
    let _ = writeln!(out, "| setting | value |\n| --- | --- |");
    let _ = writeln!(out, "| prefix | {} |", code(&route.path_prefix));
    let _ = writeln!(out, "| upstream | {} |", code(&route.upstream));
    let _ = writeln!(out, "| purpose | {} |", route.purpose);
    let _ = writeln!(out, "| auth | {} |", route.auth);
    if !route.inspected {
        let _ = writeln!(
            out,
            "\nNot inspected: bodies stream through unchanged in both directions.\n"
        );
        return;
    }
    let _ = writeln!(out, "| records | {} |", list(&route.records));
    let _ = writeln!(out, "| record keys | {} |", list(&route.record_keys));
    let recipient = route.recipient.as_deref().map_or("—".to_string(), |r| {
        format!(
            "{} (identified by {})",
            code(r),
            list(&route.recipient_identifiers)
        )
    });
    let _ = writeln!(out, "| recipient | {recipient} |");
    let member = route
        .controller_member
        .as_deref()
        .map_or("—".to_string(), code);
    let _ = writeln!(out, "| controller member | {member} |");
    let _ = writeln!(out, "| unknown controller | {} |", route.unknown_controller);
    let _ = writeln!(
        out,
        "| passed uninspected | {} |\n",
        list(&route.passthrough_content_types)
    );
    for table in &route.tables {
        let who = if table.relation == "controller" {
            "the caller controls the record"
        } else {
            "the caller does not control the record"
        };
        let _ = writeln!(out, "### {}, {who}\n", capitalised(table.direction));
        if table.rules.is_empty() {
            let _ = writeln!(out, "No rule applies: these bodies pass unchanged.\n");
            continue;
        }
        let _ = writeln!(
            out,
            "| rule | path | action | category | reason |\n| --- | --- | --- | --- | --- |"
        );
        for rule in &table.rules {
            let action = match &rule.mask {
                Some(mask) => format!(
                    "mask (keep first {}, last {})",
                    mask.keep_first, mask.keep_last
                ),
                None => rule.action.to_string(),
            };
            let mut paths: Vec<String> = rule.paths.iter().map(|p| code(p)).collect();
            paths.extend(
                rule.filters
                    .iter()
                    .map(|words| format!("where {}", text(words))),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {action} | {} | {} |",
                code(&rule.id),
                paths.join("<br>"),
                text(&rule.category),
                text(&rule.reason)
            );
        }
        out.push('\n');
    }
    if let Some(coverage) = &route.coverage {
        coverage_markdown(out, coverage);
    }
}

fn coverage_markdown(out: &mut String, coverage: &RouteCoverage) {
    let directions = if coverage.sampled_directions.is_empty() {
        "none".to_string()
    } else {
        coverage.sampled_directions.join(", ")
    };
    let _ = writeln!(
        out,
        "### Coverage ({}; directions: {directions})\n",
        count(coverage.samples, "sample", "samples")
    );
    let ids = |v: &[String]| v.iter().map(|s| code(s)).collect::<Vec<_>>().join(", ");
    if coverage.dead_rules.is_empty() {
        let _ = writeln!(out, "- Dead rules: none.");
    } else {
        let _ = writeln!(
            out,
            "- Dead rules (changed nothing in any sample): {}",
            ids(&coverage.dead_rules)
        );
    }
    if !coverage.not_exercised.is_empty() {
        let _ = writeln!(
            out,
            "- Not exercised (no samples for their direction): {}",
            ids(&coverage.not_exercised)
        );
    }
    for refused in &coverage.refused {
        let _ = writeln!(
            out,
            "- Sample {} would be refused by the gateway ({}).",
            code(&refused.sample),
            text(&refused.reason)
        );
    }
    if coverage.uncovered.is_empty() {
        let _ = writeln!(out, "- Uncovered personal-data candidates: none.\n");
        return;
    }
    let _ = writeln!(
        out,
        "- Uncovered personal-data candidates (a non-controller receives them unchanged), by \
         category:\n\n\
         | category | looks like | sample | path |\n| --- | --- | --- | --- |"
    );
    for found in by_category(&coverage.uncovered) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            text(found.category),
            found.kind.as_str(),
            text(&found.sample),
            code(&found.path),
        );
    }
    out.push('\n');
}

/// Findings in the report's category order, then by sample and path.
pub fn by_category(found: &[coverage::Uncovered]) -> Vec<&coverage::Uncovered> {
    let mut sorted: Vec<&coverage::Uncovered> = found.iter().collect();
    sorted.sort_by_key(|u| {
        (
            Candidate::ALL.iter().position(|k| *k == u.kind),
            &u.sample,
            &u.path,
        )
    });
    sorted
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
/// `1 sample`, `2 samples`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
