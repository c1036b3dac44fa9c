//! The seam through which varco's crates fetch documents they need (an issuer's JWKS, later an
//! OpenID provider's statements, tokens and userinfo) without owning an HTTP client: `varco-outbound` implements it,
//! unit tests pass a canned one.

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// Why a document could not be fetched; the text is for logs (never a secret in it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// GETs documents over HTTP(S).
#[async_trait]
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// The body of a `200` answer to `GET url` (`Accept: application/json`), at most 1 MiB,
    /// within `timeout` all told.
    async fn get(&self, url: &str, timeout: Duration) -> Result<Bytes, FetchError>;

    /// `POST url` with an `application/x-www-form-urlencoded` body (an OAuth token or
    /// revocation request): the answer's status and body whatever the status (an OAuth error
    /// answer is read too), at most 1 MiB, within `timeout`.
    async fn post_form(&self, url: &str, form: String, timeout: Duration) -> Result<(u16, Bytes), FetchError>;

    /// `GET url` with `Authorization: Bearer <token>` (an OIDC userinfo request): status and
    /// body, at most 1 MiB, within `timeout`.
    async fn get_bearer(&self, url: &str, token: &str, timeout: Duration) -> Result<(u16, Bytes), FetchError>;
}
