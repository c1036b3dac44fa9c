//! Cluster-wide quotas: two real varco instances share one daily quota through a real
//! redis-server, and fall back to per-instance counting when Redis is gone.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use varco_tests::{Backend, Redis, Varco, LISTENERS};

const H: &str = "comune.example.it";

fn config(be: &Backend, redis_url: &str, quota: &str) -> String {
    format!(
        r#"
{LISTENERS}server: {{access_log: false}}
redis: {{url: "{redis_url}", timeout: 200ms}}
tenants:
  - id: c_e783
    name: Comune
    hosts: [{H}]
    quotas: [{quota}]
    upstreams: {{pool: {{servers: ["{be}"]}}}}
    routes:
      - {{name: r, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: pool}}}}
"#,
        be = be.addr
    )
}

#[tokio::test]
async fn two_instances_share_one_quota() {
    let be = Backend::start("bo").await;
    let redis = Redis::start().await;
    let cfg = config(&be, &redis.url(), "{per: header, header: X-Api-Key, requests: 40, window: day, lease: 5}");
    let (a, b) = (Varco::start(&cfg).await, Varco::start(&cfg).await);
    let mut ok = 0;
    for i in 0..60 {
        let v = if i % 2 == 0 { &a } else { &b };
        let r = v.send("GET", H, "/x", &[("x-api-key", "app-1")], b"").await;
        match r.status {
            200 => ok += 1,
            429 => {
                r.assert_problem(429, "quota-exhausted");
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=86_400).contains(&retry));
            }
            s => panic!("unexpected {s}: {r:?}"),
        }
    }
    // Never over the quota; at most (instances - 1) * lease early (the documented tolerance).
    assert!((35..=40).contains(&ok), "{ok} requests passed a quota of 40 shared by 2 instances");
    assert_eq!(be.hits(), ok);
    // Another key has its own quota.
    assert_eq!(a.send("GET", H, "/x", &[("x-api-key", "app-2")], b"").await.status, 200);
    // The gauge is refreshed every second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(a.metrics().await.contains("varco_quota_redis_up 1"));
}

#[tokio::test]
async fn without_redis_each_instance_counts_alone() {
    let be = Backend::start("bo").await;
    let mut redis = Redis::start().await;
    let url = redis.url();
    redis.stop();
    let v = Varco::start(&config(
        &be,
        &url,
        "{per: tenant, requests: 1000, window: month, lease: 2, fallback_requests: 3}",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(v.get(H, "/x").await.status, 200);
    }
    v.get(H, "/x").await.assert_problem(429, "quota-exhausted");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(v.metrics().await.contains("varco_quota_redis_up 0"), "the fallback is not visible in /metrics");
}
