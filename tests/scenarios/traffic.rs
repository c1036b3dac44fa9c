//! Circuit breaking and load shedding through the real gateway against back-offices that fail
//! or stall on command.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::time::Duration;
use varco_tests::{Backend, Mode, Varco, LISTENERS};

const H: &str = "comune.example.it";

fn config(be: &Backend, upstream_extra: &str, tenant_extra: &str) -> String {
    format!(
        r#"
{LISTENERS}server: {{access_log: false}}
tenants:
  - id: c_e783
    name: Comune
    hosts: [{H}]
    {tenant_extra}
    upstreams: {{pool: {{servers: ["{be}"], retries: 0{upstream_extra}}}}}
    routes:
      - {{name: r, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: pool}}}}
"#,
        be = be.addr
    )
}

#[tokio::test]
async fn breaker_opens_answers_503_without_calling_and_recloses() {
    let be = Backend::start("bo").await;
    // This back-office's 500 means "broken": listed in `passive.statuses`, it counts for the
    // breaker (ejection off, so the breaker alone decides).
    let cb = ", passive: {max_failures: 0, statuses: [500, 502, 503, 504]}, \
              circuit_breaker: {consecutive_failures: 3, failure_ratio: 0, open_for: 500ms, half_open_probes: 1}";
    let v = Varco::start(&config(&be, cb, "")).await;
    be.set_mode(Mode::Status(500));
    for _ in 0..3 {
        assert_eq!(v.get(H, "/x").await.status, 500, "the back-office's own 500 passes through");
    }
    let hits = be.hits();
    let r = v.get(H, "/x").await;
    r.assert_problem(503, "circuit-open");
    assert!(r.header("retry-after").is_some());
    assert_eq!(be.hits(), hits, "an open circuit still called the back-office");
    let m = v.metrics().await;
    assert!(m.contains("varco_upstream_circuit_state{tenant=\"c_e783\",upstream=\"pool\"} 1"), "{m}");
    assert!(m.contains("varco_upstream_circuit_opened_total{tenant=\"c_e783\",upstream=\"pool\"} 1"), "{m}");

    // The back-office recovers; after open_for one probe closes the circuit.
    be.set_mode(Mode::Echo);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(v.get(H, "/x").await.status, 200, "the half-open probe");
    for _ in 0..5 {
        assert_eq!(v.get(H, "/x").await.status, 200);
    }
    assert!(v.metrics().await.contains("varco_upstream_circuit_state{tenant=\"c_e783\",upstream=\"pool\"} 0"));
}

#[tokio::test]
async fn a_failed_probe_keeps_it_open() {
    let be = Backend::start("bo").await;
    let cb = ", passive: {max_failures: 0}, circuit_breaker: {consecutive_failures: 1, open_for: 300ms}";
    let v = Varco::start(&config(&be, cb, "")).await;
    be.set_mode(Mode::Close);
    v.get(H, "/x").await.assert_problem(502, "bad-gateway");
    v.get(H, "/x").await.assert_problem(503, "circuit-open");
    tokio::time::sleep(Duration::from_millis(400)).await;
    v.get(H, "/x").await.assert_problem(502, "bad-gateway");
    v.get(H, "/x").await.assert_problem(503, "circuit-open");
}

async fn concurrent(v: &Varco, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let c = v.client.clone();
        tasks.push(tokio::spawn(async move { c.get(H, "/x").await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 503 {
            r.assert_problem(503, "overloaded");
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        statuses.push(r.status);
    }
    statuses.sort_unstable();
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_is_shed_per_upstream_and_per_tenant() {
    let be = Backend::start("bo").await;
    be.set_mode(Mode::Delay(Duration::from_millis(700)));
    let v = Varco::start(&config(&be, ", passive: {max_failures: 0}, max_concurrent: 2", "")).await;
    assert_eq!(concurrent(&v, 5).await, [200, 200, 503, 503, 503]);
    // Slots come back: the next wave gets the same.
    assert_eq!(concurrent(&v, 3).await, [200, 200, 503]);

    let v = Varco::start(&config(&be, ", passive: {max_failures: 0}", "max_concurrent: 3")).await;
    assert_eq!(concurrent(&v, 5).await, [200, 200, 200, 503, 503]);
}
