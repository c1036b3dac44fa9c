//! Traffic-control configuration: rate limits, quotas (and their Redis), circuit breakers.

use crate::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::SecretRef;

/// Where the shared quota counters live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` without credentials (they go in `password`).
    pub url: String,
    /// Redis password (AUTH), from the environment or a file.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Prefix of every key varco writes. Default `varco`.
    #[serde(default = "d_prefix")]
    pub key_prefix: String,
    /// Longest wait for one Redis call before falling back to per-instance counting.
    /// Default 200ms.
    #[serde(default = "d_redis_timeout")]
    pub timeout: Dur,
}

fn d_prefix() -> String {
    "varco".into()
}
fn d_redis_timeout() -> Dur {
    Dur::millis(200)
}

/// A quota: at most `requests` per calendar `window` (UTC) for each key, counted across every
/// instance through Redis. Each instance leases `lease` requests at a time, so the hot path
/// calls Redis once per lease, not per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// What one counter counts (as for rate limits).
    pub per: LimitKey,
    /// The header whose value is the key, with `per: header`.
    #[serde(default)]
    pub header: Option<String>,
    /// Requests allowed per window.
    pub requests: u64,
    /// `day` or `month` (UTC calendar).
    pub window: QuotaWindow,
    /// Requests leased from Redis at a time. Default 100.
    #[serde(default = "d_lease")]
    pub lease: u32,
    /// While Redis is unreachable, what each instance allows on its own per window.
    /// Default: `requests`.
    #[serde(default)]
    pub fallback_requests: Option<u64>,
}

fn d_lease() -> u32 {
    100
}

/// A quota window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaWindow {
    Day,
    Month,
}

/// One rate limit: at most `requests` per `period` for each key, with bursts up to `burst`
/// (GCRA: tokens come back one every `period / requests`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// What one bucket counts: `client_ip`, `header` (the value of `header`, e.g. an API key),
    /// `subject` or `client_id` (of the verified token), `route` or `tenant` (everybody).
    pub per: LimitKey,
    /// The header whose value is the key, with `per: header`.
    #[serde(default)]
    pub header: Option<String>,
    /// Requests allowed per period.
    pub requests: u32,
    /// The window, e.g. `1s`, `1m`, `1h`.
    pub period: Dur,
    /// Largest burst. Default: `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// The key of a rate limit bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    ClientIp,
    Header,
    Route,
    Tenant,
    /// The verified token's `sub` (a citizen, an app); the client address where the route
    /// has no token.
    Subject,
    /// The verified token's `client_id`/`azp` (an app, a PDND consumer); the client address
    /// where there is none.
    ClientId,
}

/// Circuit breaker of an upstream pool: closed (normal) → open (every request answered 503
/// without calling the pool) → half-open (a few probes decide) → closed or open again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Open after this many failures in a row (connection errors, timeouts, 5xx). Default 5.
    #[serde(default = "d_cb_consecutive")]
    pub consecutive_failures: u32,
    /// Also open when at least this share of the requests in a window failed (0 disables).
    /// Default 0.5.
    #[serde(default = "d_cb_ratio")]
    pub failure_ratio: f64,
    /// Requests a window needs before the ratio counts. Default 20.
    #[serde(default = "d_cb_min")]
    pub min_requests: u32,
    /// Length of the ratio window. Default 10s.
    #[serde(default = "d_cb_window")]
    pub window: Dur,
    /// How long the circuit stays open before probing. Default 30s.
    #[serde(default = "d_cb_open")]
    pub open_for: Dur,
    /// Requests let through while half-open; all must succeed to close. Default 1.
    #[serde(default = "crate::model::d_one")]
    pub half_open_probes: u32,
}

fn d_cb_consecutive() -> u32 {
    5
}
fn d_cb_ratio() -> f64 {
    0.5
}
fn d_cb_min() -> u32 {
    20
}
fn d_cb_window() -> Dur {
    Dur::secs(10)
}
fn d_cb_open() -> Dur {
    Dur::secs(30)
}
