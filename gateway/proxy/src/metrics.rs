//! Prometheus metrics, created once per process and shared by every configuration generation.

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
}

impl Metrics {
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
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(upstream_failures.clone()),
            Box::new(ejections.clone()),
            Box::new(reloads.clone()),
            Box::new(generation.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self { registry, requests, latency, upstream_healthy, upstream_failures, ejections, reloads, generation })
    }

    /// The pre-resolved latency histogram of a route (no label lookup per request).
    pub fn route_latency(&self, tenant: &str, route: &str) -> Histogram {
        self.latency.with_label_values(&[tenant, route])
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn definitions_are_valid() {
        let m = super::Metrics::new().expect("valid metric definitions");
        m.requests.with_label_values(&["t", "r", "200"]).inc();
        let text = String::from_utf8(m.render()).unwrap_or_default();
        assert!(text.contains("varco_requests_total{route=\"r\",status=\"200\",tenant=\"t\"} 1"), "{text}");
    }
}
