//! Socket-free tests of the connection guard (`conn.rs`) over in-memory pipes.
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const T: Duration = Duration::from_millis(300);

/// A guarded stream over an in-memory pipe, and the caller's end of it.
fn guarded() -> (GuardedStream, DuplexStream, IntCounter) {
    let (server, client) = tokio::io::duplex(64 * 1024);
    let limits = ConnectionLimits::new(10, 10);
    let place = Place::new(limits.admit(None, false).expect("place"), IntGauge::new("open", "open").expect("gauge"));
    let timeouts = IntCounter::new("timeouts", "timeouts").expect("counter");
    (GuardedStream::new(Box::new(server), T, place, timeouts.clone()), client, timeouts)
}

/// Reads as pingora reads a header: until an error, the end, or `\r\n\r\n`.
async fn read_header(s: &mut GuardedStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

async fn read_all(c: &mut DuplexStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_trickled_header_is_cut_off_with_408() {
    let (mut s, mut c, timeouts) = guarded();
    let trickle = tokio::spawn(async move {
        c.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        for b in b"Host: a\r\nX: " {
            tokio::time::sleep(Duration::from_millis(60)).await;
            if c.write_all(&[*b]).await.is_err() {
                break;
            }
        }
        c
    });
    let err = read_header(&mut s).await.expect_err("the header never completes in time");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(timeouts.get(), 1);
    drop(s);
    let mut c = trickle.await.expect("trickle");
    let answer = read_all(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("request-timeout"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_without_an_answer() {
    let (mut s, mut c, timeouts) = guarded();
    let err = read_header(&mut s).await.expect_err("nothing comes");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(timeouts.get(), 1);
    drop(s);
    assert_eq!(read_all(&mut c).await, "");
}

#[tokio::test]
async fn the_clock_stops_with_the_header_and_restarts_with_the_next_first_byte() {
    let (mut s, mut c, timeouts) = guarded();
    c.write_all(b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n").await.expect("write");
    read_header(&mut s).await.expect("header in time");
    s.header_done();
    // A body (or an upstream) slower than the header deadline is not the guard's business.
    tokio::time::sleep(T * 2).await;
    c.write_all(b"ok").await.expect("body");
    let mut body = [0u8; 2];
    s.read_exact(&mut body).await.expect("body read after the deadline");
    s.request_done();
    // Idle between requests: the clock waits for the next first byte (keep-alive idle
    // is pingora's own timeout).
    tokio::time::sleep(T * 2).await;
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    read_header(&mut s).await.expect("second header in time");
    assert_eq!(timeouts.get(), 0);
}

#[tokio::test]
async fn a_short_http1_request_on_an_h2c_listener_is_not_held_for_the_preface() {
    let (mut s, mut c, _) = guarded();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let mut peek = [0u8; 24];
    let peeked = tokio::time::timeout(T / 3, s.try_peek(&mut peek)).await.expect("decided at once");
    assert!(peeked.expect("peek"));
    assert_ne!(&peek, H2_PREFACE);
    assert_eq!(read_header(&mut s).await.expect("replayed"), b"GET / HTTP/1.0\r\n\r\n");
}

#[tokio::test]
async fn the_h2c_preface_is_recognised_and_stops_the_clock() {
    let (mut s, mut c, timeouts) = guarded();
    c.write_all(H2_PREFACE).await.expect("write");
    let mut peek = [0u8; 24];
    assert!(s.try_peek(&mut peek).await.expect("peek"));
    assert_eq!(&peek, H2_PREFACE);
    let mut back = [0u8; 24];
    s.read_exact(&mut back).await.expect("replayed");
    assert_eq!(&back, H2_PREFACE);
    // HTTP/2 frames are not held to the HTTP/1 header clock.
    tokio::time::sleep(T * 2).await;
    c.write_all(b"frames").await.expect("write");
    let mut more = [0u8; 6];
    s.read_exact(&mut more).await.expect("read after the deadline");
    assert_eq!(timeouts.get(), 0);
}

#[tokio::test]
async fn a_preface_that_never_completes_is_cut_off() {
    let (mut s, mut c, _) = guarded();
    c.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    let mut peek = [0u8; 24];
    let err = s.try_peek(&mut peek).await.expect_err("stalled preface");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test]
async fn pingoras_own_400_goes_out_as_problem_json() {
    let (mut s, mut c, _) = guarded();
    s.write_all(b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n").await.expect("write");
    pingora_core::protocols::Shutdown::shutdown(&mut s).await;
    drop(s);
    let answer = read_all(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(!answer.contains("Pingora"), "{answer}");
}

#[tokio::test]
async fn answers_to_requests_varco_has_seen_pass_unchanged() {
    let (mut s, mut c, _) = guarded();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    read_header(&mut s).await.expect("header");
    s.header_done();
    let resp = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno";
    s.write_all(resp).await.expect("write");
    drop(s);
    assert_eq!(read_all(&mut c).await.as_bytes(), resp);
}

#[test]
fn own_answers_are_problem_json_and_close() {
    let a = String::from_utf8(own_answer(pingoras_problem(400))).expect("utf8");
    assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
    assert!(a.contains("content-type: application/problem+json\r\n"));
    assert!(a.contains("connection: close\r\n"));
    let (head, body) = a.split_once("\r\n\r\n").expect("head and body");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    assert_eq!(len, body.len());
    let v: serde_json::Value = serde_json::from_str(body).expect("json body");
    assert_eq!(v["status"], 400);
    assert!(v["type"].as_str().is_some_and(|t| t.ends_with("bad-request")), "{v}");
    assert_eq!(v["trace_id"].as_str().map(str::len), Some(32));
}

#[test]
fn a_connect_refusal_keeps_its_status() {
    assert_eq!(pingoras_problem(405).status(), 405);
    assert_eq!(pingoras_problem(400).status(), 400);
    assert_eq!(pingoras_problem(999).status(), 400);
}
