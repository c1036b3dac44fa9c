//! The ente as a Signal Hub consumer: for each e-service it reads, the signals after the last
//! one read are pulled from the distribution e-service, published on the bus as
//! `it.varco.pdnd.segnale.ricevuto.v1` events (id `<eserviceId>-<signalId>`), and only then
//! the position moves on, kept in a file replaced atomically. A crash between the publish
//! and the position's write pulls the same signals again: the same event ids, which the bus
//! drops within its dedupe window and consumers recognise beyond it.

use cloudevents::EventBuilder as _;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use varco_auth::TrackedUser;
use varco_events::EventBus;
use varco_outbound::Eservice;

/// One e-service whose signals are read.
#[derive(Debug)]
pub struct Feed {
    pub eservice_id: String,
    /// `GET <pull url>/signals/<eserviceId>`.
    pub call: Eservice,
}

/// What the bridge shows of a feed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FeedStatus {
    pub last_signal_id: u64,
    pub published: u64,
    /// Signals passed over because they were malformed (logged with their id).
    pub skipped: u64,
    pub last_poll_unix: u64,
    pub error: Option<String>,
}

/// Pulls every feed in turn, for as long as it runs.
#[derive(Debug)]
pub struct Puller {
    pub tenant: String,
    pub bus: Arc<EventBus>,
    pub feeds: Vec<Feed>,
    pub interval: Duration,
    pub size: u32,
    pub dir: PathBuf,
    pub status: parking_lot::Mutex<HashMap<String, FeedStatus>>,
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Puller {
    fn position_file(&self, eservice_id: &str) -> PathBuf {
        self.dir.join(&self.tenant).join(format!("{eservice_id}.position"))
    }

    /// The last signalId read of a feed (0 before the first).
    pub fn position(&self, eservice_id: &str) -> Result<u64, String> {
        match std::fs::read_to_string(self.position_file(eservice_id)) {
            Ok(t) => {
                t.trim().parse().map_err(|_| format!("{}: not a signalId", self.position_file(eservice_id).display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the position durably: a new file, synced, renamed over the old one.
    fn save(&self, eservice_id: &str, pos: u64) -> Result<(), String> {
        let file = self.position_file(eservice_id);
        let dir = file.parent().ok_or("no folder")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = file.with_extension("position.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(pos.to_string().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Runs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            for feed in &self.feeds {
                let outcome = self.drain(feed, &mut stop).await;
                let mut status = self.status.lock();
                let s = status.entry(feed.eservice_id.clone()).or_default();
                s.last_poll_unix = now_s();
                s.error = outcome.err();
                if let Some(e) = &s.error {
                    tracing::warn!(tenant = %self.tenant, eservice_id = %feed.eservice_id, error = %e, "Signal Hub pull failed; trying again later");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Reads a feed until Signal Hub has nothing newer.
    async fn drain(&self, feed: &Feed, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
        let system = TrackedUser { user_id: "varco".into(), user_location: "varco".into(), loa: "LoA2".into() };
        let mut pos = self.position(&feed.eservice_id)?;
        while !*stop.borrow() {
            let query = format!("signalId={pos}&size={}", self.size);
            let reply = feed.call.get(&query, &system, "").await.map_err(|e| e.to_string())?;
            if !matches!(reply.status, 200 | 206) {
                return Err(format!("Signal Hub answered {}: {}", reply.status, crate::deposit::reason(&reply.body)));
            }
            let page: Value = serde_json::from_slice(&reply.body).map_err(|e| format!("not a signal list: {e}"))?;
            let signals = page.get("signals").and_then(Value::as_array).ok_or("the answer has no `signals`")?;
            let mut events = Vec::new();
            let mut top = pos;
            let mut skipped = 0;
            for s in signals {
                // Only what is after the position, whatever the service sends. A signal that
                // cannot be an event is passed over (logged), not retried for ever: it would
                // hold up every signal behind it.
                let Some(id) = s.get("signalId").and_then(Value::as_u64) else {
                    tracing::warn!(tenant = %self.tenant, eservice_id = %feed.eservice_id, "Signal Hub sent a signal without a numeric signalId: passed over");
                    skipped += 1;
                    continue;
                };
                if id <= pos {
                    continue;
                }
                top = top.max(id);
                match self.event(feed, id, s) {
                    Ok(e) => events.push(e),
                    Err(why) => {
                        tracing::warn!(tenant = %self.tenant, eservice_id = %feed.eservice_id, signal_id = id, %why, "a malformed signal: passed over");
                        skipped += 1;
                    }
                }
            }
            if top == pos {
                return Ok(());
            }
            let n = events.len() as u64;
            if !events.is_empty() {
                self.bus.publish(&self.tenant, events, None).await.map_err(|p| p.detail)?;
            }
            self.save(&feed.eservice_id, top)?;
            pos = top;
            let mut status = self.status.lock();
            let st = status.entry(feed.eservice_id.clone()).or_default();
            st.last_signal_id = top;
            st.published += n;
            st.skipped += skipped;
            drop(status);
            tracing::info!(tenant = %self.tenant, eservice_id = %feed.eservice_id, signals = n, last_signal_id = top, "Signal Hub signals published");
            // 206: more are waiting; 200 with a short page: caught up.
            if reply.status == 200 && (signals.len() as u32) < self.size {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The event of one signal, its fields checked against the event's contract.
    pub fn event(&self, feed: &Feed, id: u64, s: &Value) -> Result<cloudevents::Event, String> {
        let text = |k: &str, max: usize| {
            s.get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty() && v.len() <= max && !v.chars().any(char::is_control))
                .map(str::to_owned)
                .ok_or_else(|| format!("`{k}` missing, empty, longer than {max} or not text"))
        };
        let object_id = text("objectId", 512)?;
        let signal_type = text("signalType", 16)?;
        if !["CREATE", "UPDATE", "DELETE", "SEEDUPDATE"].contains(&signal_type.as_str()) {
            return Err(format!("unknown signalType `{signal_type}`"));
        }
        if s.get("eserviceId").and_then(Value::as_str).is_some_and(|e| e != feed.eservice_id) {
            return Err("a signal of another e-service".into());
        }
        let data = serde_json::json!({
            "eserviceId": feed.eservice_id,
            "signalId": id,
            "signalType": signal_type,
            "objectType": text("objectType", 256)?,
            "objectId": object_id,
        });
        cloudevents::EventBuilderV10::new()
            .id(format!("{}-{id}", feed.eservice_id))
            .source(format!("/enti/{}/signal-hub", self.tenant))
            .ty("it.varco.pdnd.segnale.ricevuto.v1")
            .subject(object_id)
            .time(chrono::Utc::now())
            .data("application/json", data)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// The pullers that run, one per (ente, route), across reloads: a configuration's pullers
/// start when it becomes the current one; a puller whose route is gone or changed stops. They
/// run on the runtime `attach` hands over (the gateway's background services); what is
/// committed before that waits for it.
#[derive(Debug, Default)]
pub struct PullerRegistry {
    inner: parking_lot::Mutex<Inner>,
}

type Wanted = Vec<(String, String, Arc<Puller>)>;

#[derive(Debug, Default)]
struct Inner {
    handle: Option<tokio::runtime::Handle>,
    pending: Option<Wanted>,
    running: HashMap<String, (String, Arc<Puller>, watch::Sender<bool>)>,
}

impl Inner {
    fn reconcile(&mut self, wanted: Wanted, handle: &tokio::runtime::Handle) {
        let keys: Vec<String> = wanted.iter().map(|(k, _, _)| k.clone()).collect();
        self.running.retain(|k, (_, _, stop)| {
            let keep = keys.contains(k);
            if !keep {
                let _ = stop.send(true);
            }
            keep
        });
        for (key, print, puller) in wanted {
            if self.running.get(&key).is_some_and(|(p, _, _)| *p == print) {
                continue;
            }
            if let Some((_, _, stop)) = self.running.remove(&key) {
                let _ = stop.send(true);
            }
            let (tx, rx) = watch::channel(false);
            handle.spawn(puller.clone().run(rx));
            self.running.insert(key, (print, puller, tx));
        }
    }
}

impl PullerRegistry {
    /// Puts `wanted` (key, fingerprint of its configuration, puller) in force.
    pub fn commit(&self, wanted: Wanted) {
        let mut inner = self.inner.lock();
        match inner.handle.clone() {
            Some(h) => inner.reconcile(wanted, &h),
            None => inner.pending = Some(wanted),
        }
    }

    /// Gives the registry the runtime its pullers run on, and starts what was committed.
    pub fn attach(&self, handle: tokio::runtime::Handle) {
        let mut inner = self.inner.lock();
        if let Some(w) = inner.pending.take() {
            inner.reconcile(w, &handle);
        }
        inner.handle = Some(handle);
    }

    /// The running puller of a key (its status).
    pub fn get(&self, key: &str) -> Option<Arc<Puller>> {
        self.inner.lock().running.get(key).map(|(_, p, _)| p.clone())
    }

    /// Stops every puller (shutdown).
    pub fn stop_all(&self) {
        let mut inner = self.inner.lock();
        inner.handle = None;
        for (_, (_, _, stop)) in inner.running.drain() {
            let _ = stop.send(true);
        }
    }
}
