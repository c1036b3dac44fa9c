//! Benchmark reference: the smallest pingora reverse proxy, built like varco (same pingora
//! version and features, mimalloc, release profile) but with no routing, filters or logging.
//! It marks the floor varco's overhead is measured against.
//!
//! Usage: pingora-minimal --listen 127.0.0.1:8080 --backend 127.0.0.1:9000 [--threads 1]

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Minimal {
    backend: String,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Built per request, as a gateway that picks an upstream per route would.
        Ok(Box::new(HttpPeer::new(self.backend.as_str(), false, String::new())))
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("pingora-minimal: {msg}");
    eprintln!("usage: pingora-minimal --listen ADDR --backend ADDR [--threads N]");
    std::process::exit(2)
}

fn main() {
    let mut listen = None;
    let mut backend = None;
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--listen" => listen = Some(value()),
            "--backend" => backend = Some(value()),
            "--threads" => threads = value().parse().unwrap_or_else(|_| usage("--threads needs a number")),
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
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Minimal { backend });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever()
}
