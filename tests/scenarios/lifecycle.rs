//! The process's life: hot reload (admin API and SIGHUP) under load, rejected configs,
//! `varco check`, graceful SIGTERM, the embedded default and the admin token.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use varco_tests::{Backend, Mode, Varco, LISTENERS};

const H: &str = "comune.example.it";

fn config(be: &Backend, route: &str) -> String {
    format!(
        r#"
{LISTENERS}server: {{access_log: false, grace_period: 5s, shutdown_timeout: 1s}}
tenants:
  - id: c_e783
    name: Comune
    hosts: [{H}]
    upstreams: {{pool: {{servers: ["{be}"]}}}}
    routes:
      - {{name: {route}, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: pool}}}}
"#,
        be = be.addr
    )
}

#[tokio::test]
async fn reload_under_load_drops_no_request() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let v = Arc::new(Varco::start(&config(&a, "one")).await);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (v, stop, ok, bad) = (v.clone(), stop.clone(), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = v.get(H, "/x").await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst)
                } else {
                    bad.fetch_add(1, Ordering::SeqCst)
                };
            }
        }));
    }
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let be = if i % 2 == 0 { &b } else { &a };
        v.rewrite_config(&config(be, &format!("gen{i}")));
        let r = v.reload().await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json["generation"], i + 2);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(bad.load(Ordering::SeqCst), 0, "requests failed during reloads");
    assert!(ok.load(Ordering::SeqCst) > 100, "too little load to mean anything: {}", ok.load(Ordering::SeqCst));
    assert!(a.hits() > 0 && b.hits() > 0, "both configurations served");
    assert!(v.metrics().await.contains("varco_config_reloads_total{result=\"ok\"} 6"));
}

#[tokio::test]
async fn invalid_or_listener_changing_reload_is_rejected_and_old_config_serves() {
    let a = Backend::start("a").await;
    let v = Varco::start(&config(&a, "one")).await;
    v.rewrite_config(
        &config(&a, "one")
            .replace("upstream: pool", "upstream: missing")
            .replace("methods: [GET]", "methods: [GET, FETCH]"),
    );
    let r = v.reload().await;
    r.assert_problem(422, "invalid-config");
    let errors = r.json["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().starts_with("tenants[0].routes[0].to.upstream")), "{errors:?}");
    assert!(errors.iter().any(|e| e.as_str().unwrap().starts_with("tenants[0].routes[0].methods[1]")), "{errors:?}");
    std::fs::write(&v.config, "tenants: [ {id: broken").unwrap();
    let r = v.reload().await;
    r.assert_problem(422, "invalid-config");
    assert!(r.json["errors"][0].as_str().unwrap().contains("line"), "{r:?}");
    v.rewrite_config(&config(&a, "one").replace("name: public", "name: renamed"));
    let r = v.reload().await;
    r.assert_problem(422, "invalid-config");
    assert!(r.json["detail"].as_str().unwrap().contains("restart"));
    assert_eq!(v.get(H, "/x").await.status, 200);
    assert_eq!(v.admin_client.get("localhost", "/admin/config").await.json["generation"], 1);
    assert!(v.metrics().await.contains("varco_config_reloads_total{result=\"rejected\"} 3"));
}

#[tokio::test]
async fn sighup_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let v = Varco::start(&config(&a, "one")).await;
    assert_eq!(v.get(H, "/x").await.json["backend"], "a");
    v.rewrite_config(&config(&b, "two"));
    v.signal(1);
    let mut moved = false;
    for _ in 0..100 {
        if v.get(H, "/x").await.json["backend"] == "b" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "SIGHUP did not reload");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let a = Backend::start("a").await;
    a.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let mut v = Varco::start(&config(&a, "one")).await;
    let client = v.client.clone();
    let in_flight = tokio::spawn(async move { client.get(H, "/slow").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.signal(15);
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request cut by shutdown: {r:?}");
    let code = v.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "varco did not exit cleanly after SIGTERM");
}

#[tokio::test]
async fn admin_token_guards_admin_endpoints_only() {
    let a = Backend::start("a").await;
    let cfg = config(&a, "one").replace(
        "admin: {address: \"127.0.0.1:{ADMIN}\"}",
        "admin: {address: \"127.0.0.1:{ADMIN}\", token: {file: \"{DIR}/admin-token\"}}",
    );
    let dir = std::env::temp_dir().join(format!("varco-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The harness fills {DIR} with its own temp dir; write the token there before start.
    let v = {
        let cfg = cfg.replace("{DIR}", &dir.display().to_string());
        std::fs::write(dir.join("admin-token"), "t0k3n-admin\n").unwrap();
        Varco::start(&cfg).await
    };
    assert_eq!(v.admin_client.get("localhost", "/metrics").await.status, 200);
    let r = v.admin_client.get("localhost", "/admin/config").await;
    r.assert_problem(401, "unauthorized");
    assert!(r.header("www-authenticate").is_some());
    let r = v.admin_client.send("GET", "localhost", "/admin/config", &[("authorization", "Bearer wrong")], b"").await;
    assert_eq!(r.status, 401);
    let r =
        v.admin_client.send("GET", "localhost", "/admin/config", &[("authorization", "Bearer t0k3n-admin")], b"").await;
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("t0k3n-admin"));
    assert!(!v.log_text().contains("t0k3n-admin"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn check_command_accepts_the_example_and_points_at_errors() {
    let bin = varco_tests::Varco::bin();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/examples/consortium.yaml");
    let out = std::process::Command::new(&bin).args(["check", "--config", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (3 tenant(s)"));

    let dir = std::env::temp_dir().join(format!("varco-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "listeners: [{name: p, address: \"127.0.0.1:1\"}]\ntenants:\n  - id: c_x\n    name: X\n    hosts: [a.example.it]\n    colour: blue\n").unwrap();
    let out = std::process::Command::new(&bin).args(["check", "--config"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("tenants[0].colour (line 6, column 5): unknown field `colour`"), "{err}");
    std::fs::write(&bad, "listeners: [{name: p, address: \"nowhere\"}]\ntenants:\n  - {id: c_x, name: X, routes: [{name: r, path: /a, methods: [GET], access: public, to: {upstream: u}}]}\n").unwrap();
    let out = std::process::Command::new(&bin).args(["check", "--config"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 problem(s)")
            && err.contains("listeners[0].address")
            && err.contains("tenants[0].routes[0].to.upstream"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let a = Backend::start("a").await;
    let v = Varco::start(&config(&a, "one")).await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "-H",
            &format!("host: {H}"),
        ])
        .arg(format!("http://127.0.0.1:{}/x", v.port))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
}

#[tokio::test]
async fn embedded_default_serves_status_and_metrics_on_loopback() {
    // The embedded default listens on the documented loopback ports...
    let embedded = varco_config::load_str(varco_config::EMBEDDED_DEFAULT).unwrap();
    assert_eq!(embedded.listeners[0].address, "127.0.0.1:8080");
    assert_eq!(embedded.admin.address, "127.0.0.1:9180");
    // ...which another service may hold on this machine: run it on free ones, as an operator
    // would with `--listen`/`--admin`. Nothing else of the default changes.
    let (port, admin_port) = (varco_tests::free_port(), varco_tests::free_port());
    let mut child = tokio::process::Command::new(Varco::bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--admin", &format!("127.0.0.1:{admin_port}")])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (public, admin) = (varco_tests::Client::new(port), varco_tests::Client::new(admin_port));
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", admin_port)).await.is_ok()
            && tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "varco serve (embedded default) did not start");
    let r = public.get("127.0.0.1", "/status").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["tenant"], "demo");
    public.get("127.0.0.1", "/nothing").await.assert_problem(404, "no-route");
    assert!(
        String::from_utf8_lossy(&admin.get("127.0.0.1", "/metrics").await.body).contains("varco_config_generation 1")
    );
    // Loopback only: the listener is not reachable on another local address.
    let other = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| {
        s.connect("192.0.2.1:9")?;
        s.local_addr()
    });
    if let Ok(addr) = other {
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            assert!(
                tokio::net::TcpStream::connect((addr.ip(), port)).await.is_err(),
                "default listener reachable on {}",
                addr.ip()
            );
        }
    }
    // A reload of the embedded default keeps the command-line addresses (no "listeners
    // changed" refusal).
    let r = admin.send("POST", "127.0.0.1", "/admin/reload", &[], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        String::from_utf8_lossy(&admin.get("127.0.0.1", "/metrics").await.body).contains("varco_config_generation 2")
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    // A malformed address on the command line is refused like one in the file.
    let out = std::process::Command::new(Varco::bin()).args(["serve", "--listen", "nonsense"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listeners[0].address"), "{out:?}");
}
