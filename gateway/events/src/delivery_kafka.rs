//! Kafka-mode delivery: a consumer group per subscription (`varco.<ente>.<subscription>`) on
//! the topics of the enti it may read, events of different subjects delivered side by side
//! (each subject's in partition order), offsets committed at most every 100 ms up to the first
//! unsettled event of each partition; replay by time; the dead-letter topic.

use crate::delivery::{Deliveries, ReplayFrom, Subscription, LANES, READ_AHEAD};
use crate::kafka::{consumer_config, ensure_topics, DecodeError, KafkaCodec};
use cloudevents::{AttributesReader, Event};
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A topic and partition.
type Tp = (String, i32);

/// What one delivery settles: its partition, offset, subject key, and whether it settled.
type Settled = (Tp, i64, String, bool);

/// A record waiting for its turn: where it sits, its event, and the relay's span (the
/// `traceparent` header) for the delivery's.
struct Waiting {
    tp: Tp,
    offset: i64,
    event: Event,
    parent: Option<String>,
}

impl Deliveries {
    /// The topics a subscription reads: those of the (source ente, type) pairs it is granted.
    pub(crate) fn topics_of(sub: &Subscription, codec: &KafkaCodec) -> Vec<String> {
        codec.topics_for(sub.allowed_pairs())
    }

    /// Kafka mode: one consumer group per subscription, deliveries side by side per subject.
    pub(crate) async fn run_kafka(
        &self,
        sub: &Subscription,
        codec: &Arc<KafkaCodec>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let k = &codec.cfg;
        let topics = Self::topics_of(sub, codec);
        if topics.is_empty() {
            // Nothing granted: nothing to read until the configuration changes.
            let _ = stop.changed().await;
            return;
        }
        // A topic that does not exist yet (an ente that never published) is created now, so
        // that the group is assigned its partitions from the start.
        while let Err(e) = ensure_topics(k, &topics).await {
            tracing::warn!(error = %e, subscription = %sub.cfg.name, "Kafka: topics not ready; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
        }
        let consumer: Arc<StreamConsumer> = match subscription_consumer(k, sub).create() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(error = %e, subscription = %sub.cfg.name, "cannot create a Kafka consumer");
                return;
            }
        };
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        while let Err(e) = consumer.subscribe(&names) {
            tracing::warn!(error = %e, "Kafka: cannot subscribe; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let lag_task = self.spawn_lag(sub, k, consumer.clone(), stop.clone());

        let mut commit = tokio::time::interval(Duration::from_millis(100));
        commit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Per partition: offsets read but not settled, and the offset after the last one read.
        let mut open: HashMap<Tp, BTreeSet<i64>> = HashMap::new();
        let mut read_to: HashMap<Tp, i64> = HashMap::new();
        let mut committed: HashMap<Tp, i64> = HashMap::new();
        let mut open_count = 0usize;
        // Subjects with a delivery running, and the events waiting behind it.
        let mut busy: HashMap<String, VecDeque<Waiting>> = HashMap::new();
        let mut running: FuturesUnordered<futures::future::BoxFuture<'_, Settled>> = FuturesUnordered::new();
        let mut stopping = false;
        loop {
            if stopping && running.is_empty() {
                break;
            }
            let room = !stopping && open_count < READ_AHEAD && running.len() < LANES;
            tokio::select! {
                _ = stop.changed(), if !stopping => stopping = true,
                _ = commit.tick() => commit_positions(&consumer, &open, &read_to, &mut committed, CommitMode::Async),
                Some((tp, offset, key, done)) = running.next(), if !running.is_empty() => {
                    if !done {
                        // Stopped mid-retry: the event stays unsettled for the next run.
                        stopping = true;
                        continue;
                    }
                    if open.get_mut(&tp).is_some_and(|o| o.remove(&offset)) {
                        open_count -= 1;
                    }
                    match busy.get_mut(&key).and_then(VecDeque::pop_front) {
                        Some(w) if !stopping => {
                            running.push(self.deliver_kafka(sub, key, w, stop.clone()));
                        }
                        Some(_) => {}
                        None => {
                            busy.remove(&key);
                        }
                    }
                }
                m = consumer.recv(), if room => {
                    let msg = match m {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "Kafka: receive failed");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    };
                    let tp: Tp = (msg.topic().to_owned(), msg.partition());
                    let offset = msg.offset();
                    read_to.insert(tp.clone(), offset + 1);
                    let event = match codec.decode(&msg) {
                        Ok(e) => e,
                        Err(DecodeError::NotAnEvent(why)) => {
                            tracing::warn!(topic = %tp.0, partition = tp.1, offset, error = %why, "Kafka: a record is not a CloudEvent; skipped");
                            continue;
                        }
                        Err(err @ DecodeError::WrongTopic { .. }) => {
                            tracing::warn!(partition = tp.1, offset, error = %err, "Kafka: a record varco did not write; skipped");
                            continue;
                        }
                        Err(err @ DecodeError::Seal(_)) => {
                            // Not deliverable as it is (its subject is lost to this instance),
                            // never dropped: the dead letters keep it, sealed, for an operator.
                            if let Ok(e) = rdkafka_event(&msg) {
                                if sub.admits(&e) {
                                    self.dead_letter(sub, &e, &err.to_string(), 0);
                                    self.bus.metrics.dead_lettered.with_label_values(&[&sub.tenant, &sub.cfg.name]).inc();
                                }
                            }
                            tracing::error!(error = %err, "Kafka: event moved to the dead letters");
                            continue;
                        }
                    };
                    if !sub.admits(&event) {
                        continue; // not for this subscription: settled as soon as it is read
                    }
                    // The relay's producer span, parent of the delivery's (tracing on only).
                    let parent = varco_telemetry::enabled()
                        .then(|| msg.headers())
                        .flatten()
                        .and_then(|h| h.iter().find(|h| h.key == "traceparent").and_then(|h| h.value))
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned);
                    if open.entry(tp.clone()).or_default().insert(offset) {
                        open_count += 1;
                    }
                    let key = event.subject().map_or_else(|| format!("\0{}", event.id()), str::to_owned);
                    match busy.get_mut(&key) {
                        Some(queue) => queue.push_back(Waiting { tp, offset, event, parent }),
                        None => {
                            busy.insert(key.clone(), VecDeque::new());
                            running.push(self.deliver_kafka(sub, key, Waiting { tp, offset, event, parent }, stop.clone()));
                        }
                    }
                }
            }
        }
        // A clean stop: what was settled is committed before the group is left, so the next
        // start (here or on another instance) sends nothing twice.
        let c = consumer.clone();
        let last = tokio::task::spawn_blocking(move || {
            commit_positions(&c, &open, &read_to, &mut committed, CommitMode::Sync);
        });
        if tokio::time::timeout(Duration::from_secs(3), last).await.is_err() {
            tracing::warn!(subscription = %sub.cfg.name, "Kafka: the last offsets were not committed in time");
        }
        lag_task.abort();
    }

    fn deliver_kafka<'a>(
        &'a self,
        sub: &'a Subscription,
        key: String,
        w: Waiting,
        mut stop: watch::Receiver<bool>,
    ) -> futures::future::BoxFuture<'a, Settled> {
        Box::pin(async move {
            let done = self.deliver(sub, &w.event, w.parent.as_deref(), &mut stop).await;
            (w.tp, w.offset, key, done)
        })
    }

    /// The lag gauge beside the loop: every 5 s, the group's committed offsets against the
    /// high watermarks (blocking calls, off the async workers).
    fn spawn_lag(
        &self,
        sub: &Subscription,
        k: &varco_config::KafkaConfig,
        consumer: Arc<StreamConsumer>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let lag = self.bus.metrics.subscription_lag.with_label_values(&[&sub.tenant, &sub.cfg.name]);
        // Its own connections: a broker answers one connection's requests in order, so
        // offset look-ups on the consumer's would queue behind a fetch the broker holds (tansu
        // held them past librdkafka's timeouts, stalling delivery for a minute).
        let mut c = crate::kafka::client_config(k);
        c.set("group.id", format!("varco.{}", sub.key())).set("enable.auto.commit", "false");
        let watcher: Option<Arc<rdkafka::consumer::BaseConsumer>> = c.create().ok().map(Arc::new);
        tokio::spawn(async move {
            let Some(watcher) = watcher else { return };
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                let (c, w) = (consumer.clone(), watcher.clone());
                if let Ok(Some(n)) = tokio::task::spawn_blocking(move || consumer_lag(&c, &w)).await {
                    lag.set(n);
                }
            }
        })
    }

    /// Moves the subscription's group offsets on every topic it reads to the first record at
    /// or after `from` (by time).
    pub(crate) async fn rewind_kafka(
        &self,
        sub: &Subscription,
        codec: &KafkaCodec,
        from: ReplayFrom,
    ) -> Result<String, String> {
        use rdkafka::consumer::BaseConsumer;
        let ReplayFrom::Time(t) = from else {
            return Err("with Kafka, replay from a time (`from_time`); sequence numbers are outbox positions".into());
        };
        let mut c = crate::kafka::client_config(&codec.cfg);
        c.set("group.id", format!("varco.{}", sub.key())).set("enable.auto.commit", "false");
        let topics = Self::topics_of(sub, codec);
        let ms = t.timestamp_millis();
        // librdkafka's admin calls block: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = c.create().map_err(|e| e.to_string())?;
            let timeout = Duration::from_secs(10);
            let mut tpl = TopicPartitionList::new();
            for topic in &topics {
                let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| e.to_string())?;
                let parts = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
                for p in 0..parts as i32 {
                    tpl.add_partition_offset(topic, p, Offset::Offset(ms)).map_err(|e| e.to_string())?;
                }
            }
            let found = consumer.offsets_for_times(tpl, timeout).map_err(|e| e.to_string())?;
            let mut commit = TopicPartitionList::new();
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => o,
                    // No record at or after the time: start at the end of the partition.
                    _ => consumer.fetch_watermarks(e.topic(), e.partition(), timeout).map_err(|e| e.to_string())?.1,
                };
                commit
                    .add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))
                    .map_err(|e| e.to_string())?;
            }
            consumer.commit(&commit, CommitMode::Sync).map_err(|e| e.to_string())?;
            Ok(format!(
                "Kafka offsets {:?}",
                commit.elements().iter().map(|e| (e.topic().to_owned(), e.partition(), e.offset())).collect::<Vec<_>>()
            ))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The settings of a subscription's consumer: its group, from the earliest offset when the
/// group has none, and static membership when `instance_id` is set.
fn subscription_consumer(k: &varco_config::KafkaConfig, sub: &Subscription) -> rdkafka::ClientConfig {
    let mut c = consumer_config(k, &format!("varco.{}", sub.key()));
    c.set("auto.offset.reset", "earliest");
    if let Some(id) = &k.instance_id {
        // Static membership: a restart within the session timeout keeps the partitions.
        c.set("group.instance.id", id);
    }
    c
}

/// The event of a record as it stands (no subject restored).
fn rdkafka_event<M: Message>(msg: &M) -> Result<Event, String> {
    cloudevents::binding::rdkafka::record_to_event(msg).map_err(|e| e.to_string())
}

/// Commits, for each partition this consumer holds, the first unsettled offset (or the one
/// after the last read), when it moved since the last commit.
fn commit_positions(
    consumer: &StreamConsumer,
    open: &HashMap<Tp, BTreeSet<i64>>,
    read_to: &HashMap<Tp, i64>,
    committed: &mut HashMap<Tp, i64>,
    mode: CommitMode,
) {
    // Partitions taken away by a rebalance are someone else's now: not committed from here.
    let Ok(assigned) = consumer.assignment() else { return };
    let mut tpl = TopicPartitionList::new();
    let mut moved = Vec::new();
    for e in assigned.elements() {
        let tp: Tp = (e.topic().to_owned(), e.partition());
        let Some(&after_read) = read_to.get(&tp) else { continue };
        let at = open.get(&tp).and_then(|o| o.first().copied()).unwrap_or(after_read);
        if committed.get(&tp) == Some(&at) {
            continue;
        }
        if tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(at)).is_ok() {
            moved.push((tp, at));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => committed.extend(moved),
        Err(e) => tracing::warn!(error = %e, "Kafka: cannot commit offsets"),
    }
}

/// Events the group has not settled on the partitions `c` holds: high watermark minus the
/// committed offset (the low watermark where nothing is committed yet), asked through `w`.
/// Blocking.
fn consumer_lag(c: &StreamConsumer, w: &rdkafka::consumer::BaseConsumer) -> Option<i64> {
    let timeout = Duration::from_secs(2);
    let committed = w.committed_offsets(c.assignment().ok()?, timeout).ok()?;
    let mut total = 0;
    for e in committed.elements() {
        let (low, high) = w.fetch_watermarks(e.topic(), e.partition(), timeout).ok()?;
        let pos = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        total += (high - pos).max(0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_consumer_is_a_static_member_when_asked() {
        let cfg: varco_config::Config = varco_config::load_str(
            r#"
server: {events: {kafka: {brokers: "k:9092", subject_key: {env: K}, instance_id: varco-a}}}
listeners: [{name: public, address: "127.0.0.1:8080"}]
tenants:
  - id: c_a662
    name: Bari
    events:
      subscriptions: [{name: anagrafe, types: [it.varco.anagrafe.residenza.cambiata.v1], sources: [c_a662], webhook: {url: "http://h/x", secret: {env: PATH}}}]
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let subs = Subscription::all(&cfg).unwrap();
        let mut k = cfg.server.events.kafka.clone().unwrap();
        let c = subscription_consumer(&k, &subs[0]);
        assert_eq!(c.get("group.id"), Some("varco.c_a662.anagrafe"));
        assert_eq!(c.get("group.instance.id"), Some("varco-a"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"), "offsets are committed when settled");
        k.instance_id = None;
        assert_eq!(subscription_consumer(&k, &subs[0]).get("group.instance.id"), None, "dynamic by default");
        // Properties win over varco's defaults (e.g. a longer session for static members).
        k.properties.insert("session.timeout.ms".into(), "60000".into());
        assert_eq!(subscription_consumer(&k, &subs[0]).get("session.timeout.ms"), Some("60000"));
    }
}
