//! Shared seams of the varco gateway.
//!
//! - [`Problem`]: the one error type every client-visible failure becomes (RFC 9457).
//! - [`Filter`]: a small, socket-free step of a route's request chain.
//! - [`Adapter`]: an in-process handler that answers a route itself.
//! - [`TraceContext`]: W3C `traceparent` and `X-Request-Id` handling.
//! - [`hygiene`]: gateway-wide request checks that run before any tenant is chosen.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod filter;
pub mod hygiene;
pub mod problem;
pub mod trace;

pub use adapter::{Adapter, AdapterRequest, AdapterResponse, BodyStream, HealthView, UpstreamHealth};
pub use filter::{Filter, FilterState, RateLimitStatus};
pub use problem::{Problem, ProblemKind};
pub use trace::TraceContext;
