//! The base config every test starts from, the clients' keys, the shipped rules, and edits that
//! must find what they replace.

use std::net::SocketAddr;

/// API keys of the test clients (their digests are in [`base_config`]).
pub const KEY_ACME: &str = "key-acme";

pub const KEY_GLOBEX: &str = "key-globex";

pub const KEY_ANALYTICS: &str = "key-analytics";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The shared part of every test config: TLS listener on port 0, three clients, and the
/// `[[upstream]]`s `mock` (at `upstream`) and `down` (a port nothing listens on).
pub fn base_config(upstream: SocketAddr, down: SocketAddr) -> String {
    format!(
        r#"
[listen]
address = "127.0.0.1:0"
tls_cert = "certs/localhost.crt"
tls_key = "certs/localhost.key"

[admin]
address = "127.0.0.1:0"

[limits]
header_read_timeout_ms = 1000
body_read_timeout_ms = 1000
request_timeout_ms = 1500

[keys]
tag_key = "test-tag-key-0123456789abcdef"

[store]
backend = "memory"

[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["{acme}"]

[[client]]
id = "globex"
kind = "customer"
name = "Globex"
api_key_sha256 = ["{globex}"]

[[client]]
id = "analytics"
kind = "internal"
name = "Analytics"
api_key_sha256 = ["{analytics}"]

[[upstream]]
name = "mock"
url = "http://{upstream}"

[[upstream]]
name = "down"
url = "http://{down}"
"#,
        acme = sha256_hex(KEY_ACME),
        globex = sha256_hex(KEY_GLOBEX),
        analytics = sha256_hex(KEY_ANALYTICS),
    )
}

/// The shipped rule files.
pub const SHIPPED_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules");

/// The demo API as upstream `sample` and an inspected `shipments` route in front of it; `extra`
/// adds route keys (rules, controller member).
pub fn shipments_route(sample: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "sample"
url = "http://{sample}"

[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "sample"
records = ["$", "$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
{extra}
"#
    )
}

/// Plain (streamed) routes used by the proxy-core tests.
pub const PLAIN_ROUTES: &str = r#"
[[route]]
name = "api"
path_prefix = "/api"
upstream = "mock"

[[route]]
name = "api-public"
path_prefix = "/api/public"
upstream = "mock"
auth = "none"

[[route]]
name = "broken"
path_prefix = "/broken"
upstream = "down"
"#;

/// Config text edited by tests. `str::replace` silently does nothing when the text it looks for
/// has changed; an edit must find what it replaces, so a test cannot quietly run on the base
/// config instead of its variant.
pub trait Edit {
    /// `self` with every `from` replaced by `to`; panics when there is no `from`.
    fn edit(&self, from: &str, to: &str) -> String;
}

impl Edit for str {
    fn edit(&self, from: &str, to: &str) -> String {
        assert!(
            self.contains(from),
            "the config text has no `{from}` to replace:\n{self}"
        );
        self.replace(from, to)
    }
}

/// An address nothing listens on.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A `whsec_` secret for test receivers.
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC1ieXRlcw==";

/// `base` with acme's privacy contact and a webhook at `hook` (signed with
/// [`WEBHOOK_SECRET`]), and globex's privacy contact (no webhook: its inbox only).
pub fn with_privacy_contacts(base: &str, hook: SocketAddr) -> String {
    let edited = base
        .edit(
            "name = \"Acme\"\n",
            &format!(
                "name = \"Acme\"\nprivacy_contact = \"privacy@acme.example\"\n\
                 webhook_url = \"http://{hook}/hooks/privacy\"\n\
                 webhook_secret = \"{WEBHOOK_SECRET}\"\n"
            ),
        )
        .edit(
            "name = \"Globex\"\n",
            "name = \"Globex\"\nprivacy_contact = \"dpo@globex.example\"\n",
        );
    assert_eq!(edited.matches("privacy_contact").count(), 2, "{edited}");
    edited
}
