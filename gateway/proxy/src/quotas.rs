//! Daily and monthly quotas, shared by every instance of a consortium through Redis.
//!
//! Each instance leases `lease` requests at a time from a Redis counter (`INCRBY`, expiring at
//! the end of the window) and spends them locally, so the request path talks to Redis once per
//! lease. Redis caps what it grants at the quota, so the instances together never exceed it;
//! leases left unused on one instance may make another deny up to `(instances - 1) * lease`
//! requests early (the documented tolerance). When Redis does not answer in time, each
//! instance counts on its own up to `fallback_requests` and `varco_quota_redis_up` says 0.

use dashmap::DashMap;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use varco_config::{LimitKey, QuotaConfig, QuotaWindow, RedisConfig};
use varco_core::{Problem, ProblemKind};

/// The shared Redis connection (lazily connected, reconnecting on its own): quota counters
/// and single-use `jti` marks.
pub struct RedisQuotaStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    /// After a failure, Redis is skipped until this unix ms (no connect storm per request).
    skip_until_ms: AtomicU64,
    /// When an error reply may next be logged (one a minute).
    refused_logged_ms: AtomicU64,
    pub up: AtomicBool,
}

impl std::fmt::Debug for RedisQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotaStore").field("prefix", &self.prefix).finish()
    }
}

fn now_unix() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl RedisQuotaStore {
    pub fn new(cfg: &RedisConfig, password: Option<String>) -> Result<Self, String> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str()).map_err(|e| e.to_string())?;
        if let Some(p) = password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        Ok(Self {
            client: redis::Client::open(info).map_err(|e| e.to_string())?,
            conn: OnceCell::new(),
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout.0,
            skip_until_ms: AtomicU64::new(0),
            refused_logged_ms: AtomicU64::new(0),
            up: AtomicBool::new(true),
        })
    }

    /// Adds `n` to the counter of `key` (expiring at `expire_at` unix s); the new total.
    async fn incr(&self, key: &str, n: u64, expire_at: u64) -> Option<u64> {
        let full = format!("{}:quota:{key}", self.prefix);
        self.call(|mut conn| async move {
            let (total,): (u64,) = redis::pipe()
                .atomic()
                .incr(&full, n)
                .expire_at(&full, expire_at as i64)
                .ignore()
                .query_async(&mut conn)
                .await?;
            Ok(total)
        })
        .await
    }

    /// Marks `key` as used until `expire_at` (unix s): true the first time (`SET NX EX`),
    /// false when it was already marked; `None` when Redis does not answer.
    pub async fn set_once(&self, key: &str, expire_at: u64) -> Option<bool> {
        let full = format!("{}:once:{key}", self.prefix);
        // `EX` (a TTL) rather than `EXAT`: any Redis since 2.6.12 understands it.
        let ttl = expire_at.saturating_sub(now_unix().as_secs()).max(1);
        self.call(|mut conn| async move {
            let set: Option<String> =
                redis::cmd("SET").arg(&full).arg(1).arg("NX").arg("EX").arg(ttl).query_async(&mut conn).await?;
            Ok(set.is_some())
        })
        .await
    }

    /// One Redis call within `timeout`. After a failure to reach Redis it is skipped for a
    /// second; an error reply (Redis up but refusing the command) is logged and skips nothing.
    async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let now_ms = now_unix().as_millis() as u64;
        if now_ms < self.skip_until_ms.load(Relaxed) {
            return None;
        }
        let call = async {
            let conn = self.conn.get_or_try_init(|| ConnectionManager::new(self.client.clone())).await?;
            f(conn.clone()).await
        };
        let res = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) if matches!(e.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::UnexpectedReturnType) => {
                if now_ms >= self.refused_logged_ms.swap(now_ms + 60_000, Relaxed) {
                    tracing::error!(error = %e, "Redis refused a command; this instance counts on its own for it");
                }
                return None;
            }
            _ => None,
        };
        if res.is_none() {
            self.skip_until_ms.store(now_ms + 1000, Relaxed);
            if self.up.swap(false, Relaxed) {
                tracing::warn!("Redis unreachable: quotas and the jti guard fall back to per-instance state");
            }
        } else if !self.up.swap(true, Relaxed) {
            tracing::info!("Redis reachable again: quotas and the jti guard are cluster-wide again");
        }
        res
    }
}

/// The current window's id, its end (unix s) and the seconds left in it.
fn window(w: QuotaWindow, now: Duration) -> (u64, u64, u64) {
    let secs = now.as_secs();
    match w {
        QuotaWindow::Day => {
            let day = secs / 86_400;
            let end = (day + 1) * 86_400;
            (day, end, end - secs)
        }
        QuotaWindow::Month => {
            let days = (secs / 86_400) as i64;
            let (y, m, _) = crate::access_log::civil_from_days(days);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let end = crate::access_log::days_from_civil(ny, nm, 1) as u64 * 86_400;
            ((y * 12 + i64::from(m)) as u64, end, end.saturating_sub(secs))
        }
    }
}

/// Local state of one key: tokens leased and not spent yet, in one window.
#[derive(Debug, Default, Clone, Copy)]
struct Lease {
    window: u64,
    remaining: u64,
    /// Redis (or the fallback) granted less than asked: the quota is spent for this window.
    exhausted: bool,
    /// Requests counted locally while Redis was unreachable.
    fallback_used: u64,
}

/// One configured quota.
pub struct Quota {
    pub cfg: QuotaConfig,
    /// `ente` or `route <name>`, for the problem detail and the Redis key.
    pub scope: String,
    tenant: String,
    id: u64,
    header: Option<http::HeaderName>,
    leases: DashMap<u64, Lease>,
    store: Option<Arc<RedisQuotaStore>>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota").field("cfg", &self.cfg).field("scope", &self.scope).finish()
    }
}

impl Quota {
    pub fn new(tenant: &str, scope: &str, cfg: &QuotaConfig, store: Option<Arc<RedisQuotaStore>>) -> Self {
        // The definition is part of the Redis key: a changed quota starts a new counter.
        let id = crate::upstream::hash_bytes(format!("{tenant}\0{scope}\0{cfg:?}").as_bytes());
        Self {
            cfg: cfg.clone(),
            scope: scope.to_owned(),
            tenant: tenant.to_owned(),
            id,
            header: cfg.header.as_deref().and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            leases: DashMap::new(),
            store,
        }
    }

    fn key(&self, headers: &http::HeaderMap, state: &varco_core::FilterState) -> u64 {
        let ip = || state.client_ip.map_or(1, |ip| crate::upstream::hash_bytes(ip.to_string().as_bytes()));
        match self.cfg.per {
            LimitKey::Route | LimitKey::Tenant => 0,
            LimitKey::ClientIp => ip(),
            LimitKey::Subject => state
                .subject
                .as_ref()
                .map_or_else(ip, |s| crate::upstream::hash_bytes(&[b"s\0", s.as_bytes()].concat())),
            LimitKey::ClientId => state
                .client_id
                .as_ref()
                .map_or_else(ip, |c| crate::upstream::hash_bytes(&[b"c\0", c.as_bytes()].concat())),
            LimitKey::Header => self
                .header
                .as_ref()
                .and_then(|h| headers.get(h))
                .map_or(1, |v| crate::upstream::hash_bytes(v.as_bytes())),
        }
    }

    fn spend(&self, key: u64, win: u64) -> Option<bool> {
        let mut e = self.leases.entry(key).or_default();
        if e.window != win {
            *e = Lease { window: win, ..Lease::default() };
        }
        if e.remaining > 0 {
            e.remaining -= 1;
            return Some(true);
        }
        e.exhausted.then_some(false)
    }

    /// Takes one request from the quota of this caller.
    pub async fn take(&self, headers: &http::HeaderMap, state: &varco_core::FilterState) -> Result<(), Problem> {
        let now = now_unix();
        let (win, end, left) = window(self.cfg.window, now);
        let key = self.key(headers, state);
        match self.spend(key, win) {
            Some(true) => return Ok(()),
            Some(false) => return Err(self.problem(left)),
            None => {}
        }
        let lease = u64::from(self.cfg.lease);
        let granted = match &self.store {
            Some(store) => {
                let rkey = format!("{}:{:016x}:{key:016x}:{win}", self.tenant, self.id);
                store.incr(&rkey, lease, end + 3600).await.map(|total| {
                    let before = total.saturating_sub(lease);
                    self.cfg.requests.saturating_sub(before).min(lease)
                })
            }
            None => None,
        };
        let mut e = self.leases.entry(key).or_default();
        if e.window != win {
            *e = Lease { window: win, ..Lease::default() };
        }
        let granted = match granted {
            Some(g) => g,
            // No Redis (or it is down): this instance counts alone.
            None => {
                let limit = if self.store.is_some() {
                    self.cfg.fallback_requests.unwrap_or(self.cfg.requests)
                } else {
                    self.cfg.requests
                };
                let g = limit.saturating_sub(e.fallback_used).min(lease);
                e.fallback_used += g;
                g
            }
        };
        if granted < lease {
            e.exhausted = true;
        }
        if granted == 0 && e.remaining == 0 {
            return Err(self.problem(left));
        }
        e.remaining += granted;
        e.remaining -= 1;
        Ok(())
    }

    fn problem(&self, left: u64) -> Problem {
        let w = match self.cfg.window {
            QuotaWindow::Day => "day",
            QuotaWindow::Month => "month",
        };
        Problem::new(
            ProblemKind::QuotaExhausted,
            format!(
                "the {} quota of {} requests per {w} is used up; it renews in {left} s",
                self.scope, self.cfg.requests
            ),
        )
        .retry_after(left.min(u64::from(u32::MAX)) as u32)
    }

    /// Forgets keys of past windows (bounded memory).
    pub fn evict_old(&self) {
        let (win, _, _) = window(self.cfg.window, now_unix());
        self.leases.retain(|_, l| l.window == win);
    }
}

/// Quotas by (tenant, scope, definition), shared across configuration generations.
#[derive(Debug, Default)]
pub struct QuotaRegistry {
    map: parking_lot::Mutex<std::collections::HashMap<(String, String, QuotaConfig), Arc<Quota>>>,
}

impl QuotaRegistry {
    pub fn get(
        &self,
        tenant: &str,
        scope: &str,
        cfg: &QuotaConfig,
        store: Option<&Arc<RedisQuotaStore>>,
    ) -> Arc<Quota> {
        let mut map = self.map.lock();
        map.entry((tenant.to_owned(), scope.to_owned(), cfg.clone()))
            .or_insert_with(|| Arc::new(Quota::new(tenant, scope, cfg, store.cloned())))
            .clone()
    }

    pub fn retain_used_and_evict(&self) {
        let mut map = self.map.lock();
        map.retain(|_, q| Arc::strong_count(q) > 1);
        for q in map.values() {
            q.evict_old();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        // 2026-11-23T19:32:40Z
        let now = Duration::from_secs(1_795_462_360);
        let (_, end, left) = window(QuotaWindow::Day, now);
        assert_eq!(end, 1_795_478_400, "next UTC midnight");
        assert_eq!(left, end - now.as_secs());
        let (_, end, _) = window(QuotaWindow::Month, now);
        assert_eq!(end, 1_796_083_200, "2026-12-01T00:00:00Z");
        let dec = Duration::from_secs(1_798_000_000); // 2026-12-23
        assert_eq!(window(QuotaWindow::Month, dec).1, 1_798_761_600, "2027-01-01T00:00:00Z");
    }

    #[tokio::test]
    async fn local_quota_without_redis() {
        let cfg: QuotaConfig =
            serde_yaml_ng::from_str("{per: header, header: X-Api-Key, requests: 5, window: day, lease: 2}")
                .unwrap_or_else(|e| panic!("{e}"));
        let q = Quota::new("t", "ente", &cfg, None);
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_static("a"));
        for _ in 0..5 {
            q.take(&h, &Default::default()).await.unwrap_or_else(|p| panic!("{p}"));
        }
        let p = q.take(&h, &Default::default()).await.unwrap_err();
        assert_eq!(p.kind, ProblemKind::QuotaExhausted);
        assert!(p.retry_after.is_some_and(|s| s > 0 && s <= 86_400));
        h.insert("x-api-key", http::HeaderValue::from_static("b"));
        q.take(&h, &Default::default()).await.unwrap_or_else(|p| panic!("{p}"));
    }
}
