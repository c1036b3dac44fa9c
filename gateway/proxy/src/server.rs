//! Wires listeners, the admin app and background services into a pingora `Server` and runs it.

use crate::admin::AdminApp;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::registries::OpenError;
use crate::reload::Reloader;
use crate::runtime::Runtime;
use crate::secrets::admin_token;
use crate::shared::Shared;
use arc_swap::ArcSwap;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use std::path::PathBuf;
use std::sync::Arc;
use varco_config::Config;

/// Why varco could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Build(#[from] crate::secrets::BuildError),
    #[error("cannot listen on {addr} ({what}): {err}")]
    Bind { addr: String, what: String, err: std::io::Error },
    #[error("redis: {0}")]
    Redis(String),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("events: {0}")]
    Events(String),
    #[error("listener `{listener}`: {message}")]
    Tls { listener: String, message: String },
    #[error("tracing: {0}")]
    Tracing(String),
}

/// Builds everything from a validated config and serves until SIGTERM/SIGINT. Returns only
/// on a start-up error; otherwise the process exits when pingora is done draining.
/// Runs the gateway on `cfg` (read from `path`, or the embedded default), with the
/// command-line `overrides` already applied to it (they are applied again at each reload).
pub fn run(cfg: Config, path: Option<PathBuf>, overrides: varco_config::Overrides) -> Result<(), StartError> {
    // Fail early and clearly on a taken port (pingora would only log it).
    for (addr, what) in cfg
        .listeners
        .iter()
        .map(|l| (l.address.clone(), format!("listener `{}`", l.name)))
        .chain([(cfg.admin.address.clone(), "admin".to_owned())])
    {
        std::net::TcpListener::bind(&addr).map_err(|err| StartError::Bind { addr: addr.clone(), what, err })?;
    }
    install_tracing(&cfg)?;
    let metrics = Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?;
    let token = admin_token(&cfg)?;
    let registries = crate::registries::Registries::new(&cfg, &metrics).map_err(|e| match e {
        OpenError::Secret(b) => StartError::Build(b),
        OpenError::Redis(m) => StartError::Redis(m),
        OpenError::Events(m) => StartError::Events(m),
        OpenError::Audit(m) => StartError::Events(format!("audit trail: {m}")),
    })?;
    // The configuration moves into the runtime (a second copy would cost as much as the
    // routes themselves); what the wiring below needs is taken first.
    let (listeners, admin_address, server_cfg, tenants) =
        (cfg.listeners.clone(), cfg.admin.address.clone(), cfg.server.clone(), cfg.tenants.len());
    let runtime = Runtime::build(cfg, 1, &metrics, &registries, None)?;
    runtime.commit_streams(&registries.streams);
    runtime.commit_pullers(&registries.pullers);
    metrics.generation.set(1);
    let client = varco_outbound::https_client();
    let shared = Arc::new(Shared {
        current: ArcSwap::from_pointee(runtime),
        metrics,
        in_flight: Default::default(),
        access_log: Default::default(),
        reg: registries,
        connector: pingora_core::connectors::http::Connector::new(None),
        fetcher: varco_outbound::Fetcher::new(client),
        background_stopped: Default::default(),
        stopped: Default::default(),
    });
    let reloader = Arc::new(Reloader::new(path, overrides, shared.clone()));

    let threads = if server_cfg.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        server_cfg.threads
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(server_cfg.grace_period.0.as_secs()),
        graceful_shutdown_timeout_seconds: Some(server_cfg.shutdown_timeout.0.as_secs()),
        upstream_keepalive_pool_size: server_cfg.upstream_keepalive_pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    for l in &listeners {
        let gw = Gateway { shared: shared.clone() };
        let mut options = HttpServerOptions::default();
        options.h2c = l.http2 && l.tls.is_none();
        // An idle HTTP/2 connection closes like an idle HTTP/1.1 one.
        options.h2_idle_timeout = Some(server_cfg.keepalive_idle.0);
        let mut proxy = pingora_proxy::http_proxy(&conf, gw);
        proxy.server_options = Some(options);
        let mut svc =
            Service::new(format!("listener {}", l.name), crate::conn::GuardedApp::new(proxy, shared.clone(), l));
        // pingora reads every connection through a 64 KiB buffer by default: most of what an
        // idle keep-alive connection costs. Plain HTTP is parsed straight from the socket.
        let read = l.read_buffer_bytes.unwrap_or(varco_config::default_read_buffer_bytes(l.tls.is_some()));
        let mut endpoint = ListenerConfig::tcp(l.address.as_str()).l4_buffer(L4BufferSettings::default().read(read));
        if let Some(tls) = &l.tls {
            let settings = crate::tls::listener_settings(tls, l.http2)
                .map_err(|message| StartError::Tls { listener: l.name.clone(), message })?;
            endpoint = endpoint.tls(settings);
        }
        svc.add_listener(endpoint);
        server.add_service(svc);
    }

    let admin = AdminApp { shared: shared.clone(), reloader: reloader.clone(), token };
    let mut admin_svc = Service::new("admin".into(), HttpServer::new_app(admin));
    admin_svc.add_tcp(&admin_address);
    server.add_service(admin_svc);
    server.add_services(crate::services::all(&shared, reloader, server_cfg.grace_period.0));
    tracing::info!(listeners = ?listeners.iter().map(|l| &l.address).collect::<Vec<_>>(), admin = %admin_address, tenants = tenants, "varco starting");
    server.run_forever()
}

/// Starts OpenTelemetry tracing when `server.tracing` or the `OTEL_*` variables ask for it.
fn install_tracing(cfg: &Config) -> Result<(), StartError> {
    let section = cfg.server.tracing.as_ref();
    let mut headers = std::collections::BTreeMap::new();
    for (k, v) in section.map(|t| &t.headers).into_iter().flatten() {
        headers.insert(k.clone(), crate::secrets::read_secret(&format!("server.tracing.headers.{k}"), v)?);
    }
    let settings = varco_telemetry::Settings::resolve(section, headers, |k| std::env::var(k).ok())
        .map_err(|e| StartError::Tracing(e.to_string()))?;
    let Some(s) = settings else { return Ok(()) };
    let (endpoint, sampler) = (s.endpoint.clone(), s.sampler);
    varco_telemetry::install(s, varco_outbound::otlp_client()).map_err(|e| StartError::Tracing(e.to_string()))?;
    tracing::info!(endpoint = endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"), sampler = ?sampler, "tracing on");
    Ok(())
}
