//! The event bus inside the gateway: opened once when a configuration first uses it (an
//! `events` route, a subscription or Kafka), then the relay and the subscription workers run
//! as a background service that follows reloads.

use std::sync::{Arc, OnceLock};
use varco_config::{AdapterConfig, Config, EventsConfig, RouteTarget, SubscriptionConfig};
use varco_events::delivery::{Deliveries, Subscription};
use varco_events::EventBus;

/// The bus, opened at most once per process.
#[derive(Debug)]
pub struct EventsSlot {
    bus: OnceLock<Arc<EventBus>>,
    open_lock: parking_lot::Mutex<()>,
    metrics: prometheus::Registry,
    /// The subscription workers, once started (the admin API replays through them).
    pub deliveries: OnceLock<Arc<Deliveries>>,
    /// Subscriptions made through the admin API, by ente (persisted beside the outbox).
    admin_subs: parking_lot::Mutex<Vec<(String, SubscriptionConfig)>>,
    /// Bumped when `admin_subs` changes, so that the service re-syncs its workers.
    pub admin_generation: std::sync::atomic::AtomicU64,
}

impl EventsSlot {
    pub fn new(metrics: prometheus::Registry) -> Self {
        Self {
            bus: OnceLock::new(),
            open_lock: parking_lot::Mutex::new(()),
            metrics,
            deliveries: OnceLock::new(),
            admin_subs: Default::default(),
            admin_generation: Default::default(),
        }
    }

    /// The bus, opening it with `cfg` the first time. Later changes of `server.events` need a
    /// restart.
    pub fn open(&self, cfg: &EventsConfig) -> Result<Arc<EventBus>, String> {
        let _one = self.open_lock.lock();
        if let Some(b) = self.bus.get() {
            if &b.config != cfg {
                tracing::warn!("server.events changed: it applies after a restart");
            }
            return Ok(b.clone());
        }
        let bus = EventBus::open(cfg, &self.metrics)?;
        let path = cfg.dir.join("subscriptions.json");
        if let Ok(text) = std::fs::read(&path) {
            let subs: Vec<(String, SubscriptionConfig)> =
                serde_json::from_slice(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
            *self.admin_subs.lock() = subs;
        }
        tracing::info!(dir = %cfg.dir.display(), kafka = cfg.kafka.is_some(), committed = bus.outbox.committed(), "event outbox open");
        let _ = self.bus.set(bus.clone());
        Ok(bus)
    }

    pub fn get(&self) -> Option<Arc<EventBus>> {
        self.bus.get().cloned()
    }
}

impl EventsSlot {
    /// The configuration with the admin-made subscriptions added to their enti.
    pub fn with_admin_subscriptions(&self, cfg: &Config) -> Config {
        let mut cfg = cfg.clone();
        for (tenant, sub) in self.admin_subs.lock().iter() {
            if let Some(t) = cfg.tenants.iter_mut().find(|t| &t.id == tenant) {
                if !t.events.subscriptions.iter().any(|s| s.name == sub.name) {
                    t.events.subscriptions.push(sub.clone());
                }
            }
        }
        cfg
    }

    /// Adds (or replaces) an admin-made subscription after checking it as configuration would
    /// be checked; persisted before it counts. Errors are the configuration issues.
    pub fn add_subscription(&self, running: &Config, tenant: &str, sub: SubscriptionConfig) -> Result<(), Vec<String>> {
        if running
            .tenants
            .iter()
            .find(|t| t.id == tenant)
            .is_some_and(|t| t.events.subscriptions.iter().any(|s| s.name == sub.name))
        {
            return Err(vec![format!("`{}` is a subscription of the configuration file; change it there", sub.name)]);
        }
        let mut subs = self.admin_subs.lock().clone();
        subs.retain(|(t, s)| !(t == tenant && s.name == sub.name));
        subs.push((tenant.to_owned(), sub));
        let mut candidate = running.clone();
        for (t, s) in &subs {
            match candidate.tenants.iter_mut().find(|x| &x.id == t) {
                Some(x) => x.events.subscriptions.push(s.clone()),
                None => return Err(vec![format!("no tenant `{t}`")]),
            }
        }
        let issues = candidate.validate();
        if !issues.is_empty() {
            return Err(issues.iter().map(|i| i.to_string()).collect());
        }
        Subscription::all(&candidate).map_err(|e| vec![e])?;
        self.persist(&subs).map_err(|e| vec![e])?;
        *self.admin_subs.lock() = subs;
        self.admin_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Removes an admin-made subscription; false when there was none.
    pub fn remove_subscription(&self, tenant: &str, name: &str) -> Result<bool, String> {
        let mut subs = self.admin_subs.lock().clone();
        let before = subs.len();
        subs.retain(|(t, s)| !(t == tenant && s.name == name));
        if subs.len() == before {
            return Ok(false);
        }
        self.persist(&subs)?;
        *self.admin_subs.lock() = subs;
        self.admin_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Every subscription (file and admin), with where it comes from.
    pub fn list(&self, running: &Config) -> serde_json::Value {
        let admin = self.admin_subs.lock().clone();
        let mut out = Vec::new();
        for t in &running.tenants {
            for s in &t.events.subscriptions {
                out.push(serde_json::json!({"tenant": t.id, "origin": "config", "subscription": s}));
            }
        }
        for (t, s) in admin {
            out.push(serde_json::json!({"tenant": t, "origin": "admin", "subscription": s}));
        }
        serde_json::Value::Array(out)
    }

    fn persist(&self, subs: &[(String, SubscriptionConfig)]) -> Result<(), String> {
        let bus = self.bus.get().ok_or("the event bus is not open (no events route, subscription or Kafka)")?;
        let path = bus.config.dir.join("subscriptions.json");
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(subs).map_err(|e| e.to_string())?;
        std::fs::File::create(&tmp)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(&text)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("`{}`: {e}", path.display()))
    }
}

/// Whether a configuration needs the bus.
pub fn uses_events(cfg: &Config) -> bool {
    cfg.server.events.kafka.is_some()
        || cfg.tenants.iter().any(|t| {
            !t.events.subscriptions.is_empty()
                || t.routes.iter().any(|r| {
                    matches!(&r.to, RouteTarget::Adapter(a) if matches!(
                        **a,
                        AdapterConfig::Events(_) | AdapterConfig::EventStream(_) | AdapterConfig::Pagopa(_)
                    ))
                })
        })
}
