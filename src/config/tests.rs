//! Config validation as a table of cases: each names the key and the problem it must report.

use super::load::is_prefix_path;
use super::*;

const CERT_PLACEHOLDER: &str = "@CERTS@";

/// A valid config with one inspected route; `@CERTS@` is replaced with a folder of dev certs.
const VALID: &str = r#"
[listen]
address = "127.0.0.1:0"
tls_cert = "@CERTS@/localhost.crt"
tls_key = "@CERTS@/localhost.key"

[keys]
tag_key_env = "TAG_KEY"

[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["8649cdebee753898fd50e01408a9e438aa5090249bc3e51b65f33dce973b0873"]
webhook_url = "https://hooks.acme.example/privacy"
webhook_secret_env = "ACME_SECRET"

[[upstream]]
name = "shipping"
url = "http://127.0.0.1:9090/base/"

[[route]]
name = "shipments"
path_prefix = "/v1/shipments/"
upstream = "shipping"
records = ["$", "$.shipments[*]"]
record_keys = ["id"]
recipient = "recipient"
recipient_identifiers = ["email"]
rules = ["rules.toml"]

[[route]]
name = "root"
path_prefix = "/"
upstream = "shipping"
"#;

const RULES: &str = r#"
[[rule]]
id = "email"
path = "$.recipient.email"
action = "redact"
category = "user.contact.email"
reason = "Only the controller sees it."
when.caller = "not_controller"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::write_dev_certs(&dir.path().join("certs"), true).unwrap();
        Fixture { dir }
    }

    fn load(&self, main: &str, rules: &str) -> Result<Config, ConfigError> {
        let certs = self.dir.path().join("certs");
        let main = main.replace(CERT_PLACEHOLDER, certs.to_str().unwrap());
        std::fs::write(self.dir.path().join("rules.toml"), rules).unwrap();
        let path = self.dir.path().join("gateway.toml");
        std::fs::write(&path, main).unwrap();
        Config::load_with_env(&path, &|name| match name {
            "TAG_KEY" => Some("0123456789abcdef0123".into()),
            "OLD_TAG_KEY" => Some("an-earlier-tag-key-0123".into()),
            "OTHER_TAG_KEY" => Some("0123456789abcdef0123".into()),
            "PSEUDONYM_KEY" => Some("pseudonym-key-0123456789".into()),
            "ACME_SECRET" => Some("whsec_c2VjcmV0LWJ5dGVz".into()),
            "ACME_OLD_SECRET" => Some("whsec_b2xkLXNlY3JldA==".into()),
            _ => None,
        })
    }
}

#[test]
fn the_valid_config_loads() {
    let fixture = Fixture::new();
    let config = fixture.load(VALID, RULES).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.tag_key.expose(), b"0123456789abcdef0123");
    assert_eq!(config.limits.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(config.limits.request_timeout, Duration::from_secs(30));
    assert_eq!(config.store.backend, StoreBackend::Sqlite);
    assert_eq!(config.store.retention, Duration::from_secs(30 * 86_400));
    assert_eq!(config.privacy.path, "/privacy/requests");
    assert_eq!(config.upstreams[0].base_path, "/base");
    let acme = config.client("acme").unwrap();
    assert_eq!(acme.webhook.as_ref().unwrap().key.expose(), b"secret-bytes");
    // Longest prefix first; a trailing slash in a prefix is not significant.
    assert_eq!(config.routes[0].path_prefix, "/v1/shipments");
    assert_eq!(
        config.route_for("/v1/shipments/7").unwrap().name,
        "shipments"
    );
    assert_eq!(config.route_for("/v1/shipmentsx").unwrap().name, "root");
    let route = config.route_for("/v1/shipments").unwrap();
    assert!(route.inspected());
    assert_eq!(route.rules[0].purposes, Purpose::ALL.to_vec());
    assert!(!config.route_for("/other").unwrap().inspected());
}

#[test]
fn serving_threads_default_to_the_cores_and_are_bounded() {
    let fixture = Fixture::new();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(fixture.load(VALID, RULES).unwrap().runtime.workers, cores);
    let with = |workers: usize| format!("{VALID}\n[runtime]\nworkers = {workers}\n");
    assert_eq!(fixture.load(&with(3), RULES).unwrap().runtime.workers, 3);
    let error = fixture.load(&with(257), RULES).unwrap_err().to_string();
    assert!(
        error.contains("runtime.workers") && error.contains("at most 256"),
        "{error}"
    );
}

#[test]
fn inline_secrets_and_plaintext_warn() {
    let fixture = Fixture::new();
    let main = VALID
        .replace(
            "tag_key_env = \"TAG_KEY\"",
            "tag_key = \"inline-dev-key-0123\"",
        )
        .replace("tls_cert", "tls = false\n# tls_cert");
    let config = fixture.load(&main, RULES).unwrap();
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(config.warnings.iter().any(|w| w.contains("keys.tag_key")));
    assert!(config.warnings.iter().any(|w| w.contains("plaintext")));
    assert!(config.listen.tls.is_none());

    // An admin listener other hosts can reach, without a token, is warned about (and so fails
    // `check --strict`); with a token, or on loopback, it is not.
    let open = format!("{VALID}\n[admin]\naddress = \"0.0.0.0:9901\"\n");
    let config = fixture.load(&open, RULES).unwrap();
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("admin.token_env") && w.contains("0.0.0.0")),
        "{:?}",
        config.warnings
    );
    let guarded =
        format!("{VALID}\n[admin]\naddress = \"0.0.0.0:9901\"\ntoken_env = \"TAG_KEY\"\n");
    assert!(fixture.load(&guarded, RULES).unwrap().warnings.is_empty());
}

#[test]
fn postgres_is_encrypted_and_verified_unless_it_is_local() {
    let fixture = Fixture::new();
    let with = |store: &str| format!("{VALID}\n[store]\nbackend = \"postgres\"\n{store}\n");
    let load = |store: &str| fixture.load(&with(store), RULES);

    // Elsewhere than loopback: verify-full by default, no warning.
    let remote = load(r#"url = "postgres://gw@db.internal:5432/gw""#).unwrap();
    assert!(remote.store.postgres_tls.is_some());
    assert!(remote.warnings.iter().all(|w| !w.contains("store.tls")));
    // Loopback and Unix sockets stay plaintext unless asked.
    for url in [
        "postgres://gw@127.0.0.1:5432/gw",
        "postgres://gw@localhost/gw",
        "host=/run/postgresql user=gw",
    ] {
        let local = load(&format!("url = \"{url}\"")).unwrap();
        assert!(local.store.postgres_tls.is_none(), "{url}");
    }
    let asked = load(
        r#"url = "postgres://gw@127.0.0.1/gw"
tls = "require""#,
    )
    .unwrap();
    assert!(asked.store.postgres_tls.is_some());
    // Plaintext to another host is allowed, with a warning.
    let plain = load(
        r#"url = "postgres://gw@db.internal/gw"
tls = "disable""#,
    )
    .unwrap();
    assert!(plain.store.postgres_tls.is_none());
    assert!(
        plain
            .warnings
            .iter()
            .any(|w| w.contains("store.tls") && w.contains("plaintext")),
        "{:?}",
        plain.warnings
    );
    // `sslmode` in the URL would contradict `tls`; a CA file needs verify-full.
    let error = load(r#"url = "postgres://gw@db.internal/gw?sslmode=disable""#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("sslmode"), "{error}");
    let error = load(
        r#"url = "postgres://gw@db.internal/gw"
tls = "require"
ca_file = "ca.pem""#,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("store.ca_file"), "{error}");
}

/// (what is changed, main file, rule file, expected file suffix, expected key, text on the line the
/// error must point at, message part)
type Case = (
    &'static str,
    String,
    String,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

fn cases() -> Vec<Case> {
    let main = |from: &str, to: &str| {
        assert!(VALID.contains(from), "{from}");
        VALID.replacen(from, to, 1)
    };
    let rules = |from: &str, to: &str| {
        assert!(RULES.contains(from), "{from}");
        RULES.replacen(from, to, 1)
    };
    let r = RULES.to_string();
    vec![
        (
            "unknown top-level key",
            format!("bogus = 1\n{VALID}"),
            r.clone(),
            "gateway.toml",
            Some("bogus"),
            Some("bogus = 1"),
            "unknown field `bogus`",
        ),
        (
            "an upgrade on a route that inspects",
            main(
                "upstream = \"shipping\"\nrecords",
                "upstream = \"shipping\"\nallow_upgrade = true\nrecords",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[0].allow_upgrade"),
            Some("allow_upgrade = true"),
            "could not be inspected",
        ),
        (
            "unknown key in a route",
            main(
                "upstream = \"shipping\"\nrecords",
                "upstream = \"shipping\"\nrecrods = []\nrecords",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[0].recrods"),
            Some("recrods"),
            "unknown field `recrods`",
        ),
        (
            "wrong type",
            main("record_keys = [\"id\"]", "record_keys = \"id\""),
            r.clone(),
            "gateway.toml",
            Some("route[0].record_keys"),
            Some("record_keys = \"id\""),
            "invalid type",
        ),
        (
            "bad enum value",
            main("kind = \"customer\"", "kind = \"merchant\""),
            r.clone(),
            "gateway.toml",
            Some("client[0].kind"),
            Some("merchant"),
            "unknown variant `merchant`",
        ),
        (
            "TOML syntax",
            main("[[route]]", "[[route]"),
            r.clone(),
            "gateway.toml",
            None,
            Some("[[route]\n"),
            "unclosed array table",
        ),
        (
            "missing [keys]",
            main("[keys]\ntag_key_env = \"TAG_KEY\"", ""),
            r.clone(),
            "gateway.toml",
            None,
            None,
            "missing field `keys`",
        ),
        (
            "unknown upstream",
            main(
                "upstream = \"shipping\"\nrecords",
                "upstream = \"shiping\"\nrecords",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[0].upstream"),
            Some("shiping"),
            "unknown upstream `shiping` (defined: shipping)",
        ),
        (
            "bad address",
            main("address = \"127.0.0.1:0\"", "address = \"localhost\""),
            r.clone(),
            "gateway.toml",
            Some("listen.address"),
            Some("address = \"localhost\""),
            "not an `ip:port`",
        ),
        (
            "missing env secret",
            main("TAG_KEY", "NOT_SET"),
            r.clone(),
            "gateway.toml",
            Some("keys.tag_key_env"),
            Some("NOT_SET"),
            "`NOT_SET` is not set",
        ),
        (
            "short tag key",
            main("tag_key_env = \"TAG_KEY\"", "tag_key = \"short\""),
            r.clone(),
            "gateway.toml",
            Some("keys.tag_key"),
            Some("short"),
            "at least 16 bytes",
        ),
        (
            "bad key digest",
            main("8649cdebee", "zz49cdebee"),
            r.clone(),
            "gateway.toml",
            Some("client[0].api_key_sha256[0]"),
            Some("zz49cdebee"),
            "64 hexadecimal digits",
        ),
        (
            "duplicate client",
            format!(
                "{VALID}\n[[client]]\nid  = \"acme\"\nkind = \"customer\"\nname = \"x\"\napi_key_sha256 = []\n"
            ),
            r.clone(),
            "gateway.toml",
            Some("client[1].id"),
            Some("id  = "),
            "defined twice",
        ),
        (
            "bad webhook secret",
            main(
                "webhook_secret_env = \"ACME_SECRET\"",
                "webhook_secret = \"not-whsec\"",
            ),
            r.clone(),
            "gateway.toml",
            Some("client[0].webhook_secret"),
            Some("not-whsec"),
            "whsec_",
        ),
        (
            "webhook without secret",
            main("webhook_secret_env = \"ACME_SECRET\"", ""),
            r.clone(),
            "gateway.toml",
            Some("client[0].webhook_secret_env"),
            None,
            "signing secret",
        ),
        (
            "bad upstream URL",
            main("http://127.0.0.1:9090/base/", "ftp://x"),
            r.clone(),
            "gateway.toml",
            Some("upstream[0].url"),
            Some("ftp://x"),
            "http:// or https://",
        ),
        (
            "duplicate prefix",
            main("path_prefix = \"/\"", "path_prefix = \"/v1/shipments\""),
            r.clone(),
            "gateway.toml",
            Some("route[1].path_prefix"),
            Some("path_prefix = \"/v1/shipments\"\n"),
            "used by another route",
        ),
        (
            "dot segment prefix",
            main("path_prefix = \"/\"", "path_prefix = \"/a/../b\""),
            r.clone(),
            "gateway.toml",
            Some("route[1].path_prefix"),
            Some("/a/../b"),
            "`..` segments",
        ),
        (
            "bad records JSONPath",
            main("\"$.shipments[*]\"", "\"$.shipments[\""),
            r.clone(),
            "gateway.toml",
            Some("route[0].records[1]"),
            Some("$.shipments[\"]"),
            "invalid JSONPath",
        ),
        (
            "missing rule file",
            main("rules.toml", "nope.toml"),
            r.clone(),
            "gateway.toml",
            Some("route[0].rules[0]"),
            Some("nope.toml"),
            "cannot read rule file",
        ),
        (
            "record rule without records",
            main(
                "[[route]]\nname = \"root\"",
                "[[route]]\nname = \"root\"\nrules  = [\"rules.toml\"]",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[1].rules"),
            Some("rules  ="),
            "relative to records",
        ),
        (
            "JSON passthrough",
            main(
                "rules = [\"rules.toml\"]",
                "rules = [\"rules.toml\"]\npassthrough_content_types = [\"application/problem+json\"]",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[0].passthrough_content_types[0]"),
            Some("problem+json"),
            "always inspected",
        ),
        (
            "bad rule JSONPath names the rule",
            VALID.to_string(),
            rules("$.recipient.email", "$.recipient.email["),
            "rules.toml",
            Some("rule[0].path"),
            Some("email["),
            "rule `email`: invalid JSONPath",
        ),
        (
            "ill-typed filter rule",
            VALID.to_string(),
            rules("$.recipient.email", "$.items[?length(@.x)]"),
            "rules.toml",
            Some("rule[0].path"),
            Some("?length"),
            "is a value, not a test",
        ),
        (
            "unknown rule key",
            VALID.to_string(),
            rules("action = \"redact\"", "action = \"redact\"\nactoin = \"x\""),
            "rules.toml",
            Some("rule[0].actoin"),
            Some("actoin"),
            "unknown field `actoin`",
        ),
        (
            "unknown when key",
            VALID.to_string(),
            rules("when.caller", "when.callr"),
            "rules.toml",
            Some("rule[0].when.callr"),
            Some("callr"),
            "unknown field `callr`",
        ),
        (
            "bad action",
            VALID.to_string(),
            rules("\"redact\"", "\"scramble\""),
            "rules.toml",
            Some("rule[0].action"),
            Some("scramble"),
            "unknown variant `scramble`",
        ),
        (
            "missing reason",
            VALID.to_string(),
            rules("reason = \"Only the controller sees it.\"", ""),
            "rules.toml",
            Some("rule[0]"),
            Some("[[rule]]"),
            "missing field `reason`",
        ),
        (
            "mask settings on redact",
            VALID.to_string(),
            rules("when.caller", "mask.keep_first = 2\nwhen.caller"),
            "rules.toml",
            Some("rule[0].mask"),
            Some("keep_first"),
            "need `action = \"mask\"`",
        ),
        (
            "duplicate rule id",
            VALID.to_string(),
            format!("{RULES}{}", RULES.replace("id = ", "id  = ")),
            "rules.toml",
            Some("rule[1].id"),
            Some("id  = "),
            "already used",
        ),
        (
            "a credential allowed by name",
            main(
                "upstream = \"shipping\"\nrecords",
                "upstream = \"shipping\"\nallow_headers = [\"X-Api-Key\"]\nrecords",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[0].allow_headers[0]"),
            Some("allow_headers = "),
            "by the gateway itself",
        ),
        (
            "a routing override allowed as a plain header",
            main(
                "upstream = \"shipping\"\nrecords",
                "upstream = \"shipping\"\nallow_headers = [\"x-http-method\"]\nrecords",
            ),
            r.clone(),
            "gateway.toml",
            Some("route[0].allow_headers[0]"),
            Some("allow_headers = "),
            "allow_override_headers",
        ),
        (
            "an unquoted address",
            main("address = \"127.0.0.1:0\"", "address = 127.0.0.1:0"),
            r.clone(),
            "gateway.toml",
            Some("listen.address"),
            Some("address = 127"),
            "invalid",
        ),
        (
            "markup in a category",
            VALID.to_string(),
            rules("\"user.contact.email\"", "\"user.contact<b>x</b>\""),
            "rules.toml",
            Some("rule[0].category"),
            Some("category = "),
            "dotted lower-case",
        ),
        (
            "a category that is not lower-case words",
            VALID.to_string(),
            rules("\"user.contact.email\"", "\"User.Contact\""),
            "rules.toml",
            Some("rule[0].category"),
            Some("category = "),
            "fideslang",
        ),
        (
            "empty purpose list",
            VALID.to_string(),
            rules("when.caller", "when.purpose = []\nwhen.caller"),
            "rules.toml",
            Some("rule[0].when.purpose"),
            Some("purpose = []"),
            "never applies",
        ),
    ]
}

#[test]
fn every_error_names_file_key_line_and_problem() {
    let fixture = Fixture::new();
    for (name, main, rules, file, key, line, message) in cases() {
        let err = match fixture.load(&main, &rules) {
            Ok(_) => panic!("{name}: loaded"),
            Err(err) => err,
        };
        let text = err.to_string();
        assert!(
            err.file.ends_with(file),
            "{name}: file {} in {text}",
            err.file.display()
        );
        assert_eq!(err.key.as_deref(), key, "{name}: {text}");
        let source = if file == "rules.toml" { &rules } else { &main };
        let expected_line = line.map(|needle| {
            let at = source
                .find(needle)
                .unwrap_or_else(|| panic!("{name}: {needle:?} not in the file"));
            source[..at].matches('\n').count() + 1
        });
        assert_eq!(
            err.location.map(|(l, _)| l),
            expected_line,
            "{name}: {text}"
        );
        assert!(text.contains(message), "{name}: `{message}` not in {text}");
        assert!(!text.contains('\n'), "{name}: one line: {text}");
        assert!(text.ends_with('.'), "{name}: a sentence: {text}");
    }
}

#[test]
fn previous_tag_keys_a_pseudonym_key_and_a_previous_webhook_secret_load() {
    let fixture = Fixture::new();
    let keys = |extra: &str| {
        VALID.replace(
            "tag_key_env = \"TAG_KEY\"",
            &format!("tag_key_env = \"TAG_KEY\"\n{extra}"),
        )
    };
    let config = fixture
        .load(&keys("previous_tag_keys_env = [\"OLD_TAG_KEY\"]"), RULES)
        .unwrap();
    assert_eq!(config.previous_tag_keys.len(), 1);
    assert!(config.pseudonym_key.is_none());
    // Without a pseudonym key, pseudonyms follow the tag key; with one, they have their own,
    // and a tag key rotation leaves them as they are.
    let tag_keyed = config.hash_keys();
    let own = fixture
        .load(&keys("pseudonym_key_env = \"PSEUDONYM_KEY\""), RULES)
        .unwrap();
    assert_ne!(
        own.hash_keys().pseudonym("acme", b"x"),
        tag_keyed.pseudonym("acme", b"x")
    );
    let rotated_text =
        keys("pseudonym_key_env = \"PSEUDONYM_KEY\"\nprevious_tag_keys_env = [\"TAG_KEY\"]")
            .replace(
                "tag_key_env = \"TAG_KEY\"\n",
                "tag_key_env = \"OLD_TAG_KEY\"\n",
            );
    let rotated = fixture.load(&rotated_text, RULES).unwrap();
    assert_ne!(rotated.tag_key, own.tag_key);
    assert_eq!(
        rotated.hash_keys().pseudonym("acme", b"x"),
        own.hash_keys().pseudonym("acme", b"x")
    );

    // A previous key equal to the current one, or to another previous one, is refused.
    let error = fixture
        .load(&keys("previous_tag_keys_env = [\"OTHER_TAG_KEY\"]"), RULES)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("keys.previous_tag_keys_env[0]") && error.contains("differ"),
        "{error}"
    );
    let error = fixture
        .load(&keys("previous_tag_keys_env = [\"UNSET\"]"), RULES)
        .unwrap_err()
        .to_string();
    assert!(error.contains("`UNSET` is not set"), "{error}");

    // A webhook secret being replaced: deliveries are signed under both.
    let webhook = VALID.replace(
        "webhook_secret_env = \"ACME_SECRET\"",
        "webhook_secret_env = \"ACME_SECRET\"\nprevious_webhook_secret_env = \"ACME_OLD_SECRET\"",
    );
    assert_ne!(webhook, VALID, "the fixture has a webhook");
    let config = fixture.load(&webhook, RULES).unwrap();
    let hook = config.clients[0].webhook.as_ref().unwrap();
    assert_eq!(hook.previous_key.as_ref().unwrap().expose(), b"old-secret");
}

#[test]
fn secrets_never_reach_debug_output_or_errors() {
    let fixture = Fixture::new();
    let config = fixture.load(VALID, RULES).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("0123456789abcdef0123"));
    assert!(!debug.contains("secret-bytes"));
}

#[test]
fn route_prefixes_are_canonical_and_unreserved() {
    for good in ["/", "/v1/shipments", "/a/b.c/d..e", "/v1/", "/a~b_c-d"] {
        assert!(is_prefix_path(good), "{good}");
    }
    for bad in [
        "",
        "v1",
        "/a/../b",
        "/a/./b",
        "/a/%2E%2e/b",
        "/a%2fb",
        "/a%20b",
        "/a?b",
        "/a#b",
        "/a\\b",
        "/..",
        "/a;b",
        "/a//b",
        "/a:b",
    ] {
        assert!(!is_prefix_path(bad), "{bad}");
    }
}
