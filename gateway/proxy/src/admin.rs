//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/config`, `/admin/reload`.
//! Health and metrics are open (bind it to loopback or a management network); `/admin/*`
//! needs the admin token when one is configured.

use crate::reload::Reloader;
use crate::shared::Shared;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::Arc;
use varco_core::problem::PROBLEM_JSON;
use varco_core::query::Query;
use varco_core::{Problem, ProblemKind, TraceContext};

pub struct AdminApp {
    pub shared: Arc<Shared>,
    pub reloader: Arc<Reloader>,
    pub token: Option<String>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

fn problem(p: &Problem, path: &str) -> Response<Vec<u8>> {
    let t = TraceContext::from_headers(None, None);
    let mut r = reply(p.status(), PROBLEM_JSON, p.to_body(path, t.request_id(), t.trace_id.as_str()));
    if let Ok(v) = http::HeaderValue::from_str(t.request_id()) {
        r.headers_mut().insert("x-request-id", v);
    }
    if p.kind == ProblemKind::Unauthorized {
        r.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer realm=\"varco-admin\""));
    }
    r
}

/// Whether a TCP connection to the listener `address` is accepted (an unspecified address is
/// tried on loopback).
async fn accepts(address: &str) -> bool {
    let Ok(mut addr) = address.parse::<std::net::SocketAddr>() else { return false };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    matches!(
        tokio::time::timeout(std::time::Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Compares without an early exit, so timing does not reveal the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminApp {
    fn authorised(&self, s: &ServerSession) -> bool {
        let Some(token) = &self.token else { return true };
        s.req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| same(v.as_bytes(), token.as_bytes()))
    }

    /// `POST /admin/events/subscriptions?tenant=` with a subscription (JSON, as in the
    /// configuration) adds or replaces an admin-made one; `DELETE …?tenant=&name=` removes it.
    async fn subscription(&self, s: &mut ServerSession, path: &str) -> Response<Vec<u8>> {
        let query = Query::of(s.req_header().raw_path());
        let arg = |k: &str| query.get(k);
        let bad = |kind, d: String| problem(&Problem::new(kind, d), path);
        let Some(tenant) = arg("tenant") else { return bad(ProblemKind::BadRequest, "name the `tenant`".into()) };
        if s.req_header().method == Method::DELETE {
            let Some(name) = arg("name") else {
                return bad(ProblemKind::BadRequest, "name the subscription (`name`)".into());
            };
            return match self.shared.reg.events.remove_subscription(&tenant, &name) {
                Ok(true) => reply(200, "application/json", b"{\"removed\":true}".to_vec()),
                Ok(false) => {
                    bad(ProblemKind::NotFound, format!("ente `{tenant}` has no admin-made subscription `{name}`"))
                }
                Err(e) => bad(ProblemKind::Internal, e),
            };
        }
        let mut body = Vec::new();
        loop {
            match s.read_request_body().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= 65_536 => body.extend_from_slice(&chunk),
                Ok(Some(_)) => return bad(ProblemKind::BodyTooLarge, "a subscription is at most 64 KiB".into()),
                Ok(None) => break,
                Err(_) => return bad(ProblemKind::BadRequest, "the body could not be read".into()),
            }
        }
        let sub: varco_config::SubscriptionConfig = match serde_json::from_slice(&body) {
            Ok(x) => x,
            Err(e) => return bad(ProblemKind::InvalidConfig, format!("not a subscription: {e}")),
        };
        let rt = self.shared.current.load();
        match self.shared.reg.events.add_subscription(&rt.config, &tenant, sub) {
            Ok(()) => reply(201, "application/json", b"{\"added\":true}".to_vec()),
            Err(issues) => {
                let p = Problem::new(
                    ProblemKind::InvalidConfig,
                    format!("the subscription was refused: {}", issues.join("; ")),
                )
                .with_extra(serde_json::json!(issues));
                problem(&p, path)
            }
        }
    }

    /// `POST /admin/events/replay?tenant=&subscription=&from_sequence=N` (or `from_time=RFC 3339`).
    async fn replay(&self, s: &ServerSession, path: &str) -> Response<Vec<u8>> {
        use varco_events::delivery::ReplayFrom;
        let query = Query::of(s.req_header().raw_path());
        let arg = |k: &str| query.get(k);
        let bad = |d: &str| problem(&Problem::new(ProblemKind::BadRequest, d.to_owned()), path);
        let (Some(tenant), Some(sub)) = (arg("tenant"), arg("subscription")) else {
            return bad("name the `tenant` and the `subscription`");
        };
        let from = match (arg("from_sequence"), arg("from_time")) {
            (Some(n), None) => match n.parse() {
                Ok(n) => ReplayFrom::Sequence(n),
                Err(_) => return bad("`from_sequence` is a number"),
            },
            (None, Some(t)) => match chrono::DateTime::parse_from_rfc3339(&t) {
                Ok(t) => ReplayFrom::Time(t.with_timezone(&chrono::Utc)),
                Err(_) => return bad("`from_time` is an RFC 3339 time (e.g. 2026-11-20T00:00:00Z)"),
            },
            _ => return bad("give one of `from_sequence` and `from_time`"),
        };
        let Some(d) = self.shared.reg.events.deliveries.get() else {
            return problem(&Problem::new(ProblemKind::NotFound, "no subscription is running"), path);
        };
        match d.replay(&tenant, &sub, from).await {
            Ok(at) => reply(
                200,
                "application/json",
                serde_json::to_vec(&serde_json::json!({"replaying_from": at})).unwrap_or_default(),
            ),
            Err(e) => problem(&Problem::new(ProblemKind::NotFound, e), path),
        }
    }

    /// `GET /admin/events/dead-letters?tenant=&subscription=[&id=]` lists a subscription's dead
    /// letters (or shows one), `DELETE …&id=` drops one, `POST …/redrive?…&id=` delivers it
    /// again now.
    async fn dead_letters(&self, s: &ServerSession, path: &str) -> Response<Vec<u8>> {
        let query = Query::of(s.req_header().raw_path());
        let bad = |kind, d: String| problem(&Problem::new(kind, d), path);
        let (Some(tenant), Some(sub)) = (query.get("tenant"), query.get("subscription")) else {
            return bad(ProblemKind::BadRequest, "name the `tenant` and the `subscription`".into());
        };
        let Some(d) = self.shared.reg.events.deliveries.get() else {
            return bad(ProblemKind::NotFound, "no subscription is running".into());
        };
        let id = query.get("id");
        let json =
            |v: serde_json::Value| reply(200, "application/json", serde_json::to_vec_pretty(&v).unwrap_or_default());
        match (&s.req_header().method, path, id) {
            (&Method::GET, _, None) => {
                let list: Vec<serde_json::Value> = d
                    .dead_letters(&tenant, &sub)
                    .iter()
                    .map(|l| {
                        serde_json::json!({"id": l["event"]["id"], "type": l["event"]["type"], "source": l["event"]["source"],
                            "error": l["error"], "attempts": l["attempts"], "at": l["at"]})
                    })
                    .collect();
                json(serde_json::json!({"tenant": tenant, "subscription": sub, "dead_letters": list}))
            }
            (&Method::GET, _, Some(id)) => {
                match d.dead_letters(&tenant, &sub).into_iter().find(|l| l["event"]["id"] == id.as_str()) {
                    Some(l) => json(l),
                    None => bad(ProblemKind::NotFound, format!("no dead letter `{id}`")),
                }
            }
            (&Method::DELETE, _, Some(id)) => match d.drop_dead_letter(&tenant, &sub, &id) {
                Ok(true) => json(serde_json::json!({"dropped": id})),
                Ok(false) => bad(ProblemKind::NotFound, format!("no dead letter `{id}`")),
                Err(e) => bad(ProblemKind::Internal, e),
            },
            (&Method::POST, "/admin/events/dead-letters/redrive", Some(id)) => {
                match d.redrive(&tenant, &sub, &id).await {
                    Ok(()) => json(serde_json::json!({"redelivered": id})),
                    Err(e) if e.starts_with("no ") || e.contains("has no running") => bad(ProblemKind::NotFound, e),
                    Err(e) => bad(ProblemKind::BadGateway, format!("the receiver did not take it: {e}")),
                }
            }
            _ => bad(ProblemKind::BadRequest, "name the dead letter (`id`)".into()),
        }
    }

    fn metrics(&self) -> Vec<u8> {
        let rt = self.shared.current.load();
        for t in &rt.tenants {
            for p in &t.pools {
                if let Some(b) = &p.breaker {
                    self.shared.metrics.circuit_state.with_label_values(&[&t.id, &p.name]).set(i64::from(b.state()));
                }
                for (i, s) in p.servers.iter().enumerate() {
                    self.shared
                        .metrics
                        .upstream_healthy
                        .with_label_values(&[&t.id, &p.name, &s.name])
                        .set(i64::from(p.is_available(i)));
                }
            }
        }
        if let Some(trail) = &self.shared.reg.audit {
            let m = &self.shared.metrics;
            m.audit_written.inc_by(trail.written().saturating_sub(m.audit_written.get()));
            m.audit_dropped.inc_by(trail.dropped().saturating_sub(m.audit_dropped.get()));
        }
        self.shared.metrics.render()
    }
}

#[async_trait::async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, s: &mut ServerSession) -> Response<Vec<u8>> {
        let method = s.req_header().method.clone();
        let path = String::from_utf8_lossy(s.req_header().raw_path()).split('?').next().unwrap_or("").to_owned();
        if path.starts_with("/admin/") && !self.authorised(s) {
            return problem(
                &Problem::new(ProblemKind::Unauthorized, "the admin API needs `Authorization: Bearer <admin token>`"),
                &path,
            );
        }
        let started = std::time::Instant::now();
        let query = s.req_header().uri.query().map(str::to_owned);
        let changes = matches!(method, Method::POST | Method::DELETE) && path.starts_with("/admin/");
        let resp = self.route(s, method.clone(), &path).await;
        if changes {
            self.record_change(&method, &path, query.as_deref(), resp.status().as_u16(), started.elapsed());
        }
        resp
    }
}

impl AdminApp {
    /// Every change made through the admin API is a record of the audit trail: in the ente's
    /// trail when the change names one (`tenant=`), else in varco's own (`<dir>/varco/`).
    fn record_change(&self, method: &Method, path: &str, query: Option<&str>, status: u16, took: std::time::Duration) {
        let Some(trail) = &self.shared.reg.audit else { return };
        let q = varco_core::query::Query::of(format!("?{}", query.unwrap_or("")).as_bytes());
        let tenant = q.get("tenant").filter(|t| !t.is_empty()).unwrap_or_else(|| "varco".to_owned());
        let what: Vec<String> = ["subscription", "name", "id", "from_sequence", "from_time"]
            .iter()
            .filter_map(|k| q.get(k).map(|v| format!("{k}={v}")))
            .collect();
        let record = varco_audit::Record {
            ts: varco_audit::now(),
            direction: Some(varco_audit::Direction::Inbound),
            route: format!("admin:{path}"),
            method: method.as_str().to_owned(),
            status,
            latency_ms: took.as_millis() as u64,
            caller: Some("admin".to_owned()),
            upstream: (!what.is_empty()).then(|| what.join("&")),
            ..Default::default()
        };
        let keys = self.shared.current.load().tenants.iter().find(|t| t.id == tenant).and_then(|t| t.keys.clone());
        trail.append(&tenant, record, keys);
    }

    async fn route(&self, s: &mut ServerSession, method: Method, path: &str) -> Response<Vec<u8>> {
        let path = path.to_owned();
        match (method, path.as_str()) {
            (Method::GET, "/healthz") => reply(200, "text/plain", b"ok\n".to_vec()),
            (Method::GET, "/readyz") => {
                let rt = self.shared.current.load_full();
                // Ready means serving: every listener accepts connections.
                for l in &rt.config.listeners {
                    if !accepts(&l.address).await {
                        let p = Problem::new(
                            ProblemKind::UpstreamUnavailable,
                            format!("listener `{}` does not accept connections yet", l.name),
                        )
                        .retry_after(1);
                        return problem(&p, &path);
                    }
                }
                reply(200, "text/plain", format!("ready (config generation {})\n", rt.generation).into_bytes())
            }
            (Method::GET, "/metrics") => reply(200, "text/plain; version=0.0.4", self.metrics()),
            (Method::GET, "/admin/config") => {
                let rt = self.shared.current.load();
                let body = serde_json::json!({ "generation": rt.generation, "config": redacted(&rt.config) });
                reply(200, "application/json", serde_json::to_vec_pretty(&body).unwrap_or_default())
            }
            (Method::POST, "/admin/reload") => match self.reloader.reload().await {
                Ok(g) => reply(
                    200,
                    "application/json",
                    serde_json::to_vec(&serde_json::json!({"generation": g})).unwrap_or_default(),
                ),
                Err(e) => {
                    let p = Problem::new(
                        ProblemKind::InvalidConfig,
                        format!("{e}; the running configuration is unchanged"),
                    )
                    .with_extra(serde_json::json!(e.details()));
                    problem(&p, &path)
                }
            },
            (Method::POST, "/admin/events/replay") => self.replay(s, &path).await,
            (Method::GET, "/admin/events/subscriptions") => {
                let rt = self.shared.current.load();
                let list = self.shared.reg.events.list(&rt.config);
                reply(200, "application/json", serde_json::to_vec_pretty(&list).unwrap_or_default())
            }
            (Method::POST | Method::DELETE, "/admin/events/subscriptions") => self.subscription(s, &path).await,
            (Method::GET | Method::DELETE, "/admin/events/dead-letters")
            | (Method::POST, "/admin/events/dead-letters/redrive") => self.dead_letters(s, &path).await,
            (
                _,
                "/healthz"
                | "/readyz"
                | "/metrics"
                | "/admin/config"
                | "/admin/reload"
                | "/admin/events/replay"
                | "/admin/events/subscriptions"
                | "/admin/events/dead-letters"
                | "/admin/events/dead-letters/redrive",
            ) => problem(&Problem::new(ProblemKind::MethodNotAllowed, "wrong method for this admin endpoint"), &path),
            _ => problem(&Problem::new(ProblemKind::NotFound, format!("no admin endpoint {path}")), &path),
        }
    }
}

/// The config as JSON with inline header values of credential-like headers masked. Secrets
/// themselves are never in the config (only where to read them), but be conservative.
fn redacted(cfg: &varco_config::Config) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(tenants) = v.get_mut("tenants").and_then(|t| t.as_array_mut()) {
        for t in tenants {
            for r in t.get_mut("routes").and_then(|r| r.as_array_mut()).into_iter().flatten() {
                if let Some(set) = r.pointer_mut("/request_headers/set").and_then(|s| s.as_object_mut()) {
                    for (_, val) in set.iter_mut() {
                        if val.is_string() {
                            *val = serde_json::Value::String("<redacted>".into());
                        }
                    }
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn ready_means_the_listener_accepts() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(super::accepts(&format!("127.0.0.1:{port}")).await);
        assert!(super::accepts(&format!("0.0.0.0:{port}")).await, "an unspecified address is tried on loopback");
        drop(l);
        assert!(!super::accepts(&format!("127.0.0.1:{port}")).await);
        assert!(!super::accepts("not an address").await);
    }
}
