//! The reviewer's tools as the binary runs them: the `check` report (golden files, markdown and
//! JSON), coverage findings and `--strict`, `test-rules` output and exit codes, the shipped config
//! and rule tests, and `test-rules` agreeing with the proxy on the same cases.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    client::body,
    config::{Edit, KEY_ACME, KEY_ANALYTICS, KEY_GLOBEX, SHIPPED_RULES},
    dir::TestDir,
    gateway::TestGateway,
    upstream::Canned,
};
use http::{Request, StatusCode};
use recipient_gateway::config::Config;
use recipient_gateway::vocabulary::Direction;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_recipient-gateway");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixture() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/review")
}

/// Runs the binary in `dir` with no secrets in the environment: the shipped config takes its
/// development values from config/dev.env, as on a newcomer's machine.
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("GATEWAY_TAG_KEY")
        .env_remove("ACME_WEBHOOK_SECRET")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Compares `got` with the golden file; `UPDATE_GOLDEN=1` rewrites it instead.
fn golden(name: &str, got: &str) {
    let path = Path::new(ROOT).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "{name} differs from the golden file");
}

#[test]
fn the_report_matches_its_golden_files_in_markdown_and_json() {
    let args = ["check", "--config", "gateway.toml", "--samples", "samples"];
    let (code, markdown, stderr) = run(&fixture(), &args);
    assert_eq!(code, 0, "{stderr}");
    golden("review-report.md", &markdown);
    let (code, json, _) = run(&fixture(), &[&args[..], &["--format", "json"]].concat());
    assert_eq!(code, 0);
    golden("review-report.json", &json);

    // The JSON shape reviewers' tooling relies on.
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["format_version"], 1);
    let orders = &report["routes"][0];
    assert_eq!(orders["name"], "orders");
    let tables = orders["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 4);
    let response_other = &tables[3];
    assert_eq!(
        (&response_other["direction"], &response_other["relation"]),
        (&Value::from("response"), &Value::from("not_controller"))
    );
    let email = &response_other["rules"][0];
    assert_eq!(email["id"], "consignee-email");
    assert_eq!(email["paths"][0], "$.data[*].consignee.email");
    assert_eq!(email["action"], "redact");
    assert_eq!(email["category"], "user.contact.email");
    assert_eq!(email["file"], "rules/orders.toml");
    let coverage = &orders["coverage"];
    assert_eq!(coverage["dead_rules"], serde_json::json!(["legacy-fax"]));
    let kinds: Vec<(&str, &str)> = coverage["uncovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["path"].as_str().unwrap(), u["kind"].as_str().unwrap()))
        .collect();
    // The consignee's name, the phone, the `a@b` in a free-text note and the street in another
    // are found; the zip is masked, the reference number and the date are not phones.
    assert_eq!(
        kinds,
        [
            ("$['data'][0]['consignee']['name']", "name"),
            ("$['data'][0]['consignee']['phone']", "phone"),
            ("$['data'][0]['instructions']", "street_address"),
            ("$['data'][0]['note']", "email")
        ]
    );
    assert_eq!(coverage["refused"][0]["reason"], "duplicate_key");
    assert!(
        !json.contains("jane.doe@example.com"),
        "values are never reported"
    );
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("rule `support-notes` can never apply")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("inline secret"))
    );
    assert_eq!(report["summary"]["findings"], 6);
}

#[test]
fn strict_fails_on_findings_and_warnings() {
    let (code, _, stderr) = run(
        &fixture(),
        &[
            "check",
            "--config",
            "gateway.toml",
            "--samples",
            "samples",
            "--strict",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("4 warnings, 6 coverage findings"),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        &fixture(),
        &["check", "--config", "gateway.toml", "--samples", "missing"],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("not a folder"), "{stderr}");
}

#[test]
fn the_shipped_config_passes_a_strict_check_and_its_rule_tests() {
    let root = Path::new(ROOT);
    let (code, stdout, stderr) = run(root, &["check", "--samples", "config/samples", "--strict"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("0 warnings, 0 coverage findings"),
        "{stdout}"
    );
    let cases = std::fs::read_dir(root.join("config/rules/tests"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert!(cases >= 7);
    let (code, stdout, stderr) = run(root, &["test-rules", "config/rules/tests"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout, format!("{cases} passed, 0 failed\n"));
}

#[test]
fn the_second_example_api_passes_its_rule_tests_and_a_strict_review() {
    let root = Path::new(ROOT);
    let (code, stdout, stderr) = run(
        root,
        &[
            "test-rules",
            "--config",
            "examples/parcelhub/gateway.toml",
            "examples/parcelhub/rules/tests",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout, "4 passed, 0 failed\n");
    // Its samples carry proof of delivery, customs ids, a label, remarks and a booking address;
    // its rules cover them, so a strict review is clean.
    let (code, stdout, stderr) = run(
        root,
        &[
            "check",
            "--config",
            "examples/parcelhub/gateway.toml",
            "--samples",
            "examples/parcelhub/samples",
            "--strict",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("0 warnings, 0 coverage findings"),
        "{stdout}"
    );
}

#[test]
fn test_rules_prints_a_diff_per_failure_and_exits_1() {
    let dir = TestDir::new();
    let case = |name: &str, expect: &str| {
        format!(
            r#"{{"name": "{name}", "route": "orders", "direction": "response", "caller": "reports",
                "controller": "acme",
                "input": {{"data": [{{"id": "o1", "consignee": {{"email": "jane@example.com", "zip": "94105"}}}}]}},
                "expect": {expect}}}"#
        )
    };
    dir.write(
        "cases/a-pass.json",
        &case(
            "redacted for reports",
            r#"{"data": [{"id": "o1", "consignee": {"email": "[REDACTED]", "zip": "94***"}}]}"#,
        ),
    );
    dir.write(
        "cases/b-fail.json",
        &case(
            "a wrong expectation",
            r#"{"data": [{"id": "o1", "consignee": {"email": "jane@example.com", "zip": "94***", "fax": null}}]}"#,
        ),
    );
    dir.write(
        "cases/c-broken.json",
        r#"{"name": "typo", "route": "orders", "direction": "response", "caller": "reports", "controller": null, "input": {}, "expected": {}}"#,
    );
    dir.write(
        "cases/d-unknown-route.json",
        &case("no such route", "{}").edit(r#""route": "orders""#, r#""route": "nope""#),
    );
    let config = fixture().join("gateway.toml");
    let (code, stdout, stderr) = run(
        dir.path(),
        &["test-rules", "--config", config.to_str().unwrap(), "cases"],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().next(),
        Some(format!("config: {}", config.display()).as_str()),
        "the config loaded is named first"
    );
    let expected = "\
FAIL b-fail.json (a wrong expectation)
  at $.data[0].consignee.email: expected \"jane@example.com\", got \"[REDACTED]\"
  at $.data[0].consignee.fax: expected null, got nothing
FAIL c-broken.json (c-broken.json): unknown member `expected` (a case has name, route, direction, caller, controller, input, expect)
FAIL d-unknown-route.json (no such route): no route is named `nope` in this config (its routes: orders, files); another config is given with `--config`
1 passed, 3 failed
";
    assert_eq!(stdout, expected);

    let (code, _, stderr) = run(
        dir.path(),
        &[
            "test-rules",
            "--config",
            config.to_str().unwrap(),
            "missing",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
}

/// Routes named like the shipped ones, in front of the mock upstream's canned answers.
fn shipped_routes() -> String {
    let rules = format!(
        r#"rules = ["{SHIPPED_RULES}/recipient.toml", "{SHIPPED_RULES}/sensitive.toml", "{SHIPPED_RULES}/analytics.toml"]"#
    );
    format!(
        r#"
[[route]]
name = "shipments"
path_prefix = "/canned/shipments"
upstream = "mock"
records = ["$", "$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
{rules}

[[route]]
name = "analytics"
path_prefix = "/canned/analytics"
upstream = "mock"
purpose = "analytics"
records = ["$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
{rules}
"#
    )
}

/// Every shipped rule test, run through the real proxy (controllers from `customer_id`) and
/// through the `test-rules` path with the same config: the bodies are identical.
#[tokio::test]
async fn test_rules_and_the_proxy_agree_on_every_shipped_case() {
    let gw = TestGateway::start(&shipped_routes()).await;
    let config = Config::load_with_env(&gw.dir.path().join("gateway.toml"), &|_| None).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("config/rules/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let case: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let (route, caller) = (
            case["route"].as_str().unwrap(),
            case["caller"].as_str().unwrap(),
        );
        let controller = case["controller"].as_str();
        let input = serde_json::to_vec(&case["input"]).unwrap();
        // The proxy learns the controller from `customer_id`; the case must say the same.
        let named: Vec<Option<&str>> = match case["input"].get("shipments") {
            Some(list) => list
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["customer_id"].as_str())
                .collect(),
            None => vec![case["input"]["customer_id"].as_str()],
        };
        assert!(named.iter().all(|n| *n == controller), "{}", file.display());

        let direction = match case["direction"].as_str().unwrap() {
            "request" => Direction::Request,
            _ => Direction::Response,
        };
        let offline = recipient_gateway::review::dry_run(
            &config, route, direction, caller, controller, &input,
        )
        .unwrap();
        let offline: Value = serde_json::from_slice(&offline.body).unwrap();
        let key = match caller {
            "acme" => KEY_ACME,
            "globex" => KEY_GLOBEX,
            _ => KEY_ANALYTICS,
        };
        let path = format!("/canned/{route}");
        let mut client = gw.h1().await;
        let proxied: Value = match direction {
            Direction::Response => {
                gw.upstream.set_canned(Canned::json(input.clone()));
                let answer = client.get(&path, Some(key)).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", file.display());
                answer.json()
            }
            Direction::Request => {
                gw.upstream.set_canned(Canned::json(b"{}".to_vec()));
                let request = Request::post(&path)
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(body(input.clone()))
                    .unwrap();
                assert_eq!(client.send(request).await.status, StatusCode::OK);
                serde_json::from_str(gw.upstream.last()["body"].as_str().unwrap()).unwrap()
            }
        };
        assert_eq!(proxied, offline, "{}", file.display());
    }
}

#[test]
fn the_html_report_is_one_self_contained_page_with_a_matrix_per_route() {
    let (code, html, stderr) = check_samples(&fixture(), "html", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(html.starts_with("<!doctype html>"));
    for external in [
        "<script", " src=", "<link", "http://", "https://", "@import",
    ] {
        assert!(!html.contains(external), "{external}");
    }
    assert_eq!(html.matches("<table class=\"matrix\"").count(), 1);
    // Treatments in words as well as colour, each opening onto its rule.
    for words in [
        "visible",
        "redacted",
        "masked (keeps first 2, last 0)",
        "removed",
    ] {
        assert!(html.contains(&format!(">{words}<")), "{words}");
    }
    assert!(
        html.contains("<details><summary>redacted</summary><div>rule <code>consignee-email</code>")
    );
    // The samples' four uncovered values are rows outlined as findings.
    assert_eq!(html.matches("<tr class=\"finding\">").count(), 4);
    // Values from the samples and rule texts are escaped.
    assert!(html.contains("$[&#39;data&#39;][0][&#39;note&#39;]"));
}

/// Text from a pull request (rule reasons, paths, sample file names) cannot rewrite the report:
/// in Markdown, rendered as GitHub would (CommonMark with tables), it stays text, every rule keeps
/// its row, and no HTML, link or image appears; in HTML it is escaped.
#[test]
fn config_text_cannot_rewrite_the_report() {
    let tricks = [
        "<img src=x onerror=alert(1)>",
        "[a link](http://evil.example/)",
        "![an image](http://evil.example/x.png)",
        "<!-- everything after this is hidden",
        "a | split cell",
        "a `code` span` that never closes",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::new();
    for (i, trick) in tricks.iter().enumerate() {
        rules.push_str(&format!(
            "[[rule]]\nid = \"trick-{i}\"\npath = \"$.consignee['{name}']\"\naction = \"redact\"\n\
             category = \"user.contact\"\nreason = {reason:?}\nwhen.caller = \"not_controller\"\n\n",
            name = trick.replace(['\'', '\\'], ""),
            reason = format!("{trick}\nsecond line"),
        ));
    }
    std::fs::write(dir.path().join("hostile.toml"), rules).unwrap();
    let config = std::fs::read_to_string(fixture().join("gateway.toml"))
        .unwrap()
        .edit("rules/orders.toml", "hostile.toml");
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let samples = dir.path().join("samples/orders");
    std::fs::create_dir_all(&samples).unwrap();
    std::fs::write(samples.join("<!--x.json"), "{\"data\": [}").unwrap();

    let (code, markdown, stderr) = check_samples(dir.path(), "markdown", &[]);
    assert_eq!(code, 0, "{stderr}");
    let shown = rendered_as_text(&markdown);
    let rule_rows = markdown
        .lines()
        .filter(|l| l.starts_with("| `trick-"))
        .count();
    assert_eq!(rule_rows, 2 * tricks.len(), "{markdown}");
    for trick in tricks {
        assert!(
            shown.contains(&format!("{trick} second line")),
            "{trick} in {shown}"
        );
    }
    assert!(shown.contains("<!--x.json"), "{shown}");

    let (code, html, _) = check_samples(dir.path(), "html", &[]);
    assert_eq!(code, 0);
    for raw in ["<img", "<!--", "[a link](http"] {
        assert!(
            !html.contains(raw) || raw.starts_with('['),
            "{raw} in the HTML report"
        );
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));

    // The change review prints the same texts (paths, member names) as text too.
    let old = fixture().join("gateway.toml");
    let args = [
        "check",
        "--config",
        "gateway.toml",
        "--against",
        old.to_str().unwrap(),
    ];
    let (code, markdown, stderr) = run(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    let shown = rendered_as_text(&markdown);
    assert!(
        shown.contains("<!-- everything after this is hidden"),
        "{shown}"
    );
    let (_, html, _) = run(dir.path(), &[&args[..], &["--format", "html"]].concat());
    assert!(!html.contains("<img") && !html.contains("<!--"), "{html}");
    // The old config's e-mail rule is gone: its cells say so in words, not only in colour.
    assert!(
        html.contains("<span class=\"change\">widened</span>: redacted → visible"),
        "{html}"
    );
}

/// Renders `markdown` as GitHub would (CommonMark with tables) and returns the text it shows,
/// after checking that it holds no HTML, link or image, and that every table row written is a
/// row rendered (a `<!--` left open would swallow the rest).
fn rendered_as_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let mut rows = 0;
    let mut shown = String::new();
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Html(html) | Event::InlineHtml(html) => panic!("HTML in the report: {html}"),
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => panic!("a link in the report"),
            Event::Start(Tag::TableRow) => rows += 1,
            Event::Text(text) | Event::Code(text) => shown.push_str(&text),
            _ => {}
        }
    }
    let lines = markdown.lines().filter(|l| l.starts_with('|')).count();
    let tables = markdown.lines().filter(|l| l.starts_with("| --- ")).count();
    assert_eq!(rows, lines - 2 * tables, "{markdown}");
    shown
}

/// `check --against`: one config pair per kind of widening, pure narrowings, and a reformat that
/// changes nothing. Each case edits the review fixture's config or rule file and names a line the
/// JSON report must hold: (setting or field path, caller, widened).
#[test]
fn check_against_names_each_widening_and_strict_fails_on_them() {
    /// Text of the fixture's config or rule file and what replaces it.
    type Change = (&'static str, &'static str);
    struct Case {
        name: &'static str,
        config: Vec<Change>,
        rules: Vec<Change>,
        expect: Vec<(&'static str, Option<&'static str>, bool)>,
    }
    let email = "$.data[*].consignee.email";
    let email_rule = "path = \"$.consignee.email\"\naction = \"redact\"";
    let orders = "name = \"orders\"\npath_prefix = \"/v1/orders\"\nupstream = \"orders\"\n";
    let case = |name, config: Vec<Change>, rules: Vec<Change>, expect| Case {
        name,
        config,
        rules,
        expect,
    };
    let cases = vec![
        case(
            "a weaker treatment",
            vec![],
            vec![(
                email_rule,
                "path = \"$.consignee.email\"\naction = \"mask\"",
            )],
            vec![
                (email, Some("other_customer"), true),
                (email, Some("internal"), true),
            ],
        ),
        case(
            "a mask that keeps more",
            vec![],
            vec![("mask.keep_first = 2", "mask.keep_first = 3")],
            vec![("$.data[*].consignee.zip", Some("other_customer"), true)],
        ),
        case(
            "a rule removed",
            vec![],
            vec![(
                "id = \"consignee-email\"",
                "id = \"consignee-email-gone\"\nwhen.purpose = [\"marketing\"]",
            )],
            vec![("rules", None, true), (email, Some("other_customer"), true)],
        ),
        case(
            "a rule whose path moved",
            vec![],
            vec![(
                "path = \"$.consignee.email\"",
                "path = \"$.consignee.mail\"",
            )],
            vec![
                (email, Some("other_customer"), true),
                ("$.data[*].consignee.mail", Some("other_customer"), false),
            ],
        ),
        case(
            "a child path widened to descendants",
            vec![],
            vec![("path = \"$.debug\"", "path = \"$..debug\"")],
            vec![("$..debug", Some("other_customer"), false)],
        ),
        case(
            "auth none",
            vec![(
                orders,
                "name = \"orders\"\npath_prefix = \"/v1/orders\"\nupstream = \"orders\"\nauth = \"none\"\n",
            )],
            vec![],
            vec![("auth", None, true)],
        ),
        case(
            "passthrough",
            vec![
                ("records = [\"$.data[*]\"]\n", ""),
                ("rules = [\"rules/orders.toml\"]\n", ""),
                ("record_keys = [\"id\"]\n", ""),
                ("recipient = \"consignee\"\n", ""),
                ("recipient_identifiers = [\"email\"]\n", ""),
            ],
            vec![],
            vec![
                ("inspection", None, true),
                (email, Some("other_customer"), true),
            ],
        ),
        case(
            "a content type passed uninspected",
            vec![(
                orders,
                &*format!("{orders}passthrough_content_types = [\"text/csv\"]\n").leak(),
            )],
            vec![],
            vec![("passthrough_content_types", None, true)],
        ),
        case(
            "records that are no longer records",
            vec![("records = [\"$.data[*]\"]", "records = [\"$.items[*]\"]")],
            vec![],
            // Bodies with a consignee outside any record were refused before; now they pass.
            vec![
                ("records", None, true),
                ("$.items[*].consignee.email", Some("other_customer"), true),
            ],
        ),
        case(
            "another recipient member",
            vec![("recipient = \"consignee\"", "recipient = \"receiver\"")],
            vec![],
            vec![("recipient", None, true)],
        ),
        case(
            "a controller member",
            vec![(
                orders,
                &*format!("{orders}controller_member = \"merchant_id\"\n").leak(),
            )],
            vec![],
            vec![("controller_member", None, true)],
        ),
        case(
            "unknown controllers count as the caller",
            vec![(
                orders,
                &*format!("{orders}unknown_controller = \"caller\"\n").leak(),
            )],
            vec![],
            vec![
                ("unknown_controller", None, true),
                (email, Some("unknown_controller"), true),
            ],
        ),
        case(
            "a route over an inspected prefix",
            vec![(
                "[[route]]\nname = \"files\"",
                "[[route]]\nname = \"export\"\npath_prefix = \"/v1/orders/export\"\nupstream = \"orders\"\n\n[[route]]\nname = \"files\"",
            )],
            vec![],
            vec![("routing", None, true)],
        ),
        case(
            "narrowings only",
            vec![],
            vec![
                (
                    email_rule,
                    "path = \"$.consignee.email\"\naction = \"remove\"",
                ),
                ("mask.keep_first = 2", "mask.keep_first = 1"),
            ],
            vec![
                (email, Some("other_customer"), false),
                ("$.data[*].consignee.zip", Some("internal"), false),
            ],
        ),
        case(
            "a reformat",
            vec![
                (
                    "[keys]",
                    "# Reformatted: comments and spacing only.\n\n[keys]",
                ),
                ("tls = false", "tls      =   false"),
            ],
            vec![(
                "reason = \"A region is enough.\"",
                "reason = 'A region is enough.'  # same",
            )],
            vec![],
        ),
    ];
    let base = fixture();
    let old_config = std::fs::read_to_string(base.join("gateway.toml")).unwrap();
    let old_rules = std::fs::read_to_string(base.join("rules/orders.toml")).unwrap();
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join("new/rules")).unwrap();
        std::fs::write(dir.path().join("old.toml"), &old_config).unwrap();
        std::fs::write(dir.path().join("rules/orders.toml"), &old_rules).unwrap();
        let (mut config, mut rules) = (old_config.clone(), old_rules.clone());
        for (from, to) in &case.config {
            assert!(config.contains(from), "{}: {from:?}", case.name);
            config = config.replacen(from, to, 1);
        }
        for (from, to) in &case.rules {
            assert!(rules.contains(from), "{}: {from:?}", case.name);
            rules = rules.replacen(from, to, 1);
        }
        std::fs::write(dir.path().join("new/gateway.toml"), config).unwrap();
        std::fs::write(dir.path().join("new/rules/orders.toml"), rules).unwrap();
        let args = [
            "check",
            "--config",
            "new/gateway.toml",
            "--against",
            "old.toml",
            "--format",
            "json",
            "--strict",
        ];
        let (code, json, stderr) = run(dir.path(), &args);
        let report: Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{}: {e}: {json}{stderr}", case.name));
        let changes = report["changes"].as_array().unwrap();
        let widened = case.expect.iter().any(|(_, _, w)| *w);
        assert_eq!(
            code,
            if widened { 2 } else { 0 },
            "{}: {json}{stderr}",
            case.name
        );
        if case.expect.is_empty() {
            assert!(changes.is_empty(), "{}: {json}", case.name);
        }
        for (what, caller, widened) in &case.expect {
            let found = changes.iter().any(|c| {
                (c["setting"] == *what || c["path"] == *what)
                    && caller.is_none_or(|k| c["caller"] == k)
                    && c["widened"] == *widened
                    && c["because"].as_str().is_some_and(|b| !b.is_empty())
            });
            assert!(
                found,
                "{}: no line for {what} {caller:?} widened={widened}: {json}",
                case.name
            );
        }
        if !widened {
            assert!(
                changes.iter().all(|c| c["widened"] == false),
                "{}: {json}",
                case.name
            );
        }
    }
}

/// A filter's condition is not a path a witness body can follow: a change to it shows in the
/// samples. A filtered rule that now matches less (values longer than 100 characters instead of
/// 14; the witnesses' values have 13) widens what the sample's value shows, and `--samples`
/// says so with the value's concrete path.
#[test]
fn check_against_with_samples_shows_what_a_changed_filter_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("samples/orders")).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("old/rules")).unwrap();
    let config = std::fs::read_to_string(fixture().join("gateway.toml")).unwrap();
    let rules = std::fs::read_to_string(fixture().join("rules/orders.toml")).unwrap();
    let filtered = |min: u32| {
        format!(
            "{rules}\n[[rule]]\nid = \"long-values\"\npath = \"$.consignee[?length(@) > {min}]\"\n\
             action = \"redact\"\ncategory = \"user\"\nreason = \"Long values are contact details.\"\n"
        )
    };
    std::fs::write(dir.path().join("gateway.toml"), &config).unwrap();
    std::fs::write(dir.path().join("rules/orders.toml"), filtered(100)).unwrap();
    std::fs::write(dir.path().join("old/gateway.toml"), &config).unwrap();
    std::fs::write(dir.path().join("old/rules/orders.toml"), filtered(14)).unwrap();
    std::fs::copy(
        fixture().join("samples/orders/list.json"),
        dir.path().join("samples/orders/list.json"),
    )
    .unwrap();
    let args = [
        "check",
        "--config",
        "gateway.toml",
        "--against",
        "old/gateway.toml",
        "--format",
        "json",
    ];
    let (code, json, stderr) = run(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report["summary"]["widenings"], 0,
        "the witnesses cannot see a filter: {json}"
    );

    let (code, json, stderr) = run(
        dir.path(),
        &[&args[..], &["--samples", "samples", "--strict"]].concat(),
    );
    assert_eq!(code, 2, "{stderr}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let note = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "$['data'][0]['consignee']['phone']" && c["caller"] == "controller")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(note["widened"], true);
    assert_eq!(
        (&note["before"], &note["after"]),
        (&json!("redacted"), &json!("visible"))
    );
    assert_eq!(
        note["because"],
        "before: rule `long-values`; after: no rule"
    );
}

/// An object reported whole (a precise location) does not hide its other members: the signature
/// image and the IP address beside the coordinates are findings of their own; the coordinates
/// that made it a location are not reported again.
#[test]
fn a_detected_object_does_not_hide_its_other_members() {
    let fixture = Path::new(ROOT).join("tests/fixtures/categories");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("samples/shipments")).unwrap();
    for file in ["gateway.toml", "rules/email.toml"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }
    let png = format!("data:image/png;base64,iVBORw0KGgo{}==", "A".repeat(120));
    let sample = serde_json::json!({"shipments": [{
        "id": "shp_0002",
        "proof": {"lat": 52.520008, "lng": 13.404954, "signature": png, "ip": "203.0.113.7"}
    }]});
    std::fs::write(
        dir.path().join("samples/shipments/proof.json"),
        sample.to_string(),
    )
    .unwrap();
    let (report, _) = check_json(dir.path(), &[]);
    let mut found: Vec<(&str, &str)> = report["routes"][0]["coverage"]["uncovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["record_path"].as_str().unwrap(),
                u["kind"].as_str().unwrap(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("$.proof", "precise_location"),
            ("$.proof.ip", "ip_address"),
            ("$.proof.signature", "signature_image"),
        ]
    );
}

/// `check --samples samples --format FORMAT` on `gateway.toml` in `dir`, with `extra` arguments.
fn check_samples(dir: &Path, format: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "check",
        "--config",
        "gateway.toml",
        "--samples",
        "samples",
        "--format",
        format,
    ];
    args.extend(extra);
    run(dir, &args)
}

/// The JSON report of [`check_samples`], which must succeed, and what was printed on stderr.
fn check_json(dir: &Path, extra: &[&str]) -> (Value, String) {
    let (code, json, stderr) = check_samples(dir, "json", extra);
    assert_eq!(code, 0, "{stderr}");
    (serde_json::from_str(&json).unwrap(), stderr)
}

#[test]
fn every_category_is_found_labelled_and_covered_by_the_suggested_rules() {
    let fixture = Path::new(ROOT).join("tests/fixtures/categories");
    let dir = tempfile::tempdir().unwrap();
    let suggested = dir.path().join("suggested.toml");
    let (report, stderr) = check_json(&fixture, &["--suggest-rules", suggested.to_str().unwrap()]);
    let found: Vec<(&str, &str, &str)> = report["routes"][0]["coverage"]["uncovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["record_path"].as_str().unwrap(),
                u["kind"].as_str().unwrap(),
                u["category"].as_str().unwrap(),
            )
        })
        .collect();
    // The reviewer's shipment: eight items besides the covered e-mail, each with its category;
    // the HS code, tracking number, amounts and timestamps are not among them.
    let mut want = vec![
        ("$.created_from_ip", "ip_address", "user.device.ip_address"),
        (
            "$.customs.importer_tax_id",
            "government_id",
            "user.government_id",
        ),
        ("$.delivery_note", "phone", "user.contact.phone_number"),
        (
            "$.payment.card_number",
            "payment_card",
            "user.financial.credit_card",
        ),
        (
            "$.proof_of_delivery.location",
            "precise_location",
            "user.location.precise",
        ),
        (
            "$.proof_of_delivery.signature",
            "signature_image",
            "user.biometric.signature",
        ),
        (
            "$.recipient.date_of_birth",
            "date_of_birth",
            "user.demographic.date_of_birth",
        ),
        ("$.recipient.name", "name", "user.name"),
    ];
    let mut found = found;
    found.sort();
    want.sort();
    assert_eq!(found, want);
    assert_eq!(report["suggested_rules"].as_array().unwrap().len(), 8);
    assert!(stderr.contains("wrote 8 suggested rule(s)"), "{stderr}");

    // Added as they are, the suggested rules cover every finding.
    for file in [
        "gateway.toml",
        "rules/email.toml",
        "samples/shipments/one.json",
    ] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture.join(file), &to).unwrap();
    }
    let config = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    let config = config.edit(
        "rules = [\"rules/email.toml\"]",
        "rules = [\"rules/email.toml\", \"suggested.toml\"]",
    );
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let (report, _) = check_json(dir.path(), &[]);
    assert_eq!(report["summary"]["findings"], 0, "{report}");
    assert_eq!(report["summary"]["rules"], 9);

    // But not unread: each adopted rule still has the placeholder reason, a warning apiece (which
    // fails a strict review) until a person has written why.
    let fixture_warnings = report["summary"]["warnings"].as_u64().unwrap() - 8;
    assert_eq!(unwritten_reasons(&report), 8, "{report}");
    let rules = std::fs::read_to_string(&suggested).unwrap();
    let written: String = rules
        .lines()
        .map(|line| match line.starts_with("reason = \"EDIT ME:") {
            true => "reason = \"The recipient's own; only their customer may see it.\"",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&suggested, written).unwrap();
    let (report, _) = check_json(dir.path(), &[]);
    assert_eq!(unwritten_reasons(&report), 0, "{report}");
    assert_eq!(report["summary"]["warnings"], fixture_warnings, "{report}");
}

/// How many warnings of a JSON report are about a suggested rule's reason left as written.
fn unwritten_reasons(report: &Value) -> usize {
    report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.contains("still has the reason `check --suggest-rules` wrote"))
        .count()
}
