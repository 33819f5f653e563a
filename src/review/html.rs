//! `check --format html`: the review report as one self-contained page, a matrix per route.
//!
//! Rows are fields (each rule's path, a union of names split into one row per name, and every
//! value the samples showed uncovered); columns are the callers a reviewer thinks in (the
//! record's controller, another customer, an internal service), once for what each sees in
//! responses and once for what the upstream receives from each, under the route's purpose.
//! Each cell says what happens to the field, in colour *and* in words, and opens (a click, no
//! script) onto the rule behind it. The page is built from the same [`Report`] as the Markdown
//! and JSON forms, so the three cannot disagree.

use std::fmt::Write;

use super::report::{Report, RouteReport, RuleRow, Table};
use crate::vocabulary::escape_html as esc;

/// The callers of a column group: the name shown, and the relation the rules see.
const CALLERS: [(&str, &str); 3] = [
    ("controller", "controller"),
    ("other customer", "not_controller"),
    ("internal service", "not_controller"),
];

/// The page's stylesheet: the treatments' colours, each also written out in the cell.
pub(super) const STYLE: &str = "\
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#1b1b1b}\
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}\
table{border-collapse:collapse;margin:.5rem 0 1rem}\
th,td{border:1px solid #b1b4b6;padding:.3rem .5rem;vertical-align:top;text-align:left}\
thead th{background:#f3f2f1}\
th.field{font-weight:400;font-family:ui-monospace,monospace;white-space:nowrap}\
td.visible{background:#fff}td.redacted{background:#f6d7d2}td.masked{background:#fce8c3}\
td.pseudonymised{background:#d2e2f6}td.removed{background:#505a5f;color:#fff}\
td.removed summary{color:#fff}\
tr.finding th.field{outline:3px solid #d4351c;outline-offset:-3px}\
.badge{display:inline-block;font-size:.8rem;font-weight:600;color:#fff;background:#d4351c;\
padding:0 .3rem;margin-left:.3rem}\
summary{cursor:pointer;font-weight:600}\
details div{font-weight:400;margin-top:.25rem;max-width:22rem;white-space:normal}\
.legend span{display:inline-block;padding:.1rem .5rem;margin-right:.3rem;border:1px solid #b1b4b6}\
.warnings li{margin:.2rem 0}";

/// The start of a review page, through `<main>`: its title (text), the stylesheet with `extra`
/// rules, and the heading (markup, escaped by the caller). One page, no external assets, no
/// scripts; [`page_end`] closes it.
pub(super) fn page_start(out: &mut String, title: &str, extra_style: &str, heading: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}{extra_style}</style>\n</head>\n<body>\n<main>\n\
         <h1>{heading}</h1>\n",
        esc(title)
    );
}

/// The end of a review page.
pub(super) fn page_end(out: &mut String) {
    out.push_str("</main>\n</body>\n</html>\n");
}

impl Report {
    /// The HTML form: one page, no external assets, no scripts.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        page_start(
            &mut out,
            &format!("Redaction review: {}", self.config),
            "",
            &format!("Redaction review: <code>{}</code>", esc(&self.config)),
        );
        out.push_str(
            "<p>For each route: who sees which field, and in what form. Click a treatment to see \
             the rule behind it. Fields outlined in red are coverage findings from the samples.</p>\n\
             <p class=\"legend\"><span style=\"background:#fff\">visible</span>\
             <span style=\"background:#f6d7d2\">redacted</span>\
             <span style=\"background:#fce8c3\">masked</span>\
             <span style=\"background:#d2e2f6\">pseudonymised</span>\
             <span style=\"background:#505a5f;color:#fff\">removed</span></p>\n",
        );
        for route in &self.routes {
            route_section(&mut out, route);
        }
        if !self.suggested_rules.is_empty() {
            out.push_str(
                "<h2>Suggested rules</h2>\n<p>One per finding; <code>--suggest-rules FILE</code> \
                 writes them as a rule file to edit and add.</p>\n<table class=\"suggested\">\n\
                 <thead><tr><th>id</th><th>path</th><th>action</th><th>category</th>\
                 <th>routes</th></tr></thead>\n<tbody>\n",
            );
            for s in &self.suggested_rules {
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td>\
                     <td>{}</td></tr>",
                    esc(&s.id),
                    esc(&s.path),
                    s.action,
                    s.category,
                    esc(&s.routes.join(", "))
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        if !self.warnings.is_empty() {
            out.push_str("<h2>Warnings</h2>\n<ul class=\"warnings\">\n");
            for warning in &self.warnings {
                let _ = writeln!(out, "<li>{}</li>", esc(warning));
            }
            out.push_str("</ul>\n");
        }
        let _ = writeln!(
            out,
            "<p><strong>Summary:</strong> {}</p>",
            esc(&self.summary_line())
        );
        page_end(&mut out);
        out
    }
}

/// One row of a route's matrix.
struct Row {
    /// The field, as a path from the record (record-scoped rules) or the body.
    field: String,
    /// What the samples found there, if anything (a coverage finding).
    finding: Option<String>,
}

fn route_section(out: &mut String, route: &RouteReport) {
    let _ = writeln!(
        out,
        "<h2 id=\"route-{name}\">Route <code>{name}</code></h2>\n\
         <p>Prefix <code>{prefix}</code> → upstream <code>{upstream}</code>; purpose \
         <strong>{purpose}</strong>; auth {auth}.</p>",
        name = esc(&route.name),
        prefix = esc(&route.path_prefix),
        upstream = esc(&route.upstream),
        purpose = route.purpose,
        auth = route.auth,
    );
    if !route.inspected {
        out.push_str(
            "<p>Bodies on this route are not inspected: every field passes unchanged.</p>\n",
        );
        return;
    }
    let rows = rows(route);
    if rows.is_empty() {
        out.push_str("<p>No rule applies on this route: every field passes unchanged.</p>\n");
    } else {
        matrix(out, route, &rows);
    }
    if let Some(coverage) = &route.coverage {
        let _ = write!(
            out,
            "<p>Coverage: {} samples (directions: {}).",
            coverage.samples,
            coverage.sampled_directions.join(", ")
        );
        if !coverage.dead_rules.is_empty() {
            let _ = write!(
                out,
                " <span class=\"badge\">dead rules</span> {}",
                esc(&coverage.dead_rules.join(", "))
            );
        }
        for refused in &coverage.refused {
            let _ = write!(
                out,
                " <span class=\"badge\">refused sample</span> {}: {}",
                esc(&refused.sample),
                esc(&refused.reason)
            );
        }
        out.push_str("</p>\n");
    }
}

/// The fields of a route: every rule's path (split into one field per name of a final name
/// union), then each uncovered sample value not already a row.
fn rows(route: &RouteReport) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for table in &route.tables {
        for rule in &table.rules {
            for field in fields_of(&rule.path) {
                if !rows.iter().any(|r| r.field == field) {
                    rows.push(Row {
                        field,
                        finding: None,
                    });
                }
            }
        }
    }
    let uncovered = route
        .coverage
        .as_ref()
        .map(|c| super::report::by_category(&c.uncovered))
        .unwrap_or_default();
    for uncovered in uncovered {
        let finding = format!(
            "{} ({}) in sample {}, uncovered",
            uncovered.kind.as_str(),
            uncovered.category,
            uncovered.sample
        );
        match rows.iter_mut().find(|r| r.field == uncovered.path) {
            Some(row) => row.finding = Some(finding),
            None => rows.push(Row {
                field: uncovered.path.clone(),
                finding: Some(finding),
            }),
        }
    }
    rows
}

/// A rule path as fields: `$.a['b','c']` is `$.a.b` and `$.a.c`; anything else is itself.
fn fields_of(path: &str) -> Vec<String> {
    let path = path.trim();
    if let Some(open) = path.rfind('[')
        && path.ends_with(']')
    {
        let inner = &path[open + 1..path.len() - 1];
        let names: Vec<&str> = inner.split(',').map(str::trim).collect();
        let quoted = |n: &&str| {
            n.len() >= 2
                && n.starts_with('\'')
                && n.ends_with('\'')
                && !n[1..n.len() - 1].contains(['\'', '\\'])
        };
        if names.len() > 1 && names.iter().all(quoted) {
            return names
                .iter()
                .map(|n| format!("{}.{}", &path[..open], &n[1..n.len() - 1]))
                .collect();
        }
    }
    vec![path.to_string()]
}

fn matrix(out: &mut String, route: &RouteReport, rows: &[Row]) {
    let _ = write!(
        out,
        "<table class=\"matrix\" data-route=\"{name}\">\n<thead>\n<tr><th rowspan=\"2\">field</th>\
         <th colspan=\"3\">in responses: what the caller sees (purpose {purpose})</th>\
         <th colspan=\"3\">in requests: what the upstream receives from the caller (purpose \
         {purpose})</th></tr>\n<tr>",
        name = esc(&route.name),
        purpose = route.purpose
    );
    for _direction in ["response", "request"] {
        for (caller, _) in CALLERS {
            let _ = write!(out, "<th scope=\"col\">{caller}</th>");
        }
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    for row in rows {
        let class = if row.finding.is_some() {
            " class=\"finding\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr{class}><th class=\"field\" scope=\"row\">{}",
            esc(&row.field)
        );
        if let Some(finding) = &row.finding {
            let _ = write!(
                out,
                "<span class=\"badge\" title=\"{0}\">finding</span><br><small>{0}</small>",
                esc(finding)
            );
        }
        out.push_str("</th>");
        for direction in ["response", "request"] {
            for (caller, relation) in CALLERS {
                let table = route
                    .tables
                    .iter()
                    .find(|t| t.direction == direction && t.relation == relation);
                cell(out, table, &row.field, caller);
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The treatment of `field` under `table`: the first rule (in the order the plan applies them)
/// whose path names the field, or visible.
fn cell(out: &mut String, table: Option<&Table>, field: &str, caller: &str) {
    let rule = table.and_then(|t| {
        t.rules
            .iter()
            .find(|r| fields_of(&r.path).iter().any(|f| f == field))
    });
    let Some(rule) = rule else {
        let _ = write!(
            out,
            "<td class=\"visible\" title=\"no rule: {caller} gets it unchanged\">visible</td>"
        );
        return;
    };
    let (class, words) = treatment(rule);
    let _ = write!(
        out,
        "<td class=\"{class}\" title=\"rule {id}: {reason}\"><details><summary>{words}</summary>\
         <div>rule <code>{id}</code> ({file})<br>path <code>{path}</code>{filters}<br>category \
         {category}<br>{reason}</div></details></td>",
        filters = rule
            .filters
            .iter()
            .map(|w| format!("<br>where {}", esc(w)))
            .collect::<String>(),
        id = esc(&rule.id),
        file = esc(&rule.file),
        path = esc(&rule.path),
        category = esc(&rule.category),
        reason = esc(&rule.reason),
    );
}

/// The cell's class and words for a rule's action.
fn treatment(rule: &RuleRow) -> (&'static str, String) {
    match rule.action {
        "remove" => ("removed", "removed".into()),
        "mask" => (
            "masked",
            match &rule.mask {
                Some(mask) => format!(
                    "masked (keeps first {}, last {})",
                    mask.keep_first, mask.keep_last
                ),
                None => "masked".into(),
            },
        ),
        "hash" => ("pseudonymised", "pseudonymised".into()),
        _ => ("redacted", "redacted".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::fields_of;

    #[test]
    fn name_unions_become_one_field_per_name() {
        let cases: &[(&str, &[&str])] = &[
            ("$.recipient.name", &["$.recipient.name"]),
            (
                "$.recipient['email','phone']",
                &["$.recipient.email", "$.recipient.phone"],
            ),
            (
                "$.recipient.address['street', 'street2']",
                &["$.recipient.address.street", "$.recipient.address.street2"],
            ),
            ("$.items[*]", &["$.items[*]"]),
            ("$['a']", &["$['a']"]),
            ("$.x['a,b','c']", &["$.x['a,b','c']"]),
        ];
        for (path, want) in cases {
            assert_eq!(fields_of(path), *want, "{path}");
        }
    }
}
