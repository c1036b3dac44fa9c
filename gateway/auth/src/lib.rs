//! Who a caller is and how varco proves itself to others: keys and JWKS (cache, refresh,
//! rotation), bearer JWT verification (RFC 8725), API keys, the ModI patterns (verify a
//! caller's, sign varco's answers), the single-use `jti` guard, varco's identity token, and the
//! ente as a SPID/CIE relying party (OIDC Federation, login, sessions).
//!
//! Inputs are `http` types, bytes and configuration; errors are [`AuthError`]s, which the
//! proxy turns into problem answers. Documents (JWKS) come through `varco_core::fetch::Fetch`.
#![forbid(unsafe_code)]

pub mod apikey;
pub mod error;
pub mod federation;
pub mod identity_token;
pub mod jose;
pub mod jti;
pub mod jwt;
pub mod keys;
pub mod modi;
pub mod rp;
pub mod session;
pub mod trust_chain;

pub use apikey::{api_key_hash, ApiKeyCaller, ApiKeys};
pub use error::{AuthError, Reason};
pub use federation::{EntityConfiguration, EntityConfigurationAdapter};
pub use identity_token::{IdentitySigner, JwksAdapter};
pub use jti::ReplayGuard;
pub use jwt::{authenticate, Issuer, IssuerRegistry};
pub use keys::{KeySet, SigningKey};
pub use modi::{sign_request, tracking_evidence, AuditRecord, ModiVerifier, TrackedUser};
