//! Traffic control: rate limits per caller (GCRA buckets that outlive reloads), daily and
//! monthly quotas shared through Redis, circuit breakers for upstream pools, where a request
//! comes from, and connection limits per listener and client address.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod connections;
pub mod limits;
pub mod quotas;
pub mod redis_store;
pub mod source;

pub use breaker::Breaker;
pub use limits::{Limiter, RateLimit, Registry as LimiterRegistry};
pub use quotas::{Quota, QuotaRegistry};
pub use redis_store::RedisStore;
pub use source::SourceFilter;
