//! Rate limits (GCRA, `governor`): per client address, header value, route or tenant. Several
//! limits may apply to one request; the tightest decides, and its state becomes the
//! `X-RateLimit-*` headers (ModI). Limiters live in a registry that outlives configurations,
//! so a reload keeps the buckets of every limit whose definition did not change.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use pingora_http::{RequestHeader, ResponseHeader};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use varco_config::{LimitKey, RateLimitConfig};
use varco_core::{Filter, FilterState, Problem, ProblemKind, RateLimitStatus};

type Keyed = RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock, StateInformationMiddleware>;
type Direct =
    RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock, StateInformationMiddleware>;

/// An empty bucket map. dashmap's default is four shards per CPU, each padded to a cache line:
/// 1 KiB per limiter here, 32 KiB on a 64-core host, for every route of every ente. A few
/// shards per core group are enough for a map touched once per request.
fn keyed_store() -> DefaultKeyedStateStore<u64> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let shards = cores.next_power_of_two().clamp(4, 16);
    DefaultKeyedStateStore::with_hasher_and_shard_amount(std::hash::RandomState::new(), shards)
}

/// Route- and tenant-wide limits have one bucket: no map to look it up in. A keyed limit's map
/// is made at its first request: most routes of a large consortium are idle at any time, and an
/// empty map still costs its shards.
enum Buckets {
    Keyed(std::sync::OnceLock<Keyed>, Quota),
    Direct(Direct),
}

/// One configured limit and its buckets.
pub struct Limiter {
    pub cfg: RateLimitConfig,
    /// Where it was configured, for the problem detail (`tenant` or `route <name>`).
    pub scope: String,
    header: Option<http::HeaderName>,
    interval: Duration,
    burst: u32,
    buckets: Buckets,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("cfg", &self.cfg).field("scope", &self.scope).finish()
    }
}

impl Limiter {
    /// `None` when the numbers cannot make a quota (validation rejects those).
    pub fn new(cfg: &RateLimitConfig, scope: &str) -> Option<Self> {
        let requests = NonZeroU32::new(cfg.requests)?;
        let burst = NonZeroU32::new(cfg.burst.unwrap_or(cfg.requests))?;
        let interval = cfg.period.0 / requests.get();
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        Some(Self {
            cfg: cfg.clone(),
            scope: scope.to_owned(),
            header: cfg.header.as_deref().and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            interval,
            burst: burst.get(),
            buckets: match cfg.per {
                LimitKey::Route | LimitKey::Tenant => {
                    Buckets::Direct(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
                }
                LimitKey::ClientIp | LimitKey::Header | LimitKey::Subject | LimitKey::ClientId => {
                    Buckets::Keyed(std::sync::OnceLock::new(), quota)
                }
            },
        })
    }

    /// Buckets currently held.
    pub fn keys(&self) -> usize {
        match &self.buckets {
            Buckets::Keyed(k, _) => k.get().map_or(0, |k| k.len()),
            Buckets::Direct(_) => 1,
        }
    }

    /// Drops buckets that are full again (idle callers): bounds memory under key floods.
    pub fn evict_idle(&self) {
        if let Some(k) = match &self.buckets {
            Buckets::Keyed(k, _) => k.get(),
            Buckets::Direct(_) => None,
        } {
            k.retain_recent();
            k.shrink_to_fit();
        }
    }

    fn key(&self, headers: &http::HeaderMap, state: &FilterState) -> Option<u64> {
        match self.cfg.per {
            LimitKey::Route | LimitKey::Tenant => Some(0),
            LimitKey::ClientIp => state.client_ip.map(ip_key),
            // Identities and addresses are hashed in different spaces (the leading byte).
            LimitKey::Subject => match &state.subject {
                Some(s) => Some(varco_core::hash::hash_bytes(&[b"s\0", s.as_bytes()].concat())),
                None => state.client_ip.map(ip_key),
            },
            LimitKey::ClientId => match &state.client_id {
                Some(c) => Some(varco_core::hash::hash_bytes(&[b"c\0", c.as_bytes()].concat())),
                None => state.client_ip.map(ip_key),
            },
            // A request without the header shares one bucket with all others without it.
            LimitKey::Header => Some(
                self.header
                    .as_ref()
                    .and_then(|h| headers.get(h))
                    .map_or(1, |v| varco_core::hash::hash_bytes(v.as_bytes())),
            ),
        }
    }

    fn secs_ceil(d: Duration) -> u64 {
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    /// Takes one token for this request's key.
    fn check(
        &self,
        headers: &http::HeaderMap,
        state: &FilterState,
    ) -> Result<Option<RateLimitStatus>, (RateLimitStatus, u64)> {
        let outcome = match &self.buckets {
            Buckets::Direct(d) => d.check(),
            Buckets::Keyed(k, quota) => {
                let Some(key) = self.key(headers, state) else { return Ok(None) };
                k.get_or_init(|| {
                    RateLimiter::<u64, _, DefaultClock, governor::middleware::NoOpMiddleware<_>>::new(
                        *quota,
                        keyed_store(),
                        DefaultClock::default(),
                    )
                    .with_middleware::<StateInformationMiddleware>()
                })
                .check_key(&key)
            }
        };
        match outcome {
            Ok(snap) => {
                let remaining = snap.remaining_burst_capacity();
                let used = self.burst.saturating_sub(remaining);
                Ok(Some(RateLimitStatus {
                    limit: self.cfg.requests,
                    remaining,
                    reset_secs: Self::secs_ceil(self.interval * used),
                }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let full = wait + self.interval * self.burst.saturating_sub(1);
                let status =
                    RateLimitStatus { limit: self.cfg.requests, remaining: 0, reset_secs: Self::secs_ceil(full) };
                Err((status, Self::secs_ceil(wait).max(1)))
            }
        }
    }
}

fn ip_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => varco_core::hash::hash_bytes(&v6.octets()),
    }
}

/// The filter: every limit of the tenant and the route.
#[derive(Debug)]
pub struct RateLimit {
    /// Narrowest first (see [`RateLimit::new`]).
    limiters: Vec<Arc<Limiter>>,
}

impl RateLimit {
    /// The limits in the order they are taken: per caller (address, header, subject, client)
    /// first, then the route's, then the ente's. A request stops at the first limit that
    /// refuses it, so a caller refused by its own limit takes nothing from the limits it
    /// shares with everyone else (a noisy address cannot drain the ente-wide limit). A request
    /// that its own limits admit and a shared one refuses has taken from its own: only its own.
    pub fn new(mut limiters: Vec<Arc<Limiter>>) -> Self {
        limiters.sort_by_key(|l| match l.cfg.per {
            LimitKey::ClientIp | LimitKey::Header | LimitKey::Subject | LimitKey::ClientId => 0,
            LimitKey::Route => 1,
            LimitKey::Tenant => 2,
        });
        Self { limiters }
    }
}

impl Filter for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn on_request(&self, req: &mut RequestHeader, state: &mut FilterState) -> Result<(), Problem> {
        let mut tightest: Option<RateLimitStatus> = None;
        let mut denied: Option<(RateLimitStatus, u64, &Limiter)> = None;
        for l in &self.limiters {
            match l.check(&req.headers, state) {
                Ok(Some(s)) => {
                    if tightest.is_none_or(|t| s.remaining < t.remaining) {
                        tightest = Some(s);
                    }
                }
                Ok(None) => {}
                Err((s, retry)) => {
                    // Refused: the broader limits after this one are left untouched.
                    denied = Some((s, retry, l));
                    break;
                }
            }
        }
        if let Some((status, retry, l)) = denied {
            state.rate_limit = Some(status);
            let per = match l.cfg.per {
                LimitKey::ClientIp => "client address".to_owned(),
                LimitKey::Header => format!("`{}` value", l.cfg.header.as_deref().unwrap_or("")),
                LimitKey::Route => "route".to_owned(),
                LimitKey::Tenant => "ente".to_owned(),
                LimitKey::Subject => "caller".to_owned(),
                LimitKey::ClientId => "client".to_owned(),
            };
            let mut p = Problem::new(
                ProblemKind::RateLimited,
                format!(
                    "over the {} limit of {} requests per {} per {per}; retry in {retry} s",
                    l.scope, l.cfg.requests, l.cfg.period
                ),
            )
            .retry_after(retry.min(u64::from(u32::MAX)) as u32);
            p.headers.extend(status.headers());
            return Err(p);
        }
        state.rate_limit = tightest;
        Ok(())
    }

    fn on_response(&self, resp: &mut ResponseHeader, state: &FilterState) {
        if let Some(s) = state.rate_limit {
            for (k, v) in s.header_values() {
                let _ = resp.insert_header(k, v);
            }
        }
    }
}

/// Limiters by (tenant, scope, definition), shared across configuration generations.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<(String, String, RateLimitConfig), Arc<Limiter>>>,
}

impl Registry {
    /// The limiter for this definition: the existing one (buckets kept) or a new one.
    pub fn get(&self, tenant: &str, scope: &str, cfg: &RateLimitConfig) -> Option<Arc<Limiter>> {
        let key = (tenant.to_owned(), scope.to_owned(), cfg.clone());
        let mut map = self.map.lock();
        if let Some(l) = map.get(&key) {
            return Some(l.clone());
        }
        let l = Arc::new(Limiter::new(cfg, scope)?);
        map.insert(key, l.clone());
        Some(l)
    }

    /// Forgets limiters no runtime uses any more (after a reload swapped).
    pub fn retain_used(&self) {
        self.map.lock().retain(|_, l| Arc::strong_count(l) > 1);
    }

    /// Evicts idle buckets; returns (limiters, buckets) for metrics.
    pub fn evict_idle(&self) -> (usize, usize) {
        let limiters: Vec<_> = self.map.lock().values().cloned().collect();
        let mut keys = 0;
        for l in &limiters {
            l.evict_idle();
            keys += l.keys();
        }
        (limiters.len(), keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> RateLimitConfig {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in headers {
            let _ = r.insert_header(k.to_string(), v.to_string());
        }
        r
    }

    fn state(ip: &str) -> FilterState {
        FilterState { client_ip: ip.parse().ok(), ..Default::default() }
    }

    #[test]
    fn per_ip_limit_counts_down_then_answers_429_with_headers() {
        let f = RateLimit::new(vec![Arc::new(
            Limiter::new(&cfg("{per: client_ip, requests: 3, period: 1m}"), "route r").unwrap(),
        )]);
        let mut st = state("10.0.0.1");
        for left in [2, 1, 0] {
            f.on_request(&mut req(&[]), &mut st).unwrap();
            let s = st.rate_limit.unwrap();
            assert_eq!((s.limit, s.remaining), (3, left));
            assert!(s.reset_secs > 0 && s.reset_secs <= 60);
        }
        let p = f.on_request(&mut req(&[]), &mut st).unwrap_err();
        assert_eq!(p.kind, ProblemKind::RateLimited);
        assert!(p.retry_after.is_some_and(|r| (1..=20).contains(&r)), "{p:?}");
        assert!(p.headers.iter().any(|(k, v)| k == "x-ratelimit-remaining" && v == "0"));
        assert!(p.detail.contains("3 requests per 60s per client address"), "{}", p.detail);
        // Another address has its own bucket.
        f.on_request(&mut req(&[]), &mut state("10.0.0.2")).unwrap();
    }

    #[test]
    fn the_tightest_limit_decides() {
        let loose = Arc::new(Limiter::new(&cfg("{per: tenant, requests: 100, period: 1s}"), "ente").unwrap());
        let tight = Arc::new(
            Limiter::new(&cfg("{per: header, header: X-Api-Key, requests: 2, period: 1h}"), "route r").unwrap(),
        );
        let f = RateLimit::new(vec![loose, tight]);
        let mut st = state("10.0.0.1");
        f.on_request(&mut req(&[("x-api-key", "a")]), &mut st).unwrap();
        assert_eq!(st.rate_limit.map(|s| (s.limit, s.remaining)), Some((2, 1)));
        f.on_request(&mut req(&[("x-api-key", "a")]), &mut st).unwrap();
        assert!(f.on_request(&mut req(&[("x-api-key", "a")]), &mut st).is_err());
        f.on_request(&mut req(&[("x-api-key", "b")]), &mut st).unwrap();
    }

    /// The example consortium's shape: one noisy address over its own limit must not lock the
    /// other citizens of the ente out.
    #[test]
    fn a_refused_request_takes_nothing_from_the_shared_limits() {
        let ente = Arc::new(Limiter::new(&cfg("{per: tenant, requests: 5, period: 1h}"), "ente").unwrap());
        let per_ip = Arc::new(Limiter::new(&cfg("{per: client_ip, requests: 2, period: 1h}"), "ente").unwrap());
        // Configured tenant-first: the order of the file does not matter.
        let f = RateLimit::new(vec![ente, per_ip]);
        let noisy = state("10.0.0.1");
        let refused = (0..50).filter(|_| f.on_request(&mut req(&[]), &mut noisy.clone()).is_err()).count();
        assert_eq!(refused, 48, "the noisy address gets its own 2");
        for (i, ip) in ["10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().enumerate() {
            let mut st = state(ip);
            assert!(f.on_request(&mut req(&[]), &mut st).is_ok(), "citizen {i} was locked out by the noisy one");
        }
        // The ente-wide limit still holds: 2 + 3 taken, the next citizen is refused by it.
        let p = f.on_request(&mut req(&[]), &mut state("10.0.0.5")).unwrap_err();
        assert!(p.detail.contains("per ente"), "{}", p.detail);
    }

    #[test]
    fn registry_keeps_buckets_of_unchanged_definitions() {
        let reg = Registry::default();
        let c = cfg("{per: route, requests: 1, period: 1h}");
        let a = reg.get("t", "route r", &c).unwrap();
        let b = reg.get("t", "route r", &c).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = reg.get("t", "route r", &cfg("{per: route, requests: 2, period: 1h}")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        drop((b, other));
        reg.retain_used();
        assert_eq!(reg.map.lock().len(), 1);
    }
}
