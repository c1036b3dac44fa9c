//! Benchmark reference: the smallest pingora reverse proxy, built like varco (same pingora
//! version and features, mimalloc, release profile) but with no routing, filters or logging.
//! It marks the floor varco's overhead is measured against.
//!
//! With `--headers` it also does the header work every varco request does (X-Forwarded-For,
//! -Proto, -Host, traceparent and X-Request-Id upstream, X-Request-Id on the response, read and
//! write timeouts on the peer), with the plainest code: the reference for "varco's own routing,
//! tenancy, metrics and logging cost nothing measurable".
//!
//! With `--read-buffer BYTES` the listener's per-connection read buffer has that size instead
//! of pingora's 64 KiB (0: none), as varco's `listeners[].read_buffer` does.
//!
//! Usage: pingora-minimal --listen 127.0.0.1:8080 --backend 127.0.0.1:9000 [--threads 1] [--headers]
//!        [--read-buffer BYTES]

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Minimal {
    backend: String,
    headers: bool,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Built per request, as a gateway that picks an upstream per route would.
        let mut peer = HttpPeer::new(self.backend.as_str(), false, String::new());
        if self.headers {
            peer.options.read_timeout = Some(std::time::Duration::from_secs(30));
            peer.options.write_timeout = Some(std::time::Duration::from_secs(30));
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        if self.headers {
            let ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()).unwrap_or_default();
            let host = session.req_header().headers.get("host").cloned();
            up.insert_header("x-forwarded-for", ip)?;
            up.insert_header("x-forwarded-proto", "http")?;
            if let Some(h) = host {
                up.insert_header("x-forwarded-host", h)?;
            }
            up.insert_header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")?;
            up.insert_header("x-request-id", "0af7651916cd43dd8448eb211c80319c")?;
        }
        Ok(())
    }

    async fn response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, _ctx: &mut ()) -> Result<()> {
        if self.headers {
            resp.insert_header("x-request-id", "0af7651916cd43dd8448eb211c80319c")?;
        }
        Ok(())
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("pingora-minimal: {msg}");
    eprintln!("usage: pingora-minimal --listen ADDR --backend ADDR [--threads N] [--headers] [--read-buffer BYTES]");
    std::process::exit(2)
}

fn main() {
    let mut listen = None;
    let mut backend = None;
    let mut threads = 1usize;
    let mut headers = false;
    let mut read_buffer = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--listen" => listen = Some(value()),
            "--backend" => backend = Some(value()),
            "--threads" => threads = value().parse().unwrap_or_else(|_| usage("--threads needs a number")),
            "--headers" => headers = true,
            "--read-buffer" => {
                read_buffer = Some(value().parse::<usize>().unwrap_or_else(|_| usage("--read-buffer needs a number")))
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    let listen = listen.unwrap_or_else(|| usage("--listen is required"));
    let backend = backend.unwrap_or_else(|| usage("--backend is required"));
    if backend.parse::<std::net::SocketAddr>().is_err() {
        usage("--backend must be ip:port");
    }

    let conf = ServerConf { threads: threads.max(1), ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Minimal { backend, headers });
    match read_buffer {
        None => proxy.add_tcp(&listen),
        Some(n) => proxy.add_listener(
            pingora_core::listeners::ListenerConfig::tcp(listen)
                .l4_buffer(pingora_core::protocols::l4::stream::L4BufferSettings::default().read(n)),
        ),
    }
    server.add_service(proxy);
    server.run_forever()
}
