//! The documentation cannot drift from the product: every configuration key the loader accepts is
//! in docs/configuration.md (the loader itself lists them), every metric the gateway registers is
//! in the reference, and every relative link in every Markdown file reaches a file of the
//! repository (and a heading, when it names one).

use std::path::Path;

use recipient_gateway::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The keys the loader accepts in a section: an unknown key makes it list them.
fn keys_of(text: &str, rule_file: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    if let Some(rules) = rule_file {
        std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    }
    let path = dir.path().join("gateway.toml");
    let error = Config::from_toml(&path, text, &|_| None)
        .expect_err("the unknown key is refused")
        .to_string();
    // serde says "expected `a`", "expected `a` or `b`" or "expected one of `a`, `b`, …".
    let list = error
        .split("unknown field `zzz_unknown`, expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in: {error}"));
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim_matches(|c| c == '`' || c == '.').to_string())
        .collect()
}

/// The text of the doc section whose heading names `heading`, up to the next `## `.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("## {heading}"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no `## {heading}` section"));
    let rest = &doc[start + 3..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn every_configuration_key_is_documented() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md")).unwrap();
    let base = "[listen]\naddress = \"127.0.0.1:0\"\ntls = false\n[keys]\ntag_key = \"0123456789abcdef0123\"\n";
    let with = |table: &str| {
        base.replace(
            &format!("[{table}]\n"),
            &format!("[{table}]\nzzz_unknown = 1\n"),
        )
    };
    let mut sections: Vec<(String, Vec<String>)> = vec![
        ("`[listen]`".into(), keys_of(&with("listen"), None)),
        ("`[keys]`".into(), keys_of(&with("keys"), None)),
    ];
    for table in ["admin", "limits", "runtime", "store", "privacy"] {
        let text = format!("{base}[{table}]\nzzz_unknown = 1\n");
        sections.push((format!("`[{table}]`"), keys_of(&text, None)));
    }
    for table in ["client", "upstream", "route"] {
        let text = format!("{base}[[{table}]]\nzzz_unknown = 1\n");
        sections.push((format!("`[[{table}]]`"), keys_of(&text, None)));
    }
    let top = keys_of(&format!("zzz_unknown = 1\n{base}"), None);
    assert!(top.contains(&"route".to_string()), "{top:?}");
    // Rule files, with their nested `when` and `mask` tables.
    let route = "[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n[[route]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"u\"\nrules = [\"rules.toml\"]\n";
    let rule = "[[rule]]\nid = \"x\"\npath = \"$.a\"\naction = \"redact\"\ncategory = \"c\"\nreason = \"r\"\n";
    let mut rule_keys = keys_of(
        &format!("{base}{route}"),
        Some(&format!("{rule}zzz_unknown = 1\n")),
    );
    for nested in ["when", "mask"] {
        let keys = keys_of(
            &format!("{base}{route}"),
            Some(&format!("{rule}{nested}.zzz_unknown = 1\n")),
        );
        rule_keys.extend(keys.into_iter().map(|k| format!("{nested}.{k}")));
    }
    sections.push(("Rule files".into(), rule_keys));

    let mut checked = 0;
    for (heading, keys) in &sections {
        let text = section(&doc, heading);
        assert!(!keys.is_empty(), "{heading}");
        for key in keys {
            // Tables (`when`, `mask`) are documented by their keys (`when.caller`, …).
            let documented = text.contains(&format!("| `{key}` |"))
                || (["when", "mask"].contains(&key.as_str())
                    && text.contains(&format!("| `{key}.")));
            assert!(
                documented,
                "docs/configuration.md section {heading} does not document `{key}`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked} keys checked");
}

#[test]
fn the_guides_the_readme_links_exist() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    for guide in [
        "docs/configuration.md",
        "docs/operations.md",
        "docs/reviewing-redaction.md",
        "docs/privacy-requests.md",
        "docs/architecture.md",
        "docs/hardening.md",
    ] {
        assert!(readme.contains(guide), "the README does not link {guide}");
        assert!(Path::new(ROOT).join(guide).is_file(), "{guide} is missing");
    }
}

/// Markdown files of the repository, outside build output.
fn markdown_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The lines of a Markdown file outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchors for a file's headings: lower case, letters, digits, `-` and `_` kept, spaces
/// to `-`, the rest dropped; a repeated anchor gets `-1`, `-2`…
fn anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    for line in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#').trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = anchors
            .iter()
            .filter(|a| **a == slug || a.starts_with(&format!("{slug}-")))
            .count();
        anchors.push(if repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
    }
    anchors
}

/// The targets of the inline links `[text](target)` in a Markdown file's prose.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        // Inline code may hold `](` that is not a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_every_markdown_file_resolves() {
    let root = Path::new(ROOT).canonicalize().unwrap();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.len() >= 10, "{files:?}");
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let Ok(resolved) = resolved.canonicalize() else {
                broken.push(format!("{shown}: {target} (no such file)"));
                continue;
            };
            if !resolved.starts_with(&root) {
                broken.push(format!("{shown}: {target} (outside the repository)"));
                continue;
            }
            if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
                let target_text = std::fs::read_to_string(&resolved).unwrap();
                if !anchors(&target_text).iter().any(|a| a == anchor) {
                    broken.push(format!("{shown}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 40, "{checked} links checked");
}

#[test]
fn anchors_follow_github() {
    let text = "# A\n## 4.2 Controllers, tags and redaction\n```\n# not a heading\n```\n## 7.2 Coverage (`check --samples DIR`)\n## A\n";
    assert_eq!(
        anchors(text),
        [
            "a",
            "42-controllers-tags-and-redaction",
            "72-coverage-check---samples-dir",
            "a-1"
        ]
    );
}

#[test]
fn every_metric_is_in_the_reference() {
    let reference = std::fs::read_to_string(Path::new(ROOT).join("docs/reference.md")).unwrap();
    let metrics = std::fs::read_to_string(Path::new(ROOT).join("src/admin/metrics.rs")).unwrap();
    let names: Vec<&str> = metrics
        .split('"')
        .filter(|s| s.starts_with("gateway_") && !s.contains(' '))
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        assert!(
            reference.contains(&format!("| `{name}`")),
            "docs/reference.md §6 does not list {name}"
        );
    }
}

#[test]
fn documents_date_their_measurements_instead_of_numbering_sessions() {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        let numbered = text.match_indices("session").any(|(at, _)| {
            text[at + 7..]
                .trim_start_matches(['-', ' '])
                .starts_with(|c: char| c.is_ascii_digit())
        });
        assert!(
            !numbered,
            "{} numbers sessions; give dates and commits",
            file.display()
        );
    }
}

/// The modules a module's source names with `crate::…` (comments aside).
fn crate_dependencies(module: &str) -> std::collections::BTreeSet<String> {
    let root = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    let dir = root.join(module);
    if dir.is_dir() {
        let mut folders = vec![dir.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                match path.is_dir() {
                    true => folders.push(path),
                    false => files.push(path),
                }
            }
        }
    } else {
        files.push(root.join(format!("{module}.rs")));
    }
    let mut found = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap().split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        found.insert(name);
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_architecture_dependency_table_matches_the_code() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md")).unwrap();
    let table = &doc[doc
        .find("| module | owns | depends on |")
        .expect("the table")..];
    let mut checked = 0;
    let mut modules = std::collections::BTreeMap::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let module = cells[0].trim_start_matches("| ").trim_matches('`');
        let listed: std::collections::BTreeSet<String> = cells
            .last()
            .unwrap()
            .split('`')
            .skip(1)
            .step_by(2)
            // Module names; a type named in passing (`Plan`) is not one.
            .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_string)
            .collect();
        assert_eq!(
            crate_dependencies(module),
            listed,
            "docs/architecture.md: the dependencies of `{module}`"
        );
        modules.insert(module.to_string(), listed);
        checked += 1;
    }
    assert!(checked >= 16, "{checked} modules checked");
    // And the modules form no circle: whatever a module depends on never depends on it.
    for start in modules.keys() {
        let mut stack = vec![vec![start.clone()]];
        while let Some(path) = stack.pop() {
            for next in modules.get(path.last().unwrap()).into_iter().flatten() {
                assert!(
                    next != start,
                    "modules depend on each other: {} → {start}",
                    path.join(" → ")
                );
                if !path.contains(next) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
}

/// The siblings a file names through `prefixes` (`super::name`, `super::{a, b::C}`,
/// `crate::module::name`), comments aside. A prefix that continues a longer path
/// (`super::super::x`) does not count: that names something further up.
fn sibling_imports(
    prefixes: &[&str],
    text: &str,
    siblings: &[String],
) -> std::collections::BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = std::collections::BTreeSet::new();
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix) {
            if code[..at].ends_with("::") {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => {
                    // The group up to its closing brace, split at top-level commas.
                    let (mut depth, mut start, mut names) = (0, 0, Vec::new());
                    for (i, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => {
                                names.push(&group[start..i]);
                                break;
                            }
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                names.push(&group[start..i]);
                                start = i + 1;
                            }
                            _ => {}
                        }
                    }
                    names
                }
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if siblings.contains(&name) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// Every folder under `src/` (modules and their sub-modules), with its module path.
fn module_folders(dir: &Path, module: &str, found: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_str().unwrap();
            let module = match module.is_empty() {
                true => name.to_string(),
                false => format!("{module}::{name}"),
            };
            module_folders(&path, &module, found);
            found.push((path, module));
        }
    }
}

#[test]
fn no_file_inside_a_module_imports_itself_back() {
    let mut folders = Vec::new();
    module_folders(&Path::new(ROOT).join("src"), "", &mut folders);
    for (dir, module) in &folders {
        // The siblings: files beside `mod.rs` (which declares them, so it is no node) and
        // sub-module folders, whose files reach their siblings one `super` further up.
        let mut siblings: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                match path.is_dir() {
                    true => Some(name),
                    false => name.strip_suffix(".rs").map(str::to_string),
                }
            })
            .filter(|name| name != "mod")
            .collect();
        siblings.sort();
        let crate_prefix = format!("crate::{module}::");
        let mut edges = std::collections::BTreeMap::new();
        for name in &siblings {
            let folder = dir.join(name);
            let mut names = std::collections::BTreeSet::new();
            if folder.is_dir() {
                for entry in std::fs::read_dir(&folder).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_none_or(|e| e != "rs") {
                        continue;
                    }
                    let up = match path.file_name().unwrap() == "mod.rs" {
                        true => "super::",
                        false => "super::super::",
                    };
                    let text = std::fs::read_to_string(&path).unwrap();
                    names.extend(sibling_imports(&[up, &crate_prefix], &text, &siblings));
                }
            } else {
                let text = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();
                names = sibling_imports(&["super::", &crate_prefix], &text, &siblings);
            }
            names.remove(name);
            edges.insert(name.clone(), names);
        }
        // A depth-first walk from each file; meeting a file already on the path is a circle.
        fn walk(
            at: &str,
            edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(start) = path.iter().position(|p| p == at) {
                let mut circle = path[start..].to_vec();
                circle.push(at.to_string());
                return Some(circle);
            }
            path.push(at.to_string());
            for next in &edges[at] {
                if let Some(circle) = walk(next, edges, path) {
                    return Some(circle);
                }
            }
            path.pop();
            None
        }
        for file in &siblings {
            if let Some(circle) = walk(file, &edges, &mut Vec::new()) {
                panic!(
                    "{}: files import each other: {}",
                    dir.display(),
                    circle.join(" → ")
                );
            }
        }
    }
    assert!(
        folders.len() >= 10,
        "{} module folders checked",
        folders.len()
    );
}

#[test]
fn the_circle_check_reads_every_way_a_file_names_a_sibling() {
    let siblings: Vec<String> = ["path", "filter", "matcher", "words"]
        .map(String::from)
        .to_vec();
    let text = "use super::path::{Sel, Step};\n\
                use super::{filter::{self, Filter}, matcher};\n\
                // use super::words;\n\
                let x = crate::redact::words::f();\n\
                use super::super::other::Path;\n";
    let prefixes = ["super::", "crate::redact::"];
    let found: Vec<String> = sibling_imports(&prefixes, text, &siblings)
        .into_iter()
        .collect();
    assert_eq!(found, ["filter", "matcher", "path", "words"]);
    // A path that goes further up names none of this folder's files.
    let up = "use super::super::path::Path;\n";
    assert!(sibling_imports(&prefixes, up, &siblings).is_empty());
}
