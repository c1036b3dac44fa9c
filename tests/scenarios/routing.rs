//! Tenancy and routing through the real gateway: each request reaches exactly one tenant's
//! back-office, with the forwarding, trace and identity headers the back-office can rely on.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use varco_tests::{raw_http, Backend, Varco, LISTENERS};

fn consortium(mc: &Backend, ba: &Backend, ge: &Backend) -> String {
    format!(
        r#"
server: {{access_log: true, forwarded_header: true}}
{LISTENERS}tenants:
  - id: c_e783
    name: Comune di Macerata
    hosts: [macerata.example.it]
    upstreams: {{anagrafe: {{servers: ["{mc}"]}}}}
    routes:
      - {{name: anagrafe, path: "/anagrafe/v1/{{*rest}}", methods: [GET, POST], access: public, to: {{upstream: anagrafe}}, strip_prefix: /anagrafe}}
  - id: c_a662
    name: Comune di Bari
    hosts: [consorzio.example.it]
    prefix: /c_a662
    upstreams: {{tributi: {{servers: ["{ba}"]}}}}
    routes:
      - {{name: tributi, path: "/tributi/{{*rest}}", methods: [GET], access: public, to: {{upstream: tributi}}}}
  - id: c_d969
    name: Comune di Genova
    hosts: [consorzio.example.it]
    prefix: /c_d969
    upstreams: {{tributi: {{servers: ["{ge}"]}}}}
    routes:
      - {{name: tributi, path: "/tributi/{{*rest}}", methods: [GET], access: public, to: {{upstream: tributi}}}}
"#,
        mc = mc.addr,
        ba = ba.addr,
        ge = ge.addr
    )
}

#[tokio::test]
async fn each_request_reaches_exactly_its_tenant() {
    let (mc, ba, ge) = (Backend::start("macerata").await, Backend::start("bari").await, Backend::start("genova").await);
    let v = Varco::start(&consortium(&mc, &ba, &ge)).await;

    let r = v.get("macerata.example.it", "/anagrafe/v1/persone/1?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["backend"], "macerata");
    assert_eq!(r.json["path"], "/v1/persone/1?x=1", "strip_prefix removes /anagrafe");

    let r = v.get("consorzio.example.it", "/c_a662/tributi/tari").await;
    assert_eq!(r.json["backend"], "bari");
    assert_eq!(r.json["path"], "/tributi/tari", "the tenant prefix is removed");
    let r = v.get("consorzio.example.it", "/c_d969/tributi/tari").await;
    assert_eq!(r.json["backend"], "genova");

    // Nothing of one tenant is reachable through another's host or prefix.
    v.get("consorzio.example.it", "/anagrafe/v1/persone/1").await.assert_problem(404, "unknown-tenant");
    v.get("consorzio.example.it", "/c_e783/anagrafe/v1/persone/1").await.assert_problem(404, "unknown-tenant");
    v.get("macerata.example.it", "/c_a662/tributi/tari").await.assert_problem(404, "no-route");
    v.get("MACERATA.example.it:443", "/c_d969/tributi/tari").await.assert_problem(404, "no-route");
    v.get("bari.example.it", "/c_a662/tributi/tari").await.assert_problem(404, "unknown-tenant");
    assert_eq!((mc.hits(), ba.hits(), ge.hits()), (1, 1, 1));

    // Each tenant answers its own /status.
    for (host, path) in [("macerata.example.it", "/status"), ("consorzio.example.it", "/c_a662/status")] {
        let r = v.get(host, path).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    assert_eq!(v.get("consorzio.example.it", "/c_d969/status").await.json["tenant"], "c_d969");
}

#[tokio::test]
async fn back_office_gets_forwarding_trace_and_no_spoofed_identity() {
    let (mc, ba, ge) = (Backend::start("macerata").await, Backend::start("bari").await, Backend::start("genova").await);
    let v = Varco::start(&consortium(&mc, &ba, &ge)).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = v
        .send(
            "GET",
            "macerata.example.it",
            "/anagrafe/v1/x",
            &[
                ("traceparent", tp),
                ("x-request-id", "pratica-42"),
                ("x-varco-subject", "RSSMRA80A01H501U"),
                ("x-varco-tenant", "c_a662"),
                ("x-forwarded-for", "10.6.6.6"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret-hop"),
            ],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("pratica-42"));
    let h = &mc.last()["headers"];
    assert!(
        h.get("x-varco-subject").is_none() && h.get("x-varco-tenant").is_none(),
        "spoofed identity reached the back-office: {h}"
    );
    assert!(h.get("x-hop").is_none(), "a header named in Connection is hop-by-hop: {h}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "the caller's X-Forwarded-For is replaced, not trusted");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "macerata.example.it");
    assert_eq!(h["forwarded"], "for=127.0.0.1;host=macerata.example.it;proto=http");
    assert_eq!(h["x-request-id"], "pratica-42");
    let up_tp = h["traceparent"].as_str().unwrap();
    assert!(up_tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "trace continued: {up_tp}");
    assert!(!up_tp.contains("b7ad6b7169203331"), "varco's own span is the parent: {up_tp}");

    // Without a traceparent varco starts a trace and uses its id as request id.
    let r = v.get("macerata.example.it", "/anagrafe/v1/x").await;
    let rid = r.header("x-request-id").unwrap().to_owned();
    let up_tp = mc.last()["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert_eq!(up_tp.split('-').nth(1), Some(rid.as_str()));
}

#[tokio::test]
async fn access_log_and_metrics_name_tenant_and_route_but_no_secret() {
    let (mc, ba, ge) = (Backend::start("macerata").await, Backend::start("bari").await, Backend::start("genova").await);
    let cfg = consortium(&mc, &ba, &ge).replace(
        "strip_prefix: /anagrafe}",
        "strip_prefix: /anagrafe, request_headers: {set: {Authorization: {env: BO_TOKEN}}}}",
    );
    let v = Varco::start_with_env(&cfg, &[("BO_TOKEN", "Bearer s3cr3t-backoffice")]).await;
    let r = v
        .send(
            "GET",
            "macerata.example.it",
            "/anagrafe/v1/x?token=query-s3cr3t",
            &[("authorization", "Bearer caller-s3cr3t")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        mc.last()["headers"]["authorization"],
        "Bearer s3cr3t-backoffice",
        "the route's credential replaces the caller's"
    );
    // The logging phase runs just after the response is sent.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let m = v.metrics().await;
    assert!(m.contains(r#"varco_requests_total{route="anagrafe",status="200",tenant="c_e783"} 1"#), "{m}");
    assert!(m.contains("varco_request_duration_seconds_bucket{route=\"anagrafe\",tenant=\"c_e783\""));
    let cfg_dump = v.admin_client.get("localhost", "/admin/config").await;
    assert_eq!(cfg_dump.status, 200);
    assert_eq!(cfg_dump.json["config"]["tenants"][0]["id"], "c_e783");
    // Access-log lines are flushed at least every 200 ms.
    let mut log = String::new();
    for _ in 0..40 {
        log = v.log_text();
        if log.contains("varco::access") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = log.lines().find(|l| l.contains("varco::access") && l.contains("c_e783")).expect("an access log line");
    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["fields"]["route"], "anagrafe");
    assert_eq!(entry["fields"]["status"], 200);
    assert_eq!(entry["fields"]["path"], "/anagrafe/v1/x");
    for secret in ["s3cr3t-backoffice", "caller-s3cr3t", "query-s3cr3t"] {
        assert!(!log.contains(secret), "`{secret}` leaked into the log:\n{log}");
        assert!(!cfg_dump.body.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}

#[tokio::test]
async fn caller_forwarded_header_is_dropped_unless_varco_sets_its_own() {
    let (mc, ba, ge) = (Backend::start("macerata").await, Backend::start("bari").await, Backend::start("genova").await);
    let v = Varco::start(&consortium(&mc, &ba, &ge).replace(", forwarded_header: true", "")).await;
    let r =
        v.send("GET", "macerata.example.it", "/anagrafe/v1/x", &[("forwarded", "for=10.6.6.6;proto=https")], b"").await;
    assert_eq!(r.status, 200);
    let h = &mc.last()["headers"];
    assert!(h.get("forwarded").is_none(), "a caller's Forwarded reached the back-office: {h}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
}

/// `response_headers` rewrites the back-office's answer: what it leaks goes, what the ente's
/// security policy asks for comes; other routes' answers are untouched.
#[tokio::test]
async fn response_headers_are_rewritten_per_route() {
    let (mc, ba, ge) = (Backend::start("mc").await, Backend::start("ba").await, Backend::start("ge").await);
    let cfg = consortium(&mc, &ba, &ge).replace(
        "strip_prefix: /anagrafe}",
        "strip_prefix: /anagrafe, response_headers: {set: {Strict-Transport-Security: max-age=63072000, X-Frame-Options: DENY}, remove: [Content-Type]}}",
    );
    assert!(cfg.contains("response_headers"));
    let v = Varco::start(&cfg).await;
    let r = v.get("macerata.example.it", "/anagrafe/v1/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("strict-transport-security"), Some("max-age=63072000"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r.header("content-type").is_none(), "{r:?}");
    assert!(r.header("x-request-id").is_some(), "varco's own headers stay");
    let other = v.get("consorzio.example.it", "/c_a662/tributi/x").await;
    assert_eq!(other.header("content-type"), Some("application/json"));
    assert!(other.header("x-frame-options").is_none());
}

/// Address rules, with callers on two loopback addresses: the station's route admits the
/// node's address only, the ente refuses a third one everywhere (its /status too), and a
/// trusted load balancer's X-Forwarded-For names the caller while anyone else's is ignored.
#[tokio::test]
async fn source_address_rules_per_ente_and_route_with_a_trusted_proxy() {
    use std::net::IpAddr;
    use varco_tests::Client;
    let (mc, ba, ge) = (Backend::start("mc").await, Backend::start("ba").await, Backend::start("ge").await);
    let cfg = consortium(&mc, &ba, &ge)
        .replace(
            "server: {access_log: true, forwarded_header: true}",
            "server: {access_log: true, forwarded_header: true, trusted_proxies: [127.0.0.4]}",
        )
        .replace(
            "strip_prefix: /anagrafe}",
            "strip_prefix: /anagrafe, source: {allow: [127.0.0.1/32, 198.51.100.0/24]}}",
        )
        .replace(
            "    hosts: [macerata.example.it]\n",
            "    hosts: [macerata.example.it]\n    source: {deny: [127.0.0.3]}\n",
        );
    assert!(cfg.contains("source: {deny"), "{cfg}");
    let v = Varco::start(&cfg).await;
    let from = |ip: &str| Client::from_address(v.port, Some(ip.parse::<IpAddr>().unwrap()));
    let (node, other, banned, lb) = (from("127.0.0.1"), from("127.0.0.2"), from("127.0.0.3"), from("127.0.0.4"));
    const MC: &str = "macerata.example.it";
    assert_eq!(node.get(MC, "/anagrafe/v1/x").await.status, 200);
    let hits = mc.hits();
    let r = other.get(MC, "/anagrafe/v1/x").await;
    r.assert_problem(403, "forbidden");
    assert!(r.json["detail"].as_str().unwrap().contains("route"), "{r:?}");
    assert_eq!(mc.hits(), hits, "a refused address reached the back-office");
    // The ente's rule covers every route, the built-in /status included.
    banned.get(MC, "/anagrafe/v1/x").await.assert_problem(403, "forbidden");
    banned.get(MC, "/status").await.assert_problem(403, "forbidden");
    assert_eq!(other.get(MC, "/status").await.status, 200, "no route rule on /status");
    // Behind the trusted balancer the caller is the address it forwards for ...
    let r = lb.send("GET", MC, "/anagrafe/v1/x", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(mc.last()["headers"]["x-forwarded-for"], "198.51.100.7");
    lb.send("GET", MC, "/anagrafe/v1/x", &[("x-forwarded-for", "203.0.113.9")], b"")
        .await
        .assert_problem(403, "forbidden");
    // ... while an untrusted caller cannot claim an admitted address.
    other
        .send("GET", MC, "/anagrafe/v1/x", &[("x-forwarded-for", "198.51.100.7")], b"")
        .await
        .assert_problem(403, "forbidden");
    // Another ente is not concerned by Macerata's rules.
    assert_eq!(banned.get("consorzio.example.it", "/c_a662/tributi/x").await.status, 200);
}

/// CORS for a comune's web app: the preflight exactly as a browser sends it (curl), answered
/// by varco before authentication; the real call and its errors carry the headers the page
/// needs; another origin, method or header is refused; an address the ente refuses gets 403
/// (before, its preflight was answered); a route without CORS keeps 405.
#[tokio::test]
async fn cors_preflight_and_answers_for_a_web_app() {
    let (mc, ba, ge) = (Backend::start("mc").await, Backend::start("ba").await, Backend::start("ge").await);
    let cfg = consortium(&mc, &ba, &ge).replace(
        "    prefix: /c_a662\n",
        "    prefix: /c_a662\n    cors: {allow_origins: [\"https://app.comune.bari.it\"], allow_headers: [Authorization, X-Api-Key], max_age: 1h}\n    source: {deny: [127.0.0.3]}\n",
    );
    assert!(cfg.contains("cors:"), "{cfg}");
    let v = Varco::start(&cfg).await;
    const APP: &str = "https://app.comune.bari.it";
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-i", "-H", "Host: consorzio.example.it"])
            .args(args)
            .arg(format!("http://127.0.0.1:{}/c_a662/tributi/avvisi", v.port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let hits = ba.hits();
    let pre = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        &format!("Origin: {APP}"),
        "-H",
        "Access-Control-Request-Method: GET",
        "-H",
        "Access-Control-Request-Headers: authorization,x-api-key",
    ]);
    assert!(pre.starts_with("http/1.1 204"), "{pre}");
    assert!(pre.contains(&format!("access-control-allow-origin: {APP}")), "{pre}");
    assert!(pre.contains("access-control-allow-methods: get"), "{pre}");
    assert!(pre.contains("access-control-allow-headers: authorization, x-api-key"), "{pre}");
    assert!(pre.contains("access-control-max-age: 3600"), "{pre}");
    assert_eq!(ba.hits(), hits, "a preflight is varco's to answer");
    // Refused: another origin, a method the route does not take, a header not listed.
    for (origin, method, hdrs) in [("https://evil.example", "GET", ""), (APP, "DELETE", ""), (APP, "GET", "x-secret")] {
        let mut args = vec!["-X", "OPTIONS", "-H"];
        let o = format!("Origin: {origin}");
        let m = format!("Access-Control-Request-Method: {method}");
        let h = format!("Access-Control-Request-Headers: {hdrs}");
        args.extend([o.as_str(), "-H", m.as_str()]);
        if !hdrs.is_empty() {
            args.extend(["-H", h.as_str()]);
        }
        let r = curl(&args);
        // A browser needs a 2xx preflight granting the method: neither is there.
        assert!(!r.contains("access-control-allow-methods"), "{origin} {method} {hdrs}: {r}");
        assert!(r.starts_with("http/1.1 403") || r.starts_with("http/1.1 405"), "{origin} {method} {hdrs}: {r}");
    }
    // The real call: the page may read the answer and varco's headers.
    let r = v.send("GET", "consorzio.example.it", "/c_a662/tributi/avvisi", &[("origin", APP)], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert!(r.header("access-control-expose-headers").unwrap().contains("X-Request-Id"), "{r:?}");
    // An error too, so the page can read the problem.
    let r = v.send("POST", "consorzio.example.it", "/c_a662/tributi/avvisi", &[("origin", APP)], b"").await;
    r.assert_problem(405, "method-not-allowed");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP), "{r:?}");
    // Another origin's page gets the answer without CORS headers (the browser hides it).
    let r = v
        .send("GET", "consorzio.example.it", "/c_a662/tributi/avvisi", &[("origin", "https://evil.example")], b"")
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
    // A refused address learns nothing from a preflight either.
    let banned = varco_tests::Client::from_address(v.port, Some("127.0.0.3".parse().unwrap()));
    let r = banned
        .send(
            "OPTIONS",
            "consorzio.example.it",
            "/c_a662/tributi/avvisi",
            &[("origin", APP), ("access-control-request-method", "GET")],
            b"",
        )
        .await;
    r.assert_problem(403, "forbidden");
    assert!(r.header("access-control-allow-methods").is_none(), "{r:?}");
    // Macerata has no CORS: a preflight is still a 405.
    let r = v
        .send(
            "OPTIONS",
            "macerata.example.it",
            "/anagrafe/v1/x",
            &[("origin", APP), ("access-control-request-method", "GET")],
            b"",
        )
        .await;
    r.assert_problem(405, "method-not-allowed");
}

/// The buffer a listener's connections read through (`read_buffer_bytes`: none by default on
/// plain listeners, where pingora would give each connection 64 KiB) never changes what
/// arrives: a 20 KiB header and a 300 KiB body sent in one write reach the back-office whole,
/// with no buffer, a one-byte one and pingora's size.
#[tokio::test]
async fn requests_arrive_whole_whatever_the_read_buffer() {
    for read_buffer in ["", ", read_buffer_bytes: 1", ", read_buffer_bytes: 65536"] {
        let be = Backend::start("anagrafe").await;
        let v = Varco::start(&format!(
            r#"
server: {{access_log: false}}
listeners: [{{name: public, address: "127.0.0.1:{{PORT}}"{read_buffer}}}]
admin: {{address: "127.0.0.1:{{ADMIN}}"}}
tenants:
  - id: c_e783
    name: Macerata
    hosts: [macerata.example.it]
    upstreams: {{anagrafe: {{servers: ["{be}"]}}}}
    routes:
      - {{name: anagrafe, path: "/{{*rest}}", methods: [GET, POST], access: public, to: {{upstream: anagrafe}}}}
"#,
            be = be.addr
        ))
        .await;
        let big = "h".repeat(20_000);
        let body: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let request = format!(
            "POST /one HTTP/1.1\r\nHost: macerata.example.it\r\nConnection: close\r\nX-Big: {big}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let out = raw_http(v.port, request.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{read_buffer}: {}", &out[..out.len().min(600)]);
        let seen = be.requests();
        assert_eq!(seen.len(), 1, "{read_buffer}");
        assert_eq!(seen[0]["path"], "/one");
        assert_eq!(seen[0]["body_len"], 300_000);
        assert_eq!(seen[0]["body"].as_str(), Some(body.as_str()), "{read_buffer}: the body arrived intact");
        assert_eq!(seen[0]["headers"]["x-big"].as_str().map(str::len), Some(20_000));
    }
}
