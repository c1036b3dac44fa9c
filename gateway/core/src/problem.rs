//! `application/problem+json` (RFC 9457): one type for every error varco answers.
//!
//! Each [`ProblemKind`] has a stable `type` URI (`urn:varco:problem:<slug>`) documented in
//! `docs/problems.md`; clients may match on it. `detail` says what exactly went wrong.

use serde::Serialize;

/// The media type of every error body varco produces.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Declares the enum and its `ALL` list from one list of variants, so that a new kind cannot
/// be left out of the uniqueness and documentation tests.
macro_rules! problem_kinds {
    ($($(#[$doc:meta])* $kind:ident,)*) => {
        /// A stable kind of problem. The slug is part of the public contract: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ProblemKind {
            $($(#[$doc])* $kind,)*
        }

        impl ProblemKind {
            /// Every kind, in declaration order (documentation and uniqueness tests).
            pub const ALL: &'static [ProblemKind] = &[$(Self::$kind,)*];
        }
    };
}

problem_kinds! {
    /// No tenant answers on this host / path prefix.
    UnknownTenant,
    /// The tenant has no route for this path.
    NoRoute,
    /// A route matches the path but not the method.
    MethodNotAllowed,
    /// A method token varco does not implement at all.
    MethodNotImplemented,
    /// Body larger than the route allows.
    BodyTooLarge,
    /// The caller stalled while sending the body.
    RequestTimeout,
    /// Request headers larger than the gateway accepts.
    HeadersTooLarge,
    /// Over a rate limit of the route or tenant.
    RateLimited,
    /// A daily or monthly quota is used up.
    QuotaExhausted,
    /// Malformed request: bad path, smuggling shape, bad header.
    BadRequest,
    /// The path tries to escape its prefix (`..`, encoded dot segments, NUL, backslash).
    PathTraversal,
    /// No healthy server in the upstream pool.
    UpstreamUnavailable,
    /// The pool's circuit breaker is open after repeated failures.
    CircuitOpen,
    /// Too many requests in flight for the tenant or the pool.
    Overloaded,
    /// The upstream refused or broke the connection or sent an invalid answer.
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// The adapter failed while answering.
    AdapterError,
    /// Something inside varco failed; the trace id finds it in the logs.
    Internal,
    /// The admin API needs a valid admin token.
    Unauthorized,
    /// The route needs a bearer token and none was sent.
    TokenMissing,
    /// The bearer token failed a check (`detail` says which).
    TokenInvalid,
    /// The caller is known but a condition of the route (scope, issuer) is not met.
    Forbidden,
    /// A new configuration was rejected (reload).
    InvalidConfig,
    /// Not found on the admin listener.
    NotFound,
    /// The ModI `Digest` header is missing or not `SHA-256=<base64>` (e.g. hex).
    ModiDigestMalformed,
    /// The body does not hash to the ModI `Digest`.
    ModiDigestMismatch,
    /// `Agid-JWT-Signature` is missing or fails a check (`detail` says which).
    ModiSignatureInvalid,
    /// `Agid-JWT-TrackingEvidence` is missing, fails a check, or is not bound to the voucher.
    ModiAuditInvalid,
    /// A token whose `jti` was already used where the profile forbids replay.
    TokenReplayed,
    /// A CloudEvent is malformed or misses a required attribute.
    EventInvalid,
    /// An event's `data` does not match the schema of its type.
    EventSchemaViolation,
    /// The request's Content-Type is not one the route accepts.
    UnsupportedMediaType,
    /// The outbox's disk budget is full; events are refused until it drains.
    OutboxFull,
    /// A national platform refused the request's content (`detail` carries its reason).
    PlatformRejected,
    /// The resource exists already or is in a state that forbids the change.
    Conflict,
    /// The content is well-formed but breaks its schema (an official XSD, a contract).
    ValidationFailed,
    /// A mediated back-office refused the request (a SOAP `Client`/`Sender` fault, a 4xx).
    BackofficeRejected,
    /// A mediated back-office answered with an error of its own (a `Server` fault).
    BackofficeFault,
    /// A mediated back-office has no such resource (a not-found fault, a 404).
    ResourceNotFound,
    /// The route needs a citizen's session (SPID/CIE login) and the request has none.
    SessionRequired,
    /// A SPID/CIE login could not be completed (state, code, tokens, userinfo: `detail` says which).
    LoginFailed,
    /// The identity provider has no valid trust chain to its Trust Anchor.
    ProviderUntrusted,
    /// The session store (Redis) did not answer: no session can be opened or read.
    SessionStoreUnavailable,
}

impl ProblemKind {
    /// The stable slug of the kind.
    pub const fn slug(self) -> &'static str {
        match self {
            Self::UnknownTenant => "unknown-tenant",
            Self::NoRoute => "no-route",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::MethodNotImplemented => "method-not-implemented",
            Self::BodyTooLarge => "body-too-large",
            Self::RequestTimeout => "request-timeout",
            Self::HeadersTooLarge => "headers-too-large",
            Self::RateLimited => "rate-limited",
            Self::QuotaExhausted => "quota-exhausted",
            Self::BadRequest => "bad-request",
            Self::PathTraversal => "path-traversal",
            Self::UpstreamUnavailable => "upstream-unavailable",
            Self::CircuitOpen => "circuit-open",
            Self::Overloaded => "overloaded",
            Self::BadGateway => "bad-gateway",
            Self::GatewayTimeout => "gateway-timeout",
            Self::AdapterError => "adapter-error",
            Self::Internal => "internal",
            Self::Unauthorized => "unauthorized",
            Self::TokenMissing => "token-missing",
            Self::TokenInvalid => "token-invalid",
            Self::Forbidden => "forbidden",
            Self::InvalidConfig => "invalid-config",
            Self::NotFound => "not-found",
            Self::ModiDigestMalformed => "modi-digest-malformed",
            Self::ModiDigestMismatch => "modi-digest-mismatch",
            Self::ModiSignatureInvalid => "modi-signature-invalid",
            Self::ModiAuditInvalid => "modi-audit-invalid",
            Self::TokenReplayed => "token-replayed",
            Self::EventInvalid => "event-invalid",
            Self::EventSchemaViolation => "event-schema-violation",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::OutboxFull => "outbox-full",
            Self::PlatformRejected => "platform-rejected",
            Self::Conflict => "conflict",
            Self::ValidationFailed => "validation-failed",
            Self::BackofficeRejected => "backoffice-rejected",
            Self::BackofficeFault => "backoffice-fault",
            Self::ResourceNotFound => "resource-not-found",
            Self::SessionRequired => "session-required",
            Self::LoginFailed => "login-failed",
            Self::ProviderUntrusted => "provider-untrusted",
            Self::SessionStoreUnavailable => "session-store-unavailable",
        }
    }

    /// The stable `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:varco:problem:{}", self.slug())
    }

    /// The HTTP status the kind answers with.
    pub const fn status(self) -> u16 {
        match self {
            Self::UnknownTenant | Self::NoRoute | Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::MethodNotImplemented => 501,
            Self::BodyTooLarge => 413,
            Self::RequestTimeout => 408,
            Self::HeadersTooLarge => 431,
            Self::RateLimited | Self::QuotaExhausted => 429,
            Self::BadRequest
            | Self::PathTraversal
            | Self::ModiDigestMalformed
            | Self::ModiDigestMismatch
            | Self::ModiSignatureInvalid
            | Self::ModiAuditInvalid
            | Self::EventInvalid => 400,
            Self::EventSchemaViolation | Self::PlatformRejected | Self::ValidationFailed | Self::BackofficeRejected => {
                422
            }
            Self::ResourceNotFound => 404,
            Self::BackofficeFault => 502,
            Self::Conflict => 409,
            Self::UnsupportedMediaType => 415,
            Self::OutboxFull => 503,
            Self::UpstreamUnavailable | Self::CircuitOpen | Self::Overloaded => 503,
            Self::BadGateway => 502,
            Self::GatewayTimeout => 504,
            Self::AdapterError | Self::Internal => 500,
            Self::Unauthorized | Self::TokenMissing | Self::TokenInvalid | Self::TokenReplayed => 401,
            Self::Forbidden => 403,
            Self::InvalidConfig => 422,
            Self::SessionRequired | Self::LoginFailed => 401,
            Self::ProviderUntrusted => 502,
            Self::SessionStoreUnavailable => 503,
        }
    }

    /// The short human title (constant per kind, as RFC 9457 asks).
    pub const fn title(self) -> &'static str {
        match self {
            Self::UnknownTenant => "No tenant answers here",
            Self::NoRoute => "No route for this path",
            Self::MethodNotAllowed => "Method not allowed",
            Self::MethodNotImplemented => "Method not implemented",
            Self::BodyTooLarge => "Request body too large",
            Self::RequestTimeout => "Request timeout",
            Self::HeadersTooLarge => "Request headers too large",
            Self::RateLimited => "Too many requests",
            Self::QuotaExhausted => "Quota exhausted",
            Self::BadRequest => "Malformed request",
            Self::PathTraversal => "Path not allowed",
            Self::UpstreamUnavailable => "Service unavailable",
            Self::CircuitOpen => "Service unavailable (circuit open)",
            Self::Overloaded => "Overloaded",
            Self::BadGateway => "Bad gateway",
            Self::GatewayTimeout => "Gateway timeout",
            Self::AdapterError => "Adapter error",
            Self::Internal => "Internal error",
            Self::Unauthorized => "Unauthorized",
            Self::TokenMissing => "Bearer token required",
            Self::TokenInvalid => "Invalid token",
            Self::Forbidden => "Forbidden",
            Self::InvalidConfig => "Invalid configuration",
            Self::NotFound => "Not found",
            Self::ModiDigestMalformed => "Malformed ModI Digest",
            Self::ModiDigestMismatch => "Body does not match its Digest",
            Self::ModiSignatureInvalid => "Invalid ModI signature",
            Self::ModiAuditInvalid => "Invalid ModI tracking evidence",
            Self::TokenReplayed => "Token replayed",
            Self::EventInvalid => "Invalid CloudEvent",
            Self::EventSchemaViolation => "Event data does not match its schema",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::OutboxFull => "Event outbox full",
            Self::PlatformRejected => "Rejected by the national platform",
            Self::Conflict => "Conflict",
            Self::ValidationFailed => "Content breaks its schema",
            Self::BackofficeRejected => "Refused by the back-office",
            Self::BackofficeFault => "The back-office failed",
            Self::ResourceNotFound => "No such resource at the back-office",
            Self::SessionRequired => "Login required",
            Self::LoginFailed => "Login failed",
            Self::ProviderUntrusted => "Identity provider not trusted",
            Self::SessionStoreUnavailable => "Session store unavailable",
        }
    }
}

/// A problem to answer: kind, detail and the extra headers some kinds carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    /// `Retry-After` seconds (503, 429).
    pub retry_after: Option<u32>,
    /// `Allow` header value (405).
    pub allow: Option<String>,
    /// Extra members (e.g. the list of config errors on a rejected reload).
    // Boxed: rare, and a `Problem` travels by value in every `Result` of the request path.
    pub extra: Option<Box<serde_json::Value>>,
    /// Extra response headers (e.g. `X-RateLimit-*` on a 429).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), retry_after: None, allow: None, extra: None, headers: Vec::new() }
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn allow(mut self, allow: impl Into<String>) -> Self {
        self.allow = Some(allow.into());
        self
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body; `instance` is the request path, the ids let an operator find the request.
    pub fn to_body(&self, instance: &str, request_id: &str, trace_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            type_: String,
            title: &'static str,
            status: u16,
            detail: &'a str,
            instance: &'a str,
            request_id: &'a str,
            trace_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            errors: Option<&'a serde_json::Value>,
        }
        let body = Body {
            type_: self.kind.type_uri(),
            title: self.kind.title(),
            status: self.status(),
            detail: &self.detail,
            instance,
            request_id,
            trace_id,
            errors: self.extra.as_deref(),
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.slug(), self.detail)
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_rfc9457_member_and_the_ids() {
        let p = Problem::new(ProblemKind::NoRoute, "no route for GET /x");
        let v: serde_json::Value =
            serde_json::from_slice(&p.to_body("/x", "req-1", "0af7651916cd43dd8448eb211c80319c")).unwrap();
        assert_eq!(v["type"], "urn:varco:problem:no-route");
        assert_eq!(v["title"], "No route for this path");
        assert_eq!(v["status"], 404);
        assert_eq!(v["detail"], "no route for GET /x");
        assert_eq!(v["instance"], "/x");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert!(v.get("errors").is_none());
    }

    #[test]
    fn slugs_are_unique() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        let n = slugs.len();
        slugs.dedup();
        assert_eq!(n, slugs.len());
    }
}

#[cfg(test)]
mod doc_tests {
    #[test]
    fn every_kind_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/problems.md")).unwrap();
        for k in super::ProblemKind::ALL {
            let row = format!("| `{}` | {} |", k.slug(), k.status());
            assert!(doc.contains(&row), "docs/problems.md lacks the row `{row}`");
        }
    }
}
