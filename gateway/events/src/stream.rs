//! Live events for apps: `GET` on an `event_stream` route answers `text/event-stream`
//! (server-sent events) with the events this ente may read, as they are published.
//!
//! - ACL: the same as subscriptions, deny by default: the ente's own events, and the types
//!   other enti grant it in `events.readers`. `?types=a,b` and `?sources=ente,…` narrow it.
//! - Source: in single-node mode the outbox, so `Last-Event-ID` (the outbox sequence number)
//!   resumes exactly after the last event a client saw; with Kafka, a consumer per stream
//!   assigned to the end of the topics of what the ente may read, chosen when the stream
//!   opens (live only: ids are `<partition>-<offset>`, not resumable).
//! - Frames: `id`, `event` (the CloudEvents `type`), `data` (the structured CloudEvent on one
//!   line); a `: keep-alive` comment after `heartbeat` without events, so that proxies keep
//!   the connection and a vanished caller is noticed.
//! - Each stream reads at its caller's pace (a channel of a few frames): a slow app holds
//!   no more than that in memory.
//! - A reload applies to open streams: the ACL in force is swapped for the new one (a revoked
//!   grant stops at once), the count of open streams carries over, and the streams of a route
//!   the new configuration no longer has end.

use crate::bus::EventBus;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use futures::StreamExt;
use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use varco_config::Config;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, BodyStream, Problem, ProblemKind};

/// What one ente may read: by source ente, the admitted types (`None`: all, its own events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamAcl(HashMap<String, Option<HashSet<String>>>);

impl StreamAcl {
    /// The ente's grants in a configuration (pure).
    pub fn for_tenant(cfg: &Config, tenant: &str) -> Self {
        let mut m: HashMap<String, Option<HashSet<String>>> = HashMap::new();
        m.insert(tenant.to_owned(), None);
        for o in cfg.tenants.iter().filter(|o| o.id != tenant) {
            for g in o.events.readers.iter().filter(|g| g.tenant == tenant) {
                if let Some(types) = m.entry(o.id.clone()).or_insert_with(|| Some(HashSet::new())) {
                    types.extend(g.types.iter().cloned());
                }
            }
        }
        Self(m)
    }

    fn admits(&self, ente: &str, ty: &str) -> bool {
        self.0.get(ente).is_some_and(|t| t.as_ref().is_none_or(|t| t.contains(ty)))
    }

    /// The (source ente, type) pairs admitted, among the `known` types.
    fn pairs<'a>(&'a self, known: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        let mut out = Vec::new();
        for (ente, types) in &self.0 {
            for ty in known.iter().filter(|t| types.as_ref().is_none_or(|s| s.contains(**t))) {
                out.push((ente.as_str(), *ty));
            }
        }
        out
    }
}

/// The caller's narrowing of the stream (`?types=…&sources=…`); empty lists admit all.
#[derive(Debug, Default, PartialEq, Eq)]
struct Narrowing {
    types: HashSet<String>,
    sources: HashSet<String>,
}

impl Narrowing {
    fn parse(query: Option<&str>) -> Result<Self, Problem> {
        let mut n = Self::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let set = match k {
                "types" => &mut n.types,
                "sources" => &mut n.sources,
                _ => {
                    return Err(Problem::new(
                        ProblemKind::BadRequest,
                        format!("unknown query parameter `{k}`: use `types` and `sources` (comma-separated)"),
                    ))
                }
            };
            set.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
        }
        Ok(n)
    }

    fn admits(&self, ente: &str, ty: &str) -> bool {
        (self.types.is_empty() || self.types.contains(ty)) && (self.sources.is_empty() || self.sources.contains(ente))
    }
}

/// What the streams of one route share across reloads.
#[derive(Debug, Default)]
pub struct StreamRoute {
    /// Streams open now (each holds a [`StreamSlot`]).
    open: AtomicUsize,
    /// The ACL in force: the committed configuration's (empty, so denying all, until then).
    acl: ArcSwap<StreamAcl>,
    /// The configuration in force no longer has this route: its streams end.
    retired: AtomicBool,
}

/// The stream routes of every ente, by (ente, route name), kept across reloads.
#[derive(Debug, Default)]
pub struct StreamRegistry(Mutex<HashMap<(String, String), Arc<StreamRoute>>>);

impl StreamRegistry {
    /// The shared state of a route's streams; a configuration being built gets the same one
    /// as the configuration in force.
    pub fn get(&self, tenant: &str, route: &str) -> Arc<StreamRoute> {
        // A retired route left the map, so an entry found here is never retired.
        self.0.lock().entry((tenant.to_owned(), route.to_owned())).or_default().clone()
    }

    /// Called once a configuration is in force (never for one that failed to build, so a
    /// rejected reload changes nothing): its stream adapters' ACLs apply to the open streams,
    /// and routes it no longer has are retired and forgotten.
    pub fn commit(&self, live: &[(Arc<StreamRoute>, Arc<StreamAcl>)]) {
        let mut m = self.0.lock();
        m.retain(|_, r| {
            let keep = live.iter().any(|(l, _)| Arc::ptr_eq(l, r));
            if !keep {
                r.acl.store(Arc::default());
                r.retired.store(true, Ordering::Release);
            }
            keep
        });
        for (route, acl) in live {
            route.acl.store(acl.clone());
        }
    }
}

/// One stream's filter: the route's ACL in force, then the caller's narrowing.
struct Filter {
    route: Arc<StreamRoute>,
    narrowing: Narrowing,
}

impl Filter {
    /// The SSE frame for an event that passes, `None` otherwise.
    fn frame(&self, id: &str, e: &Event) -> Option<Bytes> {
        let ente = e.source().as_str().strip_prefix("/enti/")?.split('/').next()?;
        if !self.route.acl.load().admits(ente, e.ty()) || !self.narrowing.admits(ente, e.ty()) {
            return None;
        }
        // Compact JSON has no line breaks, so one `data:` line carries the whole event.
        let data = serde_json::to_string(e).ok()?;
        Some(Bytes::from(format!("id: {id}\nevent: {}\ndata: {data}\n\n", e.ty())))
    }

    fn retired(&self) -> bool {
        self.route.retired.load(Ordering::Acquire)
    }
}

/// The `event_stream` adapter of one ente's route.
#[derive(Debug)]
pub struct EventStreamAdapter {
    pub bus: Arc<EventBus>,
    /// This configuration's ACL for the ente; in force once [`StreamRegistry::commit`] ran.
    pub acl: Arc<StreamAcl>,
    pub heartbeat: Duration,
    pub max_streams: usize,
    /// Shared with the same route of other configurations (see [`StreamRegistry`]).
    pub route: Arc<StreamRoute>,
}

/// One open stream, counted until the caller's body stream is dropped.
struct StreamSlot(Arc<StreamRoute>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `Last-Event-ID` as this stream gave it out: the decimal outbox sequence number.
fn parse_last_event_id(v: &http::HeaderValue) -> Result<Option<u64>, Problem> {
    let bad = || Problem::new(ProblemKind::BadRequest, "Last-Event-ID is not an id this stream gave out");
    let id = v.to_str().map_err(|_| bad())?.trim();
    if id.is_empty() {
        return Ok(None);
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    id.parse::<u64>().map(Some).map_err(|_| bad())
}

#[async_trait]
impl Adapter for EventStreamAdapter {
    fn kind(&self) -> &'static str {
        "event_stream"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        self.open(req).await.map(|(head, body)| Answer::Stream(head, body))
    }
}

impl EventStreamAdapter {
    /// The answer's header and the stream of frames, for as long as the caller stays.
    async fn open(&self, req: AdapterRequest<'_>) -> Result<(AdapterResponse, BodyStream), Problem> {
        if req.method != http::Method::GET {
            let mut p = Problem::new(ProblemKind::MethodNotAllowed, "the event stream is read with GET");
            p.allow = Some("GET".into());
            return Err(p);
        }
        let filter = Filter { route: self.route.clone(), narrowing: Narrowing::parse(req.query)? };
        // Single node: resume after `Last-Event-ID` (an outbox sequence number), else from now.
        // With Kafka the stream is live only: a reconnecting `EventSource`'s id is ignored.
        let sent = req.headers.get("last-event-id").filter(|_| self.bus.config.kafka.is_none());
        let resume = sent.map(parse_last_event_id).transpose()?.flatten();
        if self.route.open.fetch_add(1, Ordering::AcqRel) >= self.max_streams {
            self.route.open.fetch_sub(1, Ordering::AcqRel);
            let p = Problem::new(
                ProblemKind::Overloaded,
                format!("this route has its maximum of {} open streams", self.max_streams),
            );
            return Err(p.retry_after(10));
        }
        let slot = StreamSlot(self.route.clone());
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        match self.bus.config.kafka.clone() {
            None => {
                // An id past the end (an outbox that was wiped, or a made-up id) resumes from
                // now rather than waiting silently for that sequence number.
                let now = self.bus.outbox.committed();
                let from = resume.map_or(now, |id| id.min(now)) + 1;
                tokio::spawn(from_outbox(self.bus.clone(), from, filter, tx, self.heartbeat));
            }
            Some(_) => {
                let Some(codec) = self.bus.kafka.clone() else {
                    return Err(Problem::new(ProblemKind::Internal, "the Kafka codec is missing"));
                };
                // The topics of what the ente may read (and the caller asked for), at open time.
                let known: Vec<&str> = self.bus.registry.names().collect();
                let pairs: Vec<(&str, &str)> =
                    self.acl.pairs(&known).into_iter().filter(|(e, t)| filter.narrowing.admits(e, t)).collect();
                let topics = codec.topics_for(pairs);
                let consumer = kafka_at_end(&codec, topics).await.map_err(|e| {
                    tracing::warn!(error = %e, "event stream: Kafka unavailable");
                    Problem::new(ProblemKind::UpstreamUnavailable, "the event bus is not reachable; retry later")
                        .retry_after(5)
                })?;
                tokio::spawn(from_kafka(consumer, codec, filter, tx, self.heartbeat));
            }
        }
        let mut head = AdapterResponse { status: 200, headers: Vec::new(), body: Bytes::new() };
        for (k, v) in [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-store"),
            (http::HeaderName::from_static("x-accel-buffering"), "no"),
        ] {
            head.headers.push((k, http::HeaderValue::from_static(v)));
        }
        // A first comment: the caller sees the stream is open before any event comes.
        let opening = futures::stream::once(async { Bytes::from_static(b": varco event stream\n\n") });
        // The slot travels with the stream: dropped (caller gone or stream over), it frees.
        let frames =
            futures::stream::unfold(
                (rx, slot),
                |(mut rx, slot)| async move { rx.recv().await.map(|b| (b, (rx, slot))) },
            );
        Ok((head, opening.chain(frames).boxed()))
    }
}

/// Reads the outbox from `from` on, for as long as the caller reads.
async fn from_outbox(bus: Arc<EventBus>, from: u64, filter: Filter, tx: mpsc::Sender<Bytes>, heartbeat: Duration) {
    let mut reader = bus.outbox.reader(from.max(bus.outbox.first_available()));
    // The keep-alive is due `heartbeat` after the last frame the caller was sent, however
    // many events it was not shown in between.
    let mut quiet = Box::pin(tokio::time::sleep(heartbeat));
    loop {
        if filter.retired() {
            return;
        }
        let next = tokio::select! {
            _ = tx.closed() => return,
            n = reader.next() => n,
            _ = &mut quiet => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() { return }
                quiet.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                continue;
            }
        };
        match next {
            Ok((seq, bytes)) => {
                // A record that is not an event is not the caller's: skip it.
                let Ok(event) = serde_json::from_slice::<Event>(&bytes) else { continue };
                if let Some(f) = filter.frame(&seq.to_string(), &event) {
                    if tx.send(f).await.is_err() {
                        return;
                    }
                    quiet.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                }
            }
            Err(crate::outbox::OutboxError::Stopped) => return,
            Err(e) => {
                // A segment reclaimed under a slow reader: go on from what is left.
                tracing::warn!(error = %e, "event stream: outbox read failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let first = bus.outbox.first_available();
                if reader.position() < first {
                    reader.seek(first);
                }
            }
        }
    }
}

/// A consumer assigned to every partition of `topics` at their current end: no group to join,
/// so the stream is live at once. Missing topics are created when allowed, else left out.
async fn kafka_at_end(codec: &crate::kafka::KafkaCodec, topics: Vec<String>) -> Result<StreamConsumer, String> {
    let k = &codec.cfg;
    crate::kafka::ensure_topics(k, &topics).await?;
    let c = crate::kafka::consumer_config(k, &format!("varco.stream.{:016x}", fastrand::u64(..)));
    let consumer: StreamConsumer = c.create().map_err(|e| e.to_string())?;
    // Metadata is a blocking call in librdkafka.
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for topic in &topics {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).map_err(|e| e.to_string())?;
            for t in md.topics().iter().filter(|t| t.name() == topic && t.error().is_none()) {
                for p in t.partitions() {
                    // The end resolved now (not lazily by the fetcher): nothing published after
                    // the stream opened can fall before its start.
                    let (_, high) =
                        consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map_err(|e| e.to_string())?;
                    tpl.add_partition_offset(topic, p.id(), Offset::Offset(high)).map_err(|e| e.to_string())?;
                }
            }
        }
        if tpl.count() == 0 {
            return Err(format!("none of the topics {topics:?} has partitions"));
        }
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        Ok(consumer)
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn from_kafka(
    consumer: StreamConsumer,
    codec: Arc<crate::kafka::KafkaCodec>,
    filter: Filter,
    tx: mpsc::Sender<Bytes>,
    heartbeat: Duration,
) {
    let mut quiet = Box::pin(tokio::time::sleep(heartbeat));
    loop {
        if filter.retired() {
            return;
        }
        let msg = tokio::select! {
            _ = tx.closed() => return,
            m = consumer.recv() => m,
            _ = &mut quiet => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() { return }
                quiet.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                continue;
            }
        };
        let frame = match msg {
            Ok(m) => match codec.decode(&m) {
                Ok(e) => {
                    filter.frame(&format!("{}-{}", rdkafka::Message::partition(&m), rdkafka::Message::offset(&m)), &e)
                }
                Err(_) => None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "event stream: Kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                None
            }
        };
        if let Some(f) = frame {
            if tx.send(f).await.is_err() {
                return;
            }
            quiet.as_mut().reset(tokio::time::Instant::now() + heartbeat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, ty: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": "e-1", "source": source, "type": ty,
            "datacontenttype": "application/json", "data": {"a": 1}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn acl() -> Arc<StreamAcl> {
        let mut m = HashMap::new();
        m.insert("c_b".to_owned(), None);
        m.insert("c_a".to_owned(), Some(HashSet::from(["it.varco.x.v1".to_owned()])));
        Arc::new(StreamAcl(m))
    }

    fn filter(acl: Arc<StreamAcl>, narrowing: Narrowing) -> Filter {
        let route = Arc::new(StreamRoute::default());
        route.acl.store(acl);
        Filter { route, narrowing }
    }

    #[test]
    fn acl_admits_own_events_and_granted_types_only() {
        let f = filter(acl(), Narrowing::default());
        assert!(f.frame("1", &event("/enti/c_b/app", "it.varco.y.v1")).is_some());
        assert!(f.frame("2", &event("/enti/c_a/app", "it.varco.x.v1")).is_some());
        assert!(f.frame("3", &event("/enti/c_a/app", "it.varco.y.v1")).is_none());
        assert!(f.frame("4", &event("/enti/c_c/app", "it.varco.x.v1")).is_none());
        assert!(f.frame("5", &event("/other/c_b", "it.varco.x.v1")).is_none());
    }

    #[test]
    fn narrowing_only_narrows() {
        let n = Narrowing::parse(Some("types=it.varco.x.v1&sources=c_a,c_c")).unwrap_or_else(|p| panic!("{p:?}"));
        let f = filter(acl(), n);
        assert!(f.frame("1", &event("/enti/c_a/app", "it.varco.x.v1")).is_some());
        assert!(f.frame("2", &event("/enti/c_b/app", "it.varco.x.v1")).is_none());
        // Asking for a source the ACL denies does not open it.
        assert!(f.frame("3", &event("/enti/c_c/app", "it.varco.x.v1")).is_none());
        assert!(Narrowing::parse(Some("from=3")).is_err());
        assert_eq!(Narrowing::parse(None).ok(), Some(Narrowing::default()));
    }

    #[test]
    fn frame_is_one_sse_event() {
        let f = filter(acl(), Narrowing::default());
        let b = f.frame("42", &event("/enti/c_b/app", "it.varco.y.v1")).unwrap_or_default();
        let text = std::str::from_utf8(&b).unwrap_or("");
        assert!(text.starts_with("id: 42\nevent: it.varco.y.v1\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 4, "one data line: {text}");
    }

    #[test]
    fn a_commit_puts_the_new_acl_in_force_and_retires_dropped_routes() {
        let reg = StreamRegistry::default();
        let live = reg.get("c_b", "live");
        let f = Filter { route: live.clone(), narrowing: Narrowing::default() };
        // Built but not committed: nothing passes yet.
        assert!(f.frame("1", &event("/enti/c_b/app", "it.varco.y.v1")).is_none());
        reg.commit(&[(live.clone(), acl())]);
        assert!(f.frame("2", &event("/enti/c_a/app", "it.varco.x.v1")).is_some());
        // A reload revokes c_a's grant: the open stream stops showing c_a's events at once.
        let again = reg.get("c_b", "live");
        assert!(Arc::ptr_eq(&again, &live), "the same route shares its state across reloads");
        let mut own_only = HashMap::new();
        own_only.insert("c_b".to_owned(), None);
        reg.commit(&[(again, Arc::new(StreamAcl(own_only)))]);
        assert!(f.frame("3", &event("/enti/c_a/app", "it.varco.x.v1")).is_none());
        assert!(f.frame("4", &event("/enti/c_b/app", "it.varco.x.v1")).is_some());
        assert!(!f.retired());
        // A reload without the route ends its streams.
        reg.commit(&[]);
        assert!(f.retired());
        assert!(f.frame("5", &event("/enti/c_b/app", "it.varco.x.v1")).is_none());
    }

    #[test]
    fn last_event_id_is_a_plain_sequence_number() {
        let v = |s: &str| http::HeaderValue::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse_last_event_id(&v("42")).ok(), Some(Some(42)));
        assert_eq!(parse_last_event_id(&v(" ")).ok(), Some(None));
        for bad in ["+5", "-1", "1e3", "0x10", "18446744073709551616", "4 2"] {
            assert!(parse_last_event_id(&v(bad)).is_err(), "{bad}");
        }
    }
}
