//! The proxy's side of authentication: runs `varco-auth`'s checks on the request in hand and
//! turns their errors into problem answers (the only place an `AuthError` becomes a `Problem`).

use varco_auth::{AuthError, Reason};
use varco_core::{Problem, ProblemKind};

/// The problem a caller sees for an authentication failure.
pub fn problem(e: AuthError) -> Problem {
    let kind = match e.reason {
        Reason::TokenMissing => ProblemKind::TokenMissing,
        Reason::TokenInvalid => ProblemKind::TokenInvalid,
        Reason::TokenReplayed => ProblemKind::TokenReplayed,
        Reason::Forbidden => ProblemKind::Forbidden,
        Reason::ModiDigestMalformed => ProblemKind::ModiDigestMalformed,
        Reason::ModiDigestMismatch => ProblemKind::ModiDigestMismatch,
        Reason::ModiSignatureInvalid => ProblemKind::ModiSignatureInvalid,
        Reason::ModiAuditInvalid => ProblemKind::ModiAuditInvalid,
        Reason::SigningFailed => ProblemKind::Internal,
    };
    let mut p = Problem::new(kind, e.detail);
    if let Some(c) = e.challenge {
        p.headers.push((http::header::WWW_AUTHENTICATE, c));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_travel_and_signing_failures_are_internal() {
        let mut e = AuthError::new(Reason::TokenInvalid, "the token has expired");
        e.challenge = Some(http::HeaderValue::from_static("Bearer realm=\"c_e783\""));
        let p = problem(e);
        assert_eq!(p.kind, ProblemKind::TokenInvalid);
        assert_eq!(p.status(), 401);
        assert!(p.headers.iter().any(|(k, _)| k == http::header::WWW_AUTHENTICATE));
        assert_eq!(problem(AuthError::new(Reason::SigningFailed, "x")).status(), 500);
    }
}
