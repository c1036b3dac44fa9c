//! The OPs a relying party may use, each as its verified trust chain describes it: the chain
//! cache (renewed at three quarters of its life, kept while still valid when a renewal fails,
//! dropped at expiry) and the metadata varco reads from it.

use super::RpError;
use crate::trust_chain::{self, ChainError};
use jsonwebtoken::jwk::JwkSet;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use varco_config::{FederationConfig, ProviderConfig};
use varco_core::fetch::Fetch;

/// An OP as its trust chain describes it (after the Trust Anchor's policy).
#[derive(Debug, Clone)]
pub struct Provider {
    pub entity_id: String,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub jwks: JwkSet,
    /// When the chain was verified and when it stops being valid (unix s).
    pub resolved_at: u64,
    pub expires_at: u64,
}

impl Provider {
    fn from_metadata(
        entity_id: &str,
        m: &Map<String, Value>,
        resolved_at: u64,
        expires_at: u64,
    ) -> Result<Self, String> {
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let need = |k: &str| s(k).ok_or_else(|| format!("its metadata has no `{k}`"));
        let jwks = m.get("jwks").ok_or("its metadata has no inline `jwks`")?;
        let jwks: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| format!("its `jwks`: {e}"))?;
        Ok(Self {
            entity_id: entity_id.to_owned(),
            issuer: s("issuer").unwrap_or_else(|| entity_id.to_owned()),
            authorization_endpoint: need("authorization_endpoint")?,
            token_endpoint: need("token_endpoint")?,
            userinfo_endpoint: need("userinfo_endpoint")?,
            revocation_endpoint: s("revocation_endpoint"),
            jwks,
            resolved_at,
            expires_at,
        })
    }
}

/// The federation varco logs citizens in through: pinned Trust Anchors, the OPs offered, and
/// each OP's verified chain, kept until it expires (renewed once three quarters of its life
/// have passed; while a renewal fails the chain is used until it expires, never after).
#[derive(Debug)]
pub struct Federation {
    anchors: Vec<(String, JwkSet)>,
    pub providers: Vec<ProviderConfig>,
    pub(super) timeout: Duration,
    pub(super) chains: Mutex<HashMap<String, Arc<Provider>>>,
    /// After a failed renewal, no background retry before this time (unix s), per OP.
    pub(super) retry_at: Mutex<HashMap<String, u64>>,
}

/// Seconds between background attempts to renew a chain whose renewal failed.
pub(super) const RENEW_RETRY: u64 = 60;

impl Federation {
    pub fn new(cfg: &FederationConfig) -> Result<Self, String> {
        let mut anchors = Vec::new();
        for a in &cfg.trust_anchors {
            let keys: JwkSet = serde_json::from_value(a.jwks.clone())
                .map_err(|e| format!("trust anchor `{}`: its `jwks`: {e}", a.entity_id))?;
            anchors.push((a.entity_id.clone(), keys));
        }
        Ok(Self {
            anchors,
            providers: cfg.providers.clone(),
            timeout: cfg.timeout.0,
            chains: Mutex::new(HashMap::new()),
            retry_at: Mutex::new(HashMap::new()),
        })
    }

    /// The chains held now: (OP, verified at, expires at), for the trust-chain-age metric.
    pub fn chains(&self) -> Vec<(String, u64, u64)> {
        self.chains.lock().values().map(|p| (p.entity_id.clone(), p.resolved_at, p.expires_at)).collect()
    }

    /// Renews the chains past three quarters of their life (a renewal that fails keeps the
    /// chain until it expires, then drops it).
    pub async fn renew_due(&self, fetch: &dyn Fetch, now: u64) {
        let due: Vec<String> = {
            let retry = self.retry_at.lock();
            self.chains
                .lock()
                .values()
                .filter(|p| now >= renew_at(p) && retry.get(&p.entity_id).is_none_or(|t| now >= *t))
                .map(|p| p.entity_id.clone())
                .collect()
        };
        for op in due {
            // Renewed: the chain's `resolved_at` is now. Failed: try again in a minute.
            let renewed = self.provider(fetch, &op, now).await.is_ok_and(|p| p.resolved_at == now);
            let mut retry = self.retry_at.lock();
            if renewed {
                retry.remove(&op);
            } else {
                retry.insert(op, now + RENEW_RETRY);
            }
        }
    }

    /// The OP `op` through its verified chain at `now`.
    pub async fn provider(&self, fetch: &dyn Fetch, op: &str, now: u64) -> Result<Arc<Provider>, RpError> {
        let cached = self.chains.lock().get(op).cloned();
        if let Some(p) = &cached {
            if now < renew_at(p) {
                return Ok(p.clone());
            }
        }
        let untrusted = |why: String| RpError::Untrusted { op: op.to_owned(), why };
        let cfg =
            self.providers.iter().find(|p| p.entity_id == op).ok_or_else(|| untrusted("not configured".into()))?;
        let (anchor, keys) = match &cfg.trust_anchor {
            Some(a) => self.anchors.iter().find(|(id, _)| id == a),
            None => self.anchors.first(),
        }
        .ok_or_else(|| untrusted("its Trust Anchor is not configured".into()))?;
        let resolved = trust_chain::resolve(fetch, op, anchor, keys, "openid_provider", now, self.timeout)
            .await
            .map_err(|e: ChainError| {
                tracing::warn!(op, error = %e, "trust chain refused");
                untrusted(e.to_string())
            });
        match resolved {
            Ok(r) => {
                let p = Arc::new(Provider::from_metadata(op, &r.metadata, now, r.expires_at).map_err(untrusted)?);
                self.chains.lock().insert(op.to_owned(), p.clone());
                Ok(p)
            }
            // A renewal that failed: the verified chain serves until it expires.
            Err(e) => match cached {
                Some(p) if now < p.expires_at => Ok(p),
                _ => {
                    self.chains.lock().remove(op);
                    Err(e)
                }
            },
        }
    }
}

/// When a chain is renewed: three quarters into its life.
fn renew_at(p: &Provider) -> u64 {
    p.resolved_at + p.expires_at.saturating_sub(p.resolved_at) * 3 / 4
}
