//! The `status` adapter: the ModI `GET /status` every tenant answers.
//!
//! Answers `application/problem+json`: 200 when every upstream of the tenant has a healthy
//! server, 503 with `Retry-After` otherwise, naming the pools that are down.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use std::sync::Arc;
use varco_config::StatusConfig;
use varco_core::problem::PROBLEM_JSON;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, HealthView, Problem};

/// The built adapter.
#[derive(Debug)]
pub struct StatusAdapter {
    retry_after_secs: u32,
    health: Arc<dyn HealthView>,
}

impl StatusAdapter {
    pub fn build(cfg: &StatusConfig, health: Arc<dyn HealthView>) -> Self {
        Self { retry_after_secs: cfg.retry_after_secs, health }
    }
}

impl StatusAdapter {
    async fn answer(&self, req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem> {
        let pools = self.health.upstreams();
        let down: Vec<&str> = pools.iter().filter(|u| u.healthy_servers == 0).map(|u| u.name.as_str()).collect();
        let (status, type_, title, detail) = if down.is_empty() {
            (200u16, "urn:varco:status:healthy", "OK", format!("{} upstream pool(s) healthy", pools.len()))
        } else {
            (
                503,
                "urn:varco:status:unavailable",
                "Service unavailable",
                format!("no healthy server in upstream pool(s): {}", down.join(", ")),
            )
        };
        let body = serde_json::json!({
            "type": type_,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": req.path,
            "request_id": req.request_id,
            "tenant": req.tenant_id,
            "upstreams": pools.iter().map(|u| serde_json::json!({
                "name": u.name, "healthy_servers": u.healthy_servers, "servers": u.servers,
            })).collect::<Vec<_>>(),
            // Stale keys do not make the ente unavailable (cached keys still verify), but
            // operators see it here and in varco_jwks_up.
            "issuers": self.health.issuers().iter().map(|(name, fresh)| serde_json::json!({
                "name": name, "keys_fresh": fresh,
            })).collect::<Vec<_>>(),
        });
        let mut resp = AdapterResponse::json(status, PROBLEM_JSON, serde_json::to_vec(&body).unwrap_or_default());
        if status == 503 {
            resp.headers.push((http::header::RETRY_AFTER, http::HeaderValue::from(self.retry_after_secs)));
        }
        Ok(resp)
    }
}

#[async_trait]
impl Adapter for StatusAdapter {
    fn kind(&self) -> &'static str {
        "status"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        self.answer(req).await.map(Answer::Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varco_core::UpstreamHealth;

    #[derive(Debug)]
    struct FixedHealth(Vec<UpstreamHealth>);
    impl HealthView for FixedHealth {
        fn upstreams(&self) -> Vec<UpstreamHealth> {
            self.0.clone()
        }
    }

    async fn call(pools: Vec<UpstreamHealth>) -> AdapterResponse {
        let a = StatusAdapter::build(&StatusConfig { retry_after_secs: 7 }, Arc::new(FixedHealth(pools)));
        let headers = http::HeaderMap::new();
        a.call(AdapterRequest {
            method: &http::Method::GET,
            path: "/status",
            prefix: "/c_e783",
            tls: false,
            query: None,
            headers: &headers,
            body: bytes::Bytes::new(),
            tenant_id: "c_e783",
            request_id: "r1",
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            caller: None,
            client_id: None,
        })
        .await
        .unwrap()
        .into_body()
        .unwrap()
    }

    fn pool(name: &str, healthy: usize) -> UpstreamHealth {
        UpstreamHealth { name: name.into(), healthy_servers: healthy, servers: 2 }
    }

    #[test]
    fn healthy_and_unhealthy() {
        let rt = futures_lite_block_on(call(vec![pool("a", 1), pool("b", 2)]));
        assert_eq!(rt.status, 200);
        assert!(rt.headers.iter().all(|(k, _)| k != http::header::RETRY_AFTER));
        let rt = futures_lite_block_on(call(vec![pool("a", 1), pool("b", 0)]));
        assert_eq!(rt.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&rt.body).unwrap();
        assert_eq!(v["detail"], "no healthy server in upstream pool(s): b");
        assert!(rt.headers.iter().any(|(k, v)| k == http::header::RETRY_AFTER && v == "7"));
    }

    /// The adapter future never awaits anything, so polling it once completes it.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("status adapter must not block"),
        }
    }
}
