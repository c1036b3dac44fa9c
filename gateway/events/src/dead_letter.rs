//! The dead-letter store of each subscription (`<events dir>/dead-letter/<ente>.<sub>.jsonl`):
//! written by the workers, listed, re-driven and dropped through the admin API. In Kafka mode
//! each dead letter is also produced to the subscribing ente's dead-letter topic, for the
//! consortium's Kafka tooling (the file stays the store the admin API works on).

use crate::delivery::{Deliveries, Subscription};
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use std::io::Write;

/// The JSON lines of a file (missing file: none; a torn last line is skipped).
fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

impl Deliveries {
    fn dead_letter_path(&self, key: &str) -> std::path::PathBuf {
        self.bus.config.dir.join("dead-letter").join(format!("{key}.jsonl"))
    }

    /// The dead letters of a subscription, oldest first (each as stored: `event`, `error`,
    /// `attempts`, `at`).
    pub fn dead_letters(&self, tenant: &str, name: &str) -> Vec<serde_json::Value> {
        let _one = self.dead.lock();
        read_lines(&self.dead_letter_path(&format!("{tenant}.{name}")))
    }

    /// Removes the dead letter of event `id`; false when there is none.
    pub fn drop_dead_letter(&self, tenant: &str, name: &str, id: &str) -> Result<bool, String> {
        let _one = self.dead.lock();
        let path = self.dead_letter_path(&format!("{tenant}.{name}"));
        let lines = read_lines(&path);
        let keep: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"]["id"] != id).collect();
        if keep.len() == lines.len() {
            return Ok(false);
        }
        let tmp = path.with_extension("tmp");
        let text: String = keep.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        Ok(true)
    }

    /// Delivers dead letter `id` once more, now, through the subscription's own webhook or
    /// route (signed as usual); on success it leaves the store. The answer's failure otherwise.
    pub async fn redrive(&self, tenant: &str, name: &str, id: &str) -> Result<(), String> {
        let key = format!("{tenant}.{name}");
        let sub = self
            .workers
            .lock()
            .get(&key)
            .map(|w| w.sub.clone())
            .ok_or_else(|| format!("ente `{tenant}` has no running subscription `{name}`"))?;
        let line = self
            .dead_letters(tenant, name)
            .into_iter()
            .find(|l| l["event"]["id"] == id)
            .ok_or_else(|| format!("no dead letter `{id}` for `{key}`"))?;
        let event: Event = serde_json::from_value(line["event"].clone()).map_err(|e| e.to_string())?;
        let body = Bytes::from(serde_json::to_vec(&event).map_err(|e| e.to_string())?);
        let result = match &sub.sink {
            Some(sink) => sink.on_event(&line["event"]).await,
            None => self.post(&sub, event.id(), &body, None).await.map_err(|f| f.why),
        };
        result?;
        self.bus.metrics.delivered.with_label_values(&[sub.tenant.as_str(), sub.cfg.name.as_str()]).inc();
        self.drop_dead_letter(tenant, name, id).map(|_| ())
    }

    pub(crate) fn dead_letter(&self, sub: &Subscription, e: &Event, error: &str, attempts: u32) {
        let dir = self.bus.config.dir.join("dead-letter");
        let line = serde_json::json!({
            "event": e, "subscription": sub.cfg.name, "tenant": sub.tenant,
            "attempts": attempts, "error": error, "at": chrono::Utc::now().to_rfc3339(),
        });
        let _one_writer = self.dead.lock();
        let res = std::fs::create_dir_all(&dir).and_then(|()| {
            let mut f =
                std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{}.jsonl", sub.key())))?;
            f.write_all(format!("{line}\n").as_bytes())?;
            f.sync_data()
        });
        match res {
            Ok(()) => {
                tracing::warn!(tenant = %sub.tenant, subscription = %sub.cfg.name, id = %e.id(), "event moved to the dead-letter store")
            }
            Err(err) => tracing::error!(error = %err, id = %e.id(), "cannot write the dead-letter store"),
        }
        if let (Some(producer), Some(codec)) = (&self.dead_topic, &self.bus.kafka) {
            let (producer, codec, sub, e) = (producer.clone(), codec.clone(), sub.clone(), e.clone());
            let (error, attempts) = (error.to_owned(), attempts.to_string());
            // Beside the worker: the broker may be slow or away, and the file already holds it.
            tokio::spawn(async move {
                let topic = codec.cfg.dead_letter_topic(&sub.tenant);
                if let Err(why) = crate::kafka::ensure_topics(&codec.cfg, std::slice::from_ref(&topic)).await {
                    tracing::warn!(error = %why, %topic, "dead-letter topic not ready");
                }
                let id = e.id().to_owned();
                let mut out = match codec.encode(e) {
                    Ok(o) => o,
                    Err(why) => return tracing::error!(error = %why, %id, "cannot encode a dead letter for Kafka"),
                };
                out.topic = topic;
                let extra = [
                    ("varco_dead_letter_tenant", sub.tenant.as_str()),
                    ("varco_dead_letter_subscription", sub.cfg.name.as_str()),
                    ("varco_dead_letter_error", error.as_str()),
                    ("varco_dead_letter_attempts", attempts.as_str()),
                ];
                let sent = producer.0.send(out.future_record(&extra), std::time::Duration::from_secs(10)).await;
                if let Err((why, _)) = sent {
                    tracing::warn!(error = %why, %id, topic = %out.topic, "dead letter not produced to Kafka (it is in the file)");
                }
            });
        }
    }
}
