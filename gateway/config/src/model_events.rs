//! Event-bus configuration: the durable outbox, the optional Kafka cluster, and per-ente
//! read grants and subscriptions.

use crate::{Dur, SecretRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The event bus (`server.events`). Changing it needs a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Folder of the durable outbox (segment files and cursors). Default `varco-data/events`.
    #[serde(default = "d_dir")]
    pub dir: PathBuf,
    /// Disk budget of the outbox: when it is full of events not yet relayed (or, without Kafka,
    /// not yet delivered), publishing answers 503 with `Retry-After`. Default 1 GiB.
    #[serde(default = "d_max_bytes")]
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started. Default 64 MiB.
    #[serde(default = "d_segment_bytes")]
    pub segment_bytes: u64,
    /// The Kafka cluster the outbox relays to. Default: none, the outbox is the bus
    /// (single-node mode: subscriptions read it directly).
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// An event published again with the same `source` and `id` within this window (a
    /// back-office retrying a 202 it did not receive) is accepted without being stored a
    /// second time. Remembered in memory: a restart forgets. `0s` turns it off. Default 10m.
    #[serde(default = "d_dedupe_window")]
    pub dedupe_window: Dur,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            dir: d_dir(),
            max_bytes: d_max_bytes(),
            segment_bytes: d_segment_bytes(),
            kafka: None,
            dedupe_window: d_dedupe_window(),
        }
    }
}

fn d_dedupe_window() -> Dur {
    Dur::secs(600)
}

fn d_dir() -> PathBuf {
    PathBuf::from("varco-data/events")
}
fn d_max_bytes() -> u64 {
    1 << 30
}
fn d_segment_bytes() -> u64 {
    64 << 20
}

/// A Kafka cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,host:port` bootstrap servers.
    pub brokers: String,
    /// The topic name, or with `layout: ente`/`ente_family` the prefix of every topic.
    /// Default `varco.events`.
    #[serde(default = "d_topic")]
    pub topic: String,
    /// Which topic an event goes to. `ente` (default): `<topic>.<source ente>`, so Kafka's own
    /// ACLs (a prefixed READ grant per ente) can enforce what `events.readers` grants;
    /// `ente_family`: `<topic>.<source ente>.<family>`, the family being the type's third
    /// segment (`anagrafe` in `it.varco.anagrafe.residenza.cambiata.v1`); `shared`: every
    /// event in `<topic>` (one comune, or a cluster only varco reads).
    #[serde(default)]
    pub layout: TopicLayout,
    /// Keys the record key and seals the subject (HMAC-SHA256 and AES-256-GCM keys derived
    /// from it with HKDF). At least 32 bytes, the same on every instance; required. The
    /// record key is a keyed hash of the subject (order per subject holds, the codice fiscale
    /// is not in the broker in the clear); the subject travels sealed unless the type's
    /// contract marks it as no personal data.
    pub subject_key: SecretRef,
    /// Static group membership (`group.instance.id`): a stable name of this instance, unique
    /// in the cluster (e.g. the host name). A restarted varco then takes its partitions back
    /// without a rebalance, provided it returns within the consumer session timeout
    /// (`session.timeout.ms`, librdkafka's default 45 s); the partitions of an instance that
    /// stays away wait that long before another instance takes them. Default: none (dynamic
    /// membership).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Create missing topics (events and dead letters) with this many partitions. Default 6;
    /// 0: never create (an operator creates them).
    #[serde(default = "d_partitions")]
    pub create_partitions: i32,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.*`). Default none.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Topic layouts (`server.events.kafka.layout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopicLayout {
    /// One topic per publishing ente: `<topic>.<ente>`.
    #[default]
    Ente,
    /// One topic per publishing ente and type family: `<topic>.<ente>.<family>`.
    EnteFamily,
    /// One topic for every event: `<topic>`.
    Shared,
}

impl KafkaConfig {
    /// The topic an event of `ente` with `event_type` goes to.
    pub fn topic_for(&self, ente: &str, event_type: &str) -> String {
        match self.layout {
            TopicLayout::Shared => self.topic.clone(),
            TopicLayout::Ente => format!("{}.{ente}", self.topic),
            TopicLayout::EnteFamily => format!("{}.{ente}.{}", self.topic, type_family(event_type)),
        }
    }

    /// Where a subscription of `ente` records the events it gave up on (besides the
    /// dead-letter file): `<topic>.dead-letter`, or with an ente layout
    /// `<topic>.<subscribing ente>.dead-letter`.
    pub fn dead_letter_topic(&self, ente: &str) -> String {
        match self.layout {
            TopicLayout::Shared => format!("{}.dead-letter", self.topic),
            TopicLayout::Ente | TopicLayout::EnteFamily => format!("{}.{ente}.dead-letter", self.topic),
        }
    }
}

fn d_topic() -> String {
    "varco.events".into()
}
fn d_partitions() -> i32 {
    6
}

/// The family of an event type: its third dot-separated segment (`anagrafe` in
/// `it.varco.anagrafe.residenza.cambiata.v1`); types are checked to have one.
pub fn type_family(event_type: &str) -> &str {
    event_type.split('.').nth(2).unwrap_or("other")
}

/// An ente's side of the bus (`tenants[].events`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantEventsConfig {
    /// Who may read this ente's events (deny by default): other enti by id, with the event
    /// types each may read.
    #[serde(default)]
    pub readers: Vec<EventGrant>,
    /// What this ente receives, and where.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
}

/// A read grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventGrant {
    /// The reading ente's id.
    pub tenant: String,
    /// Event types it may read.
    pub types: Vec<String>,
}

/// A subscription: events of some types from some enti, delivered to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Unique within the ente; names the consumer group (`varco.<ente>.<name>`).
    pub name: String,
    /// Event types delivered.
    pub types: Vec<String>,
    /// Enti whose events are delivered (each must grant this ente the types in `readers`).
    pub sources: Vec<String>,
    /// The back-office endpoint. Exactly one of `webhook` and `route`.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Or one of the ente's own adapter routes that takes events (`gpd`): events are handed to
    /// it in-process.
    #[serde(default)]
    pub route: Option<String>,
    /// Attempts before an event goes to the dead-letter store. Default 8.
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// First retry delay, doubled each attempt with jitter. Default 1s.
    #[serde(default = "d_backoff")]
    pub backoff: Dur,
    /// Longest retry delay. Default 5m.
    #[serde(default = "d_max_backoff")]
    pub max_backoff: Dur,
}

/// Configuration of the `event_stream` adapter: a `GET` route answering
/// `text/event-stream` (server-sent events) with the events the ente may read, live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventStreamConfig {
    /// A `: keep-alive` comment after this long without events, so that proxies keep the
    /// connection open and a vanished caller is noticed. Default 15s.
    #[serde(default = "d_heartbeat")]
    pub heartbeat: Dur,
    /// Streams open at once on this route; more get 503 `overloaded` with `Retry-After`.
    /// Default 256.
    #[serde(default = "d_max_streams")]
    pub max_streams: u32,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        Self { heartbeat: d_heartbeat(), max_streams: d_max_streams() }
    }
}

fn d_max_streams() -> u32 {
    256
}

impl EventStreamConfig {
    /// Checks without I/O.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let s = self.heartbeat.0.as_secs_f64();
        if !(1.0..=300.0).contains(&s) {
            out.push(("heartbeat".into(), "between 1s and 5m".into()));
        }
        if self.max_streams == 0 {
            out.push(("max_streams".into(), "at least 1".into()));
        }
        out
    }
}

fn d_heartbeat() -> Dur {
    Dur::secs(15)
}

fn d_attempts() -> u32 {
    8
}
fn d_backoff() -> Dur {
    Dur::secs(1)
}
fn d_max_backoff() -> Dur {
    Dur::secs(300)
}

/// Where and how events are delivered: `POST` of the structured CloudEvent
/// (`application/cloudevents+json`), `Idempotency-Key: <event id>`, and
/// `X-Varco-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The HMAC key shared with the receiver.
    pub secret: SecretRef,
    /// Per attempt. Default 10s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

fn d_timeout() -> Dur {
    Dur::secs(10)
}
