//! The binary as operators use it: exit codes, error sentences, signals, log lines.

mod common;

use std::process::{Command, Stdio};

use common::{
    client::{Alpn, Client},
    config::{Edit, KEY_ACME, PLAIN_ROUTES, base_config, unused_addr},
    dir::TestDir,
    process::{GatewayProcess, assert_access_line},
    upstream::MockUpstream,
};
use http::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_recipient-gateway");

fn check_text(dir: &TestDir, main: &str) -> (i32, String, String) {
    let path = dir.write("gateway.toml", main);
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn config_text(routes: &str) -> String {
    format!("{}{routes}", base_config(unused_addr(), unused_addr()))
}

#[test]
fn check_accepts_a_valid_config_and_prints_the_report() {
    let dir = TestDir::new();
    let (code, stdout, stderr) = check_text(&dir, &config_text(PLAIN_ROUTES));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("## Route `api-public`"), "{stdout}");
    assert!(stdout.contains("Not inspected"), "{stdout}");
    assert!(
        stdout.contains("- `keys.tag_key` is an inline secret"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "**Summary:** 3 routes (0 inspected), 0 rules, 1 warning, 0 coverage findings"
        ),
        "{stdout}"
    );
}

#[test]
fn config_errors_exit_2_with_one_sentence_naming_file_key_and_line() {
    let dir = TestDir::new();
    dir.write(
        "rules.toml",
        "[[rule]]\nid = \"broken-path\"\npath = \"$.recipient[\"\naction = \"redact\"\ncategory = \"user\"\nreason = \"r\"\n",
    );
    let cases = [
        (
            "unknown key",
            config_text(PLAIN_ROUTES).edit(
                "[[route]]\nname = \"api\"",
                "[[route]]\nname = \"api\"\nupsteam = \"x\"",
            ),
            vec![
                "gateway.toml:",
                "route[0].upsteam",
                "unknown field `upsteam`",
            ],
        ),
        (
            "bad JSONPath names the rule",
            config_text(
                "[[route]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"mock\"\nrecords = [\"$\"]\nrules = [\"rules.toml\"]\n",
            ),
            vec![
                "rules.toml:3:",
                "rule[0].path",
                "rule `broken-path`",
                "invalid JSONPath",
            ],
        ),
        (
            "unknown upstream",
            config_text(&PLAIN_ROUTES.edit("upstream = \"down\"", "upstream = \"nowhere\"")),
            vec![
                "gateway.toml:",
                "route[2].upstream",
                "unknown upstream `nowhere`",
            ],
        ),
    ];
    for (name, text, expected) in cases {
        let (code, stdout, stderr) = check_text(&dir, &text);
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{name}: `{part}` not in {stderr}");
        }
    }
    // A missing file is a config error too.
    let output = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/gw.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("/nonexistent/gw.toml: cannot read the file")
    );
}

#[test]
fn outside_a_checkout_the_default_config_says_where_relative_paths_are_read_and_gateway_config_points_elsewhere()
 {
    let dir = TestDir::new();
    let output = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .env_remove("GATEWAY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let looked = format!("a relative path is read from {}", dir.path().display());
    assert!(
        stderr.contains("config/gateway.toml: cannot read the file"),
        "{stderr}"
    );
    assert!(stderr.contains(&looked), "{stderr}");
    assert!(
        stderr.contains("`--config` or GATEWAY_CONFIG names another file"),
        "{stderr}"
    );

    // An installed gateway names its config once, in the environment, for every command, from
    // wherever it runs.
    let elsewhere = TestDir::new();
    let path = dir.write("gateway.toml", &config_text(PLAIN_ROUTES));
    let output = Command::new(BIN)
        .arg("check")
        .current_dir(elsewhere.path())
        .env("GATEWAY_CONFIG", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("## Route `api-public`"), "{stdout}");
}

/// An error and its causes, as `main` prints them, say each cause once: a wrapper that names
/// its cause in its text does not also hand it on as a source.
#[test]
fn a_failure_to_start_names_its_cause_once() {
    let dir = TestDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let text = config_text(PLAIN_ROUTES).replacen(
        "address = \"127.0.0.1:0\"",
        &format!("address = \"{address}\""),
        1,
    );
    assert!(text.contains(&address.to_string()));
    let path = dir.write("gateway.toml", &text);
    let output = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains(&format!("cannot listen on {address}")),
        "{line}"
    );
    assert_eq!(line.matches("in use").count(), 1, "{line}");
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(BIN).arg("dev-certs").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "--out is required");
}

#[test]
fn dev_certs_writes_a_usable_ca_and_pair_and_keeps_the_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let dev_certs = |force: bool| {
        let mut command = Command::new(BIN);
        command.args(["dev-certs", "--out"]).arg(&out);
        if force {
            command.arg("--force");
        }
        command.output().unwrap()
    };
    assert!(dev_certs(false).status.success());
    let mode = |name: &str| {
        std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        mode("localhost.key"),
        0o600,
        "the private key is its owner's only"
    );
    assert_eq!(mode("ca.crt"), 0o644);
    // Existing files are not replaced without --force.
    let before = std::fs::read(out.join("localhost.key")).unwrap();
    let again = dev_certs(false);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists; pass --force to replace it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("localhost.key")).unwrap(), before);
    std::fs::set_permissions(
        out.join("localhost.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(dev_certs(true).status.success());
    assert_ne!(std::fs::read(out.join("localhost.key")).unwrap(), before);
    assert_eq!(
        mode("localhost.key"),
        0o600,
        "a replaced key is private too"
    );
    // dev-certs reads no config: it does not offer --config.
    let with_config = Command::new(BIN)
        .args(["dev-certs", "--config", "x.toml", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(with_config.status.code(), Some(2));
    let server = recipient_gateway::tls::server_config(
        &out.join("localhost.crt"),
        &out.join("localhost.key"),
        None,
    );
    assert!(server.is_ok());
    assert!(recipient_gateway::tls::client_config(Some(&out.join("ca.crt"))).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_drains_on_sigterm_and_logs_json_without_secrets() {
    let upstream = MockUpstream::start().await;
    let dir = TestDir::new();
    let text = format!(
        "{}{PLAIN_ROUTES}",
        base_config(upstream.addr, unused_addr())
    )
    .edit("request_timeout_ms = 1500", "request_timeout_ms = 5000");
    let path = dir.write("gateway.toml", &text);
    let process = GatewayProcess::spawn(&path);
    let address = process.addr;
    let mut client = Client::connect(address, &dir.ca(), Alpn::Http1).await;
    let ok = client
        .get("/api/echo?email=jane%40example.com", Some(KEY_ACME))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let in_flight = tokio::spawn(async move { client.get("/api/slow", Some(KEY_ACME)).await });
    upstream.wait_seen(2).await;
    process.signal("-TERM");
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the in-flight request finished during the drain"
    );
    let (status, lines) = tokio::task::spawn_blocking(move || process.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let requests: Vec<_> = lines.iter().filter(|l| l["msg"] == "request").collect();
    assert_eq!(requests.len(), 2, "{lines:?}");
    let first = requests[0];
    assert_access_line(first);
    assert_eq!(first["path"], "/api/echo");
    assert_eq!(first["client"], "acme");
    assert_eq!(first["status"], 200);
    let all = lines.iter().map(|l| l.to_string()).collect::<String>();
    for secret in [KEY_ACME, "jane", "example.com", "email="] {
        assert!(!all.contains(secret), "`{secret}` reached the log: {all}");
    }
    assert!(lines.iter().any(|l| l["msg"] == "stopped"));
}

#[test]
fn the_shipped_config_works_for_every_tool_without_environment() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .current_dir(root)
            .args(args)
            .env_remove("GATEWAY_TAG_KEY")
            .env_remove("ACME_WEBHOOK_SECRET")
            .output()
            .unwrap()
    };
    let check = run(&["check"]);
    assert!(check.status.success(), "{check:?}");
    let stderr = String::from_utf8_lossy(&check.stderr);
    for name in ["GATEWAY_TAG_KEY", "ACME_WEBHOOK_SECRET"] {
        let note =
            format!("note: {name} is not set; using its development value from config/dev.env");
        assert_eq!(stderr.matches(&note).count(), 1, "{stderr}");
    }
    let tests = run(&["test-rules", "config/rules/tests"]);
    assert!(tests.status.success(), "{tests:?}");
    // A config without a dev.env beside it gets no fallback.
    let dir = TestDir::new();
    let text = config_text("").edit(
        "tag_key = \"",
        "tag_key_env = \"RG_TEST_UNSET_VARIABLE\"\n# tag_key = \"",
    );
    let (code, _, stderr) = check_text(&dir, &text);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("RG_TEST_UNSET_VARIABLE"), "{stderr}");
}

#[test]
fn run_says_when_an_upstream_is_not_answering() {
    let dir = TestDir::new();
    let path = dir.write("gateway.toml", &config_text(PLAIN_ROUTES));
    let mut gateway = GatewayProcess::spawn(&path);
    let line = gateway.wait_for_log("upstream not answering; its routes answer 502 until it does");
    assert_eq!(line["level"], "warn", "{line}");
    assert!(line["upstream"].is_string(), "{line}");
}

fn redact(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml");
    let mut child = Command::new(BIN)
        .args(["redact", "--config", config])
        // The shipped config's secrets come from config/dev.env, as on a newcomer's machine.
        .env_remove("GATEWAY_TAG_KEY")
        .env_remove("ACME_WEBHOOK_SECRET")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn redact_dry_run_applies_the_shipped_rules_and_explains() {
    let body = r#"{"shipments":[{"id":"s1","customer_id":"acme","n":1e400,"recipient":{"name":"Jane","email":"jane@example.com","address":{"postal_code":"94105","city":"SF"}}}]}"#;
    let (code, stdout, stderr) = redact(
        &[
            "--route",
            "shipments",
            "--direction",
            "response",
            "--caller",
            "globex",
            "--controller",
            "acme",
            "--explain",
        ],
        body,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim_end(),
        r#"{"shipments":[{"id":"s1","customer_id":"acme","n":1e400,"recipient":{"name":"[REDACTED]","email":"[REDACTED]","address":{"postal_code":"94***","city":"SF"}}}]}"#
    );
    for line in [
        "recipient-contact-other-customer\t$['shipments'][0]['recipient']['email']\tredact",
        "recipient-name-other-customer\t$['shipments'][0]['recipient']['name']\tredact",
        "recipient-postal-code-other-customer\t$['shipments'][0]['recipient']['address']['postal_code']\tmask",
        "3 changes",
        "note: GATEWAY_TAG_KEY is not set; using its development value from",
    ] {
        assert!(stderr.contains(line), "`{line}` not in {stderr}");
    }
    // The controller sees the body unchanged, byte for byte.
    let (code, stdout, _) = redact(
        &[
            "--route",
            "shipments",
            "--direction",
            "response",
            "--caller",
            "acme",
            "--controller",
            "acme",
        ],
        body,
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, format!("{body}\n").as_str()),
        "one final newline"
    );
    // A body the gateway would refuse: exit 1, no output; unknown names: exit 2.
    let (code, stdout, stderr) = redact(
        &[
            "--route",
            "shipments",
            "--direction",
            "request",
            "--caller",
            "acme",
        ],
        r#"{"a":1,"a":2}"#,
    );
    assert_eq!(code, 1);
    assert!(
        stdout.is_empty() && stderr.contains("duplicate_key"),
        "{stderr}"
    );
    let (code, _, stderr) = redact(
        &[
            "--route",
            "nope",
            "--direction",
            "request",
            "--caller",
            "acme",
        ],
        "{}",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("no route is named `nope`"), "{stderr}");
    let (code, _, _) = redact(
        &[
            "--route",
            "shipments",
            "--direction",
            "request",
            "--caller",
            "mallory",
        ],
        "{}",
    );
    assert_eq!(code, 2);
}
