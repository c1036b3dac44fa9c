//! Daily and monthly quotas, shared by every instance of a consortium through Redis.
//!
//! Each instance leases `lease` requests at a time from a Redis counter (`INCRBY`, expiring at
//! the end of the window) and spends them locally, so the request path talks to Redis once per
//! lease. Redis caps what it grants at the quota, so the instances together never exceed it;
//! leases left unused on one instance may make another deny up to `(instances - 1) * lease`
//! requests early (the documented tolerance). When Redis does not answer in time, each
//! instance counts on its own up to `fallback_requests` and `varco_quota_redis_up` says 0.

use crate::redis_store::{now_unix, RedisStore};
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use varco_config::{LimitKey, QuotaConfig, QuotaWindow};
use varco_core::{Problem, ProblemKind};

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
            let (y, m, _) = varco_core::civil::civil_from_days(days);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let end = varco_core::civil::days_from_civil(ny, nm, 1) as u64 * 86_400;
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
    store: Option<Arc<RedisStore>>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota").field("cfg", &self.cfg).field("scope", &self.scope).finish()
    }
}

impl Quota {
    pub fn new(tenant: &str, scope: &str, cfg: &QuotaConfig, store: Option<Arc<RedisStore>>) -> Self {
        // The definition is part of the Redis key: a changed quota starts a new counter.
        let id = varco_core::hash::hash_bytes(format!("{tenant}\0{scope}\0{cfg:?}").as_bytes());
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
        let ip = || state.client_ip.map_or(1, |ip| varco_core::hash::hash_bytes(ip.to_string().as_bytes()));
        match self.cfg.per {
            LimitKey::Route | LimitKey::Tenant => 0,
            LimitKey::ClientIp => ip(),
            LimitKey::Subject => state
                .subject
                .as_ref()
                .map_or_else(ip, |s| varco_core::hash::hash_bytes(&[b"s\0", s.as_bytes()].concat())),
            LimitKey::ClientId => state
                .client_id
                .as_ref()
                .map_or_else(ip, |c| varco_core::hash::hash_bytes(&[b"c\0", c.as_bytes()].concat())),
            LimitKey::Header => self
                .header
                .as_ref()
                .and_then(|h| headers.get(h))
                .map_or(1, |v| varco_core::hash::hash_bytes(v.as_bytes())),
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
    pub fn get(&self, tenant: &str, scope: &str, cfg: &QuotaConfig, store: Option<&Arc<RedisStore>>) -> Arc<Quota> {
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
