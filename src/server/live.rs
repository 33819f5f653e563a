//! Hot reload: the config generation new requests and connections use, swapped atomically.
//!
//! A generation is a config with the request handler and the connection settings built from
//! it. It sits in one [`ArcSwap`], so a reload replaces all three in one store: no request or
//! connection can see the new config with the old handler or certificates.
//!
//! A reload (SIGHUP or `POST /admin/reload`) reads and validates the whole config file again,
//! exactly as at start. Only a config that loads without error, and changes nothing that needs a
//! restart, replaces the current one; otherwise the error is logged, counted and returned, and the
//! old config keeps serving. A request holds the generation it started on until it is answered,
//! so in-flight requests finish on their config; a connection keeps the TLS settings it was
//! accepted with, and new connections get the new certificates.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Acceptor;
use crate::admin::metrics;
use crate::config::{Config, ConfigError, CurrentConfig};
use crate::privacy::Desk;
use crate::proxy::{CurrentGateway, Gateway};
use crate::tags::Tags;

/// Why a reload was refused (the old config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new config changes settings only a restart can apply.
    #[error("the new config changes {0}, which only a restart can apply; nothing was reloaded")]
    RestartRequired(String),
    /// A new tag key without the old one among the previous keys: every tag would be lost.
    #[error(
        "the new config changes `keys.tag_key` without keeping the old key in \
         `keys.previous_tag_keys_env`, which would leave every record without its controller; \
         nothing was reloaded"
    )]
    TagKeyDropped,
}

/// A config and what is built from it, replaced together.
struct Generation {
    /// The config new requests see (the delivery worker and store upkeep read it too).
    config: Arc<Config>,
    /// The request handler new requests use, one per serving thread: each has its own upstream
    /// pools, whose connections live on that thread.
    gateways: Vec<Arc<Gateway>>,
    /// TLS and HTTP settings new connections get.
    acceptor: Arc<Acceptor>,
}

impl Generation {
    fn new(config: Arc<Config>, tags: &Arc<Tags>, desk: &Arc<Desk>) -> Generation {
        super::series::register(&config);
        Generation {
            gateways: (0..config.runtime.workers)
                .map(|_| Arc::new(Gateway::new(config.clone(), tags.clone(), desk.clone())))
                .collect(),
            acceptor: Arc::new(Acceptor::for_config(&config)),
            config,
        }
    }
}

/// The current generation, and what a reload needs to build the next.
pub struct Live {
    /// The generation in force: one atomic cell.
    current: Arc<ArcSwap<Generation>>,
    /// Tags and privacy requests outlive generations.
    tags: Arc<Tags>,
    desk: Arc<Desk>,
    /// One reload at a time: two triggers at once must not interleave their swaps.
    reloading: tokio::sync::Mutex<()>,
}

impl Live {
    /// The first generation.
    pub(super) fn new(config: Arc<Config>, tags: Arc<Tags>, desk: Arc<Desk>) -> Live {
        Live {
            current: Arc::new(ArcSwap::from_pointee(Generation::new(config, &tags, &desk))),
            tags,
            desk,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// The current config, for workers that outlive reloads.
    pub fn current_config(&self) -> CurrentConfig {
        let current = self.current.clone();
        Arc::new(move || current.load().config.clone())
    }

    /// The current request handler of serving thread `worker`, for connections that outlive
    /// reloads.
    pub fn current_gateway(&self, worker: usize) -> CurrentGateway {
        let current = self.current.clone();
        Arc::new(move || current.load().gateways[worker].clone())
    }

    /// The connection settings for a connection accepted now.
    pub(super) fn acceptor(&self) -> Arc<Acceptor> {
        self.current.load().acceptor.clone()
    }

    /// Reads the config file again and swaps it in if valid; logs and counts the outcome.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.try_reload().await;
        let outcome = match &result {
            Ok(()) => {
                tracing::info!(msg = "config reloaded", config = %self.config().source.display());
                "ok"
            }
            Err(error) => {
                tracing::error!(msg = "config reload rejected; the old config keeps serving", error = %error);
                "error"
            }
        };
        ::metrics::counter!(metrics::CONFIG_RELOADS, "outcome" => outcome).increment(1);
        result
    }

    async fn try_reload(&self) -> Result<(), ReloadError> {
        let old = self.config();
        let source = old.source.clone();
        let new = tokio::task::spawn_blocking(move || Config::load(&source))
            .await
            .map_err(|e| {
                ConfigError::file(&old.source, format!("the reload task failed: {e}"))
            })??;
        let changed = restart_only_changes(&old, &new);
        if !changed.is_empty() {
            return Err(ReloadError::RestartRequired(changed.join(", ")));
        }
        if !keeps_tag_keys(&old, &new) {
            return Err(ReloadError::TagKeyDropped);
        }
        self.tags.rotate(super::tag_keys(&new));
        for warning in &new.warnings {
            tracing::warn!(msg = "config warning", warning = %warning);
        }
        let next = Generation::new(Arc::new(new), &self.tags, &self.desk);
        self.current.store(Arc::new(next));
        Ok(())
    }
}

/// Keys whose new values a running gateway cannot take: bound sockets, the open store, the
/// connection semaphore. (The tag key can rotate: [`keeps_tag_keys`].)
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen.address != new.listen.address {
        changed.push("listen.address");
    }
    if old.admin.address != new.admin.address {
        changed.push("admin.address");
    }
    if old.store.backend != new.store.backend
        || old.store.path != new.store.path
        || old.store.url != new.store.url
        || old.store.cache_entries != new.store.cache_entries
    {
        changed.push("store");
    }
    if old.limits.max_connections != new.limits.max_connections {
        changed.push("limits.max_connections");
    }
    if old.runtime != new.runtime {
        changed.push("runtime.workers");
    }
    changed
}

/// Whether `new` keeps the tags `old` wrote reachable: the same current tag key, or the old one
/// among the new previous keys (a rotation). Previous keys may come and go.
fn keeps_tag_keys(old: &Config, new: &Config) -> bool {
    old.tag_key == new.tag_key || new.previous_tag_keys.contains(&old.tag_key)
}

impl crate::admin::Control for Live {
    fn admin_token(&self) -> Option<crate::config::Secret> {
        self.config().admin.token.clone()
    }

    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { Live::reload(self).await.map_err(|e| e.to_string()) })
    }

    fn unmatched(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>
    {
        Box::pin(async move {
            match self.desk.unmatched_report(UNMATCHED_LISTED).await {
                Ok(report) => Ok(report.to_string()),
                Err(error) => {
                    tracing::error!(msg = "unmatched privacy requests unreadable", error = %error);
                    Err("The store did not answer; try again.".to_string())
                }
            }
        })
    }
}

/// Most unmatched requests `GET /admin/privacy/unmatched` lists (the counts cover them all).
const UNMATCHED_LISTED: u32 = 1_000;
