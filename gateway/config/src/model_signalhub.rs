//! Configuration of the `signal_hub` adapter: PDND Signal Hub bridged to the event bus. As a
//! producer, events a subscription hands to the route become signals deposited with Signal
//! Hub's collection e-service; as a consumer, the signals of other providers' e-services are
//! pulled from the distribution e-service and published on the bus as CloudEvents.

use crate::{Dur, SecretRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `to: {adapter: {kind: signal_hub, ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalHubConfig {
    /// The ente as a provider: its events become signals. Default: none.
    #[serde(default)]
    pub deposit: Option<DepositConfig>,
    /// The ente as a consumer: signals become its events. Default: none.
    #[serde(default)]
    pub pull: Option<PullConfig>,
}

/// Depositing signals about one of the ente's e-services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositConfig {
    /// The collection e-service, e.g. `https://api.signalhub.interop.pagopa.it/1.0/push`;
    /// varco posts to `<url>/signals`.
    pub url: String,
    /// The ente's e-service whose data the signals are about (its PDND eserviceId).
    pub eservice_id: String,
    /// The pseudonymisation seed shared with the e-service's consumers (a secret).
    pub seed: SecretRef,
    /// Which events become which signals.
    pub signals: Vec<SignalMapping>,
    /// Per call. Default 10s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

/// One event type turned into signals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalMapping {
    /// The CloudEvent `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub signal_type: SignalType,
    /// `objectType` of the signal (what kind of object changed, e.g. `residenza`).
    pub object_type: String,
    /// Where the changed object's id is: `subject` (the event's subject) or a JSON pointer into
    /// `data` (e.g. `/codiceFiscale`). Default `subject`.
    #[serde(default = "d_subject")]
    pub object_id: String,
    /// Send the id pseudonymised (SHA-256 of id and seed, hex), as personal data must be.
    /// Default true.
    #[serde(default = "d_true")]
    pub pseudonymise: bool,
}

/// A signal's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SignalType {
    Create,
    Update,
    Delete,
}

impl SignalType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// Pulling the signals of e-services the ente consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullConfig {
    /// The distribution e-service, e.g. `https://api.signalhub.interop.pagopa.it/1.0/pull`;
    /// varco reads `<url>/signals/{eserviceId}`.
    pub url: String,
    /// The e-services (eserviceId) whose signals the ente reads.
    pub eservices: Vec<String>,
    /// Pause between polls once caught up. Default 30s.
    #[serde(default = "d_interval")]
    pub interval: Dur,
    /// Signals asked per call (1–100). Default 100.
    #[serde(default = "d_size")]
    pub size: u32,
    /// Where the last signalId read of each e-service is kept. Default `varco-data/signal-hub`.
    #[serde(default = "d_dir")]
    pub state_dir: PathBuf,
    /// Per call. Default 10s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

fn d_timeout() -> Dur {
    Dur::secs(10)
}
fn d_interval() -> Dur {
    Dur::secs(30)
}
fn d_size() -> u32 {
    100
}
fn d_dir() -> PathBuf {
    PathBuf::from("varco-data/signal-hub")
}
fn d_subject() -> String {
    "subject".into()
}
fn d_true() -> bool {
    true
}

fn is_url(s: &str) -> bool {
    s.parse::<http::Uri>().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

/// A PDND id (eserviceId): 1 to 64 characters that are safe in a path and a file name.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SignalHubConfig {
    /// Pure checks: (field, message) pairs. `api_client`: whether the ente's PDND client has
    /// an `api_client_id` (`None`: no PDND client at all).
    pub fn validate(&self, api_client: Option<bool>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.deposit.is_none() && self.pull.is_none() {
            out.push((String::new(), "configure `deposit`, `pull` or both".into()));
        }
        match api_client {
            None => {
                out.push((String::new(), "Signal Hub is reached through PDND: the ente needs `tenants[].pdnd`".into()));
                return out;
            }
            Some(false) => out.push((
                String::new(),
                "Signal Hub takes the vouchers of an API interop client: set `tenants[].pdnd.api_client_id`".into(),
            )),
            Some(true) => {}
        }
        for (at, url) in
            [("deposit", self.deposit.as_ref().map(|d| &d.url)), ("pull", self.pull.as_ref().map(|p| &p.url))]
        {
            if url.is_some_and(|u| !is_url(u)) {
                out.push((format!("{at}.url"), "an http(s) URL".into()));
            }
        }
        if let Some(d) = &self.deposit {
            if !is_id(&d.eservice_id) {
                out.push(("deposit.eservice_id".into(), "the e-service's PDND id".into()));
            }
            if d.signals.is_empty() {
                out.push(("deposit.signals".into(), "at least one event type".into()));
            }
            for (i, m) in d.signals.iter().enumerate() {
                if m.object_id != "subject" && !m.object_id.starts_with('/') {
                    out.push((
                        format!("deposit.signals[{i}].object_id"),
                        "`subject` or a JSON pointer (`/field`)".into(),
                    ));
                }
                if m.object_type.trim().is_empty() {
                    out.push((format!("deposit.signals[{i}].object_type"), "must not be empty".into()));
                }
            }
        }
        if let Some(p) = &self.pull {
            if p.eservices.is_empty() {
                out.push(("pull.eservices".into(), "at least one eserviceId".into()));
            }
            for (i, e) in p.eservices.iter().enumerate() {
                if !is_id(e) {
                    out.push((format!("pull.eservices[{i}]"), "a PDND eserviceId (letters, digits, `-`, `_`)".into()));
                }
            }
            if !(1..=100).contains(&p.size) {
                out.push(("pull.size".into(), "between 1 and 100".into()));
            }
            if p.interval.0 < std::time::Duration::from_secs(1) {
                out.push(("pull.interval".into(), "at least 1s".into()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the loader reads it: YAML into a value, then the model (enums are externally tagged).
    fn parse(yaml: &str) -> Result<SignalHubConfig, serde_json::Error> {
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_value(v)
    }

    #[test]
    fn the_bridge_needs_an_api_client_and_sane_feeds() {
        let c = parse(
            "deposit:\n  url: 'https://sh.example/1.0/push'\n  eservice_id: es-1\n  seed:\n    env: S\n  signals: [{type: t, signal_type: UPDATE, object_type: residenza, object_id: '/codiceFiscale'}]\npull: {url: 'https://sh.example/1.0/pull', eservices: [es-2], size: 100}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.validate(Some(true)).is_empty());
        assert!(c.validate(Some(false)).iter().any(|(_, m)| m.contains("api_client_id")));
        assert!(c.validate(None).iter().any(|(_, m)| m.contains("tenants[].pdnd")));
        let bad = parse(
            "deposit:\n  url: x\n  eservice_id: '../etc'\n  seed:\n    env: S\n  signals: [{type: t, signal_type: DELETE, object_type: ' ', object_id: data.cf}]\npull: {url: 'https://sh.example', eservices: ['a/b'], size: 0, interval: 100ms}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let fields: Vec<String> = bad.validate(Some(true)).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "deposit.url",
                "deposit.eservice_id",
                "deposit.signals[0].object_id",
                "deposit.signals[0].object_type",
                "pull.eservices[0]",
                "pull.size",
                "pull.interval"
            ]
        );
        let empty = parse("{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(!empty.validate(Some(true)).is_empty());
        assert!(
            serde_yaml_ng::from_str::<SignalHubConfig>("{pull: {url: u, eservices: [], signal_type: CREATE}}").is_err()
        );
    }
}
