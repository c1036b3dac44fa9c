//! Prometheus metrics, created once per process and shared by every configuration generation.

use crate::text::fmt_status;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All of varco's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_failures: IntCounterVec,
    pub ejections: IntCounterVec,
    pub reloads: IntCounterVec,
    pub generation: IntGauge,
    pub ratelimit_keys: IntGauge,
    pub circuit_state: IntGaugeVec,
    pub circuit_opened: IntCounterVec,
    pub quota_redis_up: IntGauge,
    pub jwks_up: IntGaugeVec,
    /// Records the audit trail wrote, and those it dropped (queue full).
    pub audit_written: prometheus::IntCounter,
    pub audit_dropped: prometheus::IntCounter,
    pub connections_open: IntGaugeVec,
    pub connections_refused: IntCounterVec,
    pub header_timeouts: IntCounterVec,
    /// Spans by what became of them (from `varco_telemetry::stats` at each scrape).
    tracing_spans: IntCounterVec,
    pub jwks_age: IntGaugeVec,
    /// Age of each OP's verified trust chain, and the seconds it has left.
    pub trust_chain_age: IntGaugeVec,
    pub trust_chain_remaining: IntGaugeVec,
    /// Every problem varco answered with, by type (refusals of limits and quotas among them).
    pub problems: IntCounterVec,
    auth_decisions: IntCounterVec,
    /// The process itself, read from `/proc` at each scrape.
    process: [IntGauge; 3],
}

/// A route's authentication outcomes, resolved once per route.
#[derive(Debug, Clone)]
pub struct AuthCounters {
    /// `jwt`, `api_key` or `modi`: what decides on the route's callers.
    pub method: &'static str,
    pub allowed: prometheus::IntCounter,
    pub refused: prometheus::IntCounter,
}

impl Metrics {
    /// The registry, for metrics of other crates (the event bus).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Fails only if a metric definition is invalid (a programming error caught by tests).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("varco".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by tenant, route and status."),
            &["tenant", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Time from request header to the end of the response.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["tenant", "route"],
        )?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "upstream_server_healthy",
                "1 when the server is taking traffic (active check passing, not ejected).",
            ),
            &["tenant", "upstream", "server"],
        )?;
        let upstream_failures = IntCounterVec::new(
            Opts::new("upstream_failures_total", "Connection and protocol failures talking to upstream servers."),
            &["tenant", "upstream"],
        )?;
        let ejections = IntCounterVec::new(
            Opts::new("upstream_ejections_total", "Servers passively ejected after consecutive failures."),
            &["tenant", "upstream"],
        )?;
        let reloads =
            IntCounterVec::new(Opts::new("config_reloads_total", "Configuration reloads, by result."), &["result"])?;
        let generation = IntGauge::new("config_generation", "Generation of the running configuration (1 at start).")?;
        let ratelimit_keys =
            IntGauge::new("ratelimit_buckets", "Rate-limit buckets held (idle ones are evicted every second).")?;
        let circuit_state = IntGaugeVec::new(
            Opts::new("upstream_circuit_state", "Circuit breaker of a pool: 0 closed, 1 open, 2 half-open."),
            &["tenant", "upstream"],
        )?;
        let circuit_opened = IntCounterVec::new(
            Opts::new("upstream_circuit_opened_total", "Times a pool's circuit breaker opened."),
            &["tenant", "upstream"],
        )?;
        let quota_redis_up = IntGauge::new(
            "quota_redis_up",
            "1 while quotas are counted cluster-wide in Redis, 0 while each instance counts alone.",
        )?;
        let jwks_up = IntGaugeVec::new(
            Opts::new("jwks_up", "1 when the issuer's keys were fetched (or are static), 0 while serving from cache."),
            &["tenant", "issuer"],
        )?;
        let audit_written =
            prometheus::IntCounter::new("audit_records_written_total", "Records the audit trail wrote.")?;
        let audit_dropped = prometheus::IntCounter::new(
            "audit_records_dropped_total",
            "Audit records dropped because the trail's queue was full (never expected; alert on it).",
        )?;
        let connections_open =
            IntGaugeVec::new(Opts::new("connections_open", "Client connections open, by listener."), &["listener"])?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "Client connections closed at accept: `listener` (max_connections) or `address` (max_connections_per_address).",
            ),
            &["listener", "reason"],
        )?;
        let header_timeouts = IntCounterVec::new(
            Opts::new(
                "header_timeouts_total",
                "Connections closed because a request header was not complete within server.header_timeout.",
            ),
            &["listener"],
        )?;
        let tracing_spans = IntCounterVec::new(
            Opts::new(
                "tracing_spans_total",
                "Spans by outcome: `exported`, `dropped` (the export queue was full) or `failed` (the collector did not take them).",
            ),
            &["outcome"],
        )?;
        let jwks_age = IntGaugeVec::new(
            Opts::new("jwks_age_seconds", "Age of the issuer's fetched keys in use (keys from a file have none)."),
            &["tenant", "issuer"],
        )?;
        let trust_chain_age = IntGaugeVec::new(
            Opts::new("federation_trust_chain_age_seconds", "Age of each OP's verified trust chain in use."),
            &["op"],
        )?;
        let trust_chain_remaining = IntGaugeVec::new(
            Opts::new(
                "federation_trust_chain_remaining_seconds",
                "Seconds until each OP's trust chain expires (renewed at three quarters of its life; at 0 the OP is refused).",
            ),
            &["op"],
        )?;
        let problems = IntCounterVec::new(
            Opts::new(
                "problems_total",
                "Problems varco answered with, by type (`rate-limited`, `quota-exhausted`, `unauthorized`, …).",
            ),
            &["tenant", "route", "type"],
        )?;
        let auth_decisions = IntCounterVec::new(
            Opts::new("auth_decisions_total", "Authentication decisions by method and outcome (`allowed`, `refused`)."),
            &["tenant", "route", "method", "outcome"],
        )?;
        let process = [
            IntGauge::new("process_resident_memory_bytes", "Resident memory of the process.")?,
            IntGauge::new("process_open_fds", "Open file descriptors (connections, files) of the process.")?,
            IntGauge::new("process_threads", "Threads of the process.")?,
        ];
        for g in &process {
            registry.register(Box::new(g.clone()))?;
        }
        for c in [
            Box::new(quota_redis_up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(jwks_age.clone()),
            Box::new(trust_chain_age.clone()),
            Box::new(trust_chain_remaining.clone()),
            Box::new(problems.clone()),
            Box::new(auth_decisions.clone()),
            Box::new(tracing_spans.clone()),
            Box::new(audit_written.clone()),
            Box::new(audit_dropped.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(header_timeouts.clone()),
            Box::new(jwks_up.clone()),
            Box::new(ratelimit_keys.clone()),
            Box::new(circuit_state.clone()),
            Box::new(circuit_opened.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(upstream_failures.clone()),
            Box::new(ejections.clone()),
            Box::new(reloads.clone()),
            Box::new(generation.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            registry,
            requests,
            latency,
            upstream_healthy,
            upstream_failures,
            ejections,
            reloads,
            generation,
            ratelimit_keys,
            circuit_state,
            circuit_opened,
            quota_redis_up,
            jwks_up,
            audit_written,
            audit_dropped,
            connections_open,
            connections_refused,
            header_timeouts,
            tracing_spans,
            jwks_age,
            trust_chain_age,
            trust_chain_remaining,
            problems,
            auth_decisions,
            process,
        })
    }

    /// The authentication counters of a route whose callers `method` decides on.
    pub fn route_auth(&self, tenant: &str, route: &str, method: &'static str) -> AuthCounters {
        AuthCounters {
            method,
            allowed: self.auth_decisions.with_label_values(&[tenant, route, method, "allowed"]),
            refused: self.auth_decisions.with_label_values(&[tenant, route, method, "refused"]),
        }
    }

    /// A route's latency histogram and per-status counters, resolved at its first request (an
    /// idle route costs a few pointers, not a histogram) and then without label look-ups.
    pub fn route(&self, tenant: &str, route: &str) -> RouteMetrics {
        RouteMetrics {
            latency: self.latency.clone(),
            requests: self.requests.clone(),
            labels: Box::new([tenant.to_owned(), route.to_owned()]),
            cells: std::sync::OnceLock::new(),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let (rss, fds, threads) = process_now();
        for (g, v) in self.process.iter().zip([rss, fds, threads]) {
            g.set(v);
        }
        if varco_telemetry::enabled() {
            let s = varco_telemetry::stats();
            for (outcome, n) in [("exported", s.exported), ("dropped", s.dropped), ("failed", s.failed)] {
                let c = self.tracing_spans.with_label_values(&[outcome]);
                c.inc_by(n.saturating_sub(c.get()));
            }
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Resident bytes, open descriptors and threads of this process (zeros where `/proc` is not).
fn process_now() -> (i64, i64, i64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    (field("VmRSS:") * 1024, fds, field("Threads:"))
}

/// The statuses a route answers with in practice, each with its own pre-resolved cell; any
/// other is counted through a label look-up. (A cell for each of the 500 codes cost 8 KiB per
/// route: with a thousand enti that was most of a route's memory.)
const COMMON: [u16; 32] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409, 410, 412, 413, 415,
    422, 429, 431, 500, 501, 502, 503, 504, 0,
];

/// Where `status` sits in [`COMMON`].
const fn slot(status: u16) -> Option<usize> {
    Some(match status {
        200 => 0,
        201 => 1,
        202 => 2,
        204 => 3,
        206 => 4,
        301 => 5,
        302 => 6,
        303 => 7,
        304 => 8,
        307 => 9,
        308 => 10,
        400 => 11,
        401 => 12,
        403 => 13,
        404 => 14,
        405 => 15,
        406 => 16,
        408 => 17,
        409 => 18,
        410 => 19,
        412 => 20,
        413 => 21,
        415 => 22,
        422 => 23,
        429 => 24,
        431 => 25,
        500 => 26,
        501 => 27,
        502 => 28,
        503 => 29,
        504 => 30,
        0 => 31,
        _ => return None,
    })
}

/// One route's `request_duration_seconds` and `requests_total` cells.
#[derive(Debug)]
pub struct RouteMetrics {
    latency: HistogramVec,
    requests: IntCounterVec,
    labels: Box<[String; 2]>,
    cells: std::sync::OnceLock<Box<Cells>>,
}

/// What a route that served requests holds: its histogram and a cell per common status.
#[derive(Debug)]
struct Cells {
    latency: Histogram,
    status: [std::sync::OnceLock<prometheus::IntCounter>; COMMON.len()],
}

impl RouteMetrics {
    /// A finished request: its status and duration.
    pub fn observe(&self, status: u16, seconds: f64) {
        let c = self.cells.get_or_init(|| {
            Box::new(Cells {
                latency: self.latency.with_label_values(&[&self.labels[0], &self.labels[1]]),
                status: Default::default(),
            })
        });
        c.latency.observe(seconds);
        match slot(status) {
            Some(i) => c.status[i].get_or_init(|| self.counter(status)).inc(),
            None => self.counter(status).inc(),
        }
    }

    fn counter(&self, status: u16) -> prometheus::IntCounter {
        let mut code = [b'0'; 3];
        self.requests.with_label_values(&[&self.labels[0], &self.labels[1], fmt_status(&mut code, status)])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_common_status_has_its_own_cell() {
        for (i, s) in super::COMMON.iter().enumerate() {
            assert_eq!(super::slot(*s), Some(i), "{s}");
        }
        assert_eq!(super::slot(418), None);
    }

    #[test]
    fn definitions_are_valid() {
        let m = super::Metrics::new().expect("valid metric definitions");
        m.requests.with_label_values(&["t", "r", "200"]).inc();
        let route = m.route("t", "r");
        let idle = m.route("t", "idle");
        drop(idle);
        route.observe(200, 0.001);
        route.observe(200, 0.001);
        route.observe(0, 0.001);
        // A status without a cell of its own is counted all the same.
        route.observe(418, 0.001);
        route.observe(418, 0.001);
        let text = String::from_utf8(m.render()).unwrap_or_default();
        assert!(text.contains("varco_request_duration_seconds_count{route=\"r\",tenant=\"t\"} 5"), "{text}");
        assert!(!text.contains("route=\"idle\""), "an idle route has no series yet: {text}");
        assert!(text.contains("varco_requests_total{route=\"r\",status=\"418\",tenant=\"t\"} 2"), "{text}");
        assert!(text.contains("varco_requests_total{route=\"r\",status=\"200\",tenant=\"t\"} 3"), "{text}");
        assert!(text.contains("varco_requests_total{route=\"r\",status=\"000\",tenant=\"t\"} 1"), "{text}");
    }
}
