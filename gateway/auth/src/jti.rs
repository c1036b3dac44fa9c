//! The single-use `jti` guard shared by ModI JWTs and single-use bearer tokens: a `jti` is
//! accepted once while its token is accepted. Marks are kept per instance and, with Redis
//! configured, in Redis too (`SET NX EX`), so that a token is single-use across instances.

use dashmap::DashMap;
use std::time::{SystemTime, UNIX_EPOCH};

const REPLAY_MAX: usize = 500_000;

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// `jti`s seen while their token is valid. Shared by every route and kept across reloads.
/// With `redis` configured the marks are shared by every instance (`SET NX`); each instance
/// also keeps its own, which alone decide while Redis does not answer.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: DashMap<String, u64>,
    redis: Option<std::sync::Arc<varco_traffic::RedisStore>>,
}

impl ReplayGuard {
    pub fn new(redis: Option<std::sync::Arc<varco_traffic::RedisStore>>) -> Self {
        Self { seen: DashMap::new(), redis }
    }

    /// True the first time `scope`+`jti` is offered before `until` (unix s: the token's `exp`
    /// plus the leeway it is accepted with), on any instance.
    pub async fn first_use(&self, scope: &str, jti: &str, until: u64) -> bool {
        let key = format!("{scope}\u{0}{jti}");
        if !self.first_use_here(&key, until) {
            return false;
        }
        match &self.redis {
            Some(r) => r.set_once(&key, until).await.unwrap_or(true),
            None => true,
        }
    }

    fn first_use_here(&self, key: &str, exp: u64) -> bool {
        if self.seen.len() >= REPLAY_MAX {
            self.evict_expired();
        }
        match self.seen.entry(key.to_owned()) {
            dashmap::Entry::Occupied(mut e) if *e.get() < now_s() => {
                e.insert(exp);
                true
            }
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(e) => {
                e.insert(exp);
                true
            }
        }
    }

    pub fn evict_expired(&self) {
        let now = now_s();
        self.seen.retain(|_, exp| *exp >= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replay_guard_refuses_second_use_until_expiry() {
        let g = ReplayGuard::default();
        let exp = now_s() + 60;
        assert!(g.first_use("t", "a", exp).await);
        assert!(!g.first_use("t", "a", exp).await);
        assert!(g.first_use("u", "a", exp).await, "scopes are separate");
        assert!(g.first_use("t", "old", now_s() - 10).await);
        assert!(g.first_use("t", "old", exp).await, "an expired entry no longer blocks");
    }
}
