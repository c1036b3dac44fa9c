//! Subscriptions: events an ente may read are delivered to its back-office webhook, in order,
//! at least once.
//!
//! - Source: the Kafka topics of the enti it reads (`delivery_kafka.rs`: one consumer group per
//!   subscription) or, in single-node mode, the outbox itself (a cursor per subscription).
//! - ACL: an event is delivered only when its `source` ente is listed in the subscription and
//!   grants this ente its `type` (`events.readers`); everything else is skipped (deny by
//!   default).
//! - Request: `POST` of the structured CloudEvent, `Idempotency-Key: <id>`,
//!   `X-Varco-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A 2xx settles
//!   the event; anything else is retried with exponential backoff and jitter, then written to
//!   the dead-letter store (`<outbox dir>/dead-letter/<ente>.<subscription>.jsonl`).

use crate::bus::EventBus;
use crate::webhook::{retry_after, signature, standard_signature, Failure};
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use varco_config::{Config, SubscriptionConfig};

type HttpClient = varco_outbound::HttpsClient;

/// A subscription ready to run.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub tenant: String,
    pub cfg: SubscriptionConfig,
    secret: Vec<u8>,
    /// (source ente, type) pairs this subscription may receive.
    allowed: HashSet<(String, String)>,
    /// The in-process target of a `route` subscription, set by the gateway.
    pub sink: Option<Arc<dyn varco_core::Adapter>>,
}

impl PartialEq for Subscription {
    fn eq(&self, o: &Self) -> bool {
        let same_sink = match (&self.sink, &o.sink) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_sink
            && self.tenant == o.tenant
            && self.cfg == o.cfg
            && self.secret == o.secret
            && self.allowed == o.allowed
    }
}

impl Subscription {
    /// Every subscription of a configuration, with its secret read and its grants resolved.
    pub fn all(cfg: &Config) -> Result<Vec<Subscription>, String> {
        let mut out = Vec::new();
        for t in &cfg.tenants {
            for s in &t.events.subscriptions {
                let secret = match s.webhook.as_ref().map(|w| &w.secret) {
                    None => Vec::new(),
                    Some(r) => {
                        let mut b =
                            crate::bus::read_secret(r).map_err(|e| format!("subscription `{}`: {e}", s.name))?;
                        if matches!(r, varco_config::SecretRef::File(_)) {
                            // A secret file's trailing whitespace is not part of the secret.
                            b.truncate(b.trim_ascii_end().len());
                        }
                        b
                    }
                };
                let mut allowed = HashSet::new();
                for src in &s.sources {
                    let owner = cfg.tenants.iter().find(|o| &o.id == src);
                    for ty in &s.types {
                        let granted = src == &t.id
                            || owner.is_some_and(|o| {
                                o.events.readers.iter().any(|g| g.tenant == t.id && g.types.contains(ty))
                            });
                        if granted {
                            allowed.insert((src.clone(), ty.clone()));
                        }
                    }
                }
                out.push(Subscription { tenant: t.id.clone(), cfg: s.clone(), secret, allowed, sink: None });
            }
        }
        Ok(out)
    }

    pub(crate) fn key(&self) -> String {
        format!("{}.{}", self.tenant, self.cfg.name)
    }

    /// The (source ente, type) pairs this subscription is granted.
    pub fn allowed_pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.allowed.iter().map(|(e, t)| (e.as_str(), t.as_str()))
    }

    /// Whether the ACL lets this event through.
    pub fn admits(&self, e: &Event) -> bool {
        let src = e.source().as_str();
        let ente = src.strip_prefix("/enti/").map(|r| r.split('/').next().unwrap_or(""));
        ente.is_some_and(|ente| self.allowed.contains(&(ente.to_owned(), e.ty().to_owned())))
    }
}

/// Runs and replaces subscription workers as configurations come and go.
#[derive(Debug)]
pub struct Deliveries {
    pub(crate) bus: Arc<EventBus>,
    client: HttpClient,
    pub(crate) workers: Mutex<HashMap<String, Worker>>,
    /// Serialises writes to the dead-letter files (workers append, the admin API rewrites).
    pub(crate) dead: Mutex<()>,
    /// Kafka mode: the producer of the dead-letter topics.
    pub(crate) dead_topic: Option<crate::kafka::TopicProducer>,
}

#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) sub: Subscription,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayFrom {
    /// An outbox sequence number (single-node mode).
    Sequence(u64),
    /// The first event at or after this time.
    Time(chrono::DateTime<chrono::Utc>),
}

/// Deliveries one single-node subscription runs at once (each for a different subject).
pub(crate) const LANES: usize = 16;
/// Events read ahead of the first unsettled one, at most.
pub(crate) const READ_AHEAD: usize = 4096;

/// The outbox position of a single-node subscription.
fn local_cursor(key: &str) -> String {
    format!("sub.{key}")
}

impl Deliveries {
    pub fn new(bus: Arc<EventBus>) -> Result<Arc<Self>, String> {
        let client = varco_outbound::https_client();
        let dead_topic = match &bus.kafka {
            Some(codec) => Some(crate::kafka::topic_producer(&codec.cfg)?),
            None => None,
        };
        Ok(Arc::new(Self { bus, client, workers: Mutex::new(HashMap::new()), dead: Mutex::new(()), dead_topic }))
    }

    /// Starts new or changed subscriptions and stops removed ones (on the caller's runtime).
    pub fn sync(self: &Arc<Self>, subs: Vec<Subscription>) {
        let mut workers = self.workers.lock();
        let wanted: HashSet<String> = subs.iter().map(Subscription::key).collect();
        let removed: Vec<String> = workers.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
        if self.bus.config.kafka.is_none() {
            // Positions left by subscriptions that are gone from the configuration (removed
            // while varco was stopped) are forgotten too.
            for name in self.bus.outbox.readers() {
                let Some(key) = name.strip_prefix("sub.") else { continue };
                if !wanted.contains(key) && !workers.contains_key(key) {
                    self.bus.outbox.forget(&name);
                }
            }
        }
        for key in removed {
            let Some(w) = workers.remove(&key) else { continue };
            let _ = w.stop.send(true);
            if self.bus.config.kafka.is_none() {
                // A removed subscription's position must not pin the outbox: forget it once
                // its worker has stopped (and unless the subscription came back meanwhile).
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = w.task.await;
                    if !this.workers.lock().contains_key(&key) {
                        this.bus.outbox.forget(&local_cursor(&key));
                    }
                });
            }
        }
        for s in subs {
            let key = s.key();
            if workers.get(&key).is_some_and(|w| w.sub == s) {
                continue;
            }
            if let Some(w) = workers.remove(&key) {
                let _ = w.stop.send(true);
            }
            workers.insert(key, self.spawn(s));
        }
    }

    fn spawn(self: &Arc<Self>, sub: Subscription) -> Worker {
        let (stop, rx) = watch::channel(false);
        let this = self.clone();
        let s = sub.clone();
        let task = tokio::spawn(async move { this.run(s, rx).await });
        Worker { sub, stop, task }
    }

    /// Stops every worker.
    /// Stops every worker and waits for each (at most `within`): a delivery attempt in
    /// flight completes and its position is saved, so a clean stop sends nothing twice.
    pub async fn stop_all(&self, within: Duration) {
        let workers: Vec<Worker> = self.workers.lock().drain().map(|(_, w)| w).collect();
        for w in &workers {
            let _ = w.stop.send(true);
        }
        let all = futures::future::join_all(workers.into_iter().map(|w| w.task));
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("event delivery did not stop in time; undelivered events go out after the restart");
        }
    }

    /// Delivers again from `from`: stops the subscription's worker, moves its position, starts
    /// it again. Receivers see the events a second time with the same `Idempotency-Key`.
    pub async fn replay(self: &Arc<Self>, tenant: &str, name: &str, from: ReplayFrom) -> Result<String, String> {
        let key = format!("{tenant}.{name}");
        let w =
            self.workers.lock().remove(&key).ok_or_else(|| format!("ente `{tenant}` has no subscription `{name}`"))?;
        let _ = w.stop.send(true);
        let _ = w.task.await;
        let moved = match self.bus.config.kafka {
            None => self.rewind_local(&w.sub, from),
            Some(_) => match self.bus.kafka.clone() {
                Some(codec) => self.rewind_kafka(&w.sub, &codec, from).await,
                None => Err("Kafka is not available".into()),
            },
        };
        let again = self.spawn(w.sub);
        self.workers.lock().insert(key, again);
        moved
    }

    fn rewind_local(&self, sub: &Subscription, from: ReplayFrom) -> Result<String, String> {
        let outbox = &self.bus.outbox;
        let seq = match from {
            ReplayFrom::Sequence(n) => n.max(outbox.first_available()),
            ReplayFrom::Time(t) => {
                let mut r = outbox.reader(outbox.first_available());
                let mut found = outbox.committed() + 1;
                while let Some((seq, bytes)) = r.try_next().map_err(|e| e.to_string())? {
                    let at = serde_json::from_slice::<Event>(&bytes).ok().and_then(|e| e.time().copied());
                    if at.is_some_and(|at| at >= t) {
                        found = seq;
                        break;
                    }
                }
                found
            }
        };
        let mut cursor = outbox.cursor(&local_cursor(&sub.key()));
        cursor.advance(seq);
        cursor.save().map_err(|e| e.to_string())?;
        Ok(format!("outbox sequence {seq}"))
    }

    async fn run(self: Arc<Self>, sub: Subscription, mut stop: watch::Receiver<bool>) {
        tracing::info!(tenant = %sub.tenant, subscription = %sub.cfg.name, "subscription started");
        match self.bus.kafka.clone() {
            Some(codec) => self.run_kafka(&sub, &codec, &mut stop).await,
            None => self.run_local(&sub, &mut stop).await,
        }
    }

    /// Single-node mode: read the outbox from the subscription's cursor and deliver events of
    /// different subjects side by side (at most [`LANES`] at once), each subject's events one
    /// after the other in outbox order. The position is the first event not yet settled; it
    /// is saved (written and synced) at most every 100 ms and when the worker stops, not per
    /// event: a crash re-delivers what came after the last save (at least once, with the same
    /// `Idempotency-Key`).
    async fn run_local(&self, sub: &Subscription, stop: &mut watch::Receiver<bool>) {
        let mut cursor = self.bus.outbox.cursor(&local_cursor(&sub.key()));
        let mut reader = self.bus.outbox.reader(cursor.next());
        let lag = self.bus.metrics.subscription_lag.with_label_values(&[&sub.tenant, &sub.cfg.name]);
        let mut save = tokio::time::interval(Duration::from_millis(100));
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Read but not settled, by sequence number; the position is the smallest of them.
        let mut open: BTreeSet<u64> = BTreeSet::new();
        // Subjects with a delivery running, and the events waiting behind it.
        let mut busy: HashMap<String, VecDeque<(u64, Event)>> = HashMap::new();
        let mut running: FuturesUnordered<futures::future::BoxFuture<'_, (u64, String, bool)>> =
            FuturesUnordered::new();
        let mut stopping = false;
        let settled = |open: &BTreeSet<u64>, reader: &crate::outbox::Reader| {
            open.first().copied().unwrap_or_else(|| reader.position())
        };
        let persist = |cursor: &mut crate::outbox::Cursor| {
            if let Err(e) = cursor.save() {
                tracing::error!(error = %e, "cannot save a subscription cursor");
            }
            lag.set((self.bus.outbox.committed() + 1).saturating_sub(cursor.next()) as i64);
        };
        loop {
            if stopping && running.is_empty() {
                break;
            }
            let room = !stopping && open.len() < READ_AHEAD && running.len() < LANES;
            tokio::select! {
                _ = stop.changed(), if !stopping => stopping = true,
                _ = save.tick() => {
                    cursor.advance(settled(&open, &reader));
                    persist(&mut cursor);
                }
                Some((seq, key, done)) = running.next(), if !running.is_empty() => {
                    if !done {
                        // Stopped mid-retry: the event stays unsettled for the next run.
                        stopping = true;
                        continue;
                    }
                    open.remove(&seq);
                    let next = busy.get_mut(&key).and_then(VecDeque::pop_front);
                    match next {
                        Some((seq, event)) if !stopping => running.push(self.deliver_one(sub, seq, key, event, stop.clone())),
                        Some(_) => {}
                        None => {
                            busy.remove(&key);
                        }
                    }
                }
                n = reader.next(), if room => {
                    let (seq, bytes) = match n {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "outbox read failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    let Some(event) = serde_json::from_slice::<Event>(&bytes).ok().filter(|e| sub.admits(e)) else {
                        continue; // not for this subscription: settled as soon as it is read
                    };
                    open.insert(seq);
                    let key = event.subject().map_or_else(|| format!("\0{}", event.id()), str::to_owned);
                    match busy.get_mut(&key) {
                        Some(queue) => queue.push_back((seq, event)),
                        None => {
                            busy.insert(key.clone(), VecDeque::new());
                            running.push(self.deliver_one(sub, seq, key, event, stop.clone()));
                        }
                    }
                }
            }
        }
        cursor.advance(settled(&open, &reader));
        persist(&mut cursor);
    }

    /// One event's delivery as a future of (sequence, subject key, settled).
    fn deliver_one<'a>(
        &'a self,
        sub: &'a Subscription,
        seq: u64,
        key: String,
        event: Event,
        mut stop: watch::Receiver<bool>,
    ) -> futures::future::BoxFuture<'a, (u64, String, bool)> {
        Box::pin(async move {
            let done = self.deliver(sub, &event, None, &mut stop).await;
            (seq, key, done)
        })
    }

    /// Delivers one event with retries; false only when stopped before it was settled. With
    /// tracing on, the delivery is a consumer span, a child of `parent` (the Kafka record's
    /// `traceparent`) or of the event's own `traceparent`, and the receiver's parent.
    pub(crate) async fn deliver(
        &self,
        sub: &Subscription,
        e: &Event,
        parent: Option<&str>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut span = match parent {
            Some(p) => varco_telemetry::start("deliver", varco_telemetry::Kind::Consumer, Some(p)),
            None => e
                .extension("traceparent")
                .filter(|_| varco_telemetry::enabled())
                .map(|v| v.to_string())
                .and_then(|p| varco_telemetry::start("deliver", varco_telemetry::Kind::Consumer, Some(&p))),
        };
        if let Some(s) = span.as_mut() {
            s.rename(format!("deliver {}", sub.cfg.name));
            s.set("varco.tenant", sub.tenant.clone());
            s.set("varco.subscription", sub.cfg.name.clone());
            s.set("messaging.message.id", e.id().to_owned());
        }
        let tp = span.as_ref().map(|s| s.traceparent_string());
        let done = self.deliver_attempts(sub, e, tp.as_deref(), stop).await;
        if let (Some(s), Some((attempts, failure))) = (span.as_mut(), &done) {
            s.set("varco.attempts", i64::from(*attempts));
            if let Some(f) = failure {
                s.fail(f.clone());
            }
        }
        done.is_some()
    }

    /// The attempts of one delivery: `None` when stopped first, else the attempts made and,
    /// when it was dead-lettered, why.
    async fn deliver_attempts(
        &self,
        sub: &Subscription,
        e: &Event,
        tp: Option<&str>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(u32, Option<String>)> {
        let labels = [sub.tenant.as_str(), sub.cfg.name.as_str()];
        let body = Bytes::from(serde_json::to_vec(e).unwrap_or_default());
        let mut delay = sub.cfg.backoff.0;
        let mut last_error = String::new();
        let mut attempts = 0;
        for attempt in 1..=sub.cfg.max_attempts {
            attempts = attempt;
            let result = match &sub.sink {
                Some(sink) => match serde_json::to_value(e) {
                    Ok(mut v) => {
                        // The adapter's own calls continue the delivery's span.
                        if let (Some(tp), Some(o)) = (tp, v.as_object_mut()) {
                            o.insert("traceparent".into(), tp.into());
                        }
                        sink.on_event(&v).await.map_err(Failure::retry)
                    }
                    Err(err) => Err(Failure::retry(err.to_string())),
                },
                None => self.post(sub, e.id(), &body, tp).await,
            };
            let wait = match result {
                Ok(()) => {
                    self.bus.metrics.delivered.with_label_values(&labels).inc();
                    return Some((attempt, None));
                }
                Err(f) => {
                    self.bus.metrics.delivery_failures.with_label_values(&labels).inc();
                    tracing::warn!(tenant = %sub.tenant, subscription = %sub.cfg.name, id = %e.id(), attempt, error = %f.why, "webhook delivery failed");
                    last_error = f.why;
                    if f.permanent {
                        // The receiver refuses this event for good: retrying cannot help, and
                        // it would hold up every event behind it.
                        break;
                    }
                    f.retry_after
                }
            };
            if attempt == sub.cfg.max_attempts {
                break;
            }
            // Exponential backoff with ±50 % jitter, so that retries of many enti spread out;
            // a receiver's `Retry-After` (429, 503) is honoured, up to `max_backoff`.
            let wait = match wait {
                Some(w) => w.min(sub.cfg.max_backoff.0),
                None => delay.mul_f64(0.5 + fastrand::f64()),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return None,
            }
            delay = (delay * 2).min(sub.cfg.max_backoff.0);
        }
        self.dead_letter(sub, e, &last_error, attempts);
        self.bus.metrics.dead_lettered.with_label_values(&labels).inc();
        Some((attempts, Some(format!("dead-lettered: {last_error}"))))
    }

    pub(crate) async fn post(
        &self,
        sub: &Subscription,
        id: &str,
        body: &Bytes,
        tp: Option<&str>,
    ) -> Result<(), Failure> {
        let Some(hook) = &sub.cfg.webhook else { return Err(Failure::retry("no webhook and no route target")) };
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let req = http::Request::post(&hook.url)
            .header(http::header::CONTENT_TYPE, "application/cloudevents+json")
            .header("idempotency-key", id)
            .header("x-varco-signature", signature(&sub.secret, t, body))
            // The same proof as Standard Webhooks headers, for receivers that use its libraries.
            .header("webhook-id", id)
            .header("webhook-timestamp", t)
            .header("webhook-signature", standard_signature(&sub.secret, id, t, body))
            .header("x-varco-subscription", sub.cfg.name.as_str());
        let req = match tp {
            Some(tp) => req.header(varco_core::headers::TRACEPARENT.clone(), tp),
            None => req,
        }
        .body(Full::new(body.clone()))
        .map_err(|e| Failure::retry(e.to_string()))?;
        let resp = tokio::time::timeout(hook.timeout.0, self.client.request(req))
            .await
            .map_err(|_| Failure::retry("timed out"))?
            .map_err(|e| Failure::retry(format!("{e}")))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let _ = resp.into_body().collect().await;
        Failure::of_status(status.as_u16(), retry_after)
    }
}
