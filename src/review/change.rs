//! `check --config NEW --against OLD`: what a config change does, for the reviewer of a pull
//! request.
//!
//! Routes are paired by the traffic they receive: for every prefix either config names, the
//! route each config sends it to. For each pair, the settings that decide who sees what are
//! compared (auth, inspection, passthrough types, records, recipient, controller member, unknown
//! controllers, routing), and so is every field either side's rules or record selectors name, in
//! each direction, for each caller class, by running both routes' compiled plans on the same
//! witness bodies ([`super::treatment`]). A change that shows more to someone is a *widening*;
//! the others are *narrowings*. Each line names the rule or setting responsible on each side.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use super::coverage;
use super::markdown::{code, prose, text};
use super::treatment::{CallerClass, Outcome, Parties, Treatment, Witness, outcome, outcomes};
use crate::config::ClientKind;
use crate::config::{Config, ForwardHeaders, Route, RouteAuth};
use crate::json::{Document, Kind, NodeId};
use crate::redact::RuleScope;
use crate::vocabulary::Direction;

/// Version of the JSON shape.
pub const FORMAT_VERSION: u32 = 1;

/// The whole change review.
#[derive(Debug, Serialize)]
pub struct ChangeReport {
    /// Shape version.
    pub format_version: u32,
    /// The new config, as given.
    pub config: String,
    /// The old config, as given.
    pub against: String,
    /// Widenings first, then narrowings; each in route, direction, caller and path order.
    pub changes: Vec<Change>,
    /// Counts.
    pub summary: ChangeSummary,
    /// Every compared field of every route pair, changed or not, for the HTML matrix.
    #[serde(skip)]
    pub matrices: Vec<Matrix>,
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The route (the new config's name; the old one's when the route is gone).
    pub route: String,
    /// `request` or `response`; absent for a setting.
    pub direction: Option<&'static str>,
    /// The caller class; absent for a setting.
    pub caller: Option<&'static str>,
    /// The field; absent for a setting.
    pub path: Option<String>,
    /// The setting; absent for a field.
    pub setting: Option<String>,
    /// Before, in words.
    pub before: String,
    /// After, in words.
    pub after: String,
    /// Whether someone sees more after.
    pub widened: bool,
    /// What is responsible, on each side.
    pub because: String,
}

/// Counts.
#[derive(Debug, Serialize)]
pub struct ChangeSummary {
    /// Changes that show more to someone.
    pub widenings: usize,
    /// The rest.
    pub narrowings: usize,
}

/// A route pair's fields, for the HTML matrix.
#[derive(Debug)]
pub struct Matrix {
    /// The route, as in [`Change::route`].
    pub route: String,
    /// One row per field.
    pub rows: Vec<Row>,
}

/// One field: its treatment before and after, per direction and caller class.
#[derive(Debug)]
pub struct Row {
    /// The field.
    pub path: String,
    /// In [`Direction::ALL`] × [`CallerClass::ALL`] order.
    pub cells: Vec<(Outcome, Outcome)>,
}

impl ChangeReport {
    /// Compares `new` with `old`; with `samples` (`DIR/<route>/*.json`, as for coverage), every
    /// value of each route's samples is compared too.
    pub fn build(
        new: &Config,
        old: &Config,
        new_name: &str,
        old_name: &str,
        samples: Option<&std::path::Path>,
    ) -> std::io::Result<ChangeReport> {
        let keys = new.hash_keys();
        let customer = new
            .clients
            .iter()
            .find(|c| c.kind == ClientKind::Customer)
            .map_or("customer", |c| &*c.id);
        let parties = Parties {
            keys: &keys,
            customer,
        };
        let mut changes = Vec::new();
        let mut matrices = Vec::new();
        let mut pairs: Vec<(Option<&Route>, Option<&Route>)> = Vec::new();
        let prefixes = new
            .routes
            .iter()
            .chain(&old.routes)
            .map(|r| r.path_prefix.as_str());
        for prefix in prefixes {
            let before = old.route_for(prefix).map(|r| &**r);
            let after = new.route_for(prefix).map(|r| &**r);
            routing(&mut changes, prefix, before, after);
            let seen = pairs
                .iter()
                .any(|(b, a)| name(*b) == name(before) && name(*a) == name(after));
            if !seen {
                pairs.push((before, after));
            }
        }
        for pair in pairs {
            match pair {
                (Some(before), Some(after)) => {
                    settings(&mut changes, before, after);
                    matrices.push(fields(&mut changes, before, after, &parties));
                    if let Some(dir) = samples {
                        let found = coverage::load_samples(dir, &after.name)?;
                        sampled(&mut changes, before, after, &found, &parties);
                    }
                }
                (None, Some(after)) => changes.push(setting(
                    after,
                    "route",
                    "—",
                    "added",
                    false,
                    format!(
                        "route `{}` is new over a prefix no route served",
                        after.name
                    ),
                )),
                (Some(before), None) => changes.push(setting(
                    before,
                    "route",
                    "present",
                    "removed",
                    false,
                    format!(
                        "route `{}` is gone; its prefix is served by no route",
                        before.name
                    ),
                )),
                (None, None) => {}
            }
        }
        changes.sort_by(|a, b| {
            (
                !a.widened,
                &a.route,
                a.direction,
                caller_order(a.caller),
                &a.path,
            )
                .cmp(&(
                    !b.widened,
                    &b.route,
                    b.direction,
                    caller_order(b.caller),
                    &b.path,
                ))
        });
        let widenings = changes.iter().filter(|c| c.widened).count();
        Ok(ChangeReport {
            format_version: FORMAT_VERSION,
            config: new_name.to_string(),
            against: old_name.to_string(),
            summary: ChangeSummary {
                widenings,
                narrowings: changes.len() - widenings,
            },
            changes,
            matrices,
        })
    }

    /// Whether `--strict` fails: any widening.
    pub fn has_widenings(&self) -> bool {
        self.summary.widenings > 0
    }

    /// The closing line.
    pub fn summary_line(&self) -> String {
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{}, {}.",
            count(self.summary.widenings, "widening", "widenings"),
            count(self.summary.narrowings, "narrowing", "narrowings")
        )
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the change report serialises")
    }

    /// The Markdown form, for a pull-request comment.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Change review: {} against {}\n",
            code(&self.config),
            code(&self.against)
        );
        let _ = writeln!(out, "**{}**\n", self.summary_line());
        for (widened, title, none) in [
            (true, "Widenings", "None: no one sees more than before."),
            (false, "Narrowings and other changes", "None."),
        ] {
            let _ = writeln!(out, "## {title}\n");
            let lines: Vec<&Change> = self
                .changes
                .iter()
                .filter(|c| c.widened == widened)
                .collect();
            if lines.is_empty() {
                let _ = writeln!(out, "{none}\n");
                continue;
            }
            let _ = writeln!(
                out,
                "| route | direction | caller | field or setting | before | after | because |\n\
                 | --- | --- | --- | --- | --- | --- | --- |"
            );
            for change in lines {
                let what = match (&change.path, &change.setting) {
                    (Some(path), _) => code(path),
                    (None, Some(setting)) => format!("setting {}", code(setting)),
                    (None, None) => "—".to_string(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {what} | {} | {} | {} |",
                    code(&change.route),
                    change.direction.unwrap_or("—"),
                    change.caller.map_or("—".to_string(), text),
                    prose(&change.before),
                    prose(&change.after),
                    prose(&change.because),
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "**Summary:** {}", self.summary_line());
        out
    }
}

fn name(route: Option<&Route>) -> Option<&str> {
    route.map(|r| r.name.as_str())
}

fn caller_order(caller: Option<&str>) -> Option<usize> {
    caller.and_then(|c| CallerClass::ALL.iter().position(|k| k.as_str() == c))
}

/// A setting's change on route `route`.
fn setting(
    route: &Route,
    setting: &str,
    before: &str,
    after: &str,
    widened: bool,
    because: String,
) -> Change {
    Change {
        route: route.name.clone(),
        direction: None,
        caller: None,
        path: None,
        setting: Some(setting.to_string()),
        before: before.to_string(),
        after: after.to_string(),
        widened,
        because,
    }
}

/// A prefix that an inspected route used to receive and another route now does.
fn routing(changes: &mut Vec<Change>, prefix: &str, before: Option<&Route>, after: Option<&Route>) {
    let (Some(before), Some(after)) = (before, after) else {
        return;
    };
    if before.name == after.name || !before.inspected() {
        return;
    }
    let already = changes.iter().any(|c| {
        c.setting.as_deref() == Some("routing")
            && c.route == after.name
            && c.before == format!("route `{}`", before.name)
    });
    if already {
        return;
    }
    changes.push(setting(
        after,
        "routing",
        &format!("route `{}`", before.name),
        &format!("route `{}`", after.name),
        true,
        format!(
            "requests under `{prefix}` went to inspected route `{}` and now go to route `{}` \
             ({}), which its rules decide below",
            before.name,
            after.name,
            if after.inspected() {
                "inspected"
            } else {
                "not inspected: bodies pass unchanged"
            }
        ),
    ));
}

/// The settings of a route pair that decide who sees what.
fn settings(changes: &mut Vec<Change>, before: &Route, after: &Route) {
    let mut push = |name: &str, b: String, a: String, widened: bool, because: String| {
        changes.push(setting(after, name, &b, &a, widened, because));
    };
    if before.auth != after.auth {
        push(
            "auth",
            before.auth.as_str().into(),
            after.auth.as_str().into(),
            after.auth == RouteAuth::None,
            format!("`auth` of route `{}`", after.name),
        );
    }
    if before.inspected() != after.inspected() {
        let words = |inspected: bool| {
            if inspected {
                "inspected"
            } else {
                "passthrough"
            }
        };
        push(
            "inspection",
            words(before.inspected()).into(),
            words(after.inspected()).into(),
            before.inspected(),
            format!(
                "route `{}` {} records or rules",
                after.name,
                if after.inspected() {
                    "now has"
                } else {
                    "no longer has"
                }
            ),
        );
    }
    if before.purpose != after.purpose {
        push(
            "purpose",
            before.purpose.as_str().into(),
            after.purpose.as_str().into(),
            false,
            "the purpose decides which rules apply; the field lines show what changed".into(),
        );
    }
    let (types_before, types_after) = (
        &before.passthrough_content_types,
        &after.passthrough_content_types,
    );
    for added in only_in(types_after, types_before) {
        push(
            "passthrough_content_types",
            "inspected".into(),
            "passed uninspected".into(),
            true,
            format!("`{added}` added to `passthrough_content_types`"),
        );
    }
    for removed in only_in(types_before, types_after) {
        push(
            "passthrough_content_types",
            "passed uninspected".into(),
            "inspected".into(),
            false,
            format!("`{removed}` removed from `passthrough_content_types`"),
        );
    }
    if before.controller_member != after.controller_member {
        let shown = |m: &Option<String>| m.as_ref().map_or("none".into(), |m| format!("`{m}`"));
        push(
            "controller_member",
            shown(&before.controller_member),
            shown(&after.controller_member),
            true,
            "a different controller member hands records to other controllers".into(),
        );
    }
    if before.unknown_controller != after.unknown_controller {
        push(
            "unknown_controller",
            before.unknown_controller.as_str().into(),
            after.unknown_controller.as_str().into(),
            true,
            "records of unknown controller are shown to callers differently".into(),
        );
    }
    if before.recipient != after.recipient {
        let shown = |m: &Option<String>| m.as_ref().map_or("none".into(), |m| format!("`{m}`"));
        push(
            "recipient",
            shown(&before.recipient),
            shown(&after.recipient),
            before.recipient.is_some(),
            "recipients under the old member are no longer tagged or found by privacy requests"
                .into(),
        );
    }
    for id in only_in(&before.recipient_identifiers, &after.recipient_identifiers) {
        push(
            "recipient_identifiers",
            format!("`{id}`"),
            "—".into(),
            true,
            format!("privacy requests no longer match recipients by `{id}`"),
        );
    }
    for (flag, b, a, because) in [
        (
            "path_parameters",
            before.path_parameters,
            after.path_parameters,
            "paths with `;` parameters reach the upstream",
        ),
        (
            "allow_upgrade",
            before.allow_upgrade,
            after.allow_upgrade,
            "upgraded connections are tunnelled uninspected",
        ),
    ] {
        if b != a {
            push(flag, b.to_string(), a.to_string(), a, because.into());
        }
    }
    if before.forward_headers != after.forward_headers {
        push(
            "forward_headers",
            before.forward_headers.as_str().into(),
            after.forward_headers.as_str().into(),
            after.forward_headers == ForwardHeaders::Screened,
            "which request headers reach the upstream".into(),
        );
    }
    for header in only_in(&after.allowed_headers, &before.allowed_headers) {
        push(
            "allow_headers",
            "removed".into(),
            "forwarded".into(),
            true,
            format!("request header `{}` is forwarded", header.as_str()),
        );
    }
    for header in only_in(&after.allowed_overrides, &before.allowed_overrides) {
        push(
            "allow_override_headers",
            "stripped".into(),
            "forwarded".into(),
            true,
            format!("routing-override header `{}` is forwarded", header.as_str()),
        );
    }
    records(changes, before, after);
    let ids =
        |route: &Route| -> BTreeSet<String> { route.rules.iter().map(|r| r.id.clone()).collect() };
    let (old_ids, new_ids) = (ids(before), ids(after));
    for id in old_ids.difference(&new_ids) {
        changes.push(setting(
            after,
            "rules",
            &format!("rule `{id}`"),
            "—",
            true,
            format!("rule `{id}` no longer applies on route `{}`", after.name),
        ));
    }
    for id in new_ids.difference(&old_ids) {
        changes.push(setting(
            after,
            "rules",
            "—",
            &format!("rule `{id}`"),
            false,
            format!("rule `{id}` now applies on route `{}`", after.name),
        ));
    }
}

/// The items of `these` that `those` does not have, in order.
fn only_in<'a, T: PartialEq>(these: &'a [T], those: &'a [T]) -> impl Iterator<Item = &'a T> {
    these.iter().filter(move |item| !those.contains(item))
}

/// Record selectors of the old route that the new one no longer finds a record at, and new
/// selectors.
fn records(changes: &mut Vec<Change>, before: &Route, after: &Route) {
    for selector in &before.records {
        let lost = Witness::records(selector)
            .iter()
            .any(|w| !w.is_record(after));
        if lost {
            changes.push(setting(
                after,
                "records",
                &format!("`{}`", selector.source),
                "no record",
                true,
                format!(
                    "records at `{}` are no longer records: no rule reaches into them",
                    selector.source
                ),
            ));
        }
    }
    for selector in &after.records {
        if !before.records.iter().any(|s| s.source == selector.source) {
            changes.push(setting(
                after,
                "records",
                "—",
                &format!("`{}`", selector.source),
                false,
                format!("`{}` now selects records", selector.source),
            ));
        }
    }
}

/// Every field either route names, before and after, for each direction and caller class.
fn fields(
    changes: &mut Vec<Change>,
    before: &Route,
    after: &Route,
    parties: &Parties<'_>,
) -> Matrix {
    let mut witnesses: Vec<Witness> = Vec::new();
    let mut add = |found: Vec<Witness>| {
        for w in found {
            if !witnesses.iter().any(|x| x.label == w.label) {
                witnesses.push(w);
            }
        }
    };
    let selectors: Vec<&crate::redact::path::Path> =
        before.records.iter().chain(&after.records).collect();
    for selector in &selectors {
        add(Witness::records(selector));
    }
    for rule in before.rules.iter().chain(&after.rules) {
        match rule.scope {
            RuleScope::Body => add(Witness::root().extend(&rule.path)),
            RuleScope::Record => {
                for selector in &selectors {
                    for record in Witness::records(selector) {
                        add(record.extend(&rule.path));
                    }
                }
            }
        }
    }
    let mut rows = Vec::new();
    // A rule with a filter has no witness: it is compared with the rule of the same id.
    let unwitnessed: BTreeSet<&str> = before
        .rules
        .iter()
        .chain(&after.rules)
        .filter(|rule| Witness::root().extend(&rule.path).is_empty())
        .map(|rule| rule.id.as_str())
        .collect();
    for id in unwitnessed {
        let mut cells = Vec::new();
        let mut path = String::new();
        for direction in Direction::ALL {
            for class in CallerClass::ALL {
                let [b, a] = [before, after].map(|route| {
                    let rule = route
                        .plan
                        .rules_for(direction, class.relation(route))
                        .into_iter()
                        .find(|rule| rule.id == id);
                    if let Some(rule) = &rule {
                        path.clone_from(&rule.path.source);
                    }
                    rule.map_or(
                        Outcome {
                            treatment: Treatment::Visible,
                            because: None,
                        },
                        |rule| Outcome {
                            treatment: Treatment::of(rule.action, rule.mask),
                            because: Some(format!("rule `{id}`")),
                        },
                    )
                });
                cells.push((b, a));
            }
        }
        let mut at = 0;
        for direction in Direction::ALL {
            for class in CallerClass::ALL {
                let (b, a) = &cells[at];
                if b.treatment != a.treatment {
                    changes.push(field_change(after, &path, direction, class, b, a));
                }
                at += 1;
            }
        }
        rows.push(Row { path, cells });
    }
    for witness in &witnesses {
        let mut cells = Vec::new();
        for direction in Direction::ALL {
            for class in CallerClass::ALL {
                let b = outcome(before, witness, direction, class, parties);
                let a = outcome(after, witness, direction, class, parties);
                if b.treatment != a.treatment {
                    changes.push(field_change(
                        after,
                        &witness.label,
                        direction,
                        class,
                        &b,
                        &a,
                    ));
                }
                cells.push((b, a));
            }
        }
        rows.push(Row {
            path: witness.label.clone(),
            cells,
        });
    }
    Matrix {
        route: after.name.clone(),
        rows,
    }
}

/// The values of a route pair's samples whose treatment changes, for each caller class in the
/// sample's direction. A change the witnesses already show (same direction, caller, treatments
/// and rules) is not listed again under the sample's concrete path.
fn sampled(
    changes: &mut Vec<Change>,
    before: &Route,
    after: &Route,
    samples: &[coverage::Sample],
    parties: &Parties<'_>,
) {
    let from_witnesses = changes.len();
    for sample in samples {
        let Ok(doc) = Document::parse(&sample.bytes) else {
            continue;
        };
        for class in CallerClass::ALL {
            let b = outcomes(before, &doc, sample.direction, class, parties);
            let a = outcomes(after, &doc, sample.direction, class, parties);
            for (id, (b, a)) in b.into_iter().zip(a).enumerate() {
                let leaf = !matches!(doc.nodes[id].kind, Kind::Array | Kind::Object)
                    || doc.nodes[id].len == 0;
                if !leaf || b.treatment == a.treatment {
                    continue;
                }
                let path = doc.path_of(id as NodeId);
                let change = field_change(after, &path, sample.direction, class, &b, &a);
                let shown = changes[..from_witnesses].iter().any(|c| {
                    c.route == change.route
                        && c.direction == change.direction
                        && c.caller == change.caller
                        && c.before == change.before
                        && c.after == change.after
                        && c.because == change.because
                });
                if !shown {
                    changes.push(change);
                }
            }
        }
    }
}

fn field_change(
    route: &Route,
    path: &str,
    direction: Direction,
    class: CallerClass,
    before: &Outcome,
    after: &Outcome,
) -> Change {
    Change {
        route: route.name.clone(),
        direction: Some(direction.as_str()),
        caller: Some(class.as_str()),
        path: Some(path.to_string()),
        setting: None,
        before: before.treatment.to_string(),
        after: after.treatment.to_string(),
        widened: before.treatment.widened_by(after.treatment),
        because: format!("before: {}; after: {}", before.cause(), after.cause()),
    }
}
