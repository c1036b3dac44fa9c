//! Shared seams of the varco gateway.
//!
//! - [`Problem`]: the one error type every client-visible failure becomes (RFC 9457).
//! - [`Filter`]: a small, socket-free step of a route's request chain.
//! - [`Adapter`]: an in-process handler that answers a route itself.
//! - [`TraceContext`]: W3C `traceparent` and `X-Request-Id` handling.
//! - [`hygiene`]: gateway-wide request checks that run before any tenant is chosen.
//! - [`Identity`] and [`headers`]: the verified caller and the `X-Varco-*` names it travels in.
//! - [`query`]: a request target's query, percent-decoded.
//! - [`fetch`]: the seam through which varco's crates fetch documents (JWKS) without owning a client.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod civil;
pub mod fetch;
pub mod filter;
pub mod hash;
pub mod headers;
pub mod hygiene;
pub mod identity;
pub mod problem;
pub mod query;
pub mod trace;

pub use adapter::{
    Adapter, AdapterRequest, AdapterResponse, Answer, BodyStream, HealthView, Mediation, Mediator, UpstreamCall,
    UpstreamHealth,
};
pub use filter::{Filter, FilterState, RateLimitStatus};
pub use identity::Identity;
pub use problem::{Problem, ProblemKind};
pub use trace::TraceContext;
