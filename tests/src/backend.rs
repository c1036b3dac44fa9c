//! A real HTTP/1.1 back-office server (hyper) whose behaviour a test changes on command.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the backend answers requests (health checks on `/health` follow `healthy`).
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// 200 with a JSON echo of the request.
    Echo,
    /// Answer this status.
    Status(u16),
    /// Wait, then echo.
    Delay(Duration),
    /// Read the request, then close the connection without answering.
    Close,
    /// 200 with an HTML page greeting the citizen varco names in `X-Varco-*` headers, as a
    /// comune's online service would (the login screenshots).
    Greeting,
}

#[derive(Debug)]
pub struct State {
    pub mode: Mutex<Mode>,
    pub healthy: Mutex<bool>,
    /// Requests answered or dropped, health checks excluded.
    pub hits: AtomicUsize,
    pub health_hits: AtomicUsize,
    pub last: Mutex<Option<serde_json::Value>>,
    /// Every request answered with 2xx, in order (webhook deliveries).
    pub log: Mutex<Vec<serde_json::Value>>,
    /// Requests being answered now (in `Delay` mode), and the most seen at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Fixed documents by path (e.g. a JWKS), served with 200 regardless of the mode.
    pub statics: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// Paths answered with a status of their own (the echo as body), whatever the mode.
    pub statuses: Mutex<std::collections::HashMap<String, u16>>,
}

/// A running backend.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Echo),
            healthy: Mutex::new(true),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
            last: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            statics: Mutex::new(Default::default()),
            statuses: Mutex::new(Default::default()),
        });
        let (st, nm) = (state.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (st, nm) = (st.clone(), nm.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, st.clone(), nm.clone()));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Self { name: name.to_owned(), addr, state, task }
    }

    pub fn set_mode(&self, m: Mode) {
        *self.state.mode.lock().unwrap() = m;
    }

    pub fn set_healthy(&self, h: bool) {
        *self.state.healthy.lock().unwrap() = h;
    }

    /// The most requests this backend answered at once (counted in `Delay` mode).
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Serves `body` as JSON at `path` (or stops serving it with `None`).
    pub fn serve_static(&self, path: &str, body: Option<Vec<u8>>) {
        let mut m = self.state.statics.lock().unwrap();
        match body {
            Some(b) => m.insert(path.to_owned(), b),
            None => m.remove(path),
        };
    }

    /// Answers requests for `path` with `status` (the echo as body), whatever the mode.
    pub fn serve_status(&self, path: &str, status: u16) {
        self.state.statuses.lock().unwrap().insert(path.to_owned(), status);
    }

    /// Every request answered with 2xx so far (method, path, headers, body).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.state.log.lock().unwrap().clone()
    }

    /// The last request the backend saw (method, path, headers, body length).
    pub fn last(&self) -> serde_json::Value {
        self.state.last.lock().unwrap().clone().unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(req: Request<Incoming>, st: Arc<State>, name: String) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if let Some(body) = st.statics.lock().unwrap().get(req.uri().path()).cloned() {
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    if req.uri().path() == "/health" {
        st.health_hits.fetch_add(1, Ordering::SeqCst);
        let code = if *st.healthy.lock().unwrap() { 200 } else { 503 };
        return Ok(Response::builder().status(code).body(Full::new(Bytes::from_static(b"health"))).unwrap());
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> =
        parts.headers.iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())).collect();
    let echo = serde_json::json!({
        "backend": name,
        "method": parts.method.as_str(),
        "path": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    *st.last.lock().unwrap() = Some(echo.clone());
    st.hits.fetch_add(1, Ordering::SeqCst);
    let mode = st.mode.lock().unwrap().clone();
    let fixed = st.statuses.lock().unwrap().get(parts.uri.path()).copied();
    let status = match mode {
        _ if fixed.is_some() => fixed.unwrap_or(200),
        Mode::Echo => 200,
        Mode::Status(s) => s,
        Mode::Delay(d) => {
            let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            st.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(d).await;
            st.in_flight.fetch_sub(1, Ordering::SeqCst);
            200
        }
        Mode::Close => return Err(std::io::Error::other("closing without an answer")),
        Mode::Greeting => {
            let h = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
            };
            let page = format!(
                "<!doctype html><html lang=\"it\"><head><meta charset=\"utf-8\"><title>Le mie pratiche</title>\
                 <style>body{{font-family:sans-serif;margin:0;color:#17324d}}header{{background:#0066cc;color:#fff;padding:1rem 2rem}}\
                 main{{padding:1rem 2rem}}td{{padding:.3rem 1rem .3rem 0}}</style></head><body>\
                 <header><strong>Comune di Macerata</strong> · servizi online</header><main>\
                 <h1>Benvenuto, {} {}</h1><p>Le tue pratiche, come l'ufficio le vede:</p><table>\
                 <tr><td>Codice fiscale</td><td>{}</td></tr><tr><td>Livello SPID</td><td>{}</td></tr>\
                 <tr><td>Gestore di identità</td><td>{}</td></tr><tr><td>E-mail</td><td>{}</td></tr></table>\
                 <p><a href=\"/c_e783/oidc/logout\">Esci</a></p></main></body></html>",
                h("x-varco-given-name"),
                h("x-varco-family-name"),
                h("x-varco-fiscal-code"),
                h("x-varco-acr"),
                h("x-varco-issuer"),
                h("x-varco-email"),
            );
            st.log.lock().unwrap().push(echo.clone());
            return Ok(Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(Full::new(Bytes::from(page)))
                .unwrap());
        }
    };
    if (200..300).contains(&status) {
        st.log.lock().unwrap().push(echo.clone());
    }
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&echo).unwrap())))
        .unwrap())
}
