//! The event bus inside the gateway: opened once when a configuration first uses it (an
//! `events` route, a subscription or Kafka), then the relay and the subscription workers run
//! as a background service that follows reloads.

use crate::Shared;
use std::sync::{Arc, OnceLock};
use varco_config::{AdapterConfig, Config, EventsConfig, RouteTarget};
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
}

impl EventsSlot {
    pub fn new(metrics: prometheus::Registry) -> Self {
        Self { bus: OnceLock::new(), open_lock: parking_lot::Mutex::new(()), metrics, deliveries: OnceLock::new() }
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
        tracing::info!(dir = %cfg.dir.display(), kafka = cfg.kafka.is_some(), committed = bus.outbox.committed(), "event outbox open");
        let _ = self.bus.set(bus.clone());
        Ok(bus)
    }

    pub fn get(&self) -> Option<Arc<EventBus>> {
        self.bus.get().cloned()
    }
}

/// Whether a configuration needs the bus.
pub fn uses_events(cfg: &Config) -> bool {
    cfg.server.events.kafka.is_some()
        || cfg.tenants.iter().any(|t| {
            !t.events.subscriptions.is_empty()
                || t.routes
                    .iter()
                    .any(|r| matches!(r.to, RouteTarget::Adapter(AdapterConfig::Events(_) | AdapterConfig::Pagopa(_))))
        })
}

/// Runs the Kafka relay and keeps the subscription workers in line with the running
/// configuration.
pub struct EventsService(pub Arc<Shared>);

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for EventsService {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut generation = 0;
        let mut deliveries: Option<Arc<Deliveries>> = None;
        let mut relay_started = false;
        while crate::tick_or_shutdown(&mut tick, &mut shutdown).await {
            let rt = self.0.current.load_full();
            if rt.generation == generation {
                continue;
            }
            if !uses_events(&rt.config) {
                generation = rt.generation;
                if let Some(d) = &deliveries {
                    d.sync(Vec::new());
                }
                continue;
            }
            let bus = match self.0.events.open(&rt.config.server.events) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the event outbox");
                    continue;
                }
            };
            generation = rt.generation;
            if let (Some(k), false) = (bus.config.kafka.clone(), relay_started) {
                relay_started = true;
                tokio::spawn(varco_events::relay::run(bus.clone(), k, shutdown.clone()));
            }
            if deliveries.is_none() {
                match Deliveries::new(bus.clone()) {
                    Ok(d) => {
                        let _ = self.0.events.deliveries.set(d.clone());
                        deliveries = Some(d);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot start event delivery"),
                }
            }
            match (Subscription::all(&rt.config), &deliveries) {
                (Ok(subs), Some(d)) => d.sync(subs),
                (Err(e), _) => tracing::error!(error = %e, "subscriptions not started"),
                _ => {}
            }
        }
        if let Some(d) = deliveries {
            d.stop_all();
        }
    }
}
