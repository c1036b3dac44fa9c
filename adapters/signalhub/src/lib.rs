//! PDND Signal Hub bridged to the event bus. As a producer (`deposit`), the events a
//! subscription hands to the route become signals deposited with Signal Hub's collection
//! e-service; as a consumer (`pull`), the signals of the e-services the ente reads are pulled
//! from the distribution e-service and published on the bus, where the ente's subscriptions
//! and webhooks receive them like any other event. `GET` on the route shows the bridge.

pub mod deposit;
pub mod pull;

use http::Method;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use varco_core::{AdapterRequest, AdapterResponse, Answer, Problem, ProblemKind};

pub use deposit::Depositor;
pub use pull::{Feed, Puller, PullerRegistry};

/// The `signal_hub` adapter of one route.
#[derive(Debug)]
pub struct SignalHubAdapter {
    pub deposit: Option<Depositor>,
    /// The registry and this route's key in it: the running puller may be an earlier
    /// configuration's, kept because nothing changed.
    pub pullers: Option<(Arc<PullerRegistry>, String)>,
}

#[async_trait::async_trait]
impl varco_core::Adapter for SignalHubAdapter {
    fn kind(&self) -> &'static str {
        "signal_hub"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        if req.method != Method::GET {
            return Err(
                Problem::new(ProblemKind::MethodNotAllowed, "the Signal Hub route shows the bridge: GET").allow("GET")
            );
        }
        let mut out = serde_json::json!({});
        if let Some(d) = &self.deposit {
            out["deposit"] = serde_json::json!({
                "eservice_id": d.eservice_id,
                "last_signal_id": d.last().await,
                "deposited": d.deposited.load(Ordering::Relaxed),
            });
        }
        if let Some(p) = self.pullers.as_ref().and_then(|(r, k)| r.get(k)) {
            let status = p.status.lock().clone();
            let feeds: Vec<_> = p
                .feeds
                .iter()
                .map(|f| {
                    let s = status.get(&f.eservice_id).cloned().unwrap_or_default();
                    let pos = p.position(&f.eservice_id).unwrap_or(s.last_signal_id);
                    serde_json::json!({
                        "eservice_id": f.eservice_id, "last_signal_id": pos, "published": s.published, "skipped": s.skipped,
                        "last_poll_unix": s.last_poll_unix, "error": s.error,
                    })
                })
                .collect();
            out["pull"] = serde_json::json!({ "feeds": feeds });
        }
        let body = serde_json::to_vec(&out).map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        Ok(AdapterResponse::json(200, "application/json", body).into())
    }

    async fn on_event(&self, event: &serde_json::Value) -> Result<(), String> {
        match &self.deposit {
            Some(d) => d.deposit(event).await,
            None => Err("this Signal Hub route deposits nothing: configure `deposit`".into()),
        }
    }
}
