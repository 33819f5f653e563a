//! Configuration: the file schema ([`schema`]) validated into the runtime [`Config`].
//!
//! Everything that can be wrong with a config is found here, at load time: unknown keys, bad
//! addresses, unreadable certificates, missing secrets, dangling references between tables, invalid
//! JSONPath. The running gateway never re-checks. Environment lookups go through a function so tests
//! can load configs without touching the process environment.

mod error;
pub mod schema;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Uri;

pub use error::ConfigError;
pub use schema::{
    Action, CallerFilter, ClientKind, DirectionFilter, PathCase, Purpose, RouteAuth, RuleScope,
    StoreBackend, UnderscoreAction, UnknownController,
};

use crate::redact::path::Path as JsonPath;
use crate::target::{self, PathFlaw};
use error::SourceMap;
use schema::{FileConfig, RuleFileDoc};

/// The validated, ready-to-serve configuration.
#[derive(Debug)]
pub struct Config {
    /// The main file it was loaded from; reloads read it again.
    pub source: PathBuf,
    /// The public listener.
    pub listen: Listen,
    /// The operators' listener.
    pub admin: Admin,
    /// Resource limits.
    pub limits: Limits,
    /// HMAC key for tags and `hash` actions.
    pub tag_key: Secret,
    /// Where tags and privacy requests live.
    pub store: Store,
    /// Privacy-request intake and delivery settings.
    pub privacy: Privacy,
    /// Every API caller.
    pub clients: Vec<Arc<Client>>,
    /// Services behind the gateway, by name.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Routes, longest prefix first so the first match is the right one.
    pub routes: Vec<Arc<Route>>,
    /// Things that work but should not reach production (inline secrets, plaintext listener).
    pub warnings: Vec<String>,
}

/// `[listen]`, validated.
#[derive(Debug)]
pub struct Listen {
    /// Address to bind.
    pub address: SocketAddr,
    /// TLS settings, or `None` for the plaintext test mode.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether clients must present a certificate (`client_ca`): the gateway then tells the
    /// upstream who it verified, in `X-Forwarded-Client-Cert`.
    pub client_certs: bool,
    /// What happens to request headers whose name is not letters, digits and `-`.
    pub underscores: UnderscoreAction,
    /// Which hops in front of the gateway may name the client's address.
    pub client_address: ClientAddress,
}

/// Whom the gateway believes about the client's address (the privacy intake's rate limit and
/// `X-Forwarded-For` key on it).
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    /// Rightmost `X-Forwarded-For` entries written by proxies in front of the gateway.
    pub xff_trusted_hops: usize,
    /// Proxies whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Peers that must send a PROXY protocol header, and whose header is believed.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
}

/// Whether `ip` is in any of `ranges`.
pub fn listed(ranges: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    ranges.iter().any(|range| range.contains(&ip))
}

/// `[admin]`, validated.
#[derive(Debug)]
pub struct Admin {
    /// Address to bind.
    pub address: SocketAddr,
    /// Bearer token `/admin/*` requires, if any.
    pub token: Option<Secret>,
}

/// `[limits]` as durations and sizes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest inspected body after decoding.
    pub max_body_bytes: u64,
    /// Time for the TLS handshake and the request head.
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a body.
    pub body_read_timeout: Duration,
    /// Whole request until the response head (and inspected body) is in.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
}

/// A secret value; its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The raw bytes, for keying MACs or comparing tokens.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `[store]`, validated.
#[derive(Debug)]
pub struct Store {
    /// Which backend.
    pub backend: StoreBackend,
    /// SQLite file, resolved against the config file's folder.
    pub path: PathBuf,
    /// PostgreSQL URL, for the `postgres` backend.
    pub url: Option<Secret>,
    /// Tag lifetime after last sight.
    pub retention: Duration,
}

/// `[privacy]`, validated.
#[derive(Debug)]
pub struct Privacy {
    /// Public intake path.
    pub path: String,
    /// Intake requests per client IP per minute.
    pub rate_limit_per_minute: u32,
    /// Attempts before a delivery is dead.
    pub delivery_max_attempts: u32,
    /// Age after which an undelivered request is dead.
    pub delivery_max_age: Duration,
}

/// A caller of the API.
#[derive(Debug)]
pub struct Client {
    /// Stable id (metrics, headers, tag owner); shared so tags can hold it without copying.
    pub id: Arc<str>,
    /// Customer (controller) or internal service.
    pub kind: ClientKind,
    /// Display name for verified requesters.
    pub name: String,
    /// SHA-256 digests of the valid API keys.
    pub key_digests: Vec<[u8; 32]>,
    /// Privacy contact shown to verified requesters.
    pub privacy_contact: Option<String>,
    /// Where privacy requests are POSTed, if anywhere.
    pub webhook: Option<Webhook>,
}

/// A customer's privacy webhook.
#[derive(Debug)]
pub struct Webhook {
    /// Target URL (http or https).
    pub url: Uri,
    /// The decoded bytes of the `whsec_` secret: the HMAC key of signatures.
    pub key: Secret,
}

/// An upstream service.
#[derive(Debug)]
pub struct Upstream {
    /// Name routes refer to; metric label.
    pub name: String,
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port` to connect to.
    pub authority: http::uri::Authority,
    /// Path prepended to forwarded paths (no trailing `/`; may be empty).
    pub base_path: String,
    /// TLS client settings for https upstreams.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Whether it may match paths ignoring case (`path_case = "insensitive"`).
    pub fold_case: bool,
}

/// A route, validated, with its rules compiled.
#[derive(Debug)]
pub struct Route {
    /// Identifier: metric label and log field.
    pub name: String,
    /// Path prefix, matched at a `/` boundary.
    pub path_prefix: String,
    /// Name of the upstream requests go to.
    pub upstream: String,
    /// Whether an API key is required.
    pub auth: RouteAuth,
    /// What callers use the data for.
    pub purpose: Purpose,
    /// Selectors of shipment records.
    pub records: Vec<JsonPath>,
    /// Members identifying a record.
    pub record_keys: Vec<String>,
    /// Member holding the recipient object.
    pub recipient: Option<String>,
    /// Members of the recipient that identify the person.
    pub recipient_identifiers: Vec<String>,
    /// Member naming the controlling client id.
    pub controller_member: Option<String>,
    /// Treatment of records with unknown controller.
    pub unknown_controller: UnknownController,
    /// Rules of every listed file, in file order.
    pub rules: Vec<Arc<Rule>>,
    /// Lower-cased `type/subtype` media types passed uninspected.
    pub passthrough_content_types: Vec<String>,
    /// The rules compiled per direction and caller relation for this route's purpose.
    pub plan: crate::redact::Plan,
    /// Whether `;` path parameters are accepted.
    pub path_parameters: bool,
    /// Routing-override headers forwarded on this route (lower-case names).
    pub allowed_overrides: Vec<http::HeaderName>,
    /// Whether its upstream may fold case, so case variants of paths are judged.
    pub fold_case: bool,
    /// `path_prefix` case-folded, for judging what a case-insensitive upstream reads.
    pub folded_prefix: String,
}

impl Route {
    /// A route with records or rules has its bodies inspected; others stream untouched.
    pub fn inspected(&self) -> bool {
        !self.records.is_empty() || !self.rules.is_empty()
    }

    /// Whether `path` falls under this route's prefix at a segment boundary.
    pub fn matches(&self, path: &str) -> bool {
        under(&self.path_prefix, path)
    }

    /// Whether a case-folded `path` falls under this route's prefix, folded.
    fn matches_folded(&self, path: &str) -> bool {
        under(&self.folded_prefix, path)
    }
}

fn under(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// A redaction rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id; metric label.
    pub id: String,
    /// The rule file it came from (for reports).
    pub file: PathBuf,
    /// Compiled path.
    pub path: JsonPath,
    /// What happens to matches.
    pub action: Action,
    /// Characters kept by `mask`: (first, last).
    pub mask: (usize, usize),
    /// Data category.
    pub category: String,
    /// Why the rule exists.
    pub reason: String,
    /// Record- or body-relative.
    pub scope: RuleScope,
    /// Direction filter.
    pub direction: DirectionFilter,
    /// Caller-relation filter.
    pub caller: CallerFilter,
    /// Purposes the rule applies to (every purpose when not configured).
    pub purposes: Vec<Purpose>,
}

impl Rule {
    /// A record-scoped rule that applies in every situation (both directions, any caller, every
    /// purpose); its public fields narrow it. For tools and tests that build rules in code.
    pub fn new(id: &str, path: &str, action: Action) -> Result<Rule, String> {
        Ok(Rule {
            id: id.to_string(),
            file: PathBuf::from("(in code)"),
            path: JsonPath::compile(path)?,
            action,
            mask: (0, 0),
            category: "user".to_string(),
            reason: format!("rule `{id}` built in code"),
            scope: RuleScope::Record,
            direction: DirectionFilter::Both,
            caller: CallerFilter::Any,
            purposes: Purpose::ALL.to_vec(),
        })
    }
}

impl Config {
    /// Loads and validates `path`, reading secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// Loads and validates `path`, reading secrets through `env`.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read the file: {e}")))?;
        Config::from_toml(path, &text, env)
    }

    /// Validates TOML text as if it were the file at `path` (relative paths resolve beside it).
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let source = SourceMap::new(path, text);
        let file: FileConfig = parse(&source, text)?;
        Loader {
            base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            source: &source,
            env,
            warnings: Vec::new(),
        }
        .load(file)
    }

    /// The client with this id.
    pub fn client(&self, id: &str) -> Option<&Arc<Client>> {
        self.clients.iter().find(|c| &*c.id == id)
    }

    /// Points the upstream `name` at another `scheme://host:port` (the demo's sample API binds a
    /// free port). Returns false when there is no such upstream or the URL is not http(s).
    pub fn set_upstream_url(&mut self, name: &str, url: &str) -> bool {
        let Ok(uri) = url.parse::<Uri>() else {
            return false;
        };
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return false;
        };
        let Some(upstream) = self.upstreams.iter_mut().find(|u| u.name == name) else {
            return false;
        };
        *upstream = Arc::new(Upstream {
            name: upstream.name.clone(),
            tls: if scheme == http::uri::Scheme::HTTPS {
                upstream.tls.clone()
            } else {
                None
            },
            scheme,
            authority,
            base_path: upstream.base_path.clone(),
            fold_case: upstream.fold_case,
        });
        true
    }

    /// The route for a request path: the longest matching prefix.
    pub fn route_for(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(path))
    }

    /// The route a request path takes, after checking that the path is canonical and that
    /// every lenient reading of it ([`target::lenient_readings`]) takes the same route, so the
    /// upstream serves what the gateway judged. `None`: no route (nothing is forwarded).
    pub fn judge(&self, path: &str) -> Result<Option<&Arc<Route>>, PathFlaw> {
        let route = self.route_for(path);
        let decoded = target::check(path, route.is_some_and(|r| r.path_parameters))?;
        let Some(route) = route else {
            return Ok(None);
        };
        // Folding matters only when the path or some prefix has a letter that folds.
        let fold = route.fold_case
            && (decoded
                .bytes()
                .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
                || self.routes.iter().any(|r| r.folded_prefix != r.path_prefix));
        for reading in target::lenient_readings(&decoded, fold) {
            let other = if reading.folded {
                self.routes.iter().find(|r| r.matches_folded(&reading.path))
            } else {
                self.route_for(&reading.path)
            };
            if !other.is_some_and(|other| Arc::ptr_eq(other, route)) {
                return Err(PathFlaw::Variant);
            }
        }
        Ok(Some(route))
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    source: &SourceMap<'_>,
    text: &str,
) -> Result<T, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| source.syntax_error(&e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| source.deserialize_error(e))
}

/// Validation state: where relative paths resolve, how secrets are found, what to warn about.
struct Loader<'a> {
    base: PathBuf,
    source: &'a SourceMap<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Loader<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.source.error(key, message)
    }

    fn resolve(&self, relative: &str) -> PathBuf {
        self.base.join(relative)
    }

    fn address(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            self.err(
                key,
                format!("`{value}` is not an `ip:port` socket address (e.g. 127.0.0.1:8443)"),
            )
        })
    }

    /// A secret from `<name>_env` or, with a warning, inline. `required` makes absence an error.
    fn secret(
        &mut self,
        key: &str,
        env_name: Option<&str>,
        inline: Option<&str>,
        required: bool,
    ) -> Result<Option<String>, ConfigError> {
        match (env_name, inline) {
            (Some(_), Some(_)) => Err(self.err(
                key,
                format!("set either `{key}_env` or the inline `{key}`, not both"),
            )),
            (Some(var), None) => match (self.env)(var) {
                Some(value) if !value.is_empty() => Ok(Some(value)),
                _ => Err(self.err(
                    &format!("{key}_env"),
                    format!("environment variable `{var}` is not set or empty"),
                )),
            },
            (None, Some(value)) => {
                self.warnings.push(format!(
                    "`{key}` is an inline secret; use `{key}_env` outside development"
                ));
                Ok(Some(value.to_string()))
            }
            (None, None) if required => Err(self.err(
                key,
                format!("`{key}_env` (or, for development, an inline `{key}`) is required"),
            )),
            (None, None) => Ok(None),
        }
    }

    fn load(mut self, file: FileConfig) -> Result<Config, ConfigError> {
        let listen = self.listen(&file.listen)?;
        let admin_token = self.secret(
            "admin.token",
            file.admin.token_env.as_deref(),
            file.admin.token.as_deref(),
            false,
        )?;
        let admin = Admin {
            address: self.address("admin.address", &file.admin.address)?,
            token: admin_token.map(|t| Secret(t.into_bytes())),
        };
        let limits = self.limits(&file.limits)?;
        let tag_key = self
            .secret(
                "keys.tag_key",
                file.keys.tag_key_env.as_deref(),
                file.keys.tag_key.as_deref(),
                true,
            )?
            .unwrap_or_default();
        if tag_key.len() < 16 {
            return Err(self.err("keys.tag_key", "the tag key must be at least 16 bytes long"));
        }
        let store = self.store(&file.store)?;
        let privacy = self.privacy(&file.privacy)?;
        let clients = self.clients(&file.clients)?;
        let upstreams = self.upstreams(&file.upstreams)?;
        let routes = self.routes(&file.routes, &upstreams, &privacy)?;
        Ok(Config {
            source: self.source.file().to_path_buf(),
            listen,
            admin,
            limits,
            tag_key: Secret(tag_key.into_bytes()),
            store,
            privacy,
            clients,
            upstreams,
            routes,
            warnings: self.warnings,
        })
    }

    fn listen(&mut self, file: &schema::ListenFile) -> Result<Listen, ConfigError> {
        let address = self.address("listen.address", &file.address)?;
        if file.xff_trusted_hops > 0 && !file.trusted_proxies.is_empty() {
            return Err(self.err(
                "listen.trusted_proxies",
                "set either `xff_trusted_hops` or `trusted_proxies`, not both",
            ));
        }
        let client_address = ClientAddress {
            xff_trusted_hops: file.xff_trusted_hops as usize,
            trusted_proxies: self.ranges("listen.trusted_proxies", &file.trusted_proxies)?,
            proxy_protocol_from: self
                .ranges("listen.proxy_protocol_from", &file.proxy_protocol_from)?,
        };
        if !file.tls {
            self.warnings.push(
                "`listen.tls = false` serves plaintext HTTP; use it for local tests only".into(),
            );
            if file.client_ca.is_some() {
                return Err(self.err("listen.client_ca", "client certificates need TLS"));
            }
            return Ok(Listen {
                address,
                tls: None,
                client_certs: false,
                underscores: file.headers_with_underscores,
                client_address,
            });
        }
        let cert = file
            .tls_cert
            .as_deref()
            .ok_or_else(|| self.err("listen.tls_cert", "required unless `tls = false`"))?;
        let key = file
            .tls_key
            .as_deref()
            .ok_or_else(|| self.err("listen.tls_key", "required unless `tls = false`"))?;
        let client_ca = file.client_ca.as_deref().map(|p| self.resolve(p));
        let tls = crate::tls::server_config(
            &self.resolve(cert),
            &self.resolve(key),
            client_ca.as_deref(),
        )
        .map_err(|e| self.err("listen.tls_cert", e.to_string()))?;
        Ok(Listen {
            address,
            tls: Some(tls),
            client_certs: client_ca.is_some(),
            underscores: file.headers_with_underscores,
            client_address,
        })
    }

    /// Addresses and CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
    fn ranges(&self, key: &str, values: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                value
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        self.err(
                            &format!("{key}[{i}]"),
                            format!("`{value}` is not an IP address or CIDR range"),
                        )
                    })
            })
            .collect()
    }

    fn limits(&self, file: &schema::LimitsFile) -> Result<Limits, ConfigError> {
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(self.err(&format!("limits.{key}"), "must be greater than 0"))
            } else {
                Ok(value)
            }
        };
        let ms = |key: &str, value: u64| positive(key, value).map(Duration::from_millis);
        if file.max_header_bytes < 8192 {
            return Err(self.err(
                "limits.max_header_bytes",
                "must be at least 8192 (the smallest HTTP/1 read buffer)",
            ));
        }
        Ok(Limits {
            max_body_bytes: positive("max_body_bytes", file.max_body_bytes)?,
            header_read_timeout: ms("header_read_timeout_ms", file.header_read_timeout_ms)?,
            body_read_timeout: ms("body_read_timeout_ms", file.body_read_timeout_ms)?,
            request_timeout: ms("request_timeout_ms", file.request_timeout_ms)?,
            max_connections: positive("max_connections", file.max_connections.into())? as usize,
            max_header_bytes: file.max_header_bytes as usize,
            h2_max_concurrent_streams: positive(
                "h2_max_concurrent_streams",
                file.h2_max_concurrent_streams.into(),
            )? as u32,
        })
    }

    fn store(&mut self, file: &schema::StoreFile) -> Result<Store, ConfigError> {
        let url = self.secret(
            "store.url",
            file.url_env.as_deref(),
            file.url.as_deref(),
            file.backend == StoreBackend::Postgres,
        )?;
        if url.is_some() && file.backend != StoreBackend::Postgres {
            return Err(self.err("store.url_env", "only the `postgres` backend takes a URL"));
        }
        if file.retention_days == 0 {
            return Err(self.err("store.retention_days", "must be at least 1"));
        }
        Ok(Store {
            backend: file.backend,
            path: self.resolve(&file.path),
            url: url.map(|u| Secret(u.into_bytes())),
            retention: Duration::from_secs(u64::from(file.retention_days) * 86_400),
        })
    }

    fn privacy(&self, file: &schema::PrivacyFile) -> Result<Privacy, ConfigError> {
        if !is_prefix_path(&file.path) {
            return Err(self.err(
                "privacy.path",
                "must be a canonical absolute path of letters, digits, `-._~` and `/`",
            ));
        }
        for (key, value) in [
            ("rate_limit_per_minute", file.rate_limit_per_minute),
            ("delivery_max_attempts", file.delivery_max_attempts),
            ("delivery_max_age_hours", file.delivery_max_age_hours),
        ] {
            if value == 0 {
                return Err(self.err(&format!("privacy.{key}"), "must be greater than 0"));
            }
        }
        Ok(Privacy {
            path: file.path.trim_end_matches('/').to_string(),
            rate_limit_per_minute: file.rate_limit_per_minute,
            delivery_max_attempts: file.delivery_max_attempts,
            delivery_max_age: Duration::from_secs(u64::from(file.delivery_max_age_hours) * 3600),
        })
    }

    fn clients(&mut self, files: &[schema::ClientFile]) -> Result<Vec<Arc<Client>>, ConfigError> {
        let mut ids = HashSet::new();
        let mut digests: HashMap<[u8; 32], String> = HashMap::new();
        let mut clients = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let key = |k: &str| format!("client[{i}].{k}");
            if !is_identifier(&file.id) {
                return Err(self.err(
                    &key("id"),
                    format!(
                        "`{}` is not an id: use 1-64 of a-z, 0-9, `_`, `-`, `.`",
                        file.id
                    ),
                ));
            }
            if !ids.insert(file.id.clone()) {
                return Err(self.err(
                    &key("id"),
                    format!("client id `{}` is defined twice", file.id),
                ));
            }
            if file.api_key_sha256.is_empty() {
                return Err(self.err(
                    &key("api_key_sha256"),
                    "at least one key digest is required",
                ));
            }
            let mut key_digests = Vec::new();
            for (j, hex_digest) in file.api_key_sha256.iter().enumerate() {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| {
                    self.err(
                        &format!("client[{i}].api_key_sha256[{j}]"),
                        "must be 64 hexadecimal digits (the SHA-256 of the key, never the key)",
                    )
                })?;
                if let Some(other) = digests.insert(digest, file.id.clone()) {
                    return Err(self.err(
                        &format!("client[{i}].api_key_sha256[{j}]"),
                        format!("this key digest is already given to client `{other}`"),
                    ));
                }
                key_digests.push(digest);
            }
            let secret = self.secret(
                &key("webhook_secret"),
                file.webhook_secret_env.as_deref(),
                file.webhook_secret.as_deref(),
                false,
            )?;
            let webhook = match (&file.webhook_url, secret) {
                (Some(url), Some(secret)) => Some(Webhook {
                    url: self.http_url(&key("webhook_url"), url)?,
                    key: self.webhook_key(&key("webhook_secret"), &secret)?,
                }),
                (Some(_), None) => {
                    return Err(self.err(
                        &key("webhook_secret_env"),
                        "a webhook needs a signing secret (`webhook_secret_env`)",
                    ));
                }
                (None, Some(_)) => {
                    return Err(self.err(
                        &key("webhook_url"),
                        "a webhook secret is set but no `webhook_url`",
                    ));
                }
                (None, None) => None,
            };
            clients.push(Arc::new(Client {
                id: Arc::from(file.id.as_str()),
                kind: file.kind,
                name: file.name.clone(),
                key_digests,
                privacy_contact: file.privacy_contact.clone(),
                webhook,
            }));
        }
        Ok(clients)
    }

    fn webhook_key(&self, key: &str, secret: &str) -> Result<Secret, ConfigError> {
        secret
            .strip_prefix("whsec_")
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .filter(|bytes| !bytes.is_empty())
            .map(Secret)
            .ok_or_else(|| {
                self.err(
                    key,
                    "a webhook secret must be `whsec_` followed by base64 (Standard Webhooks)",
                )
            })
    }

    fn http_url(&self, key: &str, value: &str) -> Result<Uri, ConfigError> {
        let uri: Uri = value
            .parse()
            .map_err(|_| self.err(key, format!("`{value}` is not a URL")))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(_)) => Ok(uri),
            _ => Err(self.err(
                key,
                format!("`{value}` must be an http:// or https:// URL with a host"),
            )),
        }
    }

    fn upstreams(&self, files: &[schema::UpstreamFile]) -> Result<Vec<Arc<Upstream>>, ConfigError> {
        let mut names = HashSet::new();
        let mut upstreams = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let key = |k: &str| format!("upstream[{i}].{k}");
            if !is_identifier(&file.name) {
                return Err(self.err(
                    &key("name"),
                    format!(
                        "`{}` is not a name: use 1-64 of a-z, 0-9, `_`, `-`, `.`",
                        file.name
                    ),
                ));
            }
            if !names.insert(file.name.clone()) {
                return Err(self.err(
                    &key("name"),
                    format!("upstream `{}` is defined twice", file.name),
                ));
            }
            let uri = self.http_url(&key("url"), &file.url)?;
            if uri.query().is_some() {
                return Err(self.err(&key("url"), "an upstream URL cannot have a query"));
            }
            let https = uri.scheme_str() == Some("https");
            if file.ca_file.is_some() && !https {
                return Err(self.err(&key("ca_file"), "`ca_file` only applies to https upstreams"));
            }
            let tls = if https {
                let ca = file.ca_file.as_deref().map(|p| self.resolve(p));
                Some(
                    crate::tls::client_config(ca.as_deref())
                        .map_err(|e| self.err(&key("ca_file"), e.to_string()))?,
                )
            } else {
                None
            };
            let parts = uri.into_parts();
            upstreams.push(Arc::new(Upstream {
                name: file.name.clone(),
                scheme: parts.scheme.expect("checked above"),
                authority: parts.authority.expect("checked above"),
                base_path: parts
                    .path_and_query
                    .map(|p| p.path().trim_end_matches('/').to_string())
                    .unwrap_or_default(),
                tls,
                fold_case: file.path_case == PathCase::Insensitive,
            }));
        }
        Ok(upstreams)
    }

    fn routes(
        &self,
        files: &[schema::RouteFile],
        upstreams: &[Arc<Upstream>],
        privacy: &Privacy,
    ) -> Result<Vec<Arc<Route>>, ConfigError> {
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut rule_ids: HashMap<String, PathBuf> = HashMap::new();
        let mut loaded_files: HashMap<PathBuf, Vec<Arc<Rule>>> = HashMap::new();
        let mut routes = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            if !is_identifier(&file.name) {
                return Err(self.err(
                    &key("name"),
                    format!(
                        "`{}` is not a name: use 1-64 of a-z, 0-9, `_`, `-`, `.`",
                        file.name
                    ),
                ));
            }
            if !names.insert(file.name.clone()) {
                return Err(self.err(
                    &key("name"),
                    format!("route `{}` is defined twice", file.name),
                ));
            }
            if !is_prefix_path(&file.path_prefix) {
                return Err(self.err(
                    &key("path_prefix"),
                    "must be a canonical absolute path of letters, digits, `-._~` and `/` (no \
                     query, escapes, empty, `.` or `..` segments)",
                ));
            }
            let prefix = if file.path_prefix == "/" {
                "/".to_string()
            } else {
                file.path_prefix.trim_end_matches('/').to_string()
            };
            if !prefixes.insert(prefix.clone()) {
                return Err(self.err(
                    &key("path_prefix"),
                    format!("prefix `{prefix}` is used by another route"),
                ));
            }
            if prefix == privacy.path {
                return Err(self.err(
                    &key("path_prefix"),
                    format!("prefix `{prefix}` is the privacy intake path (`privacy.path`)"),
                ));
            }
            let Some(upstream) = upstreams.iter().find(|u| u.name == file.upstream) else {
                return Err({
                    let known: Vec<_> = upstreams.iter().map(|u| u.name.as_str()).collect();
                    self.err(
                        &key("upstream"),
                        format!(
                            "unknown upstream `{}` (defined: {})",
                            file.upstream,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )
                });
            };
            let mut allowed_overrides = Vec::new();
            for (j, name) in file.allow_override_headers.iter().enumerate() {
                let name = name.to_ascii_lowercase();
                match ROUTING_OVERRIDES.iter().find(|known| **known == name) {
                    Some(known) => allowed_overrides.push(http::HeaderName::from_static(known)),
                    None => {
                        return Err(self.err(
                            &format!("route[{i}].allow_override_headers[{j}]"),
                            format!(
                                "`{name}` is not a routing-override header (known: {})",
                                ROUTING_OVERRIDES.join(", ")
                            ),
                        ));
                    }
                }
            }
            let records = file
                .records
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    JsonPath::compile(p)
                        .map_err(|e| self.err(&format!("route[{i}].records[{j}]"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for (k, name) in [
                ("recipient", &file.recipient),
                ("controller_member", &file.controller_member),
            ] {
                if name.as_deref() == Some("") {
                    return Err(self.err(&key(k), "must not be empty"));
                }
            }
            if !file.recipient_identifiers.is_empty() && file.recipient.is_none() {
                return Err(self.err(
                    &key("recipient_identifiers"),
                    "needs `recipient` (the member holding the recipient object)",
                ));
            }
            if records.is_empty()
                && (file.recipient.is_some()
                    || !file.record_keys.is_empty()
                    || file.controller_member.is_some())
            {
                return Err(self.err(
                    &key("records"),
                    "record settings are given but no `records` selector",
                ));
            }
            let mut rules = Vec::new();
            for (j, rel) in file.rules.iter().enumerate() {
                let path = self.resolve(rel);
                if let Some(loaded) = loaded_files.get(&path) {
                    rules.extend(loaded.iter().cloned());
                    continue;
                }
                let loaded =
                    self.rule_file(&path, &format!("route[{i}].rules[{j}]"), &mut rule_ids)?;
                rules.extend(loaded.iter().cloned());
                loaded_files.insert(path, loaded);
            }
            let record_rule = rules.iter().find(|r| r.scope == RuleScope::Record);
            if let (true, Some(rule)) = (records.is_empty(), record_rule) {
                return Err(self.err(
                    &key("rules"),
                    format!(
                        "rule `{}` is relative to records but the route has no `records`; add `records` or give the rule `scope = \"body\"`",
                        rule.id
                    ),
                ));
            }
            let mut passthrough = Vec::new();
            for (j, media) in file.passthrough_content_types.iter().enumerate() {
                let media = media.trim().to_ascii_lowercase();
                let valid = media
                    .split_once('/')
                    .is_some_and(|(t, s)| is_token(t) && is_token(s));
                if !valid || media.contains(';') {
                    return Err(self.err(
                        &format!("route[{i}].passthrough_content_types[{j}]"),
                        format!("`{media}` is not a `type/subtype` media type"),
                    ));
                }
                if is_json_media(&media) {
                    return Err(self.err(
                        &format!("route[{i}].passthrough_content_types[{j}]"),
                        "JSON media types are always inspected and cannot be passed through",
                    ));
                }
                passthrough.push(media);
            }
            let plan =
                crate::redact::Plan::new(&records, file.recipient.as_deref(), &rules, file.purpose);
            routes.push(Arc::new(Route {
                name: file.name.clone(),
                folded_prefix: target::fold(&prefix),
                path_prefix: prefix,
                path_parameters: file.path_parameters,
                allowed_overrides,
                fold_case: upstream.fold_case,
                upstream: file.upstream.clone(),
                auth: file.auth,
                purpose: file.purpose,
                records,
                record_keys: file.record_keys.clone(),
                recipient: file.recipient.clone(),
                recipient_identifiers: file.recipient_identifiers.clone(),
                controller_member: file.controller_member.clone(),
                unknown_controller: file.unknown_controller,
                plan,
                rules,
                passthrough_content_types: passthrough,
            }));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        Ok(routes)
    }

    fn rule_file(
        &self,
        path: &Path,
        key: &str,
        ids: &mut HashMap<String, PathBuf>,
    ) -> Result<Vec<Arc<Rule>>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.err(
                key,
                format!("cannot read rule file {}: {e}", path.display()),
            )
        })?;
        let source = SourceMap::new(path, &text);
        let doc: RuleFileDoc = parse(&source, &text)?;
        let mut rules = Vec::with_capacity(doc.rules.len());
        for (i, rule) in doc.rules.into_iter().enumerate() {
            let key = |k: &str| format!("rule[{i}].{k}");
            if rule.id.is_empty()
                || !rule
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(source.error(
                    &key("id"),
                    format!(
                        "`{}` is not a rule id: use letters, digits, `_`, `-`, `.`",
                        rule.id
                    ),
                ));
            }
            if let Some(other) = ids.insert(rule.id.clone(), path.to_path_buf()) {
                return Err(source.error(
                    &key("id"),
                    format!(
                        "rule id `{}` is already used in {}",
                        rule.id,
                        other.display()
                    ),
                ));
            }
            let compiled = JsonPath::compile(&rule.path)
                .map_err(|e| source.error(&key("path"), format!("rule `{}`: {e}", rule.id)))?;
            for (k, v) in [("category", &rule.category), ("reason", &rule.reason)] {
                if v.trim().is_empty() {
                    return Err(source.error(
                        &key(k),
                        format!("rule `{}` needs a non-empty `{k}`", rule.id),
                    ));
                }
            }
            let mask = match (rule.action, rule.mask) {
                (Action::Mask, Some(m)) => (m.keep_first, m.keep_last),
                (Action::Mask, None) => (0, 0),
                (_, Some(_)) => {
                    return Err(source.error(
                        &key("mask"),
                        format!(
                            "rule `{}`: `mask` settings need `action = \"mask\"`",
                            rule.id
                        ),
                    ));
                }
                (_, None) => (0, 0),
            };
            let purposes = match rule.when.purpose {
                Some(list) if list.is_empty() => {
                    return Err(source.error(&key("when.purpose"), format!("rule `{}`: an empty purpose list never applies; leave it out for every purpose", rule.id)));
                }
                Some(list) => list,
                None => Purpose::ALL.to_vec(),
            };
            rules.push(Arc::new(Rule {
                id: rule.id,
                file: path.to_path_buf(),
                path: compiled,
                action: rule.action,
                mask,
                category: rule.category,
                reason: rule.reason,
                scope: rule.scope,
                direction: rule.when.direction,
                caller: rule.when.caller,
                purposes,
            }));
        }
        Ok(rules)
    }
}

/// Lower-case ids safe as metric labels and header values.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

/// `application/json` and `application/*+json`, given a lower-cased `type/subtype`.
pub fn is_json_media(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Headers some stacks let override the method or the URL they route by (Rails, Symfony, IIS,
/// Express method-override): removed from requests unless a route allows them.
pub const ROUTING_OVERRIDES: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// A route prefix: canonical, and only unreserved characters and `/`, so a path matches it the
/// same whether its reader percent-decodes first or not.
fn is_prefix_path(path: &str) -> bool {
    target::check(path, false).is_ok()
        && path.bytes().all(|b| b == b'/' || target::is_unreserved(b))
}

#[cfg(test)]
mod tests;
