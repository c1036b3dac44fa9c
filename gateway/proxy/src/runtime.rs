//! The immutable runtime built from one configuration: tenants, their route tables, filter
//! chains, adapters and upstream pools. A reload builds a new one and swaps it atomically;
//! requests keep the `Arc` they started with.

use crate::filters::{BodyLimit, HeaderRewrite};
use crate::metrics::Metrics;
use crate::registries::Registries;
use crate::router::{RouteTable, TenantIndex};
use crate::upstream::{Pool, ResolvedServer};
use http::{HeaderName, HeaderValue, Method};
use pingora_core::upstreams::peer::HttpPeer;
use prometheus::Histogram;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use varco_adapter_status::{StatusAdapter, StatusConfig};
use varco_config::{AdapterConfig, Config, HeaderValueSource, RouteTarget, SecretRef, TenantConfig};
use varco_core::{Adapter, Filter, HealthView, UpstreamHealth};

/// Why a valid configuration could not be built (I/O: DNS, files, environment).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    pub path: String,
    pub message: String,
}

fn build_err(path: impl Into<String>, message: impl Into<String>) -> BuildError {
    BuildError { path: path.into(), message: message.into() }
}

/// Where a route sends requests.
#[derive(Debug)]
pub enum Target {
    /// Index into the tenant's pools.
    Upstream(usize),
    Adapter(Arc<dyn Adapter>),
}

/// A built route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub target: Target,
    pub max_body_bytes: u64,
    pub strip_prefix: Option<String>,
    /// Identity headers (`X-Varco-*`) this route does not forward (`request_headers.remove`).
    pub withhold: Vec<HeaderName>,
    pub filters: Vec<Arc<dyn Filter>>,
    pub latency: Histogram,
    pub requests: crate::metrics::StatusCounters,
    /// Daily/monthly quotas of the tenant and the route (async: may lease from Redis).
    pub quotas: Vec<Arc<varco_traffic::Quota>>,
    pub access: RouteAccess,
}

/// A built tenant.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub routes: Vec<Route>,
    /// The event-stream routes' shared state and this configuration's ACL for them.
    pub streams: Vec<(Arc<varco_events::stream::StreamRoute>, Arc<varco_events::stream::StreamAcl>)>,
    pub table: RouteTable,
    pub pools: Vec<Arc<Pool>>,
    pub max_concurrent: Option<u32>,
    pub api_keys: varco_auth::ApiKeys,
    /// Requests of the tenant in flight (shared with the previous generation's tenant).
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// The tenant's pools as the status adapter sees them.
#[derive(Debug)]
struct TenantHealth(Vec<Arc<Pool>>, Vec<Arc<varco_auth::Issuer>>);

impl HealthView for TenantHealth {
    fn upstreams(&self) -> Vec<UpstreamHealth> {
        self.0.iter().map(|p| p.health()).collect()
    }

    fn issuers(&self) -> Vec<(String, bool)> {
        self.1.iter().map(|i| (i.name.clone(), i.up.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }
}

/// Who may call a route, built.
#[derive(Debug)]
pub enum RouteAccess {
    Public,
    Jwt {
        issuers: Vec<Arc<varco_auth::Issuer>>,
        policy: Box<varco_config::JwtAccess>,
        /// ModI patterns: the route is store-and-forward.
        modi: Option<Arc<varco_auth::ModiVerifier>>,
    },
    ApiKey {
        header: http::HeaderName,
    },
}

/// Everything a request needs, built once per configuration.
#[derive(Debug)]
pub struct Runtime {
    pub generation: u64,
    pub config: Config,
    pub tenants: Vec<Tenant>,
    pub index: TenantIndex,
    pub access_log: bool,
    pub forwarded_header: bool,
    pub client_body_timeout: std::time::Duration,
    /// Signs the identity token for back-offices, when configured.
    pub identity: Option<Arc<varco_auth::IdentitySigner>>,
}

pub(crate) fn read_secret(path: &str, s: &SecretRef) -> Result<String, BuildError> {
    match s {
        SecretRef::Env(v) => {
            std::env::var(v).map_err(|_| build_err(path, format!("environment variable `{v}` is not set")))
        }
        SecretRef::File(f) => std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| build_err(path, format!("cannot read `{}`: {e}", f.display()))),
    }
}

/// Reads the admin token, if any.
pub fn admin_token(cfg: &Config) -> Result<Option<String>, BuildError> {
    cfg.admin.token.as_ref().map(|t| read_secret("admin.token", t)).transpose()
}

impl Runtime {
    /// Builds a runtime from a validated config. Does I/O (DNS, secrets); call it off the
    /// request path. `previous` hands health state over to the same servers.
    pub fn build(
        cfg: Config,
        generation: u64,
        metrics: &Metrics,
        reg: &Registries,
        previous: Option<&Runtime>,
    ) -> Result<Self, BuildError> {
        // Subscriptions read their webhook secrets now, so that a missing one fails the start
        // or the reload instead of a background task.
        varco_events::delivery::Subscription::all(&cfg).map_err(|m| build_err("tenants[].events.subscriptions", m))?;
        let identity = cfg
            .server
            .identity_token
            .as_ref()
            .map(varco_auth::IdentitySigner::load)
            .transpose()
            .map_err(|m| build_err("server.identity_token", m))?
            .map(Arc::new);
        let mut index = TenantIndex::default();
        let mut tenants = Vec::with_capacity(cfg.tenants.len());
        for (ti, t) in cfg.tenants.iter().enumerate() {
            let old = previous.and_then(|p| p.tenants.iter().find(|o| o.id == t.id));
            let tenant = build_tenant(t, &format!("tenants[{ti}]"), &cfg, metrics, reg, old, identity.as_ref())?;
            if let Some(old) = old {
                for p in &tenant.pools {
                    if let Some(op) = old.pools.iter().find(|op| op.name == p.name) {
                        p.inherit_health(op);
                    }
                }
            }
            if t.hosts.is_empty() {
                index.insert("*", t.prefix.as_deref(), ti);
            }
            for h in &t.hosts {
                index.insert(h, t.prefix.as_deref(), ti);
            }
            tenants.push(tenant);
        }
        Ok(Self {
            generation,
            access_log: cfg.server.access_log,
            forwarded_header: cfg.server.forwarded_header,
            client_body_timeout: cfg.server.client_body_timeout.0,
            identity,
            config: cfg,
            tenants,
            index,
        })
    }
}

impl Runtime {
    /// Puts this runtime's event-stream ACLs in force for the open streams; call it once the
    /// runtime is the current one.
    pub fn commit_streams(&self, registry: &varco_events::stream::StreamRegistry) {
        let live: Vec<_> = self.tenants.iter().flat_map(|t| t.streams.iter().cloned()).collect();
        registry.commit(&live);
    }
}

fn build_tenant(
    t: &TenantConfig,
    p: &str,
    cfg: &Config,
    metrics: &Metrics,
    reg: &Registries,
    previous: Option<&Tenant>,
    identity: Option<&Arc<varco_auth::IdentitySigner>>,
) -> Result<Tenant, BuildError> {
    let limiters = &reg.limiters;
    let tenant_quotas: Vec<_> = t.quotas.iter().map(|q| reg.quotas.get(&t.id, "ente", q, reg.redis.as_ref())).collect();
    let mut tenant_limits = Vec::new();
    for (i, l) in t.rate_limits.iter().enumerate() {
        tenant_limits.push(
            limiters
                .get(&t.id, "ente", l)
                .ok_or_else(|| build_err(format!("{p}.rate_limits[{i}]"), "not a valid quota"))?,
        );
    }
    let mut pools = Vec::new();
    let mut pool_names = Vec::new();
    for (name, u) in &t.upstreams {
        let up = format!("{p}.upstreams.{name}");
        let mut servers = Vec::new();
        for (i, s) in u.servers.iter().enumerate() {
            let addr = s
                .to_socket_addrs()
                .map_err(|e| build_err(format!("{up}.servers[{i}]"), format!("cannot resolve `{s}`: {e}")))?
                .next()
                .ok_or_else(|| build_err(format!("{up}.servers[{i}]"), format!("`{s}` resolves to no address")))?;
            let host = s.rsplit_once(':').map(|(h, _)| h).unwrap_or(s);
            let sni =
                u.tls.as_ref().and_then(|t| t.sni.clone()).unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
            let mut peer = HttpPeer::new(addr, u.tls.is_some(), sni);
            peer.options.connection_timeout = Some(u.timeouts.connect.0);
            peer.options.total_connection_timeout = Some(u.timeouts.connect.0);
            peer.options.read_timeout = Some(u.timeouts.read.0);
            peer.options.write_timeout = Some(u.timeouts.write.0);
            peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
            if let Some(ca) = u.tls.as_ref().and_then(|t| t.ca.as_ref()) {
                peer.options.ca = Some(crate::tls::load_ca(ca).map_err(|m| build_err(format!("{up}.tls.ca"), m))?);
            }
            servers.push(ResolvedServer { name: s.clone(), addr, peer });
        }
        let old_pool = previous.and_then(|o| o.pools.iter().find(|op| op.name == *name));
        pools.push(Arc::new(Pool::new(name, u, servers, old_pool.map(|p| p.as_ref()))));
        pool_names.push(name.as_str());
    }
    let mut tenant_issuers = Vec::new();
    for (name, cfg) in &t.issuers {
        tenant_issuers
            .push(reg.issuers.get(&t.id, name, cfg).map_err(|m| build_err(format!("{p}.issuers.{name}"), m))?);
    }
    let health: Arc<dyn HealthView> = Arc::new(TenantHealth(pools.clone(), tenant_issuers));
    let mut routes = Vec::new();
    let mut streams = Vec::new();
    let mut table = RouteTable::default();
    let mut route_cfgs = t.routes.clone();
    if !route_cfgs.iter().any(|r| r.path == "/status") {
        route_cfgs.push(varco_config::RouteConfig {
            name: "status".into(),
            path: "/status".into(),
            methods: vec!["GET".into(), "HEAD".into()],
            access: varco_config::Access::Public,
            to: RouteTarget::Adapter(AdapterConfig::Status(StatusConfig { retry_after_secs: 10 })),
            max_body_bytes: None,
            strip_prefix: None,
            request_headers: None,
            rate_limits: Vec::new(),
            quotas: Vec::new(),
        });
    }
    if identity.is_some() && !route_cfgs.iter().any(|r| r.path == "/.well-known/jwks.json") {
        route_cfgs.push(varco_config::RouteConfig {
            name: "jwks".into(),
            path: "/.well-known/jwks.json".into(),
            methods: vec!["GET".into(), "HEAD".into()],
            access: varco_config::Access::Public,
            to: RouteTarget::Adapter(AdapterConfig::Jwks(Default::default())),
            max_body_bytes: None,
            strip_prefix: None,
            request_headers: None,
            rate_limits: Vec::new(),
            quotas: Vec::new(),
        });
    }
    for (ri, r) in route_cfgs.iter().enumerate() {
        let rp = format!("{p}.routes[{ri}]");
        let max_body_bytes = r.max_body_bytes.unwrap_or(cfg.server.max_body_bytes);
        let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
        let mut route_limits = tenant_limits.clone();
        for (i, l) in r.rate_limits.iter().enumerate() {
            let scope = format!("route `{}`", r.name);
            route_limits.push(
                limiters
                    .get(&t.id, &scope, l)
                    .ok_or_else(|| build_err(format!("{rp}.rate_limits[{i}]"), "not a valid quota"))?,
            );
        }
        // Rate limits first: the cheapest way to turn away a flood.
        if !route_limits.is_empty() {
            filters.push(Arc::new(varco_traffic::RateLimit { limiters: route_limits }));
        }
        filters.push(Arc::new(BodyLimit { max: max_body_bytes }));
        let target = match &r.to {
            RouteTarget::Upstream(u) => Target::Upstream(
                pool_names
                    .iter()
                    .position(|n| n == u)
                    .ok_or_else(|| build_err(format!("{rp}.to.upstream"), "unknown upstream"))?,
            ),
            RouteTarget::Adapter(AdapterConfig::Jwks(_)) => Target::Adapter(Arc::new(varco_auth::JwksAdapter(
                identity
                    .map(|i| i.jwks.clone())
                    .ok_or_else(|| build_err(format!("{rp}.to.adapter"), "needs server.identity_token"))?,
            ))),
            RouteTarget::Adapter(AdapterConfig::Events(_)) => Target::Adapter(Arc::new(varco_events::EventsAdapter {
                bus: reg.events.open(&cfg.server.events).map_err(|m| build_err(format!("{rp}.to.adapter"), m))?,
            })),
            RouteTarget::Adapter(AdapterConfig::EventStream(c)) => {
                let a = varco_events::stream::EventStreamAdapter {
                    bus: reg.events.open(&cfg.server.events).map_err(|m| build_err(format!("{rp}.to.adapter"), m))?,
                    acl: Arc::new(varco_events::stream::StreamAcl::for_tenant(cfg, &t.id)),
                    heartbeat: c.heartbeat.0,
                    max_streams: c.max_streams as usize,
                    route: reg.streams.get(&t.id, &r.name),
                };
                streams.push((a.route.clone(), a.acl.clone()));
                Target::Adapter(Arc::new(a))
            }
            RouteTarget::Adapter(AdapterConfig::Pagopa(c)) => {
                let ap = format!("{rp}.to.adapter");
                let bus = reg.events.open(&cfg.server.events).map_err(|m| build_err(&ap, m))?;
                Target::Adapter(Arc::new(
                    varco_adapter_pagopa::PagopaAdapter::build(&t.id, c, bus).map_err(|m| build_err(&ap, m))?,
                ))
            }
            RouteTarget::Adapter(AdapterConfig::Gpd(c)) => {
                let ap = format!("{rp}.to.adapter");
                let key = read_secret(&format!("{ap}.subscription_key"), &c.subscription_key)?;
                Target::Adapter(Arc::new(
                    varco_adapter_pagopa::gpd::GpdAdapter::build(c, &key).map_err(|m| build_err(&ap, m))?,
                ))
            }
            RouteTarget::Adapter(AdapterConfig::Status(s)) => {
                Target::Adapter(Arc::new(StatusAdapter::build(s, health.clone())))
            }
        };
        let mut withhold = Vec::new();
        if let Some(h) = &r.request_headers {
            let mut set = Vec::new();
            for (name, v) in &h.set {
                let hp = format!("{rp}.request_headers.set.{name}");
                let value = match v {
                    HeaderValueSource::Inline(s) => s.clone(),
                    HeaderValueSource::Secret(s) => read_secret(&hp, s)?,
                };
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| build_err(&hp, e.to_string()))?;
                let mut value =
                    HeaderValue::from_str(&value).map_err(|_| build_err(&hp, "not a valid header value"))?;
                value.set_sensitive(true);
                set.push((name, value));
            }
            // Identity headers are written after the filters run, in `upstream_request_filter`,
            // so removing one (data minimisation: a back-office that must not see the codice
            // fiscale) is done there.
            let (withheld, remove): (Vec<_>, Vec<_>) = h
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .partition(|n| varco_config::is_identity_header(n.as_str()));
            withhold = withheld;
            filters.push(Arc::new(HeaderRewrite { set, remove }));
        }
        let methods: Vec<Method> = r.methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect();
        table.insert(&r.path, &methods, routes.len()).map_err(|e| build_err(format!("{rp}.path"), e))?;
        routes.push(Route {
            name: r.name.clone(),
            target,
            max_body_bytes,
            strip_prefix: r.strip_prefix.clone(),
            withhold,
            filters,
            latency: metrics.route_latency(&t.id, &r.name),
            requests: metrics.route_requests(&t.id, &r.name),
            access: match &r.access {
                varco_config::Access::Public => RouteAccess::Public,
                varco_config::Access::Jwt(j) => {
                    let mut issuers = Vec::new();
                    for (i, name) in j.issuers.iter().enumerate() {
                        let ip = format!("{rp}.access.jwt.issuers[{i}]");
                        let cfg = t.issuers.get(name).ok_or_else(|| build_err(&ip, "unknown issuer"))?;
                        issuers.push(reg.issuers.get(&t.id, name, cfg).map_err(|m| build_err(&ip, m))?);
                    }
                    let modi = match &j.modi {
                        None => None,
                        Some(m) => {
                            let mp = format!("{rp}.access.jwt.modi");
                            let keys = match &m.keys_issuer {
                                Some(name) => {
                                    let cfg = t
                                        .issuers
                                        .get(name)
                                        .ok_or_else(|| build_err(format!("{mp}.keys_issuer"), "unknown issuer"))?;
                                    Some(
                                        reg.issuers
                                            .get(&t.id, name, cfg)
                                            .map_err(|e| build_err(format!("{mp}.keys_issuer"), e))?,
                                    )
                                }
                                None => None,
                            };
                            let v = varco_auth::ModiVerifier::build(&t.id, m, keys, identity.cloned())
                                .map_err(|e| build_err(&mp, e))?;
                            Some(Arc::new(v))
                        }
                    };
                    RouteAccess::Jwt { issuers, policy: j.clone(), modi }
                }
                varco_config::Access::ApiKey(k) => RouteAccess::ApiKey {
                    header: HeaderName::from_bytes(k.header.as_bytes())
                        .map_err(|_| build_err(format!("{rp}.access.api_key.header"), "not a header name"))?,
                },
            },
            quotas: {
                let scope = format!("route `{}`", r.name);
                let mut q = tenant_quotas.clone();
                q.extend(r.quotas.iter().map(|c| reg.quotas.get(&t.id, &scope, c, reg.redis.as_ref())));
                q
            },
        });
    }
    Ok(Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        routes,
        streams,
        table,
        pools,
        max_concurrent: t.max_concurrent,
        api_keys: varco_auth::ApiKeys::build(&t.id, &t.api_keys, |r| route_cfgs.iter().position(|x| x.name == r)),
        in_flight: previous.map_or_else(Default::default, |o| o.in_flight.clone()),
    })
}
