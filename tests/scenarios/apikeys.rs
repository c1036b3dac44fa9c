//! API keys for app developers: made by `varco apikey`, stored hashed, scoped to routes,
//! revoked by a reload, never forwarded.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use varco_tests::{Backend, Varco, LISTENERS};

const H: &str = "comune.example.it";

fn apikey(name: &str) -> (String, String) {
    let out = std::process::Command::new(Varco::bin()).args(["apikey", "--name", name]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap().to_owned();
    let entry = text.lines().find_map(|l| l.strip_prefix("api_keys entry: ")).unwrap().to_owned();
    assert!(!entry.contains(&key), "the config line must hold only the hash");
    (key, entry)
}

fn config(be: &Backend, keys: &[String]) -> String {
    format!(
        r#"
{LISTENERS}tenants:
  - id: c_e783
    name: Comune
    hosts: [{H}]
    api_keys: [{keys}]
    upstreams: {{bo: {{servers: ["{be}"]}}}}
    routes:
      - {{name: a, path: "/a", methods: [GET], access: {{api_key: {{}}}}, to: {{upstream: bo}}}}
      - {{name: b, path: "/b", methods: [GET], access: {{api_key: {{header: X-Key}}}}, to: {{upstream: bo}}}}
"#,
        keys = keys.join(", "),
        be = be.addr
    )
}

#[tokio::test]
async fn keys_admit_scope_and_revoke() {
    let be = Backend::start("bo").await;
    let (k1, e1) = apikey("app-1");
    let (k2, e2) = apikey("app-2");
    let scoped = e2.replace('}', ", routes: [a]}");
    let v = Varco::start(&config(&be, &[e1.clone(), scoped.clone()])).await;

    let r = v.send("GET", H, "/a", &[("x-api-key", &k1)], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let h = &be.last()["headers"];
    assert_eq!(h["x-varco-client-id"], "app-1");
    assert!(h.get("x-api-key").is_none(), "the key reached the back-office");
    assert_eq!(v.send("GET", H, "/b", &[("x-key", &k1)], b"").await.status, 200);

    v.get(H, "/a").await.assert_problem(401, "token-missing");
    v.send("GET", H, "/a", &[("x-api-key", "vk_guess")], b"").await.assert_problem(401, "token-invalid");
    // app-2 may call route a only.
    assert_eq!(v.send("GET", H, "/a", &[("x-api-key", &k2)], b"").await.status, 200);
    v.send("GET", H, "/b", &[("x-key", &k2)], b"").await.assert_problem(403, "forbidden");
    // Each decision is counted, and each refusal by its problem type.
    let m = v.metrics().await;
    for (series, n) in [
        (r#"varco_auth_decisions_total{method="api_key",outcome="allowed",route="a",tenant="c_e783"}"#, 2),
        (r#"varco_auth_decisions_total{method="api_key",outcome="refused",route="a",tenant="c_e783"}"#, 2),
        (r#"varco_auth_decisions_total{method="api_key",outcome="allowed",route="b",tenant="c_e783"}"#, 1),
        (r#"varco_auth_decisions_total{method="api_key",outcome="refused",route="b",tenant="c_e783"}"#, 1),
        (r#"varco_problems_total{route="a",tenant="c_e783",type="token-missing"}"#, 1),
        (r#"varco_problems_total{route="a",tenant="c_e783",type="token-invalid"}"#, 1),
        (r#"varco_problems_total{route="b",tenant="c_e783",type="forbidden"}"#, 1),
    ] {
        assert_eq!(value(&m, series), Some(n), "{series} in\n{m}");
    }
    assert!(value(&m, "varco_process_resident_memory_bytes").unwrap() > 1 << 20, "{m}");
    assert!(value(&m, "varco_process_open_fds").unwrap() > 3, "{m}");

    // Revoking app-1 is a reload without it.
    v.rewrite_config(&config(&be, &[scoped]));
    assert_eq!(v.reload().await.status, 200);
    v.send("GET", H, "/a", &[("x-api-key", &k1)], b"").await.assert_problem(401, "token-invalid");
    assert!(!v.log_text().contains(&k1));
    // The counters go on across the reload.
    let m = v.metrics().await;
    let refused = r#"varco_auth_decisions_total{method="api_key",outcome="refused",route="a",tenant="c_e783"}"#;
    assert_eq!(value(&m, refused), Some(3), "{m}");
}

/// A series' value in a Prometheus text exposition.
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
