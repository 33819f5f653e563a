//! `check --against OLD --format html`: the change review as one self-contained page.
//!
//! Per route, the same matrix as the review page (fields as rows; callers as columns, once for
//! responses and once for requests), each cell giving the treatment after the change; a changed
//! cell says *widened* or *narrowed* in words, shows the treatment before and after, and is
//! marked in colour and by its outline. Settings that changed, and sample values whose
//! treatment changed, are listed under the matrices.

use std::fmt::Write;

use super::change::{Change, ChangeReport, Matrix};
use super::html::{page_end, page_start};
use super::treatment::CallerClass;
use crate::vocabulary::Direction;
use crate::vocabulary::escape_html as esc;

/// What the change page adds to the review page's stylesheet.
const CHANGE_STYLE: &str = "\
td.widened{outline:3px solid #d4351c;outline-offset:-3px}\
td.narrowed{outline:3px dashed #00703c;outline-offset:-3px}\
td.refused{background:#0b0c0c;color:#fff}\
.change{font-weight:700}";

impl ChangeReport {
    /// The HTML form: one page, no external assets, no scripts.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let (new, old) = (esc(&self.config), esc(&self.against));
        page_start(
            &mut out,
            &format!("Change review: {} against {}", self.config, self.against),
            CHANGE_STYLE,
            &format!("Change review: <code>{new}</code> against <code>{old}</code>"),
        );
        let _ = writeln!(
            out,
            "<p><strong>{}</strong> A widening shows more to someone than before; a changed cell \
             says so in words and is outlined (solid red: widened, dashed green: narrowed).</p>",
            esc(&self.summary_line()),
        );
        for matrix in &self.matrices {
            route_matrix(&mut out, matrix);
        }
        // Settings, and sample values no matrix row shows.
        let in_matrix = |c: &Change| {
            self.matrices.iter().any(|m| {
                m.route == c.route && m.rows.iter().any(|r| Some(&r.path) == c.path.as_ref())
            })
        };
        let others: Vec<&Change> = self.changes.iter().filter(|c| !in_matrix(c)).collect();
        if !others.is_empty() {
            out.push_str(
                "<h2>Settings and sample values</h2>\n<table class=\"settings\">\n<thead><tr>\
                 <th scope=\"col\">route</th><th scope=\"col\">setting, or value (direction, \
                 caller)</th><th scope=\"col\">before</th><th scope=\"col\">after</th>\
                 <th scope=\"col\">change</th><th scope=\"col\">because</th></tr></thead>\n<tbody>\n",
            );
            for change in others {
                let what = match (&change.setting, &change.path) {
                    (Some(setting), _) => setting.clone(),
                    (None, Some(path)) => format!(
                        "{path} ({}, {})",
                        change.direction.unwrap_or_default(),
                        change.caller.unwrap_or_default()
                    ),
                    (None, None) => String::new(),
                };
                let _ = writeln!(
                    out,
                    "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td>\
                     <td class=\"{kind}\"><span class=\"change\">{kind}</span></td><td>{}</td></tr>",
                    esc(&change.route),
                    esc(&what),
                    esc(&change.before),
                    esc(&change.after),
                    esc(&change.because),
                    kind = if change.widened {
                        "widened"
                    } else {
                        "narrowed"
                    },
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        page_end(&mut out);
        out
    }
}

fn route_matrix(out: &mut String, matrix: &Matrix) {
    let _ = write!(
        out,
        "<h2>Route <code>{name}</code></h2>\n<table class=\"matrix\" data-route=\"{name}\">\n\
         <thead>\n<tr><th rowspan=\"2\" scope=\"col\">field</th>",
        name = esc(&matrix.route)
    );
    for direction in Direction::ALL {
        let _ = write!(
            out,
            "<th colspan=\"{}\" scope=\"colgroup\">in {}s</th>",
            CallerClass::ALL.len(),
            direction.as_str()
        );
    }
    out.push_str("</tr>\n<tr>");
    for _ in Direction::ALL {
        for class in CallerClass::ALL {
            let _ = write!(out, "<th scope=\"col\">{}</th>", class.words());
        }
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    for row in &matrix.rows {
        let _ = write!(
            out,
            "<tr><th class=\"field\" scope=\"row\">{}</th>",
            esc(&row.path)
        );
        for (before, after) in &row.cells {
            if before.treatment == after.treatment {
                let _ = write!(
                    out,
                    "<td class=\"{}\">{}</td>",
                    after.treatment.class(),
                    after.treatment
                );
                continue;
            }
            let kind = if before.treatment.widened_by(after.treatment) {
                "widened"
            } else {
                "narrowed"
            };
            let _ = write!(
                out,
                "<td class=\"{class} {kind}\"><span class=\"change\">{kind}</span>: {before} → \
                 {after}<br><small>before: {b}; after: {a}</small></td>",
                class = after.treatment.class(),
                before = before.treatment,
                after = after.treatment,
                b = esc(before.cause()),
                a = esc(after.cause()),
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}
