//! Every error kind varco produces, and hostile input: each gets a problem+json answer (HTTP
//! the parser cannot read too, then the connection closes) and the process keeps serving.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::time::Duration;
use varco_tests::{raw_http, Backend, Mode, Varco, LISTENERS};

fn config(be: &Backend, dead: u16, extra_upstream: &str) -> String {
    format!(
        r#"
server: {{max_body_bytes: 1024, client_body_timeout: 100ms}}  # below the 300 ms upstream read timeout
{LISTENERS}tenants:
  - id: c_e783
    name: Comune di Macerata
    hosts: [macerata.example.it]
    upstreams:
      live: {{servers: ["{be}"], timeouts: {{read: 300ms}}, retries: 0, passive: {{max_failures: 0}}}}
      dead: {{servers: ["127.0.0.1:{dead}"], retries: 0}}
      {extra_upstream}
    routes:
      - {{name: live, path: "/live/{{*rest}}", methods: [GET, POST], access: public, to: {{upstream: live}}}}
      - {{name: small, path: "/small", methods: [POST], access: public, to: {{upstream: live}}, max_body_bytes: 10}}
      - {{name: dead, path: "/dead", methods: [GET], access: public, to: {{upstream: dead}}}}
"#,
        be = be.addr
    )
}

async fn start() -> (Backend, Varco) {
    let be = Backend::start("live").await;
    let dead = varco_tests::free_port();
    let v = Varco::start(&config(&be, dead, "")).await;
    (be, v)
}

const H: &str = "macerata.example.it";

#[tokio::test]
async fn routing_errors() {
    let (_be, v) = start().await;
    v.get("nobody.example.it", "/live/x").await.assert_problem(404, "unknown-tenant");
    v.get(H, "/nothing").await.assert_problem(404, "no-route");
    let r = v.send("DELETE", H, "/live/x", &[], b"").await;
    r.assert_problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    v.send("TRACE", H, "/live/x", &[], b"").await.assert_problem(501, "method-not-implemented");
    v.send("BREW", H, "/live/x", &[], b"").await.assert_problem(501, "method-not-implemented");
    let r = v.get(H, "/live/a/../../admin").await;
    r.assert_problem(400, "path-traversal");
    assert_eq!(r.json["instance"], "/live/a/../../admin");
    v.get(H, "/live/%2e%2E/x").await.assert_problem(400, "path-traversal");
    v.get(H, "/live/a%2fb").await.assert_problem(400, "path-traversal");
    v.get(H, "/live/a%00b").await.assert_problem(400, "path-traversal");
}

#[tokio::test]
async fn body_limits_declared_and_streamed() {
    let (be, v) = start().await;
    v.send("POST", H, "/small", &[], &[b'x'; 11]).await.assert_problem(413, "body-too-large");
    assert_eq!(v.send("POST", H, "/small", &[], &[b'x'; 10]).await.status, 200);
    v.send("POST", H, "/live/x", &[], &[b'x'; 2000]).await.assert_problem(413, "body-too-large");
    let hits = be.hits();
    // A chunked body without Content-Length is counted as it streams.
    let chunk = "a".repeat(600);
    let req = format!(
        "POST /live/x HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let out = raw_http(v.port, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("urn:varco:problem:body-too-large"), "{out}");
    let _ = hits;
}

#[tokio::test]
async fn a_stalling_body_gets_408_and_the_connection_closed() {
    let (_be, v) = start().await;
    let t = std::time::Instant::now();
    let out =
        raw_http(v.port, format!("POST /live/x HTTP/1.1\r\nHost: {H}\r\nContent-Length: 10\r\n\r\nabc").as_bytes())
            .await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("urn:varco:problem:request-timeout"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(v.get(H, "/live/ok").await.status, 200);
}

#[tokio::test]
async fn upstream_failures_502_503_504() {
    let (be, v) = start().await;
    let r = v.get(H, "/dead").await;
    r.assert_problem(502, "bad-gateway");
    assert!(r.header("retry-after").is_some());
    be.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let r = v.get(H, "/live/slow").await;
    r.assert_problem(504, "gateway-timeout");
    be.set_mode(Mode::Close);
    v.get(H, "/live/x").await.assert_problem(502, "bad-gateway");
    // An upstream's own 5xx is its answer, passed through untouched.
    be.set_mode(Mode::Status(503));
    let r = v.get(H, "/live/x").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json["backend"], "live");
}

#[tokio::test]
async fn hostile_http_never_wedges_the_process() {
    let (be, v) = start().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("CL+TE smuggling", format!("POST /live/x HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes()),
        ("two Content-Lengths", format!("POST /live/x HTTP/1.1\r\nHost: {H}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").into_bytes()),
        ("TE obfuscation", format!("POST /live/x HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n").into_bytes()),
        ("no Host", b"GET /live/x HTTP/1.1\r\n\r\n".to_vec()),
        ("garbage request line", b"\x16\x03\x01\x02\x00hello\r\n\r\n".to_vec()),
        ("header without colon", format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\nnocolon\r\n\r\n").into_bytes()),
        ("absurd header", format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)).into_bytes()),
        ("relative target", format!("GET live/x HTTP/1.1\r\nHost: {H}\r\n\r\n").into_bytes()),
    ];
    for (what, bytes) in &cases[1..] {
        let out = raw_http(v.port, bytes).await;
        let status = out.split(' ').nth(1).unwrap_or("");
        assert!(status.starts_with('4') || out.is_empty(), "{what}: {out}");
        // Whoever refuses it (pingora's parser or varco), the answer is a problem.
        if !out.is_empty() {
            assert!(out.contains("\"type\":\"urn:varco:problem:"), "{what}: {out}");
        }
    }
    // CL+TE: pingora's parser frames by Transfer-Encoding, drops Content-Length and closes the
    // connection after answering (RFC 9112 §6.1), so nothing can be smuggled behind the body.
    let out = raw_http(v.port, &cases[0].1).await.to_ascii_lowercase();
    assert!(out.contains("connection: close"), "{out}");
    if out.starts_with("http/1.1 200") {
        let seen = &be.last()["headers"];
        assert!(seen.get("content-length").is_none(), "both framings reached the back-office: {seen}");
    } else {
        assert!(out.contains("urn:varco:problem:bad-request"), "{out}");
    }
    let out = raw_http(v.port, &cases[6].1).await;
    assert!(out.starts_with("HTTP/1.1 431") && out.contains("urn:varco:problem:headers-too-large"), "{out}");
    // Still serving.
    assert_eq!(v.get(H, "/live/ok").await.status, 200);
    assert_eq!(v.admin_client.get("localhost", "/healthz").await.status, 200);
}

/// `Connection` naming the forwarding headers varco writes (a trick to make a proxy drop
/// them): the request goes through with varco's own values; a malformed option list is a clear
/// 400 problem before anything else runs.
#[tokio::test]
async fn connection_options_naming_forwarding_headers() {
    let (be, v) = start().await;
    let r = v
        .send(
            "GET",
            H,
            "/live/x",
            &[("connection", "X-Forwarded-For, keep-alive"), ("x-forwarded-for", "6.6.6.6")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(be.last()["headers"]["x-forwarded-for"], "127.0.0.1", "varco's value, not the caller's");
    let r = v.send("GET", H, "/live/x", &[("connection", "Host, X-Forwarded-Host, X-Forwarded-Proto")], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(be.last()["headers"]["x-forwarded-host"], H);
    let hits = be.hits();
    let r = v.send("GET", H, "/live/x", &[("connection", "a, b, c, d, e, f, g, h, i, j")], b"").await;
    r.assert_problem(400, "bad-request");
    assert!(r.json["detail"].as_str().unwrap().contains("Connection"), "{r:?}");
    assert_eq!(be.hits(), hits);
}

/// An idle keep-alive connection is closed after `server.keepalive_idle` (pingora alone keeps
/// HTTP/1.1 connections open for ever, one file descriptor each); a busy one is not.
#[tokio::test]
async fn idle_keepalive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let be = Backend::start("live").await;
    let cfg = config(&be, varco_tests::free_port(), "")
        .replace("server: {max_body_bytes: 1024,", "server: {keepalive_idle: 1s, max_body_bytes: 1024,");
    assert!(cfg.contains("keepalive_idle"));
    let v = Varco::start(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", v.port)).await.unwrap();
    let mut buf = vec![0u8; 16384];
    for _ in 0..3 {
        // Requests 0.5 s apart keep the connection: each answer arrives on it.
        s.write_all(format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Then nothing: varco closes it (EOF) after about a second, not never.
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle connection is still open: {closed:?}");
}

/// Reads what varco sends on `s` until it closes the connection (or `limit` passes).
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// A request header trickled one byte at a time, a connection that sends nothing, and a
/// header that stalls half-way are all cut off after `server.header_timeout`, however often
/// bytes come; a slow *body* is not (it has `client_body_timeout`). Before, the trickle kept the
/// connection for ever: pingora times each read, not the header.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let be = Backend::start("live").await;
    let cfg = config(&be, varco_tests::free_port(), "")
        .replace("server: {max_body_bytes: 1024,", "server: {header_timeout: 1s, max_body_bytes: 1024,");
    let v = Varco::start(&cfg).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", v.port));

    // One byte every 200 ms: each read is quick, the header never ends.
    let mut s = connect().await.unwrap();
    s.write_all(b"GET /live/x HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        let mut w = s;
        for b in format!("Host: {H}\r\nX-Slow: ").bytes().chain(std::iter::repeat(b'a')) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if w.write_all(&[b]).await.is_err() {
                break;
            }
            // Stop once varco has answered and closed.
            let mut peek = [0u8; 1];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), w.peek(&mut peek)).await {
                if n > 0 {
                    break;
                }
            }
        }
        w
    };
    let mut s = tokio::time::timeout(Duration::from_secs(10), trickle).await.expect("the trickle was never cut off");
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("urn:varco:problem:request-timeout"));

    // Nothing at all: closed without an answer.
    let mut s = connect().await.unwrap();
    assert_eq!(read_until_closed(&mut s, Duration::from_secs(5)).await.as_deref(), Some(""), "silent connection kept");

    // Half a header then silence.
    let mut s = connect().await.unwrap();
    s.write_all(b"GET /live/x HTTP/1.1\r\nHo").await.unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await.expect("stalled header kept");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");

    // A header sent at once with a slow body is fine until the body's own timeout.
    let mut s = connect().await.unwrap();
    s.write_all(format!("POST /live/x HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\n\r\nab").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"cd").await.unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.as_deref().is_none_or(|a| a.starts_with("HTTP/1.1 200")), "{answer:?}");
    assert_eq!(be.last()["body"], "abcd");

    let m = v.metrics().await;
    assert!(m.contains("varco_header_timeouts_total{listener=\"public\"} 3"), "{m}");
    assert_eq!(v.get(H, "/live/ok").await.status, 200);
}

/// A short HTTP/1.0 request on a listener that also accepts h2c (the default): answered at
/// once. Before, pingora waited for 24 bytes to compare with the HTTP/2 preface and the
/// request got no answer at all.
#[tokio::test]
async fn short_http10_request_on_an_h2c_listener_is_answered() {
    let (_be, v) = start().await;
    let out = raw_http(v.port, format!("GET /live/x HTTP/1.0\r\nHost: {H}\r\n\r\n").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "{out}");
    // Shorter than the preface, and no Host to route by: a clear answer all the same.
    let out = raw_http(v.port, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(out.contains(" 400 ") && out.contains("urn:varco:problem:bad-request"), "{out}");
}

/// What pingora's parser refuses before varco sees a request is answered as problem+json too.
#[tokio::test]
async fn unparseable_requests_get_problem_json() {
    let (_be, v) = start().await;
    for bytes in [
        format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\nnocolon\r\n\r\n").into_bytes(),
        b"\x16\x03\x01\x02\x00hello\r\n\r\n".to_vec(),
        format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\nBad Name: v\r\n\r\n").into_bytes(),
    ] {
        let out = raw_http(v.port, &bytes).await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(out.contains("content-type: application/problem+json"), "{out}");
        assert!(out.contains("urn:varco:problem:bad-request") && out.contains("\"trace_id\":"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("server: pingora"), "{out}");
    }
    let out = raw_http(v.port, format!("CONNECT {H}:443 HTTP/1.1\r\nHost: {H}:443\r\n\r\n").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 405 ") && out.contains("application/problem+json"), "{out}");
    assert_eq!(v.get(H, "/live/ok").await.status, 200);
}

/// `max_connections_per_address` and `max_connections`: one address cannot take every
/// connection of a listener; an extra connection is closed at once, a closed one frees its
/// place, and another address still gets in.
#[tokio::test]
async fn connection_limits_per_address_and_listener() {
    use tokio::io::AsyncWriteExt;
    let be = Backend::start("live").await;
    let cfg = config(&be, varco_tests::free_port(), "").replace(
        "listeners: [{name: public, address: \"127.0.0.1:{PORT}\"}]",
        "listeners: [{name: public, address: \"127.0.0.1:{PORT}\", max_connections: 3, max_connections_per_address: 2}]",
    );
    assert!(cfg.contains("max_connections: 3"), "{cfg}");
    let v = Varco::start(&cfg).await;
    let from = |ip: &'static str| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        sock.connect(format!("127.0.0.1:{}", v.port).parse().unwrap()).await.unwrap()
    };
    let request = format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\n\r\n");
    let served = |mut s: tokio::net::TcpStream| {
        let request = request.clone();
        async move {
            use tokio::io::AsyncReadExt;
            if s.write_all(request.as_bytes()).await.is_err() {
                return (s, false);
            }
            let mut buf = [0u8; 4096];
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
                Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
            );
            (s, ok)
        }
    };
    let (a1, ok1) = served(from("127.0.0.1").await).await;
    let (_a2, ok2) = served(from("127.0.0.1").await).await;
    assert!(ok1 && ok2);
    let (_a3, ok3) = served(from("127.0.0.1").await).await;
    assert!(!ok3, "a third connection from one address was served");
    let (_b1, okb) = served(from("127.0.0.2").await).await;
    assert!(okb, "another address was refused");
    // The listener is full (3): even a new address is refused.
    let (_c1, okc) = served(from("127.0.0.3").await).await;
    assert!(!okc, "a fourth connection on the listener was served");
    drop(a1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_a4, ok4) = served(from("127.0.0.1").await).await;
    assert!(ok4, "a closed connection did not give its place back");
    let m = v.metrics().await;
    assert!(m.contains("varco_connections_refused_total{listener=\"public\",reason=\"address\"} 1"), "{m}");
    assert!(m.contains("varco_connections_refused_total{listener=\"public\",reason=\"listener\"} 1"), "{m}");
    assert!(m.contains("varco_connections_open{listener=\"public\"} 3"), "{m}");
}

/// A listener behind a load balancer that speaks the PROXY protocol (v1 text and v2 binary,
/// as HAProxy and cloud balancers send it): the client it names is the caller for the
/// back-office's `X-Forwarded-For` and for per-address limits; the balancer alone may send the
/// header; a connection without one, or from anyone else, is closed unanswered.
#[tokio::test]
async fn proxy_protocol_from_a_trusted_balancer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let be = Backend::start("live").await;
    let cfg = config(&be, varco_tests::free_port(), "")
        .replace(
            "listeners: [{name: public, address: \"127.0.0.1:{PORT}\"}]",
            "listeners: [{name: public, address: \"127.0.0.1:{PORT}\", proxy_protocol: true, max_connections_per_address: 1}]",
        )
        .replace("server: {max_body_bytes: 1024,", "server: {trusted_proxies: [127.0.0.4], max_body_bytes: 1024,");
    assert!(cfg.contains("proxy_protocol: true") && cfg.contains("127.0.0.4"), "{cfg}");
    let v = Varco::start(&cfg).await;
    let from = |ip: &'static str| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        sock.connect(format!("127.0.0.1:{}", v.port).parse().unwrap()).await.unwrap()
    };
    let exchange = |mut s: tokio::net::TcpStream, head: Vec<u8>, extra: &'static str| async move {
        let mut bytes = head;
        bytes.extend_from_slice(format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\n{extra}\r\n").as_bytes());
        let _ = s.write_all(&bytes).await;
        let mut buf = vec![0u8; 8192];
        let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let v1 = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 40000 80\r\n").into_bytes();
    let v2 = |client: [u8; 4]| {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 address bytes
        h.extend_from_slice(&client);
        h.extend_from_slice(&[127, 0, 0, 1]);
        h.extend_from_slice(&40001u16.to_be_bytes());
        h.extend_from_slice(&80u16.to_be_bytes());
        h
    };

    let (_a, out) = exchange(from("127.0.0.4").await, v1("198.51.100.7"), "X-Forwarded-For: 6.6.6.6\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(be.last()["headers"]["x-forwarded-for"], "198.51.100.7", "the client the header names, not the XFF");
    let (_b, out) = exchange(from("127.0.0.4").await, v2([203, 0, 113, 9]), "").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(be.last()["headers"]["x-forwarded-for"], "203.0.113.9");
    // The named client has its own connection limit (1): a second connection for it is closed.
    let (_c, out) = exchange(from("127.0.0.4").await, v1("198.51.100.7"), "").await;
    assert_eq!(out, "", "a second connection for the same client was served");

    let hits = be.hits();
    let refused = || async {
        let m = v.metrics().await;
        let line = m
            .lines()
            .find(|l| l.starts_with("varco_connections_refused_total{listener=\"public\",reason=\"proxy_protocol\"}"))
            .map(str::to_owned);
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).unwrap_or(0)
    };
    let before = refused().await;
    // Not the balancer: the same header is not believed, the connection closes.
    let (_d, out) = exchange(from("127.0.0.1").await, v1("198.51.100.8"), "").await;
    assert_eq!(out, "");
    // The balancer without the header, or with a broken one.
    let (_e, out) = exchange(from("127.0.0.4").await, Vec::new(), "").await;
    assert_eq!(out, "");
    let (_f, out) = exchange(from("127.0.0.4").await, b"PROXY TCP4 nonsense\r\n".to_vec(), "").await;
    assert_eq!(out, "");
    assert_eq!(be.hits(), hits, "a refused connection reached the back-office");
    assert_eq!(refused().await - before, 3);
}

/// The PROXY protocol as a real load balancer sends it: HAProxy (TCP mode) in front of varco
/// with `send-proxy-v2` and `send-proxy`; a client on 127.0.0.5 reaches the back-office as
/// 127.0.0.5, and the same client going around the balancer is refused.
#[tokio::test]
async fn proxy_protocol_behind_haproxy() {
    use varco_tests::Client;
    let be = Backend::start("live").await;
    let cfg = config(&be, varco_tests::free_port(), "")
        .replace(
            "listeners: [{name: public, address: \"127.0.0.1:{PORT}\"}]",
            "listeners: [{name: public, address: \"127.0.0.1:{PORT}\", proxy_protocol: true}]",
        )
        .replace("server: {max_body_bytes: 1024,", "server: {trusted_proxies: [127.0.0.1/32], max_body_bytes: 1024,");
    let v = Varco::start(&cfg).await;
    let (v2, v1) = (varco_tests::free_port(), varco_tests::free_port());
    let dir = std::env::temp_dir().join(format!("varco-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend v2\n  bind 127.0.0.1:{v2}\n  default_backend v2\nbackend v2\n  server varco 127.0.0.1:{p} send-proxy-v2\n\
             frontend v1\n  bind 127.0.0.1:{v1}\n  default_backend v1\nbackend v1\n  server varco 127.0.0.1:{p} send-proxy\n",
            p = v.port
        ),
    )
    .unwrap();
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("haproxy (apt-get install haproxy)");
    for port in [v2, v1] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "haproxy did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let client = "127.0.0.5".parse().unwrap();
    for port in [v2, v1] {
        let r = Client::from_address(port, Some(client)).get(H, "/live/x").await;
        assert_eq!(r.status, 200, "through port {port}: {r:?}");
        assert_eq!(be.last()["headers"]["x-forwarded-for"], "127.0.0.5", "through port {port}");
    }
    // Around the balancer, without a PROXY header: closed unanswered.
    let out = raw_http(v.port, format!("GET /live/x HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes()).await;
    assert_eq!(out, "", "a direct connection was served");
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let _ = std::fs::remove_dir_all(dir);
}
