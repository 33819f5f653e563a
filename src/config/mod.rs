//! Configuration: the file schema ([`schema`]) validated into the runtime [`Config`].
//!
//! Everything that can be wrong with a config is found here, at load time: unknown keys, bad
//! addresses, unreadable certificates, missing secrets, dangling references between tables, invalid
//! JSONPath. The running gateway never re-checks. Environment lookups go through a function so tests
//! can load configs without touching the process environment.

pub mod dev_env;
mod error;
mod load;
mod record;
pub mod schema;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

pub use error::ConfigError;
pub use schema::{
    ClientKind, ForwardHeaders, PathCase, RouteAuth, StoreBackend, UnderscoreAction,
    UnknownController,
};

use crate::redact::path::Path as JsonPath;
use crate::redact::{HashKeys, Purpose, Rule};
use crate::target::{self, PathFlaw};

/// The config in force now, for workers that outlive a reload (webhook delivery, store upkeep):
/// each call returns the current generation's config.
pub type CurrentConfig = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;

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
    /// Serving threads.
    pub runtime: Runtime,
    /// HMAC key of record and recipient tags (and of `hash` pseudonyms without a
    /// `pseudonym_key`).
    pub tag_key: Secret,
    /// Earlier tag keys, newest first: tags under them are still found, and written again under
    /// `tag_key` when seen.
    pub previous_tag_keys: Vec<Secret>,
    /// HMAC key of `hash` pseudonyms, when apart from the tag key.
    pub pseudonym_key: Option<Secret>,
    /// Where tags and privacy requests live.
    pub store: StoreSettings,
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
    /// Which request headers reach the upstream on routes that do not say.
    pub forward_headers: ForwardHeaders,
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
    /// Longest time a client connection stays open with nothing in flight.
    pub idle_timeout: Duration,
}

/// `[runtime]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// Serving threads (`0` in the file resolved to the number of cores).
    pub workers: usize,
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
pub struct StoreSettings {
    /// Which backend.
    pub backend: StoreBackend,
    /// SQLite file, resolved against the config file's folder.
    pub path: PathBuf,
    /// PostgreSQL URL, for the `postgres` backend.
    pub url: Option<Secret>,
    /// Tag lifetime after last sight.
    pub retention: Duration,
    /// Most entries per tag cache table.
    pub cache_entries: usize,
    /// TLS for PostgreSQL: `None` for plaintext; with `require`, a config that accepts any
    /// certificate.
    pub postgres_tls: Option<Arc<rustls::ClientConfig>>,
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
    /// How long a request with no controller yet is matched again before it is reported.
    pub unmatched_window: Duration,
    /// What the recipient page says about the platform.
    pub page: PageSettings,
}

/// What the platform configures about its page (`[privacy] platform_name`, `page_text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSettings {
    /// The platform's name, as recipients know it from the parcel or the tracking e-mail.
    pub platform_name: String,
    /// An optional paragraph shown under the introduction (opening hours, another contact).
    pub text: Option<String>,
}

/// A caller of the API.
#[derive(Debug)]
pub struct Client {
    /// Stable id (metrics, headers, tag owner); shared so tags can hold it without copying.
    pub id: Arc<str>,
    /// Position in [`Config::clients`]: what per-caller metric handles are indexed by.
    pub index: usize,
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
    /// The secret being replaced, during a rotation: deliveries are signed under both.
    pub previous_key: Option<Secret>,
    /// TLS for an https receiver behind a private CA (`webhook_ca_file`); `None`: the system's
    /// web roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// An upstream service.
#[derive(Debug, Clone)]
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

/// Entries per tag cache table unless `[store] cache_entries` says otherwise.
pub const DEFAULT_TAG_CACHE_ENTRIES: usize = 1_000_000;

impl Upstream {
    /// The host to connect to (an IPv6 literal without its brackets) and the port, 80 or 443
    /// unless the URL names one.
    pub fn host_and_port(&self) -> (&str, u16) {
        let default = if self.scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        };
        let host = self.authority.host();
        (
            host.trim_start_matches('[').trim_end_matches(']'),
            self.authority.port_u16().unwrap_or(default),
        )
    }
}

/// A route, validated, with its rules compiled.
#[derive(Debug)]
pub struct Route {
    /// Identifier: metric label and log field.
    pub name: String,
    /// Position in [`Config::routes`]: what a serving thread's per-route state (its metric
    /// handles) is indexed by, so a request finds it without a lookup.
    pub index: usize,
    /// Position of its upstream in [`Config::upstreams`]: the connection pool a request takes,
    /// resolved once when the config is loaded instead of by name per request.
    pub upstream_index: usize,
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
    /// Which request headers reach the upstream.
    pub forward_headers: ForwardHeaders,
    /// Headers forwarded although screening would remove them, and besides RFC 9110's when
    /// `forward_headers` is `listed`.
    pub allowed_headers: Vec<http::HeaderName>,
    /// Whether its upstream may fold case, so case variants of paths are judged.
    pub fold_case: bool,
    /// Whether HTTP/1.1 upgrades are tunnelled (only on routes with nothing to inspect).
    pub allow_upgrade: bool,
    /// `path_prefix` case-folded, for judging what a case-insensitive upstream reads.
    pub folded_prefix: String,
}

impl Route {
    /// `client` as the rule engine sees it on this route: its customer id, if it is a customer,
    /// and whether an unknown controller counts as the caller here.
    pub fn caller<'a>(&self, client: Option<&'a Client>) -> crate::redact::Caller<'a> {
        crate::redact::Caller {
            customer: client
                .filter(|c| c.kind == ClientKind::Customer)
                .map(|c| &*c.id),
            unknown_is_caller: self.unknown_controller == UnknownController::Caller,
        }
    }

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

impl Config {
    /// Loads and validates `path`, reading secrets from the process environment, and for
    /// variables it does not set from a `dev.env` beside the file ([`dev_env`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let dev = dev_env::DevEnv::beside(path);
        Config::load_with_env(path, &|name| dev.lookup(name))
    }

    /// Loads and validates `path`, reading secrets through `env`.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            // A command run outside a checkout meets the relative default first: say where a
            // relative path is read from, and how to name another file.
            let hint = match e.kind() == std::io::ErrorKind::NotFound && path.is_relative() {
                true => match std::env::current_dir() {
                    Ok(dir) => format!(
                        " (a relative path is read from {}; `--config` or GATEWAY_CONFIG names \
                         another file)",
                        dir.display()
                    ),
                    Err(_) => " (`--config` or GATEWAY_CONFIG names another file)".to_string(),
                },
                false => String::new(),
            };
            ConfigError::file(path, format!("cannot read the file: {e}{hint}"))
        })?;
        Config::from_toml(path, &text, env)
    }

    /// Validates TOML text as if it were the file at `path` (relative paths resolve beside it).
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        load::from_toml(path, text, env)
    }

    /// The `hash` action's keys, one per customer (the only clients that can be controllers).
    pub fn hash_keys(&self) -> HashKeys {
        HashKeys::derive(
            self.pseudonym_key
                .as_ref()
                .unwrap_or(&self.tag_key)
                .expose(),
            self.clients
                .iter()
                .filter(|c| c.kind == ClientKind::Customer)
                .map(|c| &*c.id),
        )
    }

    /// The client with this id.
    pub fn client(&self, id: &str) -> Option<&Arc<Client>> {
        self.clients.iter().find(|c| &*c.id == id)
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

/// Request headers the gateway sets, removes or reads itself: credentials, framing, hop-by-hop
/// headers and the forwarding headers it writes. No route can `allow_headers` them; with
/// `forward_headers = "listed"` they still reach the stages that handle them.
pub const GATEWAY_HEADERS: [&str; 18] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-client-cert",
];

/// Headers some stacks let override the method or the URL they route by (Rails, Symfony, IIS,
/// Express method-override): removed from requests unless a route allows them.
pub const ROUTING_OVERRIDES: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

#[cfg(test)]
mod tests;
