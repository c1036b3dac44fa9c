//! Why a caller was not admitted (or why varco could not prove itself). The proxy maps each
//! [`Reason`] to its `Problem` type; nothing here knows about HTTP answers.

/// What failed, as the caller should learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No credential where the route needs one.
    TokenMissing,
    /// The credential is malformed, unknown, expired or its signature does not verify.
    TokenInvalid,
    /// A single-use credential (`jti`) came a second time.
    TokenReplayed,
    /// Verified, but the route's policy does not admit this caller.
    Forbidden,
    /// ModI: the `Digest` header is missing or not `SHA-256=<base64>`.
    ModiDigestMalformed,
    /// ModI: the body does not hash to the `Digest`.
    ModiDigestMismatch,
    /// ModI: `Agid-JWT-Signature` is missing or does not verify.
    ModiSignatureInvalid,
    /// ModI: `Agid-JWT-TrackingEvidence` is missing or does not verify.
    ModiAuditInvalid,
    /// varco could not sign what it must sign (a key problem): fail closed.
    SigningFailed,
}

/// An authentication or signing failure with a detail for the caller (never a secret or a
/// token in it) and, for 401s, the `WWW-Authenticate` challenge.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct AuthError {
    pub reason: Reason,
    pub detail: String,
    pub challenge: Option<http::HeaderValue>,
}

impl AuthError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into(), challenge: None }
    }
}
