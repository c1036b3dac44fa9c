//! The ente as a Signal Hub producer: an event a subscription hands over becomes a signal
//! deposited with the collection e-service. Deposits go one at a time per e-service, so that
//! their `signalId`s (microseconds, never below the last one + 1) reach Signal Hub in order, as
//! it accepts only ids above the last deposited.

use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use varco_auth::TrackedUser;
use varco_config::SignalMapping;
use varco_outbound::Eservice;

/// Deposits signals about one e-service of the ente.
#[derive(Debug)]
pub struct Depositor {
    pub tenant: String,
    pub call: Eservice,
    pub eservice_id: String,
    seed: String,
    mappings: Vec<SignalMapping>,
    /// The last signalId Signal Hub accepted from this process.
    last: tokio::sync::Mutex<u64>,
    pub deposited: AtomicU64,
}

/// The pseudonym of `id` (Signal Hub's guide: a hash of the identifier and the seed shared
/// with the e-service's consumers): SHA-256 of `id` followed by `seed`, lowercase hex.
pub fn pseudonym(id: &str, seed: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(id.as_bytes());
    ctx.update(seed.as_bytes());
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Depositor {
    pub fn new(tenant: &str, call: Eservice, eservice_id: &str, seed: String, mappings: Vec<SignalMapping>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            call,
            eservice_id: eservice_id.to_owned(),
            seed,
            mappings,
            last: tokio::sync::Mutex::new(0),
            deposited: AtomicU64::new(0),
        }
    }

    /// The signal body of `event`, without its id; `Ok(None)` for an event type no mapping
    /// names (a subscription wider than the bridge: nothing to deposit).
    pub fn signal_of(&self, event: &Value) -> Result<Option<Value>, String> {
        let ty = event.get("type").and_then(Value::as_str).unwrap_or("");
        let Some(m) = self.mappings.iter().find(|m| m.event_type == ty) else { return Ok(None) };
        let raw = if m.object_id == "subject" {
            event.get("subject").and_then(Value::as_str).map(str::to_owned)
        } else {
            event.get("data").and_then(|d| d.pointer(&m.object_id)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let raw = raw.filter(|s| !s.is_empty()).ok_or_else(|| {
            format!(
                "event `{}` has no object id at `{}`",
                event.get("id").and_then(Value::as_str).unwrap_or(""),
                m.object_id
            )
        })?;
        let object_id = if m.pseudonymise { pseudonym(&raw, &self.seed) } else { raw };
        Ok(Some(json!({
            "signalType": m.signal_type.as_str(),
            "objectId": object_id,
            "objectType": m.object_type,
            "eserviceId": self.eservice_id,
        })))
    }

    /// Deposits the signal of `event`. An `Err` is retried by the subscription (a new
    /// signalId each time: a signal lost in flight and sent again is a duplicate notice that
    /// the object changed, which consumers take as such).
    pub async fn deposit(&self, event: &Value) -> Result<(), String> {
        let Some(signal) = self.signal_of(event)? else { return Ok(()) };
        let mut last = self.last.lock().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
        let id = now.max(*last + 1);
        let mut body = signal;
        body["signalId"] = json!(id);
        let bytes = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
        let system = TrackedUser { user_id: "varco".into(), user_location: "varco".into(), loa: "LoA2".into() };
        let tp = event.get("traceparent").and_then(Value::as_str).unwrap_or("");
        let reply = self.call.post_json(|| bytes.clone(), &system, tp).await.map_err(|e| e.to_string())?;
        if reply.status == 200 {
            *last = id;
            self.deposited.fetch_add(1, Ordering::Relaxed);
            tracing::info!(tenant = %self.tenant, eservice_id = %self.eservice_id, signal_id = id, "signal deposited with Signal Hub");
            return Ok(());
        }
        Err(format!("Signal Hub answered {}: {}", reply.status, reason(&reply.body)))
    }

    /// The last signalId this process deposited (0: none yet).
    pub async fn last(&self) -> u64 {
        *self.last.lock().await
    }
}

/// Signal Hub's reason from a problem body: `detail` and each `errors[]` code and detail.
pub fn reason(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let mut parts: Vec<String> = v.get("detail").and_then(Value::as_str).map(str::to_owned).into_iter().collect();
    for e in v.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let code = e.get("code").and_then(Value::as_str).unwrap_or("");
        let detail = e.get("detail").and_then(Value::as_str).unwrap_or("");
        parts.push(format!("{code} {detail}").trim().to_owned());
    }
    if parts.is_empty() {
        parts.push(String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    }
    parts.join("; ").chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pseudonym_is_the_hex_sha256_of_id_then_seed() {
        // Computed independently: printf '%s' 'FLZCRN65R02E202Nf3a7f54e-…' | sha256sum
        let p = pseudonym("FLZCRN65R02E202N", "f3a7f54e-8e57-4a06-8bca-ac1857b6b045");
        assert_eq!(p, "b10347f71d8da2602569ac29735f5f07d3483b416d49b4a263ec124f9a4cd13c");
        assert_ne!(p, pseudonym("FLZCRN65R02E202N", "another seed"), "the seed changes it");
    }

    #[test]
    fn reasons_are_read_from_signal_hub_problems() {
        let body = br#"{"type":"x","status":400,"title":"Bad","detail":"Signal already exists","errors":[{"code":"PUSH-0004","detail":"signalId not greater than the last"}]}"#;
        assert_eq!(reason(body), "Signal already exists; PUSH-0004 signalId not greater than the last");
        assert_eq!(reason(b"oops"), "oops");
    }
}
