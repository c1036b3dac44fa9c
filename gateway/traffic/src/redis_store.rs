//! The shared Redis store of a consortium's instances: quota counters, single-use `jti`
//! marks, and claims on work done once across instances (pagoPA receipts). Lazily connected, reconnecting on its own; every call is bounded by `timeout`, and a
//! Redis that does not answer is skipped for a second so that no request waits on it twice.

use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use varco_config::RedisConfig;

/// The shared Redis connection (lazily connected, reconnecting on its own): quota counters
/// and single-use `jti` marks.
pub struct RedisStore {
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

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish()
    }
}

/// What [`RedisStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds it: do the work, then settle.
    Claimed,
    /// Another instance is doing it now.
    Pending,
    /// It was done.
    Done,
}

pub(crate) fn now_unix() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl RedisStore {
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
    pub(crate) async fn incr(&self, key: &str, n: u64, expire_at: u64) -> Option<u64> {
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

    /// Claims `key` for work to be done once across instances (`SET NX`, pending for
    /// `pending_secs` so that an instance that dies mid-way does not hold it for ever):
    /// `Claimed` for this caller, else what another left there. `None`: Redis did not answer.
    pub async fn claim(&self, key: &str, pending_secs: u64) -> Option<Claim> {
        let full = format!("{}:claim:{key}", self.prefix);
        self.call(|mut conn| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&full)
                .arg("pending")
                .arg("NX")
                .arg("EX")
                .arg(pending_secs.max(1))
                .query_async(&mut conn)
                .await?;
            if set.is_some() {
                return Ok(Claim::Claimed);
            }
            let now: Option<String> = redis::cmd("GET").arg(&full).query_async(&mut conn).await?;
            // Gone between the two calls (a pending claim expired): someone may be retrying.
            Ok(if now.as_deref() == Some("done") { Claim::Done } else { Claim::Pending })
        })
        .await
    }

    /// The claimed work is done (kept `keep_secs`), or given up (`done: false`: removed, so
    /// that a retry may do it).
    pub async fn settle(&self, key: &str, done: bool, keep_secs: u64) -> Option<()> {
        let full = format!("{}:claim:{key}", self.prefix);
        self.call(|mut conn| async move {
            if done {
                redis::cmd("SET")
                    .arg(&full)
                    .arg("done")
                    .arg("EX")
                    .arg(keep_secs.max(1))
                    .query_async::<()>(&mut conn)
                    .await
            } else {
                redis::cmd("DEL").arg(&full).query_async::<()>(&mut conn).await
            }
        })
        .await
    }

    /// Stores `value` under `key` for `ttl_secs` (`SET EX`): a citizen's session, a pending login.
    pub async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: u64) -> Option<()> {
        let full = format!("{}:kv:{key}", self.prefix);
        self.call(|mut conn| async move {
            redis::cmd("SET").arg(&full).arg(value).arg("EX").arg(ttl_secs.max(1)).query_async::<()>(&mut conn).await
        })
        .await
    }

    /// The value under `key`, if any; `None` when Redis does not answer.
    pub async fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let full = format!("{}:kv:{key}", self.prefix);
        self.call(|mut conn| async move { redis::cmd("GET").arg(&full).query_async(&mut conn).await }).await
    }

    /// The value under `key`, removed in the same step (`GET` and `DEL` in one transaction):
    /// of two instances taking the same key, one gets it.
    pub async fn take(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let full = format!("{}:kv:{key}", self.prefix);
        self.call(|mut conn| async move {
            let (v,): (Option<Vec<u8>>,) =
                redis::pipe().atomic().get(&full).del(&full).ignore().query_async(&mut conn).await?;
            Ok(v)
        })
        .await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Option<()> {
        let full = format!("{}:kv:{key}", self.prefix);
        self.call(|mut conn| async move { redis::cmd("DEL").arg(&full).query_async::<()>(&mut conn).await }).await
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
