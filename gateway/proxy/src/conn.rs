//! The connection guard: what varco does with a client connection around pingora's own
//! handling of it, where `ProxyHttp` has no phase.
//!
//! - **The PROXY protocol** (`listeners[].proxy_protocol`): the header a trusted load balancer
//!   puts first names the client, who then is the connection's peer for the whole gateway.
//! - **Connection limits** per listener and per client address (`listeners[].max_connections`,
//!   `max_connections_per_address`): an extra connection is closed when accepted.
//! - **A total deadline for each request header** (`server.header_timeout`), counted from the
//!   header's first byte (from the accept on a new connection), however slowly it trickles:
//!   pingora only times each read. The gateway stops the clock once it has the header
//!   ([`GuardedStream::header_done`]) and re-arms it when the request is over
//!   ([`GuardedStream::request_done`]). A header late after some bytes gets 408 problem+json.
//! - **The h2c sniff**: pingora waits for 24 bytes to compare with the HTTP/2 preface, so a
//!   short HTTP/1.0 request on an h2c listener got no answer; the guard decides as soon as a
//!   byte differs from the preface, within the header deadline.
//! - **pingora's own error answers** (a header it cannot parse, a `CONNECT`) are written before
//!   varco sees a request; the guard replaces them with problem+json.
//!
//! The guard wraps the connection's byte stream, so it works the same under TLS.

use crate::gateway::Gateway;
use crate::shared::Shared;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use prometheus::{IntCounter, IntGauge};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use varco_core::problem::PROBLEM_JSON;
use varco_core::{Problem, ProblemKind, TraceContext};
use varco_traffic::connections::{ConnectionLimits, Permit, Refusal};

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The header clock: not running (varco has the header, or the connection speaks HTTP/2).
const OFF: u8 = 0;
/// Waiting for the first byte of the next request header.
const WAITING: u8 = 1;
/// Running since the first byte (or since the accept).
const RUNNING: u8 = 2;

/// One listener's pingora proxy behind the guard.
pub struct GuardedApp {
    proxy: Arc<HttpProxy<Gateway>>,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    proxy_protocol: bool,
    open: IntGauge,
    refused_listener: IntCounter,
    refused_address: IntCounter,
    refused_proxy_protocol: IntCounter,
    timeouts: IntCounter,
}

impl GuardedApp {
    pub fn new(proxy: HttpProxy<Gateway>, shared: Arc<Shared>, listener: &varco_config::ListenerConfig) -> Self {
        let m = &shared.metrics;
        let name = listener.name.as_str();
        Self {
            proxy: Arc::new(proxy),
            limits: ConnectionLimits::new(listener.max_connections, listener.max_connections_per_address),
            open: m.connections_open.with_label_values(&[name]),
            refused_listener: m.connections_refused.with_label_values(&[name, Refusal::Listener.as_str()]),
            refused_address: m.connections_refused.with_label_values(&[name, Refusal::Address.as_str()]),
            refused_proxy_protocol: m.connections_refused.with_label_values(&[name, "proxy_protocol"]),
            proxy_protocol: listener.proxy_protocol,
            timeouts: m.header_timeouts.with_label_values(&[name]),
            shared,
        }
    }
}

#[async_trait]
impl ServerApp for GuardedApp {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let peer = stream.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let (timeout, trusted) = {
            let rt = self.shared.current.load();
            (rt.header_timeout, peer.is_some_and(|ip| varco_traffic::source::is_trusted(ip, &rt.trusted_proxies)))
        };
        let (client, early) = if self.proxy_protocol {
            let read = if trusted {
                tokio::time::timeout(timeout, crate::proxy_protocol::read_header(&mut stream))
                    .await
                    .unwrap_or_else(|_| Err("no complete PROXY header in time".into()))
            } else {
                Err("the peer is not in server.trusted_proxies".into())
            };
            match read {
                Ok(x) => x,
                Err(why) => {
                    self.refused_proxy_protocol.inc();
                    tracing::info!(peer = ?peer, reason = %why, "connection refused: PROXY protocol");
                    return None;
                }
            }
        } else {
            (None, Vec::new())
        };
        // The client a PROXY header names is limited like any client; the balancer's own
        // connections (health checks: `LOCAL`) are not.
        let permit = match self.limits.admit(client.map(|c| c.ip()).or(peer), trusted && client.is_none()) {
            Ok(p) => p,
            Err(why) => {
                match why {
                    Refusal::Listener => self.refused_listener.inc(),
                    Refusal::Address => self.refused_address.inc(),
                }
                tracing::debug!(peer = ?peer, reason = why.as_str(), "connection refused at accept");
                return None;
            }
        };
        let place = Place::new(permit, self.open.clone());
        let mut guarded = GuardedStream::new(stream, timeout, place, self.timeouts.clone());
        guarded.replay = early;
        if let Some(client) = client {
            let d = SocketDigest::from_raw_fd(guarded.inner.id());
            let _ = d.peer_addr.set(Some(pingora_core::protocols::l4::socket::SocketAddr::Inet(client)));
            guarded.digest = Some(Arc::new(d));
        }
        ServerApp::process_new(&self.proxy, Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}

/// A granted connection: its place in the limits and in the open-connections gauge.
#[derive(Debug)]
struct Place {
    _permit: Permit,
    open: IntGauge,
}

impl Place {
    fn new(permit: Permit, open: IntGauge) -> Self {
        open.inc();
        Self { _permit: permit, open }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A client connection's bytes, as pingora reads and writes them, with the guard's clock.
pub struct GuardedStream {
    inner: Stream,
    /// Bytes read to sniff the h2c preface, given back to the first reads.
    replay: Vec<u8>,
    replay_at: usize,
    clock: AtomicU8,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    /// `deadline` runs for the current header.
    armed: bool,
    /// Some byte of a request arrived (a new connection that sent nothing is closed silently).
    seen: bool,
    /// HTTP/2 bytes still to come before the clock stops (the preface).
    h2_preface_left: Option<usize>,
    /// varco's answer replacing one pingora wrote, and how much of it is out.
    own_answer: Option<(Vec<u8>, usize)>,
    timeouts: IntCounter,
    /// The connection as seen through a PROXY header (its peer is the client it names).
    digest: Option<Arc<SocketDigest>>,
    _place: Place,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("clock", &self.clock.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GuardedStream {
    fn new(inner: Stream, timeout: Duration, place: Place, timeouts: IntCounter) -> Self {
        // With TLS, ALPN has said already whether this is HTTP/2.
        let h2_preface_left = matches!(inner.selected_alpn_proto(), Some(ALPN::H2)).then_some(H2_PREFACE.len());
        Self {
            inner,
            replay: Vec::new(),
            replay_at: 0,
            clock: AtomicU8::new(RUNNING),
            timeout,
            deadline: None,
            armed: false,
            seen: false,
            h2_preface_left,
            own_answer: None,
            timeouts,
            digest: None,
            _place: place,
        }
    }

    /// The guard of an HTTP/1 session's connection (HTTP/2 sessions have none to reach).
    pub fn of(session: &pingora_core::protocols::http::ServerSession) -> Option<&GuardedStream> {
        session.stream().and_then(|s| (**s).as_any().downcast_ref::<GuardedStream>())
    }

    /// varco has the request header: its clock stops.
    pub fn header_done(&self) {
        self.clock.store(OFF, Ordering::Relaxed);
    }

    /// The request is over: the next header's clock starts with its first byte.
    pub fn request_done(&self) {
        self.clock.store(WAITING, Ordering::Relaxed);
    }

    fn is_h2(&self) -> bool {
        self.h2_preface_left.is_some()
    }

    /// Bytes of a request arrived.
    fn on_bytes(&mut self, n: usize) {
        self.seen = true;
        if let Some(left) = self.h2_preface_left.as_mut() {
            *left = left.saturating_sub(n);
            if *left == 0 {
                // HTTP/2 has its own idle timeout; its headers come in frames pingora's h2
                // crate bounds.
                self.clock.store(OFF, Ordering::Relaxed);
                self.armed = false;
            }
            return;
        }
        if self.clock.load(Ordering::Relaxed) == WAITING {
            // The clock starts when varco first has to wait for more of this header (a few
            // microseconds after its first byte): a header that comes whole, the usual case,
            // never reads the time or arms a timer.
            self.clock.store(RUNNING, Ordering::Relaxed);
            self.armed = false;
        }
    }

    /// Reads from the connection unless the header's deadline has passed.
    fn poll_read_timed(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let clock = self.clock.load(Ordering::Relaxed);
        if clock == RUNNING && self.armed {
            if let Some(d) = self.deadline.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.expired(cx)));
                }
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if read.is_pending() {
            if clock == RUNNING && !self.armed {
                self.arm();
                if let Some(d) = self.deadline.as_mut() {
                    // Registers the wake-up (it cannot have passed yet).
                    let _ = d.as_mut().poll(cx);
                }
            }
            return Poll::Pending;
        }
        ready!(read)?;
        let n = buf.filled().len() - before;
        if n > 0 {
            self.on_bytes(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Starts the header's deadline, reusing the timer of an earlier request.
    fn arm(&mut self) {
        let at = tokio::time::Instant::now() + self.timeout;
        match self.deadline.as_mut() {
            Some(d) => d.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = true;
    }

    /// The header is late: count it, tell an HTTP/1 caller that sent something, and end the
    /// read with an error (pingora closes the connection).
    fn expired(&mut self, cx: &mut Context<'_>) -> io::Error {
        self.clock.store(OFF, Ordering::Relaxed);
        self.armed = false;
        self.timeouts.inc();
        if self.seen && !self.is_h2() {
            let secs = self.timeout.as_secs_f64();
            let answer = own_answer(Problem::new(
                ProblemKind::RequestTimeout,
                format!("the request header was not complete within {secs}s"),
            ));
            // Best effort: a caller this slow may not read either, and nothing waits for it.
            if let Poll::Ready(Ok(_)) = Pin::new(&mut self.inner).poll_write(cx, &answer) {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
        }
        io::Error::new(io::ErrorKind::TimedOut, "request header not complete within server.header_timeout")
    }

    /// Writes what is left of varco's own answer.
    fn poll_own_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, at)) = self.own_answer.as_mut() {
            while *at < bytes.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *at += n;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Is this write pingora answering on its own, before varco has seen a request header?
    fn is_pingoras_answer(&self, buf: &[u8]) -> bool {
        !self.is_h2() && self.clock.load(Ordering::Relaxed) != OFF && buf.starts_with(b"HTTP/1.")
    }
}

/// An HTTP/1.1 answer with a problem body; the connection closes after it.
fn own_answer(p: Problem) -> Vec<u8> {
    let tc = TraceContext::from_headers(None, None);
    let body = p.to_body("", tc.request_id(), tc.trace_id.as_str());
    let status = p.status();
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nx-request-id: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len(),
        tc.request_id(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The problem for a status pingora answers with before varco sees the request.
fn pingoras_problem(status: u16) -> Problem {
    match status {
        405 => Problem::new(ProblemKind::MethodNotAllowed, "CONNECT is not proxied"),
        _ => Problem::new(
            ProblemKind::BadRequest,
            "the request header is not valid HTTP/1.1 (a malformed line or field, too many fields, or too large)",
        ),
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replay_at < this.replay.len() {
            let n = buf.remaining().min(this.replay.len() - this.replay_at);
            buf.put_slice(&this.replay[this.replay_at..this.replay_at + n]);
            this.replay_at += n;
            if this.replay_at == this.replay.len() {
                this.replay = Vec::new();
                this.replay_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.poll_read_timed(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.own_answer.is_none() && this.is_pingoras_answer(buf) {
            let status = std::str::from_utf8(buf.get(9..12).unwrap_or_default()).ok().and_then(|s| s.parse().ok());
            this.own_answer = Some((own_answer(pingoras_problem(status.unwrap_or(400))), 0));
        }
        if this.own_answer.is_some() {
            // pingora's answer (and anything after it: the connection closes) is swallowed.
            ready!(this.poll_own_answer(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if this.own_answer.is_some() || this.is_pingoras_answer(first) {
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_own_answer(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_own_answer(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_own_answer(cx)).await;
        self.inner.shutdown().await;
    }
}

#[async_trait]
impl Peek for GuardedStream {
    /// pingora peeks for the h2c preface. Reads until `buf` is full or what came can no longer
    /// be the preface (then `buf` differs from it and pingora reads HTTP/1), within the
    /// header deadline; what was read is given back to the next reads.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            let have = &self.replay[self.replay_at..];
            let n = have.len().min(buf.len());
            let could_be_preface = H2_PREFACE.get(..n).is_some_and(|p| p == &have[..n]);
            if have.len() >= buf.len() || !could_be_preface {
                buf[..n].copy_from_slice(&have[..n]);
                if n == H2_PREFACE.len() && could_be_preface && buf.len() == n {
                    // HTTP/2 with prior knowledge: the preface is in hand; the clock stops.
                    self.h2_preface_left = Some(0);
                    self.clock.store(OFF, Ordering::Relaxed);
                    self.armed = false;
                }
                return Ok(true);
            }
            let mut chunk = [0u8; 256];
            let mut rb = ReadBuf::new(&mut chunk);
            std::future::poll_fn(|cx| self.poll_read_timed(cx, &mut rb)).await?;
            if rb.filled().is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.replay.extend_from_slice(rb.filled());
        }
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.digest.clone().or_else(|| self.inner.get_socket_digest())
    }
    fn set_socket_digest(&mut self, d: SocketDigest) {
        self.inner.set_socket_digest(d);
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
