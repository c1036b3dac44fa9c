//! The relay: durable events leave the outbox for Kafka, in order, in binary content mode
//! (`ce_*` headers), on the topic and with the key `kafka::KafkaCodec` gives them (a keyed
//! hash of the subject, so that order holds per subject).
//!
//! The producer is idempotent with `acks=all`; the relay cursor moves only past events Kafka
//! acknowledged, and is saved every 200 ms. A crash re-sends from the saved cursor: delivery
//! is at least once, and the event `id` lets consumers drop the duplicates. While the broker
//! is down, librdkafka keeps retrying (no message timeout) and the outbox grows on disk.

use crate::bus::EventBus;
use crate::kafka::{ensure_topics, producer, KafkaCodec, RELAY_CURSOR as CURSOR};
use cloudevents::{AttributesReader, Event};
use futures::stream::{FuturesOrdered, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const MAX_IN_FLIGHT: usize = 50_000;

/// Relays until `stop` turns true.
pub async fn run(bus: Arc<EventBus>, codec: Arc<KafkaCodec>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let k = codec.cfg.clone();
    let mut cursor = bus.outbox.cursor(CURSOR);
    // Topics confirmed to exist (created when missing), as events for them come.
    let mut ensured: HashSet<String> = HashSet::new();
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
                // The hand-over to Kafka as a producer span of the publisher's trace; the
                // record's `traceparent` header names it, for the consumers' spans.
                // (Tracing off: nothing read or allocated per record.)
                let span = event
                    .extension("traceparent")
                    .filter(|_| varco_telemetry::enabled())
                    .map(|tp| tp.to_string())
                    .and_then(|tp| varco_telemetry::start("publish", varco_telemetry::Kind::Producer, Some(&tp)))
                    .map(|mut s| {
                        s.set("messaging.system", "kafka");
                        s.set("messaging.message.id", event.id().to_owned());
                        s
                    });
                let out = match codec.encode(event) {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "cannot encode an event for Kafka; skipped");
                        continue;
                    }
                };
                let mut span = span.map(|mut s| {
                    s.set("messaging.destination.name", out.topic.clone());
                    s.rename(format!("publish {}", out.topic));
                    s
                });
                let tp = span.as_ref().map(|s| s.traceparent_string());
                let extra: &[(&str, &str)] = match &tp {
                    Some(tp) => &[("traceparent", tp.as_str())],
                    None => &[],
                };
                if !ensured.contains(&out.topic) {
                    // Until the topic is confirmed the gauges still tell the truth: events
                    // wait in the outbox.
                    if !ensure(&bus, &k, &out.topic, &cursor, &mut stop).await {
                        break;
                    }
                    ensured.insert(out.topic.clone());
                }
                loop {
                    match producer.send_result(out.future_record(extra)) {
                        Ok(f) => {
                            let span = span.take();
                            in_flight.push_back(async move {
                                let r = f.await;
                                if let (Some(mut s), Ok(Err((e, _)))) = (span, &r) {
                                    s.fail(e.to_string());
                                }
                                (seq, r)
                            });
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
                bus.metrics.relay_pending.set(pending(&bus, &cursor) as i64);
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

/// Durable events the relay has not seen acknowledged.
fn pending(bus: &EventBus, cursor: &crate::outbox::Cursor) -> u64 {
    (bus.outbox.committed() + 1).saturating_sub(cursor.next())
}

/// Waits until `topic` exists (created when missing), keeping the gauges current; false when
/// stopped first.
async fn ensure(
    bus: &EventBus,
    k: &varco_config::KafkaConfig,
    topic: &str,
    cursor: &crate::outbox::Cursor,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut gauges = tokio::time::interval(Duration::from_millis(200));
    let topics = [topic.to_owned()];
    loop {
        let attempt = ensure_topics(k, &topics);
        tokio::pin!(attempt);
        let res = loop {
            tokio::select! {
                r = &mut attempt => break r,
                _ = gauges.tick() => {
                    bus.metrics.relay_pending.set(pending(bus, cursor) as i64);
                    bus.metrics.outbox_bytes.set(bus.outbox.disk_bytes() as i64);
                }
                _ = stop.changed() => return false,
            }
        };
        let Err(e) = res else { return true };
        tracing::warn!(error = %e, topic, "Kafka: topic not ready; retrying");
        bus.metrics.kafka_up.set(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return false,
        }
    }
}

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
