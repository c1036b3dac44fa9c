//! Load balancing, health (active and passive), retries and timeouts against real servers.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::collections::HashMap;
use std::time::{Duration, Instant};
use varco_tests::{Backend, Mode, Varco, LISTENERS};

const H: &str = "comune.example.it";

fn config(servers: &[&Backend], upstream_extra: &str) -> String {
    let addrs: Vec<String> = servers.iter().map(|b| b.addr.to_string()).collect();
    config_at(&addrs, upstream_extra)
}

/// The pool of servers at `addrs` (any kind of server, not only a test `Backend`).
fn config_at(addrs: &[String], upstream_extra: &str) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
server: {{access_log: false}}
{LISTENERS}tenants:
  - id: c_e783
    name: Comune
    hosts: [{H}]
    upstreams:
      pool: {{servers: [{list}]{upstream_extra}}}
    routes:
      - {{name: any, path: "/{{*rest}}", methods: [GET, POST], access: public, to: {{upstream: pool}}}}
"#,
        list = list.join(", ")
    )
}

async fn until<F: std::future::Future<Output = bool>>(within: Duration, mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn round_robin_spreads_and_consistent_hash_sticks() {
    let (a, b, c) = (Backend::start("a").await, Backend::start("b").await, Backend::start("c").await);
    let v = Varco::start(&config(&[&a, &b, &c], "")).await;
    for _ in 0..30 {
        assert_eq!(v.get(H, "/x").await.status, 200);
    }
    assert_eq!((a.hits(), b.hits(), c.hits()), (10, 10, 10));

    let v = Varco::start(&config(&[&a, &b, &c], ", balance: {consistent_hash: {header: X-Codice-Fiscale}}")).await;
    let mut owner = HashMap::new();
    for round in 0..3 {
        for k in 0..20 {
            let cf = format!("RSSMRA80A01H50{k:02}");
            let r = v.send("GET", H, "/x", &[("x-codice-fiscale", &cf)], b"").await;
            let who = r.json["backend"].as_str().unwrap().to_owned();
            if round == 0 {
                owner.insert(cf, who);
            } else {
                assert_eq!(owner[&cf], who, "key {cf} moved between servers");
            }
        }
    }
    let used: std::collections::HashSet<_> = owner.values().collect();
    assert!(used.len() >= 2, "20 keys all went to one server: {owner:?}");
}

#[tokio::test]
async fn active_health_checks_eject_and_readmit_and_drive_status() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let hc = ", health_check: {path: /health, interval: 100ms, timeout: 100ms, unhealthy_threshold: 2, healthy_threshold: 1}";
    let v = Varco::start(&config(&[&a, &b], hc)).await;
    assert!(
        until(Duration::from_secs(5), || async { a.state.health_hits.load(std::sync::atomic::Ordering::SeqCst) >= 2 })
            .await,
        "no health checks"
    );
    a.set_healthy(false);
    assert!(
        until(Duration::from_secs(5), || async {
            v.get(H, "/status").await.json["upstreams"][0]["healthy_servers"] == 1
        })
        .await
    );
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(v.get(H, "/x").await.json["backend"], "b");
    }
    assert_eq!(a.hits(), before, "an unhealthy server got traffic");
    let m = v.metrics().await;
    assert!(
        m.contains(&format!(
            "varco_upstream_server_healthy{{server=\"{}\",tenant=\"c_e783\",upstream=\"pool\"}} 0",
            a.addr
        )),
        "{m}"
    );

    b.set_healthy(false);
    assert!(until(Duration::from_secs(5), || async { v.get(H, "/status").await.status == 503 }).await);
    let s = v.get(H, "/status").await;
    assert!(s.header("retry-after").is_some());
    assert_eq!(s.header("content-type"), Some("application/problem+json"));
    let r = v.get(H, "/x").await;
    r.assert_problem(503, "upstream-unavailable");
    assert!(r.header("retry-after").is_some());

    a.set_healthy(true);
    assert!(until(Duration::from_secs(5), || async { v.get(H, "/status").await.status == 200 }).await);
    assert_eq!(v.get(H, "/x").await.json["backend"], "a");
}

#[tokio::test]
async fn passive_ejection_after_consecutive_failures() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let v = Varco::start(&config(&[&a, &b], ", retries: 0, passive: {max_failures: 2, eject_for: 60s}")).await;
    a.set_mode(Mode::Close);
    let mut failures = 0;
    for _ in 0..8 {
        if v.get(H, "/x").await.status == 502 {
            failures += 1;
        }
    }
    assert_eq!(failures, 2, "a failing server is ejected after max_failures");
    let before = a.hits();
    for _ in 0..6 {
        assert_eq!(v.get(H, "/x").await.json["backend"], "b");
    }
    assert_eq!(a.hits(), before);
    assert!(v.metrics().await.contains("varco_upstream_ejections_total{tenant=\"c_e783\",upstream=\"pool\"} 1"));
}

#[tokio::test]
async fn retries_go_to_another_server_for_idempotent_methods_only() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dead = varco_tests::free_port();
    let cfg = config(&[&a, &b], ", retries: 2, passive: {max_failures: 0}")
        .replace(&format!("\"{}\"", b.addr), &format!("\"{}\", \"127.0.0.1:{dead}\"", b.addr));
    let v = Varco::start(&cfg).await;
    // Connection refused: nothing was sent, so even POST moves on to another server.
    for _ in 0..9 {
        assert_eq!(v.send("POST", H, "/x", &[], b"{}").await.status, 200);
    }
    // The request reached a server that then dropped it: GET is retried elsewhere...
    a.set_mode(Mode::Close);
    for _ in 0..9 {
        let r = v.get(H, "/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json["backend"], "b");
    }
    // ...POST is not (it may have had an effect).
    let mut saw_502 = false;
    for _ in 0..9 {
        let r = v.send("POST", H, "/x", &[], b"{}").await;
        match r.status {
            200 => assert_eq!(r.json["backend"], "b"),
            502 => saw_502 = true,
            s => panic!("unexpected {s}: {r:?}"),
        }
    }
    assert!(saw_502, "a POST that reached a failing server must not be replayed");
}

#[tokio::test]
async fn total_budget_caps_time_across_retries() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_mode(Mode::Delay(Duration::from_secs(3)));
    b.set_mode(Mode::Delay(Duration::from_secs(3)));
    let v = Varco::start(&config(&[&a, &b], ", retries: 1, timeouts: {read: 2s, total: 700ms}")).await;
    let t = Instant::now();
    v.get(H, "/x").await.assert_problem(504, "gateway-timeout");
    assert!(t.elapsed() < Duration::from_millis(1900), "total budget not applied: {:?}", t.elapsed());
}

/// One server of two answers 503 to everything: passive health ejects it after three in a
/// row, so the pool's breaker (which counts the same statuses) sees the healthy server's
/// answers and stays closed. Before, the broken server was never ejected and its 503s opened
/// the breaker on both: a full outage from a half fault.
#[tokio::test]
async fn a_server_answering_503_is_ejected_and_the_breaker_spares_its_healthy_peer() {
    let (good, bad) = (Backend::start("good").await, Backend::start("bad").await);
    bad.set_mode(Mode::Status(503));
    let breaker = ", circuit_breaker: {consecutive_failures: 5, failure_ratio: 0.5, min_requests: 10, window: 10s, open_for: 30s}";
    let v = Varco::start(&config(&[&good, &bad], breaker)).await;
    let mut ok = 0;
    for _ in 0..100 {
        if v.get(H, "/x").await.status == 200 {
            ok += 1;
        }
    }
    assert!(ok >= 96, "only {ok} of 100 answered 200 (bad server hits: {})", bad.hits());
    assert!(bad.hits() <= 4, "the 503 server kept getting traffic: {}", bad.hits());
    let m = v.metrics().await;
    assert!(m.lines().any(|l| l.starts_with("varco_upstream_ejections_total{") && !l.ends_with(" 0")), "{m}");
    // A status not in `passive.statuses` (default 502, 503, 504) is the request's, not the server's.
    good.set_mode(Mode::Status(500));
    for _ in 0..30 {
        assert_eq!(v.get(H, "/x").await.status, 500);
    }
}

/// A canary: weights 9 and 1 move a tenth of 10 000 requests (within ±5 %) to the new server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_servers_share_traffic_by_weight() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let cfg = config(&[&old, &new], "").replace(
        &format!("servers: [\"{}\", \"{}\"]", old.addr, new.addr),
        &format!("servers: [{{address: \"{}\", weight: 9}}, {{address: \"{}\", weight: 1}}]", old.addr, new.addr),
    );
    assert!(cfg.contains("weight: 9"), "{cfg}");
    let v = std::sync::Arc::new(Varco::start(&cfg).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..1250 {
                assert_eq!(v.get(H, "/x").await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (o, n) = (old.hits(), new.hits());
    assert_eq!(o + n, 10_000);
    assert!((950..=1050).contains(&n), "the weight-1 server got {n} of 10000 (old {o})");
}

/// gRPC through varco: a grpcio client over h2c to varco, varco over h2c (`protocol: http2`)
/// to a grpcio back-office; the answer and a gRPC error (its status travels in HTTP/2
/// trailers) reach the client intact, and the back-office sees varco's forwarding headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_passes_through_http2_to_the_back_office() {
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/tools/grpc_tool.py");
    let port = varco_tests::free_port();
    let mut server = varco_tests::spawn_ready_tool("grpc_tool.py", &["serve", &port.to_string()]).await;
    let cfg = config_at(&[format!("127.0.0.1:{port}")], ", protocol: http2, retries: 0");
    let v = Varco::start(&cfg).await;
    let call = |method: &'static str| {
        let target = format!("127.0.0.1:{}", v.port);
        async move {
            let out = tokio::process::Command::new("python3")
                .args([tool, "call", &target, method, H, "RSSMRA80A01H501U"])
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let ok = call("/anagrafe.Anagrafe/Residenza").await;
    assert_eq!(ok["code"], "OK", "{ok}\n{}", v.log_text());
    assert_eq!(
        ok["response"], "residenza:RSSMRA80A01H501U|forwarded-for=127.0.0.1",
        "varco's forwarding headers reach it"
    );
    let missing = call("/anagrafe.Anagrafe/Missing").await;
    assert_eq!(missing["code"], "NOT_FOUND", "{missing}");
    assert_eq!(missing["details"], "nessun cittadino con questo codice fiscale");
    // With HTTP/1.1 towards it, the gRPC back-office cannot answer: the choice matters.
    let h1 = Varco::start(&config_at(&[format!("127.0.0.1:{port}")], ", retries: 0")).await;
    let target = format!("127.0.0.1:{}", h1.port);
    let out = tokio::process::Command::new("python3")
        .args([tool, "call", &target, "/anagrafe.Anagrafe/Residenza", H, "x"])
        .output()
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(r["code"], "OK", "{r}");
    let _ = server.kill().await;
}
