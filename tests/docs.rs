//! The documentation cannot drift from the product: every configuration key the loader accepts is
//! in docs/configuration.md (the loader itself lists them), and the guides the README links exist.

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
    for table in ["admin", "limits", "store", "privacy"] {
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
