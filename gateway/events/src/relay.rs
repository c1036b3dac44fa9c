//! The relay: durable events leave the outbox for Kafka, in order, in binary content mode
//! (`ce_*` headers), keyed by `subject` so that order holds per subject.
//!
//! The producer is idempotent with `acks=all`; the relay cursor moves only past events Kafka
//! acknowledged, and is saved every 200 ms. A crash re-sends from the saved cursor: delivery
//! is at least once, and the event `id` lets consumers drop the duplicates. While the broker
//! is down, librdkafka keeps retrying (no message timeout) and the outbox grows on disk.

use crate::bus::EventBus;
use cloudevents::binding::rdkafka::{FutureRecordExt, MessageRecord};
use cloudevents::{AttributesReader, Event};
use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::Duration;
use varco_config::KafkaConfig;

const MAX_IN_FLIGHT: usize = 50_000;

/// librdkafka settings shared by varco's producers and consumers.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set("client.id", "varco");
    for (key, v) in &k.properties {
        c.set(key, v);
    }
    c
}

/// How long a consumer's fetch may wait for data. A real Kafka answers a fetch as soon as a
/// record arrives (`fetch.min.bytes` 1), so this is only the idle poll interval there (40
/// fetches a second per consumer); a broker that holds every fetch for the whole wait (tansu)
/// adds up to this much to each delivery. librdkafka's 500 ms made cross-comune delivery take
/// half a second on such a broker. `kafka.properties` may set another value.
pub const FETCH_WAIT_MS: &str = "25";

/// A consumer's settings: varco's defaults, then the configured `properties` (which win).
pub fn consumer_config(k: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "varco")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS);
    for (key, v) in &k.properties {
        c.set(key, v);
    }
    c
}

/// Creates the topic when missing (`create_partitions` > 0).
pub async fn ensure_topic(k: &KafkaConfig) -> Result<(), String> {
    if k.create_partitions == 0 {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(k).create().map_err(|e| e.to_string())?;
    let topic = NewTopic::new(&k.topic, k.create_partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = admin.create_topics([&topic], &opts).await.map_err(|e| e.to_string())?;
    for r in res {
        match r {
            Ok(_) => tracing::info!(topic = %k.topic, "created the Kafka topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("cannot create topic `{t}`: {code}")),
        }
    }
    Ok(())
}

/// The producer the relay uses (also the reference of the benchmark).
pub fn producer(k: &KafkaConfig) -> Result<FutureProducer, String> {
    let mut c = client_config(k);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // The Java clients' partitioner: another producer keying by the same subject lands on
        // the same partition, so the order per subject holds across producers.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "200000");
    c.create().map_err(|e| e.to_string())
}

/// The Kafka key of an event: its subject, or its id.
pub fn key_of(e: &Event) -> String {
    e.subject().unwrap_or_else(|| e.id()).to_owned()
}

/// The relay's outbox position.
pub const CURSOR: &str = "relay";

/// Relays until `stop` turns true.
pub async fn run(bus: Arc<EventBus>, k: KafkaConfig, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut cursor = bus.outbox.cursor(CURSOR);
    let pending = |cursor: &crate::outbox::Cursor| (bus.outbox.committed() + 1).saturating_sub(cursor.next());
    // Until the topic is confirmed the gauges still tell the truth: events wait in the outbox.
    let mut gauges = tokio::time::interval(Duration::from_millis(200));
    loop {
        let ensure = ensure_topic(&k);
        tokio::pin!(ensure);
        let res = loop {
            tokio::select! {
                r = &mut ensure => break r,
                _ = gauges.tick() => {
                    bus.metrics.relay_pending.set(pending(&cursor) as i64);
                    bus.metrics.outbox_bytes.set(bus.outbox.disk_bytes() as i64);
                }
                _ = stop.changed() => return,
            }
        };
        let Err(e) = res else { break };
        tracing::warn!(error = %e, "Kafka: topic not ready; retrying");
        bus.metrics.kafka_up.set(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
    let producer = match producer(&k) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "Kafka: cannot create the producer; events stay in the outbox");
            return;
        }
    };
    let mut reader = bus.outbox.reader(cursor.next());
    let mut in_flight = FuturesOrdered::new();
    let mut save = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            next = reader.next(), if in_flight.len() < MAX_IN_FLIGHT => {
                let (seq, bytes) = match next {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "outbox read failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Ok(event) = serde_json::from_slice::<Event>(&bytes) else {
                    // Only checked events are written; a record that does not parse is skipped loudly.
                    tracing::error!(seq, "outbox record is not a CloudEvent; skipped");
                    continue;
                };
                let key = key_of(&event);
                let Ok(record) = MessageRecord::from_event(event) else { continue };
                loop {
                    match producer.send_result(FutureRecord::to(&k.topic).key(&key).message_record(&record)) {
                        Ok(f) => {
                            in_flight.push_back(async move { (seq, f.await) });
                            break;
                        }
                        // The local queue is full: wait for acknowledgements first.
                        Err((_, _)) => {
                            if let Some((s, r)) = in_flight.next().await {
                                if !settle(&bus, &mut cursor, s, r) {
                                    break;
                                }
                            } else {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                }
            }
            Some((seq, r)) = in_flight.next(), if !in_flight.is_empty() => {
                if !settle(&bus, &mut cursor, seq, r) {
                    // Start again from the first unacknowledged event: order is kept, the
                    // ones after it are sent again (at least once).
                    in_flight.clear();
                    reader.seek(cursor.next());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            _ = save.tick() => {
                if let Err(e) = cursor.save() {
                    tracing::error!(error = %e, "cannot save the relay cursor");
                }
                bus.metrics.relay_pending.set(pending(&cursor) as i64);
                bus.metrics.outbox_bytes.set(bus.outbox.disk_bytes() as i64);
                bus.metrics.outbox_committed.set(bus.outbox.committed() as i64);
            }
        }
    }
    // A clean stop: what Kafka acknowledges within a moment still moves the cursor, so the
    // next start does not send it again.
    let drain = async {
        while let Some((seq, r)) = in_flight.next().await {
            if !settle(&bus, &mut cursor, seq, r) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    if let Err(e) = cursor.save() {
        tracing::error!(error = %e, "cannot save the relay cursor");
    }
}

type Delivered = Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>;

/// Records one acknowledgement; false when the event was not delivered.
fn settle(bus: &EventBus, cursor: &mut crate::outbox::Cursor, seq: u64, r: Delivered) -> bool {
    match r {
        Ok(Ok(_)) => {
            cursor.advance(seq + 1);
            bus.metrics.relayed.inc();
            bus.metrics.kafka_up.set(1);
            true
        }
        Ok(Err((e, _))) => {
            tracing::warn!(error = %e, seq, "Kafka refused an event; it will be sent again");
            bus.metrics.kafka_up.set(0);
            false
        }
        Err(_) => false,
    }
}
