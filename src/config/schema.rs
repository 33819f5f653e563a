//! The configuration file as written by operators: plain serde structs, one per TOML table.
//!
//! These doc comments are the configuration reference. Every struct denies unknown keys so a typo is
//! an error at load time instead of a silently ignored setting. Validation (addresses, references
//! between tables, secrets, rule compilation) happens in [`super::Config::load`], never here.

use serde::Deserialize;

use crate::redact::{Action, CallerFilter, DirectionFilter, Purpose, RuleScope};

/// The main file (`config/gateway.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The public listener that carries customer traffic.
    pub listen: ListenFile,
    /// The operators' listener: metrics, health, reload.
    #[serde(default)]
    pub admin: AdminFile,
    /// Resource limits; every key has a production default.
    #[serde(default)]
    pub limits: LimitsFile,
    /// How many serving threads run; every key has a default.
    #[serde(default)]
    pub runtime: RuntimeFile,
    /// Where the HMAC key for tags and `hash` actions comes from.
    pub keys: KeysFile,
    /// Where tags and privacy requests are kept.
    #[serde(default)]
    pub store: StoreFile,
    /// The public privacy-request intake.
    #[serde(default)]
    pub privacy: PrivacyFile,
    /// `[[client]]`: every API caller, customer or internal service.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientFile>,
    /// `[[upstream]]`: the services behind the gateway.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamFile>,
    /// `[[route]]`: path prefixes mapped to upstreams, with their inspection settings.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteFile>,
}

/// `[listen]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// `ip:port` to bind, e.g. `127.0.0.1:8443`; port 0 picks a free port.
    pub address: String,
    /// PEM certificate chain (leaf first). Required unless `tls = false`.
    pub tls_cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Required unless `tls = false`.
    pub tls_key: Option<String>,
    /// PEM CA bundle; when set, every client must present a certificate it signed.
    pub client_ca: Option<String>,
    /// `false` serves plaintext HTTP/1.1 and h2c: for local tests only (logs a warning).
    #[serde(default = "default_true")]
    pub tls: bool,
    /// Request headers whose name has a character other than letters, digits and `-` (such as
    /// `_`, which CGI, WSGI and PHP fold into `-`): `drop` (default), `refuse` (400) or `allow`.
    /// A header that folds into a credential or gateway-owned name is dropped even with `allow`.
    #[serde(default)]
    pub headers_with_underscores: UnderscoreAction,
    /// Which request headers reach the upstream on routes that do not say: `screened` (default;
    /// every header but those screened out) or `listed` (only the end-to-end headers of RFC 9110
    /// that APIs use, the gateway's own, and the route's `allow_headers`).
    #[serde(default)]
    pub forward_headers: ForwardHeaders,
    /// Proxies in front of the gateway that append to `X-Forwarded-For` (Envoy's
    /// `xff_num_trusted_hops`): that many rightmost entries are kept and the leftmost of them is
    /// the client address. 0 (default): the gateway is the edge and only the peer address counts.
    #[serde(default)]
    pub xff_trusted_hops: u32,
    /// Addresses or CIDR ranges of proxies whose `X-Forwarded-For` entries are trusted (nginx's
    /// `set_real_ip_from` with `real_ip_recursive`): from the right, entries are kept while the
    /// hop that added them is listed; the first unlisted one is the client address.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Addresses or CIDR ranges (L4 load balancers) that must open every connection with a
    /// PROXY protocol header (v1 or v2); its source address is then the client's. Connections
    /// from anywhere else are served as sent and a PROXY header from them is never honoured.
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

/// Which request headers reach the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardHeaders {
    /// Every header except those screened out: names that fold, routing overrides, `Proxy`, and
    /// every header whose name says it carries the client's address, the original host, scheme,
    /// port, path or URL, another method, or a client certificate.
    #[default]
    Screened,
    /// Default-deny: only the end-to-end request headers of RFC 9110 that APIs use, the
    /// gateway's own, and the route's `allow_headers`.
    Listed,
}

impl ForwardHeaders {
    /// The name used in config files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardHeaders::Screened => "screened",
            ForwardHeaders::Listed => "listed",
        }
    }
}

/// What happens to a request header whose name is not letters, digits and `-`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreAction {
    /// Removed before forwarding and counted (Envoy's `DROP_HEADER`).
    #[default]
    Drop,
    /// The request is refused with 400 `invalid_header` (Envoy's `REJECT_REQUEST`).
    Refuse,
    /// Forwarded (Envoy's default `ALLOW`), except names that fold into a protected one.
    Allow,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// `ip:port` for `/metrics`, `/healthz`, `/readyz` and `/admin/*`.
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// Environment variable holding the bearer token that `/admin/*` requires.
    pub token_env: Option<String>,
    /// Inline admin token: development only (`check` warns).
    pub token: Option<String>,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            address: default_admin_address(),
            token_env: None,
            token: None,
        }
    }
}

/// `[runtime]`: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeFile {
    /// Serving threads, each with its own listener socket (`SO_REUSEPORT`), event loop and
    /// upstream connection pools, as nginx's workers. `0` (default): one per CPU core.
    pub workers: usize,
}

/// `[limits]`: every key optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Largest inspected body, request or response, after decoding.
    pub max_body_bytes: u64,
    /// Time a client has to send its request head (and to finish the TLS handshake).
    pub header_read_timeout_ms: u64,
    /// Longest pause between two pieces of a body, in either direction.
    pub body_read_timeout_ms: u64,
    /// Whole request until the upstream's response head (and, when inspected, its body) is in.
    pub request_timeout_ms: u64,
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: u32,
    /// Largest request head (request line and headers).
    pub max_header_bytes: u32,
    /// HTTP/2 streams a single connection may have open.
    pub h2_max_concurrent_streams: u32,
    /// A client connection with no request in flight for this long is closed, on HTTP/2 as on
    /// HTTP/1.1 (keep-alive pings do not count). Its first request must come within
    /// `header_read_timeout_ms`.
    pub idle_timeout_ms: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            request_timeout_ms: 30_000,
            max_connections: 10_000,
            max_header_bytes: 65_536,
            h2_max_concurrent_streams: 100,
            idle_timeout_ms: 60_000,
        }
    }
}

/// `[keys]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Environment variable holding the tag key (at least 16 bytes).
    pub tag_key_env: Option<String>,
    /// Inline tag key: development only (`check` warns).
    pub tag_key: Option<String>,
    /// Environment variables holding earlier tag keys, newest first, still honoured after a
    /// rotation: lookups try the current key, then each of these, and a tag found under one is
    /// written again under the current key. Keep a key here for the tag retention period.
    #[serde(default)]
    pub previous_tag_keys_env: Vec<String>,
    /// Environment variable holding the key of `hash` pseudonyms (at least 16 bytes); the tag
    /// key when not set. Apart from the tag key, rotating the tag key leaves pseudonyms as they
    /// are.
    pub pseudonym_key_env: Option<String>,
    /// Inline pseudonym key: development only (`check` warns).
    pub pseudonym_key: Option<String>,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `memory`, `sqlite` or `postgres`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// SQLite database file.
    #[serde(default = "default_store_path")]
    pub path: String,
    /// Environment variable holding the PostgreSQL URL.
    pub url_env: Option<String>,
    /// Inline PostgreSQL URL: development only (`check` warns).
    pub url: Option<String>,
    /// Days after last sight that a tag is deleted.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Encryption of the PostgreSQL connection: `disable`, `require` (encrypted, the server's
    /// certificate not checked) or `verify-full` (encrypted, the certificate checked against
    /// `ca_file` or the system's web roots, and the URL's host name against it). Default:
    /// `verify-full`, or `disable` when the URL names a loopback address or a Unix socket.
    pub tls: Option<PgTlsMode>,
    /// PEM CA bundle that signed the PostgreSQL server's certificate (`verify-full`).
    pub ca_file: Option<String>,
    /// Most entries in each of the two tag cache tables (records, recipients), which bounds the
    /// cache's memory: about 200 bytes per record entry and 120 per recipient entry. Evicted
    /// entries are read from the store again when needed.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            backend: StoreBackend::default(),
            path: default_store_path(),
            url_env: None,
            url: None,
            retention_days: default_retention_days(),
            cache_entries: default_cache_entries(),
            tls: None,
            ca_file: None,
        }
    }
}

fn default_cache_entries() -> usize {
    super::DEFAULT_TAG_CACHE_ENTRIES
}

/// How the PostgreSQL connection is encrypted (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PgTlsMode {
    /// Plaintext.
    #[serde(rename = "disable")]
    Disable,
    /// Encrypted; the server's certificate is not verified.
    #[serde(rename = "require")]
    Require,
    /// Encrypted; the certificate chain and the host name are verified.
    #[serde(rename = "verify-full")]
    VerifyFull,
}

/// The tag and outbox store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In process; lost on exit. For tests.
    Memory,
    /// One embedded file: a single gateway.
    #[default]
    Sqlite,
    /// Shared by several gateway replicas.
    Postgres,
}

/// `[privacy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyFile {
    /// Public intake path on the main listener.
    pub path: String,
    /// Intake requests per client IP per minute.
    pub rate_limit_per_minute: u32,
    /// Webhook attempts before a delivery is dead.
    pub delivery_max_attempts: u32,
    /// Age after which an undelivered request is dead.
    pub delivery_max_age_hours: u32,
    /// How long a request no controller is found for is kept and matched again (every import,
    /// every new recipient tag, and every minute) before its fields are deleted and it is
    /// reported to the platform: 30 days, the legal answer window.
    pub unmatched_days: u32,
    /// The platform's name on the recipient page, as recipients know it from their parcels.
    pub platform_name: String,
    /// An optional short paragraph under the recipient page's introduction (plain text).
    pub page_text: Option<String>,
}

impl Default for PrivacyFile {
    fn default() -> Self {
        PrivacyFile {
            path: "/privacy/requests".into(),
            rate_limit_per_minute: 20,
            delivery_max_attempts: 20,
            delivery_max_age_hours: 72,
            unmatched_days: 30,
            platform_name: "This shipping platform".into(),
            page_text: None,
        }
    }
}

/// `[[client]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Stable identifier: metric label, `X-Gateway-Client`, tag owner.
    pub id: String,
    /// `customer` (a controller) or `internal` (a platform service, never a controller).
    pub kind: ClientKind,
    /// Display name shown to verified privacy requesters.
    pub name: String,
    /// Hex SHA-256 of each valid API key; the keys themselves never appear in config.
    pub api_key_sha256: Vec<String>,
    /// Where recipients' privacy questions go; shown to verified requesters.
    pub privacy_contact: Option<String>,
    /// Webhook receiving this customer's privacy requests.
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook secret (`whsec_` + base64).
    pub webhook_secret_env: Option<String>,
    /// Inline webhook secret: development only (`check` warns).
    pub webhook_secret: Option<String>,
    /// Environment variable holding the secret being replaced (`whsec_…`), during a rotation:
    /// every delivery then carries a signature under each secret, so the receiver may switch to
    /// the new one whenever it likes.
    pub previous_webhook_secret_env: Option<String>,
    /// PEM CA bundle that signed an https webhook receiver's certificate, for receivers behind a
    /// private CA (the system's web roots otherwise).
    pub webhook_ca_file: Option<String>,
}

/// What a client is to the data flowing through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// A merchant: controller of the recipient data it sends.
    Customer,
    /// A platform service (analytics, support tooling): never a controller.
    Internal,
}

/// `[[upstream]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// Name that routes refer to; metric label.
    pub name: String,
    /// `http://host:port[/base]` or `https://…`; a base path is prepended to forwarded paths.
    pub url: String,
    /// PEM CA bundle for an https upstream instead of the built-in web roots.
    pub ca_file: Option<String>,
    /// How this upstream matches paths: `insensitive` (default: assume it may fold case, as
    /// ASP.NET, Express and many Java routers do) or `sensitive`. With `insensitive`, a request
    /// whose case-folded path would take another route than the path as sent is refused.
    #[serde(default)]
    pub path_case: PathCase,
}

/// Whether an upstream tells `/V1/Shipments` from `/v1/shipments`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathCase {
    /// It may treat them as one path.
    #[default]
    Insensitive,
    /// It matches paths byte for byte.
    Sensitive,
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Identifier: metric label and log field.
    pub name: String,
    /// Requests whose path starts with this (at a `/` boundary) take this route; longest wins.
    pub path_prefix: String,
    /// Name of the `[[upstream]]` to forward to.
    pub upstream: String,
    /// `client` (API key required) or `none`.
    #[serde(default)]
    pub auth: RouteAuth,
    /// What the callers of this route use the data for; rules select on it.
    #[serde(default)]
    pub purpose: Purpose,
    /// JSONPath selectors of shipment records in bodies.
    #[serde(default)]
    pub records: Vec<String>,
    /// Members of a record that identify it (tagged to its controller).
    #[serde(default)]
    pub record_keys: Vec<String>,
    /// Member of a record that holds the recipient object.
    pub recipient: Option<String>,
    /// Members of the recipient object that identify the person.
    #[serde(default)]
    pub recipient_identifiers: Vec<String>,
    /// Member of a record naming the controlling client id.
    pub controller_member: Option<String>,
    /// How a record whose controller is unknown is treated.
    #[serde(default)]
    pub unknown_controller: UnknownController,
    /// Rule files, relative to the main config file.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Media types passed uninspected on purpose (e.g. `application/pdf` labels).
    #[serde(default)]
    pub passthrough_content_types: Vec<String>,
    /// Accept `;` path parameters (matrix parameters) on this route. Off by default: servlet
    /// containers drop them before routing, so `/public/..;/private` reaches `/private`. When on,
    /// the path without its parameters must still be canonical and take this route.
    #[serde(default)]
    pub path_parameters: bool,
    /// Routing-override headers this route forwards (`x-http-method-override`,
    /// `x-http-method`, `x-method-override`, `x-original-url`, `x-rewrite-url`); all others are
    /// removed. An allowed URL override must itself be a canonical path that takes this route.
    #[serde(default)]
    pub allow_override_headers: Vec<String>,
    /// Which request headers reach this route's upstream (`[listen] forward_headers` when not
    /// set): `screened` or `listed`.
    pub forward_headers: Option<ForwardHeaders>,
    /// Request headers forwarded on this route although screening would remove them (a header
    /// the upstream needs whose name reads like a forwarding header), and, with `forward_headers
    /// = "listed"`, the headers forwarded besides RFC 9110's. Not the gateway's own or
    /// credentials, framing and routing-override headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Tunnel HTTP/1.1 upgrades (WebSocket) to the upstream on this route, after the usual
    /// authentication and header handling. Only on routes with nothing to inspect (no `records`,
    /// no `rules`): a tunnel's bytes are never inspected.
    #[serde(default)]
    pub allow_upgrade: bool,
}

/// Whether a route requires an API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    /// A valid API key is required.
    #[default]
    Client,
    /// Anyone may call; a key, if sent, must still be valid.
    None,
}

impl RouteAuth {
    /// The name used in config files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteAuth::Client => "client",
            RouteAuth::None => "none",
        }
    }
}

/// Treatment of records whose controller cannot be determined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownController {
    /// The caller is not the controller: non-controller rules apply (fail closed).
    #[default]
    NotController,
    /// The caller is treated as the controller.
    Caller,
}

impl UnknownController {
    /// The name used in config files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownController::NotController => "not_controller",
            UnknownController::Caller => "caller",
        }
    }
}

/// A rule file: `[[rule]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFileDoc {
    /// The rules, applied together in one pass.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleFile>,
}

/// `[[rule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Unique across the whole config; metric label.
    pub id: String,
    /// RFC 9535 JSONPath, relative to each record (or to the body with `scope = "body"`).
    pub path: String,
    /// What happens to matched values.
    pub action: Action,
    /// Data category (fideslang-style) for reports.
    pub category: String,
    /// Why the rule exists, in words a reviewer can check.
    pub reason: String,
    /// Whether `path` starts at each record (default) or at the body root.
    #[serde(default)]
    pub scope: RuleScope,
    /// Conditions under which the rule applies.
    #[serde(default)]
    pub when: WhenFile,
    /// Settings of the `mask` action.
    pub mask: Option<MaskFile>,
}

/// `when.*` of a rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenFile {
    /// `request`, `response` or `both` (default).
    #[serde(default)]
    pub direction: DirectionFilter,
    /// `any` (default), `controller` or `not_controller`.
    #[serde(default)]
    pub caller: CallerFilter,
    /// Route purposes the rule applies to; default every purpose.
    pub purpose: Option<Vec<Purpose>>,
}

/// `mask.*` of a rule.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskFile {
    /// Characters kept at the start.
    #[serde(default)]
    pub keep_first: usize,
    /// Characters kept at the end.
    #[serde(default)]
    pub keep_last: usize,
}

fn default_true() -> bool {
    true
}

fn default_admin_address() -> String {
    "127.0.0.1:9901".into()
}

fn default_store_path() -> String {
    "../data/gateway.db".into()
}

fn default_retention_days() -> u32 {
    30
}
