//! The immutable runtime built from one configuration: tenants, their route tables, each
//! route's pipeline, adapters and upstream pools. A reload builds a new one and swaps it
//! atomically; requests keep the `Arc` they started with.

use crate::filters::{BodyLimit, HeaderRewrite};
use crate::metrics::Metrics;
use crate::registries::Registries;
use crate::router::{RouteTable, TenantIndex};
use crate::secrets::{build_err, read_secret, BuildError};
use crate::upstream::{Pool, ResolvedServer};
use http::{HeaderName, HeaderValue, Method};
use pingora_core::upstreams::peer::HttpPeer;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use varco_auth::{IdentitySigner, Issuer, KeySet, ModiVerifier, SigningKey};
use varco_config::{
    Access, AdapterConfig, Config, HeaderValueSource, RouteConfig, RouteTarget, StatusConfig, TenantConfig,
};
use varco_core::{Adapter, Filter, HealthView, UpstreamHealth};

/// Where a route sends requests.
#[derive(Debug)]
pub enum Target {
    /// Index into the tenant's pools.
    Upstream(usize),
    Adapter(Arc<dyn Adapter>),
    /// A mediator in front of one of the tenant's pools (index).
    Mediated {
        pool: usize,
        mediator: Arc<dyn varco_core::Mediator>,
    },
}

/// One step of a route's request pipeline, built once per configuration. `request_filter`
/// runs a route's steps in order (`pipeline::run`); a new kind of check (a session, an audit
/// record, a span) is one more variant here and one more arm there.
#[derive(Debug)]
pub enum Step {
    /// A bearer JWT (PDND voucher, an IdP's access token) from the route's issuers.
    Jwt { issuers: Vec<Arc<Issuer>>, policy: Box<varco_config::JwtAccess> },
    /// An API key in `header`, checked against the ente's issued keys.
    ApiKey { header: HeaderName },
    /// A citizen's session from the ente's SPID/CIE login, at `acr_min` or above.
    Session { rp: Arc<varco_auth::rp::RelyingParty>, acr_min: Option<u8> },
    /// A socket-free filter (rate limits, body limit, header rewrite).
    Filter(Arc<dyn Filter>),
    /// A daily or monthly quota (may lease from Redis).
    Quota(Arc<varco_traffic::Quota>),
    /// ModI store-and-forward: reads the whole body, checks it, calls the target with it and
    /// signs the answer. Answers the request.
    Modi(Arc<ModiVerifier>),
    /// The route's adapter. Answers the request.
    Adapter(Arc<dyn Adapter>),
    /// The route's mediator and its pool (`mediation::run`). Answers the request.
    Mediate(Arc<dyn varco_core::Mediator>),
}

/// A built route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// Whether each call is kept in the audit trail.
    pub audit: bool,
    pub target: Target,
    pub max_body_bytes: u64,
    pub strip_prefix: Option<String>,
    /// Identity headers (`X-Varco-*`) this route does not forward (`request_headers.remove`).
    pub withhold: Vec<HeaderName>,
    /// What `request_filter` runs, in order; the last step of an adapter or ModI route
    /// answers the request (see `pipeline.rs`).
    pub steps: Vec<Step>,
    /// The filters among the steps, for their `on_response`.
    pub filters: Vec<Arc<dyn Filter>>,
    /// The route's CORS policy (its own `cors`, or the ente's).
    /// The ente's and route's address rules (also the first step), checked before a CORS
    /// preflight is answered.
    pub source: Option<Arc<varco_traffic::SourceFilter>>,
    pub cors: Option<Arc<crate::cors::Cors>>,
    /// Latency and status counts, resolved at the route's first request.
    pub metrics: crate::metrics::RouteMetrics,
    /// Allowed and refused callers, for routes that authenticate.
    pub auth: Option<crate::metrics::AuthCounters>,
}

/// A built tenant.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub routes: Vec<Route>,
    /// The event-stream routes' shared state and this configuration's ACL for them.
    pub streams: Vec<(Arc<varco_events::stream::StreamRoute>, Arc<varco_events::stream::StreamAcl>)>,
    /// Signal Hub pullers its routes want running: (key, fingerprint, puller).
    pub pullers: Vec<(String, String, Arc<varco_adapter_signalhub::Puller>)>,
    pub table: RouteTable,
    pub pools: Vec<Arc<Pool>>,
    pub max_concurrent: Option<u32>,
    pub api_keys: varco_auth::ApiKeys,
    /// The ente's CORS policy, for the answers of requests no route took (404, 405).
    pub cors: Option<Arc<crate::cors::Cors>>,
    /// Whether the ente or any of its routes has a CORS policy (else `Origin` is not read).
    pub has_cors: bool,
    /// Signs the identity token for this ente's back-offices (its own key, or the
    /// server-wide one), when `server.identity_token` is configured.
    pub identity: Option<Arc<IdentitySigner>>,
    /// Requests of the tenant in flight (shared with the previous generation's tenant).
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The ente's own keys (they sign its audit checkpoints).
    pub keys: Option<Arc<KeySet>>,
}

/// The tenant's pools as the status adapter sees them.
#[derive(Debug)]
struct TenantHealth(Vec<Arc<Pool>>, Vec<Arc<Issuer>>);

impl HealthView for TenantHealth {
    fn upstreams(&self) -> Vec<UpstreamHealth> {
        self.0.iter().map(|p| p.health()).collect()
    }

    fn issuers(&self) -> Vec<(String, bool)> {
        self.1.iter().map(|i| (i.name.clone(), i.up.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }
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
    /// Load balancers whose `X-Forwarded-For` names the caller (`server.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub client_body_timeout: std::time::Duration,
    /// `server.header_timeout`: a request header is complete this long after its first byte.
    pub header_timeout: std::time::Duration,
    /// `server.keepalive_idle` in whole seconds (at least 1).
    pub keepalive_idle_secs: u64,
    /// `varco_problems_total`, for the answers `respond::problem` writes.
    pub problems: prometheus::IntCounterVec,
}

impl Runtime {
    /// Builds a runtime from a validated config. Does I/O (DNS, secrets, keys); call it off
    /// the request path. `previous` hands health state over to the same servers.
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
        let server_keys = cfg
            .server
            .identity_token
            .as_ref()
            .map(IdentitySigner::server_keys)
            .transpose()
            .map_err(|m| build_err("server.identity_token", m))?
            .map(Arc::new);
        let client = varco_outbound::https_client();
        let mut index = TenantIndex::default();
        let mut tenants = Vec::with_capacity(cfg.tenants.len());
        for (ti, t) in cfg.tenants.iter().enumerate() {
            let old = previous.and_then(|p| p.tenants.iter().find(|o| o.id == t.id));
            let p = format!("tenants[{ti}]");
            let keys = match tenant_keys(t, &p)? {
                Some(k) => Some(Arc::new(k)),
                None => server_keys.clone(),
            };
            let b = TenantBuild { t, p, cfg: &cfg, metrics, reg, previous: old, keys, client: &client };
            let tenant = b.build()?;
            if t.hosts.is_empty() {
                index.insert("*", t.prefix.as_deref(), ti);
            }
            for h in &t.hosts {
                index.insert(h, t.prefix.as_deref(), ti);
            }
            tenants.push(tenant);
        }
        let trusted_proxies = cfg
            .server
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, n)| varco_config::parse_net(n).map_err(|m| build_err(format!("server.trusted_proxies[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            generation,
            access_log: cfg.server.access_log,
            forwarded_header: cfg.server.forwarded_header,
            trusted_proxies,
            keepalive_idle_secs: cfg.server.keepalive_idle.0.as_secs().max(1),
            problems: metrics.problems.clone(),
            client_body_timeout: cfg.server.client_body_timeout.0,
            header_timeout: cfg.server.header_timeout.0,
            config: cfg,
            tenants,
            index,
        })
    }

    /// Puts this runtime's event-stream ACLs in force for the open streams; call it once the
    /// runtime is the current one.
    pub fn commit_streams(&self, registry: &varco_events::stream::StreamRegistry) {
        let live: Vec<_> = self.tenants.iter().flat_map(|t| t.streams.iter().cloned()).collect();
        registry.commit(&live);
    }

    /// Starts this runtime's Signal Hub pullers and stops those it no longer has; one whose
    /// configuration did not change keeps running. Call it once the runtime is the current one.
    pub fn commit_pullers(&self, registry: &varco_adapter_signalhub::PullerRegistry) {
        registry.commit(self.tenants.iter().flat_map(|t| t.pullers.iter().cloned()).collect());
    }
}

/// The public keys (`{"keys": [...]}`) of ente `tenant` in `cfg`, read from its `tenants[].keys`
/// (e.g. for `varco audit verify`); `None` when it has none.
pub fn tenant_jwks(cfg: &Config, tenant: &str) -> Result<Option<bytes::Bytes>, BuildError> {
    let Some((i, t)) = cfg.tenants.iter().enumerate().find(|(_, t)| t.id == tenant) else {
        return Err(build_err("tenants", format!("no ente `{tenant}`")));
    };
    Ok(tenant_keys(t, &format!("tenants[{i}]"))?.map(|k| k.jwks))
}

/// The ente's own keys (`tenants[].keys`), read now.
fn tenant_keys(t: &TenantConfig, p: &str) -> Result<Option<KeySet>, BuildError> {
    if t.keys.is_empty() {
        return Ok(None);
    }
    let keys = read_keys(&t.keys, &format!("{p}.keys"))?;
    KeySet::new(keys).map(Some).map_err(|m| build_err(format!("{p}.keys"), m))
}

/// Private keys of a key list at `p` (`tenants[0].keys`), read and checked now.
pub(crate) fn read_keys(list: &[varco_config::TenantKeyConfig], p: &str) -> Result<Vec<SigningKey>, BuildError> {
    let mut keys = Vec::new();
    for (i, k) in list.iter().enumerate() {
        let kp = format!("{p}[{i}]");
        let pem = read_secret(&format!("{kp}.private_key"), &k.private_key)?;
        let chain =
            k.certificate_chain.as_ref().map(|c| read_secret(&format!("{kp}.certificate_chain"), c)).transpose()?;
        keys.push(
            SigningKey::from_pem(&k.kid, pem.as_bytes(), chain.as_deref().map(str::as_bytes))
                .map_err(|m| build_err(&kp, m))?,
        );
    }
    Ok(keys)
}

/// One tenant being built.
struct TenantBuild<'a> {
    t: &'a TenantConfig,
    p: String,
    cfg: &'a Config,
    metrics: &'a Metrics,
    reg: &'a Registries,
    previous: Option<&'a Tenant>,
    keys: Option<Arc<KeySet>>,
    client: &'a varco_outbound::HttpsClient,
}

/// A route that answers on its own (`status`, `jwks`, the federation statement, the login
/// pages), added when no route has its path.
fn builtin_route(name: &str, path: &str, methods: &[&str], to: AdapterConfig) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        path: path.into(),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        access: Access::Public,
        to: RouteTarget::Adapter(Box::new(to)),
        max_body_bytes: None,
        strip_prefix: None,
        request_headers: None,
        response_headers: None,
        source: None,
        cors: None,
        rate_limits: Vec::new(),
        quotas: Vec::new(),
        audit: None,
    }
}

impl TenantBuild<'_> {
    fn build(&self) -> Result<Tenant, BuildError> {
        let (t, p) = (self.t, self.p.as_str());
        let (pools, pool_names) = self.pools()?;
        let mut tenant_issuers = Vec::new();
        for (name, cfg) in &t.issuers {
            tenant_issuers
                .push(self.reg.issuers.get(&t.id, name, cfg).map_err(|m| build_err(format!("{p}.issuers.{name}"), m))?);
        }
        let health: Arc<dyn HealthView> = Arc::new(TenantHealth(pools.clone(), tenant_issuers));
        let identity = match (&self.cfg.server.identity_token, &self.keys) {
            (Some(it), Some(keys)) => Some(Arc::new(
                IdentitySigner::new(keys.clone(), it).map_err(|m| build_err("server.identity_token", m))?,
            )),
            _ => None,
        };
        // Without `federation` an ente with `oidc` publishes its Entity Configuration only.
        let relying = match (t.oidc.as_deref(), &self.cfg.federation) {
            (Some(o), Some(fed)) => Some(crate::citizens::relying_party(t, &self.p, o, fed, self.reg)?),
            _ => None,
        };
        let mut route_cfgs = t.routes.clone();
        const READ: &[&str] = &["GET", "HEAD"];
        let login = || AdapterConfig::OidcLogin(Default::default());
        let builtin = [
            ("status", "/status", READ, AdapterConfig::Status(StatusConfig { retry_after_secs: 10 }), true),
            (
                "openid-federation",
                varco_config::FEDERATION_CONFIGURATION_PATH,
                READ,
                AdapterConfig::FederationEntity(Default::default()),
                t.oidc.is_some(),
            ),
            ("oidc-login", varco_auth::rp::LOGIN_PATH, READ, login(), relying.is_some()),
            ("oidc-callback", varco_config::OIDC_CALLBACK_PATH, &["GET"], login(), relying.is_some()),
            ("oidc-logout", varco_auth::rp::LOGOUT_PATH, &["GET", "POST"], login(), relying.is_some()),
            ("jwks", "/.well-known/jwks.json", READ, AdapterConfig::Jwks(Default::default()), self.keys.is_some()),
        ];
        for (name, path, methods, to, wanted) in builtin {
            if wanted && !route_cfgs.iter().any(|r| r.path == path) {
                route_cfgs.push(builtin_route(name, path, methods, to));
            }
        }
        let mut routes = Vec::with_capacity(t.routes.len());
        let mut streams = Vec::new();
        let mut pullers = Vec::new();
        let mut table = RouteTable::default();
        for (ri, r) in route_cfgs.iter().enumerate() {
            let rp = format!("{p}.routes[{ri}]");
            let target = match &r.to {
                RouteTarget::Upstream(u) => Target::Upstream(
                    pool_names
                        .iter()
                        .position(|n| n == u)
                        .ok_or_else(|| build_err(format!("{rp}.to.upstream"), "unknown upstream"))?,
                ),
                RouteTarget::Adapter(a) if a.is_mediated() => {
                    let ap = format!("{rp}.to.adapter");
                    match crate::mediation::build(a, &r.path, &ap)? {
                        Some((u, mediator)) => Target::Mediated {
                            pool: pool_names
                                .iter()
                                .position(|n| *n == u)
                                .ok_or_else(|| build_err(format!("{ap}.upstream"), "unknown upstream"))?,
                            mediator,
                        },
                        None => return Err(build_err(ap, "not a mediated adapter")),
                    }
                }
                RouteTarget::Adapter(a) => {
                    let ap = format!("{rp}.to.adapter");
                    let cx = crate::adapters::AdapterContext {
                        config: self.cfg,
                        tenant: &t.id,
                        route: &r.name,
                        path: &ap,
                        registries: self.reg,
                        health: &health,
                        keys: self.keys.as_ref(),
                        client: self.client,
                        rp: relying.as_ref(),
                    };
                    let built = crate::adapters::build(a, &cx)?;
                    streams.extend(built.stream);
                    pullers.extend(built.puller);
                    Target::Adapter(built.adapter)
                }
            };
            let route = self.route(r, &rp, target, relying.as_ref())?;
            let methods: Vec<Method> = r.methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect();
            table.insert(&r.path, &methods, routes.len()).map_err(|e| build_err(format!("{rp}.path"), e))?;
            routes.push(route);
        }
        let has_cors = routes.iter().any(|r| r.cors.is_some());
        Ok(Tenant {
            keys: self.keys.clone(),
            has_cors,
            id: t.id.clone(),
            name: t.name.clone(),
            routes,
            streams,
            pullers,
            table,
            pools,
            max_concurrent: t.max_concurrent,
            api_keys: varco_auth::ApiKeys::build(&t.id, &t.api_keys, |r| route_cfgs.iter().position(|x| x.name == r)),
            cors: match &t.cors {
                Some(c) => {
                    Some(Arc::new(crate::cors::Cors::build(c, &[]).map_err(|m| build_err(format!("{p}.cors"), m))?))
                }
                None => None,
            },
            identity,
            in_flight: self.previous.map_or_else(Default::default, |o| o.in_flight.clone()),
        })
    }

    /// The tenant's upstream pools (addresses resolved now), inheriting the health of the
    /// same servers in the previous generation.
    fn pools(&self) -> Result<(Vec<Arc<Pool>>, Vec<&str>), BuildError> {
        let mut pools = Vec::new();
        let mut names = Vec::new();
        for (name, u) in &self.t.upstreams {
            let up = format!("{}.upstreams.{name}", self.p);
            let mut servers = Vec::new();
            let client_cert = match u.tls.as_ref().and_then(|t| t.client_certificate.as_ref()) {
                Some(c) => Some(
                    crate::tls::load_client_cert(&c.cert, &c.key)
                        .map_err(|m| build_err(format!("{up}.tls.client_certificate"), m))?,
                ),
                None => None,
            };
            for (i, spec) in u.servers.iter().enumerate() {
                let s = spec.address();
                let addr = s
                    .to_socket_addrs()
                    .map_err(|e| build_err(format!("{up}.servers[{i}]"), format!("cannot resolve `{s}`: {e}")))?
                    .next()
                    .ok_or_else(|| build_err(format!("{up}.servers[{i}]"), format!("`{s}` resolves to no address")))?;
                let host = s.rsplit_once(':').map(|(h, _)| h).unwrap_or(s);
                let sni = u
                    .tls
                    .as_ref()
                    .and_then(|t| t.sni.clone())
                    .unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
                let mut peer = HttpPeer::new(addr, u.tls.is_some(), sni);
                peer.options.connection_timeout = Some(u.timeouts.connect.0);
                peer.options.total_connection_timeout = Some(u.timeouts.connect.0);
                peer.options.read_timeout = Some(u.timeouts.read.0);
                peer.options.write_timeout = Some(u.timeouts.write.0);
                peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
                peer.client_cert_key = client_cert.clone();
                match u.protocol {
                    varco_config::UpstreamProtocol::Http1 => peer.options.set_http_version(1, 1),
                    varco_config::UpstreamProtocol::Http2 => peer.options.set_http_version(2, 2),
                    varco_config::UpstreamProtocol::Auto => peer.options.set_http_version(2, 1),
                }
                if let Some(ca) = u.tls.as_ref().and_then(|t| t.ca.as_ref()) {
                    peer.options.ca = Some(crate::tls::load_ca(ca).map_err(|m| build_err(format!("{up}.tls.ca"), m))?);
                }
                servers.push(ResolvedServer { name: s.to_owned(), addr, peer, weight: spec.weight() });
            }
            let old_pool = self.previous.and_then(|o| o.pools.iter().find(|op| op.name == *name));
            let pool = Arc::new(Pool::new(name, u, servers, old_pool.map(|p| p.as_ref())));
            if let Some(op) = old_pool {
                pool.inherit_health(op);
            }
            pools.push(pool);
            names.push(name.as_str());
        }
        Ok((pools, names))
    }

    /// One route with its pipeline, in the order requests meet it: who the caller is, rate
    /// limits (the cheapest way to turn away a flood; they may count per caller), the body
    /// limit, header rewrite, quotas (async: may lease from Redis), then ModI store-and-
    /// forward or the adapter, which answer the request.
    fn route(
        &self,
        r: &RouteConfig,
        rp: &str,
        target: Target,
        relying: Option<&Arc<varco_auth::rp::RelyingParty>>,
    ) -> Result<Route, BuildError> {
        let t = self.t;
        let max_body_bytes = r.max_body_bytes.unwrap_or(self.cfg.server.max_body_bytes);
        let mut steps = Vec::new();
        let mut source = None;
        if t.source.is_some() || r.source.is_some() {
            // First of all: a refused address costs no token check, limit or quota.
            let rules = |src: &Option<varco_config::SourceRules>, at: String| {
                src.as_ref().map(|x| varco_traffic::source::Rules::new(x).map_err(|m| build_err(at, m))).transpose()
            };
            let f = Arc::new(varco_traffic::SourceFilter {
                tenant: rules(&t.source, format!("{}.source", self.p))?,
                route: rules(&r.source, format!("{rp}.source"))?,
            });
            source = Some(f.clone());
            steps.push(Step::Filter(f));
        }
        let mut modi = None;
        match &r.access {
            Access::Public => {}
            Access::Jwt(j) => {
                let mut issuers = Vec::new();
                for (i, name) in j.issuers.iter().enumerate() {
                    issuers.push(self.issuer(name, &format!("{rp}.access.jwt.issuers[{i}]"))?);
                }
                if let Some(m) = &j.modi {
                    let mp = format!("{rp}.access.jwt.modi");
                    let keys =
                        m.keys_issuer.as_ref().map(|n| self.issuer(n, &format!("{mp}.keys_issuer"))).transpose()?;
                    modi = Some(Arc::new(
                        ModiVerifier::build(&t.id, m, keys, self.keys.clone()).map_err(|e| build_err(&mp, e))?,
                    ));
                }
                steps.push(Step::Jwt { issuers, policy: j.clone() });
            }
            Access::Session(a) => steps.push(Step::Session {
                rp: relying
                    .cloned()
                    .ok_or_else(|| build_err(format!("{rp}.access.session"), "the ente has no `oidc` login"))?,
                acr_min: a.acr_min,
            }),
            Access::ApiKey(k) => steps.push(Step::ApiKey {
                header: HeaderName::from_bytes(k.header.as_bytes())
                    .map_err(|_| build_err(format!("{rp}.access.api_key.header"), "not a header name"))?,
            }),
        }
        let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
        let mut limiters = Vec::new();
        for (scope, list, lp) in [
            ("ente".to_owned(), &t.rate_limits, format!("{}.rate_limits", self.p)),
            (format!("route `{}`", r.name), &r.rate_limits, format!("{rp}.rate_limits")),
        ] {
            for (i, l) in list.iter().enumerate() {
                limiters.push(self.reg.limiters.get(&t.id, &scope, l).ok_or_else(|| {
                    build_err(format!("{lp}[{i}]"), "not a valid rate limit (requests and period must be above zero)")
                })?);
            }
        }
        if !limiters.is_empty() {
            filters.push(Arc::new(varco_traffic::RateLimit::new(limiters)));
        }
        filters.push(Arc::new(BodyLimit { max: max_body_bytes }));
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
                .partition(|n| varco_core::headers::is_identity(n.as_str()));
            withhold = withheld;
            filters.push(Arc::new(HeaderRewrite { set, remove }));
        }
        if let Some(h) = &r.response_headers {
            let hp = format!("{rp}.response_headers");
            let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).map_err(|e| build_err(&hp, e.to_string()));
            let mut set = Vec::new();
            for (n, v) in &h.set {
                set.push((name(n)?, HeaderValue::from_str(v).map_err(|_| build_err(&hp, "not a valid header value"))?));
            }
            let remove = h.remove.iter().map(|n| name(n)).collect::<Result<Vec<_>, _>>()?;
            filters.push(Arc::new(crate::filters::ResponseHeaderRewrite { set, remove }));
        }
        steps.extend(filters.iter().cloned().map(Step::Filter));
        let scope = format!("route `{}`", r.name);
        let redis = self.reg.redis.as_ref();
        for q in &t.quotas {
            steps.push(Step::Quota(self.reg.quotas.get(&t.id, "ente", q, redis)));
        }
        for q in &r.quotas {
            steps.push(Step::Quota(self.reg.quotas.get(&t.id, &scope, q, redis)));
        }
        match (modi, &target) {
            (Some(m), _) => steps.push(Step::Modi(m)),
            (None, Target::Adapter(a)) => steps.push(Step::Adapter(a.clone())),
            (None, Target::Mediated { mediator, .. }) => steps.push(Step::Mediate(mediator.clone())),
            (None, Target::Upstream(_)) => {}
        }
        // ModI routes keep their tracking evidence in the trail unless a route says otherwise.
        let is_modi = matches!(&r.access, Access::Jwt(j) if j.modi.is_some());
        let audit = self.reg.audit.is_some() && r.audit.unwrap_or(is_modi);
        Ok(Route {
            audit,
            name: r.name.clone(),
            target,
            max_body_bytes,
            strip_prefix: r.strip_prefix.clone(),
            withhold,
            steps,
            filters,
            source,
            cors: match r.cors.as_ref().or(t.cors.as_ref()) {
                Some(c) => Some(Arc::new(
                    crate::cors::Cors::build(c, &r.methods).map_err(|m| build_err(format!("{rp}.cors"), m))?,
                )),
                None => None,
            },
            metrics: self.metrics.route(&t.id, &r.name),
            auth: match &r.access {
                Access::Public => None,
                Access::ApiKey(_) => Some(self.metrics.route_auth(&t.id, &r.name, "api_key")),
                Access::Session(_) => Some(self.metrics.route_auth(&t.id, &r.name, "session")),
                Access::Jwt(_) if is_modi => Some(self.metrics.route_auth(&t.id, &r.name, "modi")),
                Access::Jwt(_) => Some(self.metrics.route_auth(&t.id, &r.name, "jwt")),
            },
        })
    }

    fn issuer(&self, name: &str, path: &str) -> Result<Arc<Issuer>, BuildError> {
        let cfg = self.t.issuers.get(name).ok_or_else(|| build_err(path, "unknown issuer"))?;
        self.reg.issuers.get(&self.t.id, name, cfg).map_err(|m| build_err(path, m))
    }
}
