//! Upstream pools: servers and their weights, balancing, TLS (mutual too), the HTTP version,
//! timeouts, active and passive health.

use crate::{CircuitBreakerConfig, Dur};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A pool of back-office servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Servers as `host:port` (resolved when the config is built), or `{address, weight}` to
    /// move a share of the traffic (a canary of a new back-office release).
    pub servers: Vec<ServerSpec>,
    /// How a server is chosen. Default `round_robin`.
    #[serde(default)]
    pub balance: Balance,
    /// Talk TLS to the servers.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// The HTTP version towards the servers: `http1` (default), `http2` (plaintext: HTTP/2
    /// with prior knowledge, h2c; with `tls`: h2 by ALPN, only h2), or `auto` (with `tls`: h2
    /// when the server offers it by ALPN, else HTTP/1.1; plaintext: HTTP/1.1). gRPC
    /// back-offices need `http2`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Extra attempts on another server after a failure; connection failures are retried for
    /// any method, failures after the request was sent only for idempotent methods. Default 1.
    #[serde(default = "d_retries")]
    pub retries: u32,
    /// Active HTTP health checks. Default: none (servers count as healthy unless ejected).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive ejection of servers that fail live traffic.
    #[serde(default)]
    pub passive: PassiveHealth,
    /// Stop calling the whole pool for a while when it keeps failing. Default: none.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Requests in flight to this pool at most; more are answered 503 at once. Default:
    /// unlimited.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// HTTP versions towards an upstream pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 only (h2c with prior knowledge in plaintext).
    Http2,
    /// h2 or HTTP/1.1 as the TLS server chooses by ALPN.
    Auto,
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ServerSpec {
    /// `host:port`, weight 1.
    Address(String),
    /// A server with its share of the traffic.
    Weighted(WeightedServer),
}

/// A server with a weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedServer {
    /// `host:port`.
    pub address: String,
    /// Its share of the pool's traffic, relative to the others' (`1` to `1000`); `0` takes it
    /// out of rotation without removing it. Default 1.
    #[serde(default = "d_weight")]
    pub weight: u32,
}

fn d_weight() -> u32 {
    1
}

impl ServerSpec {
    pub fn address(&self) -> &str {
        match self {
            Self::Address(a) => a,
            Self::Weighted(w) => &w.address,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            Self::Address(_) => 1,
            Self::Weighted(w) => w.weight,
        }
    }
}

/// Load-balancing policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Balance {
    /// Each healthy server in turn.
    #[default]
    RoundRobin,
    /// Requests with the same header value go to the same server while it is healthy
    /// (rendezvous hashing: when a server leaves, only its keys move).
    ConsistentHash {
        /// The header whose value is hashed; requests without it are spread round robin.
        header: String,
    },
}

/// TLS towards an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Server name to send and verify. Default: the host part of each server.
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM bundle of CAs to trust instead of the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// varco's client certificate for back-offices that require one (mutual TLS). Default:
    /// none.
    #[serde(default)]
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate and its key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, RSA or EC), readable by varco only.
    pub key: PathBuf,
}

/// Upstream timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Establishing a connection (TCP and TLS). Default 2s.
    #[serde(default = "d_connect")]
    pub connect: Dur,
    /// Waiting for each read from the upstream. Default 30s.
    #[serde(default = "d_read")]
    pub read: Dur,
    /// Waiting for each write to the upstream. Default 30s.
    #[serde(default = "d_read")]
    pub write: Dur,
    /// Budget from the start of the request until the upstream's response header, across
    /// retries. Default 60s.
    #[serde(default = "d_total")]
    pub total: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: d_connect(), read: d_read(), write: d_read(), total: d_total() }
    }
}

fn d_connect() -> Dur {
    Dur::secs(2)
}
fn d_read() -> Dur {
    Dur::secs(30)
}
fn d_total() -> Dur {
    Dur::secs(60)
}

/// Active HTTP health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path to `GET`. Default `/`.
    #[serde(default = "d_hc_path")]
    pub path: String,
    /// Time between checks. Default 5s.
    #[serde(default = "d_hc_interval")]
    pub interval: Dur,
    /// Time a check may take. Default 2s.
    #[serde(default = "d_connect")]
    pub timeout: Dur,
    /// Consecutive successes that make a server healthy again. Default 1.
    #[serde(default = "d_one")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a server unhealthy. Default 2.
    #[serde(default = "d_two")]
    pub unhealthy_threshold: u32,
}

fn d_retries() -> u32 {
    1
}

fn d_hc_path() -> String {
    "/".into()
}
fn d_hc_interval() -> Dur {
    Dur::secs(5)
}
pub(crate) fn d_one() -> u32 {
    1
}
fn d_two() -> u32 {
    2
}

/// Passive ejection: a server that fails live requests is taken out for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    /// Consecutive failures (no connection, no answer, or an answer with one of `statuses`)
    /// before the server is ejected; 0 disables. Default 3.
    #[serde(default = "d_three")]
    pub max_failures: u32,
    /// How long an ejected server is skipped. Default 10s.
    #[serde(default = "d_eject")]
    pub eject_for: Dur,
    /// Answer statuses that count as a failure of the server that gave them, for passive
    /// health and for the pool's circuit breaker alike (so a broken server is ejected before
    /// its errors open the breaker on its healthy peers). Default `[502, 503, 504]`; add 500
    /// for back-offices whose 500 means "broken" rather than "this request failed".
    #[serde(default = "d_fail_statuses")]
    pub statuses: Vec<u16>,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self { max_failures: d_three(), eject_for: d_eject(), statuses: d_fail_statuses() }
    }
}

fn d_fail_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}

fn d_three() -> u32 {
    3
}
fn d_eject() -> Dur {
    Dur::secs(10)
}
