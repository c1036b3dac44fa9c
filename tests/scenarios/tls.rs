//! TLS termination with per-hostname certificates (SNI) and client-certificate verification,
//! checked with independent tools: certificates made by the `openssl` CLI, requests by `curl`.
//! (Multi-threaded runtime: the blocking curl call must not starve the in-test back-office.)
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::path::Path;
use std::process::Command;
use varco_tests::pki::{issue, make_ca, pki_dir};
use varco_tests::{Backend, Varco, LISTENERS};

fn pki() -> std::path::PathBuf {
    let dir = pki_dir();
    make_ca(&dir, "varco test CA");
    issue(&dir, "macerata", "macerata.example.it", false);
    issue(&dir, "bari", "bari.example.it", false);
    issue(&dir, "client", "pdnd-client", true);
    dir
}

fn config(be: &Backend, pki: &Path, client_auth: &str) -> String {
    let p = pki.display();
    format!(
        r#"
listeners:
  - name: tls
    address: "127.0.0.1:{{PORT}}"
    tls:
      certificates:
        - {{hosts: [macerata.example.it], cert: "{p}/macerata.crt", key: "{p}/macerata.key"}}
        - {{hosts: [bari.example.it], cert: "{p}/bari.crt", key: "{p}/bari.key"}}
      client_ca: "{p}/ca.crt"
      client_auth: {client_auth}
admin: {{address: "127.0.0.1:{{ADMIN}}"}}
tenants:
  - {{id: c_e783, name: Macerata, hosts: [macerata.example.it], upstreams: {{u: {{servers: ["{be}"]}}}}, routes: [{{name: r, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: u}}}}]}}
  - {{id: c_a662, name: Bari, hosts: [bari.example.it], upstreams: {{u: {{servers: ["{be}"]}}}}, routes: [{{name: r, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: u}}}}]}}
"#,
        be = be.addr
    )
}

/// curl over TLS with SNI `host`; returns (verbose stderr, body).
fn curl(port: u16, host: &str, pki: &Path, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sv", "--http2", "--cacert"])
        .arg(pki.join("ca.crt"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{host}:{port}/x"))
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_tenant_certificate_and_h2_is_negotiated() {
    let be = Backend::start("bo").await;
    let pki = pki();
    let v = Varco::start(&config(&be, &pki, "optional")).await;
    for (host, cn) in [("macerata.example.it", "CN=macerata.example.it"), ("bari.example.it", "CN=bari.example.it")] {
        let (err, body) = curl(v.port, host, &pki, &[]);
        assert!(err.contains(cn), "{host}: wrong certificate:\n{err}");
        assert!(err.contains("SSL certificate verify ok"), "{err}");
        assert!(err.contains("ALPN: server accepted h2") || err.contains("ALPN, server accepted to use h2"), "{err}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}\n{err}"));
        assert_eq!(json["headers"]["x-forwarded-proto"], "https");
        assert_eq!(json["headers"]["x-forwarded-host"], format!("{host}:{}", v.port), "the Host as the caller sent it");
    }
    let _ = std::fs::remove_dir_all(pki);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificate_is_enforced() {
    let be = Backend::start("bo").await;
    let pki = pki();
    let v = Varco::start(&config(&be, &pki, "required")).await;
    let (err, body) = curl(v.port, "macerata.example.it", &pki, &[]);
    assert!(body.is_empty(), "served without a client certificate: {body}\n{err}");
    let cert = pki.join("client.crt").display().to_string();
    let key = pki.join("client.key").display().to_string();
    let (err, body) = curl(v.port, "macerata.example.it", &pki, &["--cert", &cert, "--key", &key]);
    assert!(body.contains("\"backend\":\"bo\""), "{body}\n{err}");
    // A certificate from another CA is refused.
    let other = std::env::temp_dir().join(format!("varco-pki-other-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    make_ca(&other, "rogue CA");
    issue(&other, "client", "rogue", true);
    let (cert, key) = (other.join("client.crt").display().to_string(), other.join("client.key").display().to_string());
    let (err, body) = curl(v.port, "macerata.example.it", &pki, &["--cert", &cert, "--key", &key]);
    assert!(body.is_empty(), "served a rogue client certificate: {body}\n{err}");
    let _ = std::fs::remove_dir_all(pki);
    let _ = std::fs::remove_dir_all(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_certificate_is_a_clear_start_error() {
    let dir = std::env::temp_dir().join(format!("varco-badcert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.crt"), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        .unwrap();
    std::fs::write(dir.join("bad.key"), "nope").unwrap();
    let cfg = format!(
        "listeners: [{{name: tls, address: \"127.0.0.1:{}\", tls: {{certificates: [{{hosts: [a.example.it], cert: \"{d}/bad.crt\", key: \"{d}/bad.key\"}}]}}}}]\nadmin: {{address: \"127.0.0.1:{}\"}}\ntenants: [{{id: c_x, name: X}}]\n",
        varco_tests::free_port(),
        varco_tests::free_port(),
        d = dir.display()
    );
    std::fs::write(dir.join("v.yaml"), cfg).unwrap();
    let out = Command::new(Varco::bin()).args(["serve", "--config"]).arg(dir.join("v.yaml")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listener `tls`") && err.contains("bad.crt") && err.contains("invalid certificate"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_the_configured_ca() {
    let be = Backend::start("bo").await;
    let (pki, other) = (pki(), pki());
    // A TLS back-office: another varco terminating TLS in front of the plain one.
    let front = Varco::start(&config(&be, &pki, "none")).await;
    let edge = |ca: &str, sni: &str| {
        format!(
            r#"
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    upstreams: {{secure: {{servers: ["127.0.0.1:{port}"], retries: 0, tls: {{sni: {sni}, ca: "{ca}"}}}}}}
    routes: [{{name: r, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: secure}}}}]
"#,
            port = front.port
        )
    };
    let good = Varco::start(&edge(&pki.join("ca.crt").display().to_string(), "macerata.example.it")).await;
    let r = good.get("macerata.example.it", "/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["headers"]["x-forwarded-proto"], "https", "the hop to the TLS back-office was TLS");

    // Same server, but a CA that did not sign it: varco refuses to talk to it.
    let bad = Varco::start(&edge(&other.join("ca.crt").display().to_string(), "macerata.example.it")).await;
    bad.get("macerata.example.it", "/x").await.assert_problem(502, "bad-gateway");
    let _ = std::fs::remove_dir_all(pki);
    let _ = std::fs::remove_dir_all(other);
}

/// Mutual TLS to a back-office that requires a client certificate (Python's ssl module): with
/// the configured certificate the call passes and the back-office sees varco's name; without
/// one, or with one of another CA, the back-office refuses the handshake and the caller gets a
/// 502 problem. A key that does not fit is a clear start error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_a_back_office_that_requires_a_client_certificate() {
    let pki = pki();
    issue(&pki, "bo", "bo.example.it", false);
    let port = varco_tests::free_port();
    let p = |f: &str| pki.join(f).display().to_string();
    let (port_s, cert, key, ca) = (port.to_string(), p("bo.crt"), p("bo.key"), p("ca.crt"));
    let mut server = varco_tests::spawn_ready_tool("mtls_server.py", &[&port_s, &cert, &key, &ca]).await;
    let edge = |client: &str| {
        format!(
            r#"
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    upstreams: {{bo: {{servers: ["127.0.0.1:{port}"], retries: 0, tls: {{sni: bo.example.it, ca: "{ca}"{client}}}}}}}
    routes: [{{name: r, path: "/{{*rest}}", methods: [GET], access: public, to: {{upstream: bo}}}}]
"#,
            ca = p("ca.crt")
        )
    };
    let with_cert = format!(", client_certificate: {{cert: \"{}\", key: \"{}\"}}", p("client.crt"), p("client.key"));
    let v = Varco::start(&edge(&with_cert)).await;
    let r = v.get("macerata.example.it", "/anagrafe/1").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["client_cn"], "pdnd-client", "{r:?}");
    assert_eq!(r.json["path"], "/anagrafe/1");

    let without = Varco::start(&edge("")).await;
    without.get("macerata.example.it", "/anagrafe/1").await.assert_problem(502, "bad-gateway");

    let other = std::env::temp_dir().join(format!("varco-pki-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    make_ca(&other, "rogue CA");
    issue(&other, "client", "rogue", true);
    let o = |f: &str| other.join(f).display().to_string();
    let rogue = Varco::start(&edge(&format!(
        ", client_certificate: {{cert: \"{}\", key: \"{}\"}}",
        o("client.crt"),
        o("client.key")
    )))
    .await;
    rogue.get("macerata.example.it", "/anagrafe/1").await.assert_problem(502, "bad-gateway");

    // A key file that is not there: refused when the configuration is built.
    let bad = edge(&format!(", client_certificate: {{cert: \"{}\", key: \"{}\"}}", p("client.crt"), p("missing.key")));
    let dir = std::env::temp_dir().join(format!("varco-mtls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("varco.yaml");
    std::fs::write(
        &cfg,
        bad.replace("{PORT}", &varco_tests::free_port().to_string())
            .replace("{ADMIN}", &varco_tests::free_port().to_string()),
    )
    .unwrap();
    let out = Command::new(Varco::bin()).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("client_certificate") && err.contains("missing.key"), "{err}");
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&pki);
    let _ = std::fs::remove_dir_all(&other);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The connection guard works inside TLS too (it wraps the decrypted stream): a header that
/// stalls after the handshake gets 408 problem+json, and a header pingora cannot parse gets a
/// 400 problem+json, both through `openssl s_client`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_garbage_headers_over_tls_get_problems() {
    use std::io::{Read, Write};
    let be = Backend::start("bo").await;
    let pki = pki();
    let v = Varco::start(&format!("server: {{header_timeout: 1s}}\n{}", config(&be, &pki, "optional"))).await;
    let exchange = |bytes: &'static [u8]| {
        // `timeout`: a header never cut off fails the test instead of hanging it.
        let mut c = Command::new("timeout")
            .args([
                "30",
                "openssl",
                "s_client",
                "-quiet",
                "-alpn",
                "http/1.1",
                "-servername",
                "macerata.example.it",
                "-connect",
            ])
            .arg(format!("127.0.0.1:{}", v.port))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
        // Keep stdin open (a stalled client), read until varco closes.
        let mut out = String::new();
        let _ = c.stdout.take().unwrap().read_to_string(&mut out);
        drop(stdin);
        let _ = c.wait();
        out
    };
    let out = exchange(b"GET /x HTTP/1.1\r\nHost: macerata.example.it\r\nX-Half: ");
    assert!(out.starts_with("HTTP/1.1 408 ") && out.contains("urn:varco:problem:request-timeout"), "{out}");
    let out = exchange(b"GET /x HTTP/1.1\r\nHost: macerata.example.it\r\nno colon here\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400 ") && out.contains("application/problem+json"), "{out}");
    let _ = std::fs::remove_dir_all(pki);
}
