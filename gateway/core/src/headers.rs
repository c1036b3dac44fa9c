//! Header names varco reads, writes or reserves, parsed once (a static `HeaderName` clones for
//! free). The `X-Varco-*` names carry the verified identity to back-offices; callers never
//! set them (hygiene strips every `x-varco-*` header a caller sends).

use http::HeaderName;

/// The prefix of every identity header (lower case, as `http` stores names).
pub const IDENTITY_PREFIX: &str = "x-varco-";

/// Whether `name` is one of the reserved `X-Varco-*` headers (ASCII case-insensitive), also
/// spelt with `_` for `-` (`X_Varco_Fiscal_Code`): CGI, WSGI and PHP stacks map `_` to `-`, so
/// the back-office would read such a header as varco's.
pub fn is_identity(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= IDENTITY_PREFIX.len()
        && b.iter()
            .zip(IDENTITY_PREFIX.as_bytes())
            .all(|(c, w)| c.eq_ignore_ascii_case(w) || (*c == b'_' && *w == b'-'))
}

pub static TENANT: HeaderName = HeaderName::from_static("x-varco-tenant");
pub static ISSUER: HeaderName = HeaderName::from_static("x-varco-issuer");
pub static SUBJECT: HeaderName = HeaderName::from_static("x-varco-subject");
pub static CLIENT_ID: HeaderName = HeaderName::from_static("x-varco-client-id");
pub static FISCAL_CODE: HeaderName = HeaderName::from_static("x-varco-fiscal-code");
pub static ACR: HeaderName = HeaderName::from_static("x-varco-acr");
pub static SCOPES: HeaderName = HeaderName::from_static("x-varco-scopes");
pub static PURPOSE_ID: HeaderName = HeaderName::from_static("x-varco-purpose-id");
pub static GIVEN_NAME: HeaderName = HeaderName::from_static("x-varco-given-name");
pub static FAMILY_NAME: HeaderName = HeaderName::from_static("x-varco-family-name");
pub static EMAIL: HeaderName = HeaderName::from_static("x-varco-email");
pub static AUDIT_USER_ID: HeaderName = HeaderName::from_static("x-varco-audit-user-id");
pub static AUDIT_USER_LOCATION: HeaderName = HeaderName::from_static("x-varco-audit-user-location");
pub static AUDIT_LOA: HeaderName = HeaderName::from_static("x-varco-audit-loa");

// Tracing and forwarding.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

// ModI (AgID interoperability guidelines).
pub static DIGEST: HeaderName = HeaderName::from_static("digest");
pub static AGID_JWT_SIGNATURE: HeaderName = HeaderName::from_static("agid-jwt-signature");
pub static AGID_JWT_TRACKING_EVIDENCE: HeaderName = HeaderName::from_static("agid-jwt-trackingevidence");

#[cfg(test)]
mod tests {
    #[test]
    fn identity_names_are_recognised_in_any_case() {
        assert!(super::is_identity("X-Varco-Subject"));
        assert!(super::is_identity(super::SUBJECT.as_str()));
        assert!(!super::is_identity("x-varc"));
        assert!(!super::is_identity("x-request-id"));
    }
}
