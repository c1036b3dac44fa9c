//! What a request meets at the edge before anything else: caller-address rules (and how
//! `trusted_proxies` and `source` networks are written) and CORS for web apps.

use crate::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CORS (the Fetch standard): which web origins may call, with what. Preflights (`OPTIONS` with
/// `Access-Control-Request-Method`) are answered by varco without authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.comune.macerata.it`, scheme and host, a port if not the
    /// default), or `["*"]` for any (not with `allow_credentials`).
    pub allow_origins: Vec<String>,
    /// Methods a page may use. Default: the route's methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers a page may send beyond the CORS-safelisted ones (e.g. `Authorization`,
    /// `Content-Type`, `X-Api-Key`). Default none.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Answer headers a page may read. Default `X-Request-Id`, `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining`, `X-RateLimit-Reset`, `Retry-After`.
    #[serde(default = "d_expose")]
    pub expose_headers: Vec<String>,
    /// Whether pages may send cookies or HTTP authentication. Default false.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer. Default 10m (browsers cap it: Chromium
    /// at 2 hours).
    #[serde(default = "d_cors_max_age")]
    pub max_age: Dur,
}

fn d_expose() -> Vec<String> {
    ["X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"]
        .map(String::from)
        .to_vec()
}

fn d_cors_max_age() -> Dur {
    Dur::secs(600)
}

/// Caller addresses admitted: `deny` wins; a non-empty `allow` admits only its networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRules {
    /// Networks (`10.0.0.0/8`, `2001:db8::/32`) or single addresses admitted. Empty: all.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Networks or addresses refused, even inside `allow`.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A network or a single address (`/32`, `/128`) as written in `source` or
/// `trusted_proxies`.
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or a network like 10.0.0.0/8"))
}
