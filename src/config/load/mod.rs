//! Loading: TOML text to a validated [`Config`]. Every check a running gateway relies on happens
//! here, once; each error names the file, the key, and the line and column where known.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Uri;

mod routes;
mod rules;

use super::error::SourceMap;
use super::schema::{self, FileConfig};
use super::*;
use crate::target;

/// Most serving threads `[runtime] workers` may ask for.
const MAX_WORKERS: usize = 256;
/// Longest `privacy.platform_name` (characters): a name, shown in a heading.
const MAX_PLATFORM_NAME: usize = 100;
/// Longest `privacy.page_text` (characters): a short paragraph, not a policy.
const MAX_PAGE_TEXT: usize = 1000;

/// Validates TOML text as if it were the file at `path`; secrets are read through `env`.
pub(super) fn from_toml(
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
        if !admin.address.ip().is_loopback() && admin.token.is_none() {
            self.warnings.push(format!(
                "`admin.address` is {}, reachable from other hosts, and no `admin.token_env` is \
                 set: anyone who reaches the port can `POST /admin/reload` and read \
                 `/admin/privacy/unmatched`; set a token or listen on loopback",
                admin.address
            ));
        }
        let limits = self.limits(&file.limits)?;
        let runtime = self.runtime(&file.runtime)?;
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
        let mut previous_tag_keys: Vec<Secret> = Vec::new();
        for (i, var) in file.keys.previous_tag_keys_env.iter().enumerate() {
            let key = format!("keys.previous_tag_keys_env[{i}]");
            let value = match (self.env)(var) {
                Some(value) if !value.is_empty() => value,
                _ => {
                    return Err(self.err(
                        &key,
                        format!("environment variable `{var}` is not set or empty"),
                    ));
                }
            };
            if value.len() < 16 {
                return Err(self.err(&key, "a previous tag key must be at least 16 bytes long"));
            }
            if value == tag_key
                || previous_tag_keys
                    .iter()
                    .any(|p| p.expose() == value.as_bytes())
            {
                return Err(self.err(
                    &key,
                    "a previous tag key must differ from the current one and from the others",
                ));
            }
            previous_tag_keys.push(Secret(value.into_bytes()));
        }
        let pseudonym_key = self.secret(
            "keys.pseudonym_key",
            file.keys.pseudonym_key_env.as_deref(),
            file.keys.pseudonym_key.as_deref(),
            false,
        )?;
        if pseudonym_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(self.err(
                "keys.pseudonym_key",
                "the pseudonym key must be at least 16 bytes long",
            ));
        }
        let store = self.store(&file.store)?;
        let privacy = self.privacy(&file.privacy)?;
        let clients = self.clients(&file.clients)?;
        let upstreams = self.upstreams(&file.upstreams)?;
        let routes = self.routes(&file.routes, &upstreams, &privacy, listen.forward_headers)?;
        Ok(Config {
            source: self.source.file().to_path_buf(),
            listen,
            admin,
            limits,
            runtime,
            tag_key: Secret(tag_key.into_bytes()),
            previous_tag_keys,
            pseudonym_key: pseudonym_key.map(|k| Secret(k.into_bytes())),
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
                forward_headers: file.forward_headers,
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
            forward_headers: file.forward_headers,
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

    fn runtime(&self, file: &schema::RuntimeFile) -> Result<Runtime, ConfigError> {
        let workers = match file.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n if n <= MAX_WORKERS => n,
            _ => {
                return Err(self.err(
                    "runtime.workers",
                    format!("at most {MAX_WORKERS} serving threads"),
                ));
            }
        };
        Ok(Runtime { workers })
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
            idle_timeout: ms("idle_timeout_ms", file.idle_timeout_ms)?,
        })
    }

    fn store(&mut self, file: &schema::StoreFile) -> Result<StoreSettings, ConfigError> {
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
        if file.cache_entries < 1_000 {
            return Err(self.err("store.cache_entries", "must be at least 1000"));
        }
        if file.backend != StoreBackend::Postgres && (file.tls.is_some() || file.ca_file.is_some())
        {
            return Err(self.err(
                "store.tls",
                "only the `postgres` backend takes TLS settings",
            ));
        }
        let postgres_tls = match &url {
            Some(url) => self.postgres_tls(file, url)?,
            None => None,
        };
        Ok(StoreSettings {
            backend: file.backend,
            path: self.resolve(&file.path),
            url: url.map(|u| Secret(u.into_bytes())),
            retention: Duration::from_secs(u64::from(file.retention_days) * 86_400),
            cache_entries: file.cache_entries,
            postgres_tls,
        })
    }

    /// The TLS settings of the PostgreSQL connection. Plaintext is the default only where the
    /// traffic never leaves the machine (loopback, a Unix socket); elsewhere it is `verify-full`,
    /// and choosing `disable` is warned about.
    fn postgres_tls(
        &mut self,
        file: &schema::StoreFile,
        url: &str,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
        use tokio_postgres::config::{Host, SslMode};
        let parsed: tokio_postgres::Config = url
            .parse()
            .map_err(|e| self.err("store.url", format!("not a PostgreSQL URL: {e}")))?;
        if parsed.get_ssl_mode() != SslMode::Prefer {
            return Err(self.err(
                "store.url",
                "set `[store] tls` instead of `sslmode` in the URL",
            ));
        }
        let local = parsed.get_hosts().iter().all(|host| match host {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        });
        let mode = file.tls.unwrap_or(if local {
            schema::PgTlsMode::Disable
        } else {
            schema::PgTlsMode::VerifyFull
        });
        if file.ca_file.is_some() && mode != schema::PgTlsMode::VerifyFull {
            return Err(self.err("store.ca_file", "only applies with `tls = \"verify-full\"`"));
        }
        match mode {
            schema::PgTlsMode::Disable => {
                if !local {
                    self.warnings.push(
                        "`store.tls = \"disable\"`: tags and privacy requests awaiting delivery \
                         (recipients' e-mail addresses) travel to PostgreSQL in plaintext"
                            .into(),
                    );
                }
                Ok(None)
            }
            schema::PgTlsMode::Require => crate::tls::client_config_without_verification()
                .map(Some)
                .map_err(|e| self.err("store.tls", e.to_string())),
            schema::PgTlsMode::VerifyFull => {
                let ca = file.ca_file.as_deref().map(|p| self.resolve(p));
                crate::tls::client_config(ca.as_deref())
                    .map(Some)
                    .map_err(|e| self.err("store.ca_file", e.to_string()))
            }
        }
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
            ("unmatched_days", file.unmatched_days),
        ] {
            if value == 0 {
                return Err(self.err(&format!("privacy.{key}"), "must be greater than 0"));
            }
        }
        let platform_name = file.platform_name.trim();
        if platform_name.is_empty() || platform_name.chars().count() > MAX_PLATFORM_NAME {
            return Err(self.err(
                "privacy.platform_name",
                format!("must be 1 to {MAX_PLATFORM_NAME} characters"),
            ));
        }
        if file
            .page_text
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_PAGE_TEXT)
        {
            return Err(self.err(
                "privacy.page_text",
                format!("must be at most {MAX_PAGE_TEXT} characters"),
            ));
        }
        Ok(Privacy {
            page: PageSettings {
                platform_name: platform_name.to_string(),
                text: file
                    .page_text
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            },
            path: file.path.trim_end_matches('/').to_string(),
            rate_limit_per_minute: file.rate_limit_per_minute,
            delivery_max_attempts: file.delivery_max_attempts,
            delivery_max_age: Duration::from_secs(u64::from(file.delivery_max_age_hours) * 3600),
            unmatched_window: Duration::from_secs(u64::from(file.unmatched_days) * 86_400),
        })
    }

    /// Checks that `value` (at `key`) is an identifier safe as a metric label and header value,
    /// and the first of its table to use it: client ids, upstream names and route names alike.
    fn unique_identifier(
        &self,
        seen: &mut HashSet<String>,
        key: &str,
        value: &str,
        noun: &str,
        table: &str,
    ) -> Result<(), ConfigError> {
        if !is_identifier(value) {
            return Err(self.err(
                key,
                format!("`{value}` is not {noun}: use 1-64 of a-z, 0-9, `_`, `-`, `.`"),
            ));
        }
        if !seen.insert(value.to_string()) {
            return Err(self.err(key, format!("{table} `{value}` is defined twice")));
        }
        Ok(())
    }

    fn clients(&mut self, files: &[schema::ClientFile]) -> Result<Vec<Arc<Client>>, ConfigError> {
        let mut ids = HashSet::new();
        let mut digests: HashMap<[u8; 32], String> = HashMap::new();
        let mut clients = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let key = |k: &str| format!("client[{i}].{k}");
            self.unique_identifier(&mut ids, &key("id"), &file.id, "an id", "client id")?;
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
                (Some(url), Some(secret)) => {
                    let url = self.http_url(&key("webhook_url"), url)?;
                    let tls = match &file.webhook_ca_file {
                        Some(_) if url.scheme_str() != Some("https") => {
                            return Err(self.err(
                                &key("webhook_ca_file"),
                                "`webhook_ca_file` only applies to an https `webhook_url`",
                            ));
                        }
                        Some(path) => Some(
                            crate::tls::client_config(Some(&self.resolve(path)))
                                .map_err(|e| self.err(&key("webhook_ca_file"), e.to_string()))?,
                        ),
                        None => None,
                    };
                    let previous_key = match &file.previous_webhook_secret_env {
                        Some(var) => {
                            let name = key("previous_webhook_secret_env");
                            let Some(previous) = (self.env)(var).filter(|v| !v.is_empty()) else {
                                return Err(self.err(
                                    &name,
                                    format!("environment variable `{var}` is not set or empty"),
                                ));
                            };
                            Some(self.webhook_key(&name, &previous)?)
                        }
                        None => None,
                    };
                    Some(Webhook {
                        url,
                        key: self.webhook_key(&key("webhook_secret"), &secret)?,
                        previous_key,
                        tls,
                    })
                }
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
                (None, None) if file.previous_webhook_secret_env.is_some() => {
                    return Err(self.err(
                        &key("previous_webhook_secret_env"),
                        "a previous webhook secret needs a `webhook_url` and a current secret",
                    ));
                }
                (None, None) => None,
            };
            clients.push(Arc::new(Client {
                id: Arc::from(file.id.as_str()),
                index: clients.len(),
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
            self.unique_identifier(&mut names, &key("name"), &file.name, "a name", "upstream")?;
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
}

/// Lower-case ids safe as metric labels and header values.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
}

/// An RFC 9110 token (a media type's type or subtype).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

/// A route prefix: canonical, and only unreserved characters and `/`, so a path matches it the
/// same whether its reader percent-decodes first or not.
pub(super) fn is_prefix_path(path: &str) -> bool {
    target::check(path, false).is_ok()
        && path.bytes().all(|b| b == b'/' || target::is_unreserved(b))
}
