//! The event bus as the rest of varco sees it: `publish` (checked events → durable receipt),
//! the outbox behind it, and its metrics.

use crate::contract::Registry;
use crate::outbox::{Outbox, OutboxError};
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use std::sync::Arc;
use varco_config::EventsConfig;
use varco_core::{Problem, ProblemKind};

/// Gauges and counters of the bus (registered in varco's Prometheus registry).
#[derive(Debug, Clone)]
pub struct EventMetrics {
    pub published: prometheus::IntCounterVec,
    pub outbox_committed: prometheus::IntGauge,
    pub outbox_bytes: prometheus::IntGauge,
    /// Group commits (`fdatasync` calls) of the outbox: events published / syncs is the
    /// events each disk flush carried.
    pub outbox_syncs: prometheus::IntCounter,
    pub relay_pending: prometheus::IntGauge,
    pub relayed: prometheus::IntCounter,
    pub kafka_up: prometheus::IntGauge,
    pub delivered: prometheus::IntCounterVec,
    pub delivery_failures: prometheus::IntCounterVec,
    pub dead_lettered: prometheus::IntCounterVec,
    pub subscription_lag: prometheus::IntGaugeVec,
}

impl EventMetrics {
    pub fn new(r: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
        let m = Self {
            published: IntCounterVec::new(
                Opts::new("events_published_total", "Events accepted into the outbox, by ente."),
                &["tenant"],
            )?,
            outbox_committed: IntGauge::new("outbox_committed_sequence", "Sequence number of the last durable event.")?,
            outbox_bytes: IntGauge::new("outbox_disk_bytes", "Bytes of outbox segments on disk.")?,
            outbox_syncs: IntCounter::new(
                "outbox_syncs_total",
                "Group commits of the outbox (one fdatasync each, for every event appended meanwhile).",
            )?,
            relay_pending: IntGauge::new(
                "outbox_relay_pending",
                "Durable events not yet acknowledged by Kafka (outbox depth).",
            )?,
            relayed: IntCounter::new("events_relayed_total", "Events acknowledged by Kafka.")?,
            kafka_up: IntGauge::new("kafka_up", "1 when the last produce to Kafka succeeded.")?,
            delivered: IntCounterVec::new(
                Opts::new("events_delivered_total", "Events a webhook accepted, by ente and subscription."),
                &["tenant", "subscription"],
            )?,
            delivery_failures: IntCounterVec::new(
                Opts::new("event_delivery_failures_total", "Failed webhook attempts."),
                &["tenant", "subscription"],
            )?,
            dead_lettered: IntCounterVec::new(
                Opts::new("events_dead_lettered_total", "Events moved to the dead-letter store after max_attempts."),
                &["tenant", "subscription"],
            )?,
            subscription_lag: IntGaugeVec::new(
                Opts::new(
                    "subscription_lag_events",
                    "Events waiting for a subscription (single node: outbox positions; Kafka: high watermark minus settled offset, summed over partitions).",
                ),
                &["tenant", "subscription"],
            )?,
        };
        r.register(Box::new(m.published.clone()))?;
        r.register(Box::new(m.outbox_committed.clone()))?;
        r.register(Box::new(m.outbox_bytes.clone()))?;
        r.register(Box::new(m.outbox_syncs.clone()))?;
        r.register(Box::new(m.relay_pending.clone()))?;
        r.register(Box::new(m.relayed.clone()))?;
        r.register(Box::new(m.kafka_up.clone()))?;
        r.register(Box::new(m.delivered.clone()))?;
        r.register(Box::new(m.delivery_failures.clone()))?;
        r.register(Box::new(m.dead_lettered.clone()))?;
        r.register(Box::new(m.subscription_lag.clone()))?;
        Ok(m)
    }
}

/// The bus: contracts, outbox and metrics. One per process; outlives configuration reloads.
#[derive(Debug)]
pub struct EventBus {
    pub registry: Registry,
    /// Recently stored (`source`, `id`) pairs, for idempotent publishing.
    dedupe: Dedupe,
    pub outbox: Arc<Outbox>,
    pub metrics: EventMetrics,
    pub config: EventsConfig,
    /// Topics, record keys and subject seals, in Kafka mode.
    pub kafka: Option<Arc<crate::kafka::KafkaCodec>>,
}

impl EventBus {
    /// Opens the outbox (recovering after a crash) and loads the contracts.
    pub fn open(cfg: &EventsConfig, metrics: &prometheus::Registry) -> Result<Arc<Self>, String> {
        let registry = Registry::load()?;
        let kafka = match &cfg.kafka {
            Some(k) => {
                let secret =
                    read_secret(&k.subject_key).map_err(|e| format!("server.events.kafka.subject_key: {e}"))?;
                Some(Arc::new(crate::kafka::KafkaCodec::new(k, &secret, &registry)?))
            }
            None => None,
        };
        let metrics = EventMetrics::new(metrics).map_err(|e| e.to_string())?;
        let syncs = metrics.outbox_syncs.clone();
        let outbox =
            Outbox::open_observed(&cfg.dir, cfg.segment_bytes, cfg.max_bytes, Some(Arc::new(move || syncs.inc())))
                .map_err(|e| format!("outbox `{}`: {e}", cfg.dir.display()))?;
        let dedupe = Dedupe::default();
        if cfg.kafka.is_some() {
            // The relay's position exists from the moment the outbox opens: while the broker
            // is unreachable nothing unrelayed is reclaimed, and a full outbox answers 503.
            outbox.hold(crate::kafka::RELAY_CURSOR);
        } else {
            // Without Kafka nobody relays: a position left by an earlier Kafka setup would pin
            // the outbox for ever (should Kafka come back, the relay starts from the oldest
            // event still kept: at least once).
            outbox.forget(crate::kafka::RELAY_CURSOR);
        }
        Ok(Arc::new(Self { registry, outbox, metrics, config: cfg.clone(), dedupe, kafka }))
    }

    /// The internal publish interface for adapters: checks the events for ente `tenant` and
    /// makes them durable; the sequence number of the last one.
    pub async fn publish(
        &self,
        tenant: &str,
        mut events: Vec<Event>,
        traceparent: Option<&str>,
    ) -> Result<u64, Problem> {
        for (i, e) in events.iter_mut().enumerate() {
            crate::contract::check_event(&self.registry, tenant, i, e, traceparent)?;
        }
        let n = events.len() as u64;
        let seq = self.append(events).await?;
        self.metrics.published.with_label_values(&[tenant]).inc_by(n);
        Ok(seq)
    }

    /// The sequence number of the last durable event (0: none yet).
    pub fn position(&self) -> u64 {
        self.outbox.committed()
    }

    /// Whether an event with `source` and `id` is durable at or after sequence number `from`:
    /// a short scan for a caller that knows where to look (the position before a publish a
    /// crash may have cut short).
    pub fn stored_since(&self, from: u64, source: &str, id: &str) -> Result<bool, String> {
        #[derive(serde::Deserialize)]
        struct Key {
            id: String,
            source: String,
        }
        let mut r = self.outbox.reader(from.max(1));
        while let Some((_, bytes)) = r.try_next().map_err(|e| e.to_string())? {
            if serde_json::from_slice::<Key>(&bytes).is_ok_and(|k| k.id == id && k.source == source) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends checked events; nothing is accepted unless all are durable. Events whose
    /// `source` and `id` were stored within `dedupe_window` (or that repeat one of the same
    /// batch) are accepted without being stored again.
    pub(crate) async fn append(&self, events: Vec<Event>) -> Result<u64, Problem> {
        let window = self.config.dedupe_window.0;
        let (events, reserved) =
            if window.is_zero() { (events, Vec::new()) } else { self.dedupe.reserve(events, window) };
        if events.is_empty() {
            return Ok(self.outbox.committed());
        }
        let stored = self.store(events).await;
        self.dedupe.settle(&reserved, stored.is_ok());
        stored
    }

    async fn store(&self, events: Vec<Event>) -> Result<u64, Problem> {
        let mut records = Vec::with_capacity(events.len());
        for e in &events {
            let bytes = serde_json::to_vec(e)
                .map_err(|e| Problem::new(ProblemKind::Internal, format!("cannot encode an event: {e}")))?;
            if bytes.len() > crate::outbox::MAX_RECORD {
                return Err(Problem::new(
                    ProblemKind::EventInvalid,
                    format!("event `{}` is larger than 1 MiB", cloudevents::AttributesReader::id(e)),
                ));
            }
            records.push(Bytes::from(bytes));
        }
        let seq = self.outbox.append(records).await.map_err(|e| match e {
            OutboxError::Full(_) => Problem::new(ProblemKind::OutboxFull, e.to_string()).retry_after(5),
            other => {
                tracing::error!(error = %other, "outbox append failed");
                Problem::new(ProblemKind::Internal, "the event could not be stored; nothing was accepted")
                    .retry_after(1)
            }
        })?;
        self.metrics.outbox_committed.set(seq as i64);
        self.metrics.outbox_bytes.set(self.outbox.disk_bytes() as i64);
        Ok(seq)
    }
}

/// A secret's bytes (an environment variable, or a file without its trailing newline).
pub(crate) fn read_secret(s: &varco_config::SecretRef) -> Result<Vec<u8>, String> {
    match s {
        varco_config::SecretRef::Env(v) => {
            std::env::var(v).map(String::into_bytes).map_err(|_| format!("variable `{v}` is not set"))
        }
        varco_config::SecretRef::File(f) => std::fs::read_to_string(f)
            .map(|x| x.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
            .map_err(|e| format!("cannot read `{}`: {e}", f.display())),
    }
}

/// Most (`source`, `id`) pairs remembered; past it the oldest are forgotten first.
const DEDUPE_MAX: usize = 1_000_000;

/// The (`source`, `id`) pairs stored recently, and the ones being stored right now (so that
/// two concurrent publishes of one event store it once).
#[derive(Debug, Default)]
struct Dedupe {
    inner: parking_lot::Mutex<DedupeInner>,
}

#[derive(Debug, Default)]
struct DedupeInner {
    /// Pair → when it was stored (`None`: being stored).
    seen: std::collections::HashMap<Arc<DedupeKey>, Option<std::time::Instant>>,
    /// Stored pairs in the order they were stored, for expiry (shared with `seen`, so a pair
    /// is copied once per event).
    order: std::collections::VecDeque<(std::time::Instant, Arc<DedupeKey>)>,
}

/// (`source`, `id`).
type DedupeKey = (String, String);

impl Dedupe {
    /// The events to store, and the pairs reserved for them.
    fn reserve(&self, events: Vec<Event>, window: std::time::Duration) -> (Vec<Event>, Vec<Arc<DedupeKey>>) {
        let now = std::time::Instant::now();
        let mut g = self.inner.lock();
        while let Some((at, _)) = g.order.front() {
            if now.duration_since(*at) < window && g.order.len() < DEDUPE_MAX {
                break;
            }
            if let Some((at, key)) = g.order.pop_front() {
                if g.seen.get(&key) == Some(&Some(at)) {
                    g.seen.remove(&key);
                }
            }
        }
        let mut keep = Vec::with_capacity(events.len());
        let mut reserved = Vec::with_capacity(events.len());
        for e in events {
            let key = Arc::new((e.source().to_string(), e.id().to_owned()));
            if g.seen.contains_key(&key) {
                continue;
            }
            g.seen.insert(key.clone(), None);
            reserved.push(key);
            keep.push(e);
        }
        (keep, reserved)
    }

    /// After the store: remember the pairs (stored) or release them (not stored).
    fn settle(&self, reserved: &[Arc<DedupeKey>], stored: bool) {
        let now = std::time::Instant::now();
        let mut g = self.inner.lock();
        for key in reserved {
            if stored {
                if let Some(at) = g.seen.get_mut(key) {
                    *at = Some(now);
                }
                g.order.push_back((now, key.clone()));
            } else {
                g.seen.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str) -> Event {
        serde_json::from_value(json!({
            "specversion": "1.0", "id": id, "source": "/enti/c_e783/pagopa",
            "type": "it.varco.pratica.stato.cambiato.v1", "subject": "P-1",
            "data": {"idPratica": "P-1", "procedimento": "SUAP", "stato": "chiusa", "dataCambio": "2026-12-03T10:00:00Z"}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn stored_since_finds_an_event_from_a_position_on() {
        let dir = std::env::temp_dir().join(format!("varco-bus-stored-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg: EventsConfig = serde_json::from_value(json!({"dir": dir})).unwrap_or_else(|e| panic!("{e}"));
        let bus = EventBus::open(&cfg, &prometheus::Registry::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bus.position(), 0);
        bus.publish("c_e783", vec![event("a")], None).await.unwrap_or_else(|e| panic!("{e}"));
        let before_b = bus.position();
        bus.publish("c_e783", vec![event("b"), event("c")], None).await.unwrap_or_else(|e| panic!("{e}"));
        let found = |from, id| bus.stored_since(from, "/enti/c_e783/pagopa", id).unwrap_or_else(|e| panic!("{e}"));
        assert!(found(before_b, "b") && found(before_b, "c"));
        assert!(found(0, "a"));
        assert!(!found(before_b + 1, "a"), "before the position is not looked at");
        assert!(!found(0, "d"));
        assert!(!bus.stored_since(0, "/enti/c_a662/pagopa", "a").unwrap_or(true), "another source");
        let _ = std::fs::remove_dir_all(dir);
    }
}
