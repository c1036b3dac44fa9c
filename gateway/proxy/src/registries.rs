//! What outlives one configuration: the registries a runtime is built from and hands to the
//! next one, so that buckets, quota leases, cached keys, `jti` marks, the event bus and open
//! streams survive a reload. Built once at start (`Registries::new`), borrowed by every build.

use crate::events::EventsSlot;
use crate::metrics::Metrics;
use crate::secrets::{read_secret, BuildError};
use std::sync::Arc;
use varco_auth::{IssuerRegistry, ReplayGuard};
use varco_config::Config;
use varco_events::stream::StreamRegistry;
use varco_traffic::{LimiterRegistry, QuotaRegistry, RedisStore};

/// Why the registries could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Secret(#[from] BuildError),
    #[error("redis: {0}")]
    Redis(String),
    #[error("events: {0}")]
    Events(String),
    #[error("audit: {0}")]
    Audit(String),
}

#[derive(Debug)]
pub struct Registries {
    /// Rate limiters by (ente, scope, definition).
    pub limiters: LimiterRegistry,
    /// Quotas by (ente, scope, definition).
    pub quotas: QuotaRegistry,
    /// The consortium's shared Redis (quotas and the jti guard), when configured.
    pub redis: Option<Arc<RedisStore>>,
    /// Token issuers with their cached keys.
    pub issuers: IssuerRegistry,
    /// `jti`s already used (ModI JWTs, single-use bearer tokens).
    pub replay: ReplayGuard,
    /// The event bus, opened when a configuration first uses it.
    pub events: EventsSlot,
    /// Event-stream routes (open streams, the ACL in force).
    pub streams: StreamRegistry,
    /// Each ente's PDND client with its cached vouchers.
    pub vouchers: varco_outbound::VoucherRegistry,
    /// Signal Hub pullers, started by the configuration in force.
    pub pullers: Arc<varco_adapter_signalhub::PullerRegistry>,
    /// Each ente's SIUSS flows.
    pub siuss: varco_adapter_siuss::Stores,
    /// The audit trail (`server.audit`), opened at start.
    pub audit: Option<Arc<varco_audit::Trail>>,
    /// Citizens' sessions and logins under way: in Redis when configured (any instance serves
    /// them), else in memory; a reload keeps them.
    pub sessions: varco_auth::session::SessionStore,
    /// The OIDC Federation with its verified chains, kept across reloads that do not change it.
    federation: std::sync::Mutex<Option<(varco_config::FederationConfig, Arc<varco_auth::rp::Federation>)>>,
}

impl Registries {
    /// The federation of the configuration in force, if any.
    pub fn federation_in_use(&self) -> Option<Arc<varco_auth::rp::Federation>> {
        self.federation.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().map(|(_, f)| f.clone())
    }

    /// The federation of `cfg`: the one in use when its configuration is unchanged (its chains
    /// stay cached), else a new one.
    pub fn federation(&self, cfg: &varco_config::FederationConfig) -> Result<Arc<varco_auth::rp::Federation>, String> {
        let mut slot = self.federation.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((c, f)) = slot.as_ref() {
            if c == cfg {
                return Ok(f.clone());
            }
        }
        let f = Arc::new(varco_auth::rp::Federation::new(cfg)?);
        *slot = Some((cfg.clone(), f.clone()));
        Ok(f)
    }

    /// The registries for a process starting with `cfg` (reads the Redis password, opens the
    /// event outbox when the configuration uses it).
    pub fn new(cfg: &Config, metrics: &Metrics) -> Result<Self, OpenError> {
        let redis = match &cfg.redis {
            Some(r) => {
                let password = r.password.as_ref().map(|p| read_secret("redis.password", p)).transpose()?;
                Some(Arc::new(RedisStore::new(r, password).map_err(OpenError::Redis)?))
            }
            None => None,
        };
        let events = EventsSlot::new(metrics.registry().clone());
        if crate::events::uses_events(cfg) {
            events.open(&cfg.server.events).map_err(OpenError::Events)?;
        }
        let audit = match &cfg.server.audit {
            Some(a) => {
                let retention_days = cfg
                    .tenants
                    .iter()
                    .filter_map(|t| t.audit_retention_days.or(a.retention_days).map(|d| (t.id.clone(), d)))
                    .collect();
                let trail = varco_audit::Trail::open(varco_audit::TrailConfig {
                    dir: a.dir.clone(),
                    checkpoint_every: a.checkpoint_every.max(1),
                    checkpoint_interval: a.checkpoint_interval.0,
                    sync_interval: a.sync_interval.0,
                    retention_days,
                })
                .map_err(OpenError::Audit)?;
                Some(Arc::new(trail))
            }
            None => None,
        };
        let sessions = match &redis {
            Some(r) => varco_auth::session::SessionStore::Redis(r.clone()),
            None => varco_auth::session::SessionStore::memory(),
        };
        Ok(Self {
            sessions,
            federation: std::sync::Mutex::new(None),
            audit,
            limiters: LimiterRegistry::default(),
            quotas: QuotaRegistry::default(),
            replay: ReplayGuard::new(redis.clone()),
            redis,
            issuers: IssuerRegistry::default(),
            events,
            streams: StreamRegistry::default(),
            vouchers: varco_outbound::VoucherRegistry::default(),
            pullers: Arc::default(),
            siuss: varco_adapter_siuss::Stores::default(),
        })
    }

    /// After a new runtime became the current one: forget what no runtime uses any more.
    pub fn retain_used(&self) {
        self.limiters.retain_used();
        self.quotas.retain_used_and_evict();
    }
}
