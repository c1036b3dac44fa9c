//! The configuration model. Every struct denies unknown fields; every default is documented
//! on its field and visible in the JSON Schema.

use crate::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::model_adapters::*;
pub use crate::model_auth::*;
pub use crate::model_edge::*;
pub use crate::model_events::*;
pub use crate::model_oidc::*;
pub use crate::model_pagopa::*;
pub use crate::model_traffic::*;
pub use crate::model_upstream::*;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where the gateway accepts traffic. Changing listeners needs a restart (a reload that
    /// changes them is rejected).
    pub listeners: Vec<ListenerConfig>,
    /// The admin listener (health, metrics, config, reload).
    #[serde(default)]
    pub admin: AdminConfig,
    /// The municipalities (enti) this gateway serves.
    pub tenants: Vec<TenantConfig>,
    /// Redis shared by the varco instances of a consortium, for cluster-wide quotas. Without
    /// it, quotas are counted per instance.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// The OIDC Federation (SPID, CIE) the enti with `oidc` log citizens in through. Default:
    /// none (no ente may then have `oidc`).
    #[serde(default)]
    pub federation: Option<FederationConfig>,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads of the proxy. Default: 0 = one per CPU core.
    #[serde(default)]
    pub threads: usize,
    /// After SIGTERM new connections are refused and in-flight requests get this long to
    /// finish; varco exits as soon as none is left. Whole seconds. Default 10s.
    #[serde(default = "d_grace")]
    pub grace_period: Dur,
    /// After the grace period, how long the worker runtimes get to stop. Default 1s.
    #[serde(default = "d_shutdown")]
    pub shutdown_timeout: Dur,
    /// Write one JSON access-log line per request to stdout. Default true.
    #[serde(default = "d_true")]
    pub access_log: bool,
    /// Largest request body any route accepts unless it sets its own. Default 10 MiB.
    #[serde(default = "d_max_body")]
    pub max_body_bytes: u64,
    /// Idle upstream connections kept for reuse, in total. Default 256.
    #[serde(default = "d_pool")]
    pub upstream_keepalive_pool: usize,
    /// Slow-client protection: the longest wait for each read of a request body from the
    /// caller; a caller that stalls longer gets 408 and is disconnected. (Request headers
    /// have `header_timeout`.) Default 30s.
    #[serde(default = "d_body_timeout")]
    pub client_body_timeout: Dur,
    /// How long an idle keep-alive connection waits for its next request before varco closes
    /// it (pingora otherwise keeps HTTP/1.1 connections open for ever). Whole seconds, at
    /// least 1s. Default 60s.
    #[serde(default = "d_keepalive_idle")]
    pub keepalive_idle: Dur,
    /// Slow-header protection: a request header must be complete this long after its first
    /// byte (on a new connection: after the connection opened, the h2c preface included),
    /// however it trickles in; otherwise the caller gets 408 and the connection is closed.
    /// Default 10s.
    #[serde(default = "d_header_timeout")]
    pub header_timeout: Dur,
    /// Sign the verified identity as a short-lived JWT for back-offices. Default: off.
    #[serde(default)]
    pub identity_token: Option<IdentityTokenConfig>,
    /// Also send the RFC 7239 `Forwarded` header upstream (`X-Forwarded-For/-Proto/-Host` are
    /// always sent). Default false.
    #[serde(default)]
    pub forwarded_header: bool,
    /// Load balancers in front of varco whose `X-Forwarded-For` is believed (CIDRs or
    /// addresses): the caller is the right-most address in it that is not one of them.
    /// Everyone else's `X-Forwarded-For` is ignored. Default none: the TCP peer is the caller.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The event bus: durable outbox, optional Kafka. Default: an outbox in
    /// `varco-data/events`, no Kafka.
    #[serde(default)]
    pub events: EventsConfig,
    /// The tamper-evident audit trail of interop calls. Default: off. Changes need a restart.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// OpenTelemetry traces over OTLP/HTTP. Default: off (unless the `OTEL_*` variables name
    /// an endpoint). Changes need a restart.
    #[serde(default)]
    pub tracing: Option<crate::TracingConfig>,
}

/// `server.audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Where each ente's log is kept (`<dir>/<ente>/audit-<AAAAMMGG>.log`, readable by varco
    /// only). Default `varco-data/audit`.
    #[serde(default = "d_audit_dir")]
    pub dir: PathBuf,
    /// A checkpoint signed with the ente's key after this many of its records. Default 1000.
    #[serde(default = "d_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or this long after the last one, when records followed it. Default 5m.
    #[serde(default = "d_checkpoint_interval")]
    pub checkpoint_interval: Dur,
    /// Records are synced to disk at most this long after they were written (`0s`: after every
    /// batch the writer takes). A crash loses at most this much of the trail. Default 50ms.
    #[serde(default = "d_sync_interval")]
    pub sync_interval: Dur,
    /// Days the files are kept, unless the ente says otherwise (`tenants[].audit_retention_days`).
    /// Default: kept.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

fn d_audit_dir() -> PathBuf {
    PathBuf::from("varco-data/audit")
}
fn d_checkpoint_every() -> u64 {
    1000
}
fn d_sync_interval() -> Dur {
    Dur(std::time::Duration::from_millis(50))
}
fn d_checkpoint_interval() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            grace_period: d_grace(),
            shutdown_timeout: d_shutdown(),
            access_log: true,
            max_body_bytes: d_max_body(),
            upstream_keepalive_pool: d_pool(),
            forwarded_header: false,
            trusted_proxies: Vec::new(),
            client_body_timeout: d_body_timeout(),
            keepalive_idle: d_keepalive_idle(),
            header_timeout: d_header_timeout(),
            identity_token: None,
            events: EventsConfig::default(),
            audit: None,
            tracing: None,
        }
    }
}

fn d_keepalive_idle() -> Dur {
    Dur::secs(60)
}
fn d_header_timeout() -> Dur {
    Dur::secs(10)
}
fn d_max_connections() -> usize {
    16384
}
fn d_max_connections_per_address() -> usize {
    1000
}
fn d_grace() -> Dur {
    Dur::secs(10)
}
fn d_shutdown() -> Dur {
    Dur::secs(1)
}
fn d_true() -> bool {
    true
}
fn d_max_body() -> u64 {
    10 * 1024 * 1024
}
fn d_body_timeout() -> Dur {
    Dur::secs(30)
}
fn d_pool() -> usize {
    256
}

/// A listening socket for tenant traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// `ip:port` to bind, e.g. `127.0.0.1:8080` or `[::1]:8443`.
    pub address: String,
    /// Accept HTTP/2: cleartext (h2c prior knowledge) on plain listeners, ALPN `h2` on TLS.
    /// Default true.
    #[serde(default = "d_true")]
    pub http2: bool,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// Open connections this listener holds at most; one more is closed as soon as it is
    /// accepted (counted in `varco_connections_refused_total`). Default 16384 (keep it under
    /// the process's `ulimit -n`).
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Open connections one client address may hold on this listener. The TCP peer counts
    /// (not `X-Forwarded-For`); `server.trusted_proxies` are not limited. Default 1000.
    #[serde(default = "d_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy and cloud
    /// load balancers send it) naming the client; the client is then that address, for
    /// address rules, limits, logs and `X-Forwarded-For`. Only peers in
    /// `server.trusted_proxies` may connect; a connection without a valid header is closed.
    /// Plain listeners only (the header comes before TLS). Default false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Bytes of the buffer each connection reads through before the HTTP parser. Default: none
    /// on plain listeners (requests are parsed straight from the socket, so an idle keep-alive
    /// connection holds no read buffer), 16384 on TLS listeners (a whole TLS record per read).
    /// pingora's own default is 65536 for every connection. At most 1048576.
    #[serde(default)]
    pub read_buffer_bytes: Option<usize>,
}

/// The read buffer of a listener's connections when `read_buffer_bytes` is not set.
pub const fn default_read_buffer_bytes(tls: bool) -> usize {
    if tls {
        16 * 1024
    } else {
        0
    }
}

/// TLS termination with one certificate per set of tenant hostnames (chosen by SNI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Certificates; the first one also answers clients that send no (or an unknown) SNI.
    pub certificates: Vec<CertificateConfig>,
    /// PEM bundle of CAs that client certificates must chain to (mTLS, ModI ID_AUTH 01).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is `none` (not asked), `optional` or `required`.
    /// Default `none`; `optional`/`required` need `client_ca`.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// A certificate chain and key (PEM files) and the hostnames it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// SNI hostnames this certificate answers.
    pub hosts: Vec<String>,
    /// PEM certificate chain file.
    pub cert: PathBuf,
    /// PEM private key file (a secret: keep it readable by varco only).
    pub key: PathBuf,
}

/// Client-certificate policy of a TLS listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    None,
    Optional,
    Required,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port` to bind. Default `127.0.0.1:9180`.
    #[serde(default = "d_admin_addr")]
    pub address: String,
    /// Bearer token required on `/admin/*` (health and metrics stay open). Required when the
    /// admin address is not a loopback address.
    #[serde(default)]
    pub token: Option<SecretRef>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: d_admin_addr(), token: None }
    }
}

fn d_admin_addr() -> String {
    "127.0.0.1:9180".into()
}

/// Where a secret comes from: never inline in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// The value of an environment variable.
    Env(String),
    /// The contents of a file (trailing newline removed).
    File(PathBuf),
}

/// One municipality (ente) served by this gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The codice IPA of the ente, lowercase (e.g. `c_e783`).
    pub id: String,
    /// Display name (e.g. `Comune di Macerata`).
    pub name: String,
    /// Hostnames the tenant answers on (without port). Empty: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// One path segment the tenant answers under (e.g. `/c_e783`); it is removed before route
    /// matching. Absent: the whole path space of its hosts. A tenant with neither hosts nor
    /// prefix is the catch-all tenant (at most one).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Upstream pools (back-office servers), by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes, matched on path and method. `GET /status` is added (status adapter) unless a
    /// route already answers it.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Rate limits shared by all routes of the tenant (each route may add its own; the
    /// tightest decides).
    #[serde(default)]
    pub rate_limits: Vec<RateLimitConfig>,
    /// Requests of this tenant in flight at most; more are answered 503 at once, so one ente
    /// cannot take the whole gateway. Default: unlimited.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Which caller addresses may reach the ente at all (checked before anything else).
    /// Default: any.
    #[serde(default)]
    pub source: Option<SourceRules>,
    /// Cross-origin calls from web apps (CORS) on every route of the ente, unless a route has
    /// its own `cors`. Default: none (browsers refuse cross-origin reads).
    #[serde(default)]
    pub cors: Option<Box<CorsConfig>>,
    /// Daily or monthly quotas shared by all routes of the tenant.
    #[serde(default)]
    pub quotas: Vec<QuotaConfig>,
    /// Days the ente's audit trail is kept (overrides `server.audit.retention_days`).
    #[serde(default)]
    pub audit_retention_days: Option<u32>,
    /// Token issuers the tenant trusts, by name (used by `access: {jwt: ...}`).
    #[serde(default)]
    pub issuers: BTreeMap<String, IssuerConfig>,
    /// API keys the tenant issued (used by `access: {api_key: ...}`).
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Read grants and subscriptions on the event bus.
    #[serde(default)]
    pub events: TenantEventsConfig,
    /// The ente's own signing keys (its PDND-registered key; a second one during a rotation).
    /// The first signs the ente's identity tokens and ModI answers; all are published at the
    /// ente's `/.well-known/jwks.json`. Empty: the server-wide `server.identity_token` key.
    #[serde(default)]
    pub keys: Vec<TenantKeyConfig>,
    /// The ente's PDND client, for calls to national e-services (the `anpr` adapter).
    /// Default: none.
    #[serde(default)]
    pub pdnd: Option<PdndClientConfig>,
    /// The ente's SIUSS identity, for `kind: siuss` routes. Default: none.
    #[serde(default)]
    pub siuss: Option<SiussConfig>,
    /// The ente as a SPID/CIE OpenID Connect relying party in the OIDC Federation: its Entity
    /// Configuration is published at `<entity_id>/.well-known/openid-federation`. Default:
    /// none.
    #[serde(default)]
    pub oidc: Option<Box<OidcRpConfig>>,
}

/// One signing key of an ente.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantKeyConfig {
    /// The `kid` published with the key (as registered on PDND).
    pub kid: String,
    /// PKCS#8 PEM private key, RSA of 2048 bits or more (RS256) or P-256 (ES256), from a file
    /// or an environment variable.
    pub private_key: SecretRef,
    /// PEM certificate chain, leaf first, whose leaf holds this key: sent as `x5c` where a
    /// ModI pattern needs the certificate.
    #[serde(default)]
    pub certificate_chain: Option<SecretRef>,
}

/// A route: which requests (path template, methods) go where, under which access rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique within the tenant; used in logs and metrics.
    pub name: String,
    /// Path template below the tenant prefix: literal segments, `{param}` for one segment,
    /// `{*rest}` at the end for everything below.
    pub path: String,
    /// Methods the route admits (e.g. `[GET, POST]`). Deny by default: no method, no route.
    pub methods: Vec<String>,
    /// Who may call the route. Deny by default: it must be stated.
    pub access: Access,
    /// Where requests go.
    pub to: RouteTarget,
    /// Largest request body. Default `server.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Path prefix removed before forwarding (e.g. `/anagrafe` turns `/anagrafe/v1/x` into
    /// `/v1/x`). Only for upstream targets.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Which caller addresses may call the route, on top of the ente's `source` (e.g. the
    /// pagoPA node's ranges on the station's route). Default: any.
    #[serde(default)]
    pub source: Option<SourceRules>,
    /// Cross-origin calls from web apps on this route, replacing the ente's `cors`.
    #[serde(default)]
    pub cors: Option<Box<CorsConfig>>,
    /// Headers set or removed on the way to the upstream.
    #[serde(default)]
    pub request_headers: Option<HeaderRewrite>,
    /// Headers set or removed on the back-office's answers before they reach the caller (e.g.
    /// remove `Server`, `X-Powered-By`; set `Strict-Transport-Security`). Only for upstream
    /// targets. Default: none.
    #[serde(default)]
    pub response_headers: Option<ResponseHeaderRewrite>,
    /// Rate limits of this route, on top of the tenant's.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitConfig>,
    /// Quotas of this route, on top of the tenant's.
    #[serde(default)]
    pub quotas: Vec<QuotaConfig>,
    /// Keep a record of every call in the audit trail (`server.audit`). Default: on for ModI
    /// routes (their tracking evidence included) when the trail is configured, off otherwise.
    #[serde(default)]
    pub audit: Option<bool>,
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone; stated explicitly so that forgetting it is an error, not an open door.
    Public,
    /// A bearer JWT from one of the tenant's issuers, with the listed scopes.
    Jwt(Box<JwtAccess>),
    /// One of the tenant's `api_keys`.
    ApiKey(ApiKeyAccess),
    /// A citizen logged in with SPID/CIE through the ente's login (`tenants[].oidc`): a browser
    /// without a session is sent to log in, any other caller gets 401.
    Session(SessionAccess),
}

/// A route's target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RouteTarget {
    /// An upstream pool of the tenant, by name.
    Upstream(String),
    /// An in-process adapter.
    // Boxed: most routes are upstream routes, and an inline adapter configuration made every
    // route's configuration three times larger.
    Adapter(Box<AdapterConfig>),
}

/// Header changes towards the upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderRewrite {
    /// Headers to set (replacing the caller's), value inline or from a secret.
    #[serde(default)]
    pub set: BTreeMap<String, HeaderValueSource>,
    /// Headers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Header changes on the answers going to the caller (values inline: answers carry no
/// secrets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeaderRewrite {
    /// Headers to set (replacing the back-office's).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header value: inline text, or a secret from the environment or a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HeaderValueSource {
    Inline(String),
    Secret(SecretRef),
}
