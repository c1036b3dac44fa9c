//! Active HTTP health checks. One background task walks the *current* runtime, so checks
//! follow reloads without restarting anything.

use crate::upstream::Pool;
use crate::Shared;
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

pub struct HealthService {
    pub shared: Arc<Shared>,
}

async fn check(connector: &Connector, pool: &Pool, i: usize) -> bool {
    let Some(hc) = &pool.health_check else { return true };
    let s = &pool.servers[i];
    let mut peer = s.peer.clone();
    peer.options.connection_timeout = Some(hc.timeout.0);
    peer.options.total_connection_timeout = Some(hc.timeout.0);
    peer.options.read_timeout = Some(hc.timeout.0);
    let attempt = async {
        let (mut session, _) = connector.get_http_session(&peer).await.ok()?;
        let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None).ok()?;
        req.insert_header("host", s.name.as_str()).ok()?;
        req.insert_header("user-agent", "varco-health-check").ok()?;
        session.write_request_header(Box::new(req)).await.ok()?;
        session.finish_request_body().await.ok()?;
        session.read_response_header().await.ok()?;
        let ok = session.response_header().is_some_and(|r| r.status.is_success() || r.status.is_redirection());
        while let Ok(Some(_)) = session.read_response_body().await {}
        Some(ok)
    };
    tokio::time::timeout(hc.timeout.0, attempt).await.ok().flatten().unwrap_or(false)
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for HealthService {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let connector = Arc::new(Connector::new(None));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while crate::tick_or_shutdown(&mut tick, &mut shutdown).await {
            let rt = self.shared.current.load_full();
            for t in &rt.tenants {
                for pool in &t.pools {
                    let Some(hc) = &pool.health_check else { continue };
                    let now = pool.now_ms();
                    if now < pool.next_check_ms.load(Relaxed) {
                        continue;
                    }
                    pool.next_check_ms.store(now + hc.interval.0.as_millis() as u64, Relaxed);
                    for i in 0..pool.servers.len() {
                        let (pool, connector, metrics, tenant) =
                            (pool.clone(), connector.clone(), self.shared.metrics.clone(), t.id.clone());
                        tokio::spawn(async move {
                            let ok = check(&connector, &pool, i).await;
                            let was = pool.is_available(i);
                            pool.record_check(i, ok);
                            let now = pool.is_available(i);
                            if was != now {
                                tracing::warn!(tenant = %tenant, upstream = %pool.name, server = %pool.servers[i].name, healthy = now, "upstream server health changed");
                            }
                            metrics
                                .upstream_healthy
                                .with_label_values(&[&tenant, &pool.name, &pool.servers[i].name])
                                .set(i64::from(now));
                        });
                    }
                }
            }
        }
    }
}
