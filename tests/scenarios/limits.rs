//! Rate limits through the real gateway: ModI headers on every answer of a limited route, 429
//! problems with Retry-After, separate buckets per key, buckets that survive unrelated reloads,
//! and bounded memory under a flood of keys.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::time::Duration;
use varco_tests::{Backend, Varco, LISTENERS};

const H: &str = "comune.example.it";

fn config(be: &Backend, a_limit: &str, b_limit: &str) -> String {
    format!(
        r#"
{LISTENERS}server: {{access_log: false}}
tenants:
  - id: c_e783
    name: Comune
    hosts: [{H}]
    rate_limits: [{{per: tenant, requests: 100000, period: 1s}}]
    upstreams: {{pool: {{servers: ["{be}"]}}}}
    routes:
      - {{name: a, path: "/a", methods: [GET], access: public, to: {{upstream: pool}}, rate_limits: [{a_limit}]}}
      - {{name: b, path: "/b", methods: [GET], access: public, to: {{upstream: pool}}, rate_limits: [{b_limit}]}}
      - {{name: keyed, path: "/keyed", methods: [GET], access: public, to: {{upstream: pool}}, rate_limits: [{{per: header, header: X-Api-Key, requests: 1, period: 1s}}]}}
"#,
        be = be.addr
    )
}

const A3: &str = "{per: client_ip, requests: 3, period: 1h}";
const B5: &str = "{per: route, requests: 5, period: 1h}";

#[tokio::test]
async fn headers_then_429_with_retry_after() {
    let be = Backend::start("bo").await;
    let v = Varco::start(&config(&be, A3, B5)).await;
    for left in ["2", "1", "0"] {
        let r = v.get(H, "/a").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"), "{r:?}");
        assert_eq!(r.header("x-ratelimit-remaining"), Some(left));
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset > 0 && reset <= 3600, "{reset}");
    }
    let hits = be.hits();
    let r = v.get(H, "/a").await;
    r.assert_problem(429, "rate-limited");
    assert_eq!(be.hits(), hits, "a limited request reached the back-office");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1200).contains(&retry), "{retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.json["detail"].as_str().unwrap().contains("route `a`"), "{r:?}");
    // The tenant-wide limit (100000/s) is looser: route b shows its own, tighter one.
    assert_eq!(v.get(H, "/b").await.header("x-ratelimit-limit"), Some("5"));
    // The implicit /status carries the tenant's limit.
    assert_eq!(v.get(H, "/status").await.header("x-ratelimit-limit"), Some("100000"));
}

/// A limited route's error answers carry the headers too: a caller that gets a 502 (the
/// back-office down) must still pace itself.
#[tokio::test]
async fn error_answers_of_a_limited_route_carry_the_headers() {
    let be = Backend::start("bo").await;
    let dead = varco_tests::free_port();
    let cfg = config(&be, A3, B5).replace(&format!("\"{}\"", be.addr), &format!("\"127.0.0.1:{dead}\""));
    let v = Varco::start(&cfg).await;
    let r = v.get(H, "/a").await;
    r.assert_problem(502, "bad-gateway");
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"), "{r:?}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"), "{r:?}");
    assert!(r.header("x-ratelimit-reset").is_some(), "{r:?}");
}

#[tokio::test]
async fn each_key_has_its_own_bucket() {
    let be = Backend::start("bo").await;
    let v = Varco::start(&config(&be, A3, B5)).await;
    assert_eq!(v.send("GET", H, "/keyed", &[("x-api-key", "app-1")], b"").await.status, 200);
    v.send("GET", H, "/keyed", &[("x-api-key", "app-1")], b"").await.assert_problem(429, "rate-limited");
    assert_eq!(v.send("GET", H, "/keyed", &[("x-api-key", "app-2")], b"").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(v.send("GET", H, "/keyed", &[("x-api-key", "app-1")], b"").await.status, 200, "the bucket refills");
}

#[tokio::test]
async fn reload_keeps_unrelated_buckets() {
    let be = Backend::start("bo").await;
    let v = Varco::start(&config(&be, A3, B5)).await;
    for _ in 0..3 {
        assert_eq!(v.get(H, "/a").await.status, 200);
    }
    assert_eq!(v.get(H, "/a").await.status, 429);
    // Change only route b's limit: route a's bucket stays empty.
    v.rewrite_config(&config(&be, A3, "{per: route, requests: 7, period: 1h}"));
    assert_eq!(v.reload().await.status, 200);
    assert_eq!(v.get(H, "/a").await.status, 429, "an unrelated reload reset route a's bucket");
    assert_eq!(v.get(H, "/b").await.header("x-ratelimit-limit"), Some("7"));
    // Changing route a's own limit starts it afresh.
    v.rewrite_config(&config(
        &be,
        "{per: client_ip, requests: 4, period: 1h}",
        "{per: route, requests: 7, period: 1h}",
    ));
    assert_eq!(v.reload().await.status, 200);
    let r = v.get(H, "/a").await;
    assert_eq!((r.status, r.header("x-ratelimit-remaining")), (200, Some("3")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_keys_is_evicted() {
    let be = Backend::start("bo").await;
    let v = Varco::start(&config(&be, A3, B5)).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = v.client.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..250 {
                let key = format!("flood-{t}-{k}");
                let r = c.send("GET", H, "/keyed", &[("x-api-key", &key)], b"").await;
                assert_eq!(r.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let buckets = |m: String| -> i64 {
        m.lines()
            .find_map(|l| l.strip_prefix("varco_ratelimit_buckets "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(-1)
    };
    // Sampled once a second; idle buckets (full again after 1 s) are dropped at that tick.
    let mut peak = 0;
    let mut last = -1;
    for _ in 0..60 {
        last = buckets(v.metrics().await);
        peak = peak.max(last);
        if peak > 0 && last <= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last <= 5, "buckets not evicted: {last} left (peak {peak})");
}
