//! Validation of access and traffic policies: issuers, rate limits, quotas.

use crate::model::*;
use crate::validate::Issues;

pub(crate) fn validate_limit(l: &RateLimitConfig, p: &str, is: &mut Issues) {
    if l.requests == 0 {
        is.add(format!("{p}.requests"), "must be at least 1");
    }
    if l.burst == Some(0) {
        is.add(format!("{p}.burst"), "must be at least 1");
    }
    if l.requests > 0 && (l.period.0 / l.requests).is_zero() {
        is.add(format!("{p}.period"), "too short for that many requests (less than 1ns per request)");
    }
    match (l.per, &l.header) {
        (LimitKey::Header, None) => is.add(format!("{p}.header"), "`per: header` needs the header name"),
        (LimitKey::Header, Some(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
            is.add(format!("{p}.header"), format!("`{h}` is not a header name"))
        }
        (k, Some(_)) if k != LimitKey::Header => is.add(format!("{p}.header"), "only with `per: header`"),
        _ => {}
    }
}

const ALGS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

pub(crate) fn validate_issuer(i: &IssuerConfig, p: &str, is: &mut Issues) {
    if i.issuer.is_empty() {
        is.add(format!("{p}.issuer"), "must not be empty");
    }
    if i.audiences.is_empty() {
        is.add(format!("{p}.audiences"), "list at least one audience: tokens for other services must not pass");
    }
    match (&i.jwks_url, &i.jwks_file) {
        (None, None) | (Some(_), Some(_)) => is.add(p.to_owned(), "set exactly one of jwks_url and jwks_file"),
        (Some(u), None) if !(u.starts_with("https://") || u.starts_with("http://")) => {
            is.add(format!("{p}.jwks_url"), "must be an http(s) URL")
        }
        _ => {}
    }
    if i.algorithms.is_empty() {
        is.add(format!("{p}.algorithms"), "list at least one algorithm");
    }
    for (n, a) in i.algorithms.iter().enumerate() {
        if !ALGS.contains(&a.as_str()) {
            is.add(
                format!("{p}.algorithms[{n}]"),
                format!("`{a}` is not one of {} (never none or HS*)", ALGS.join(", ")),
            );
        }
    }
    if i.max_token_bytes < 256 || i.max_token_bytes > 65_536 {
        is.add(format!("{p}.max_token_bytes"), "must be between 256 and 65536");
    }
    if i.refresh.0.as_secs() < 10 {
        is.add(format!("{p}.refresh"), "at least 10s");
    }
}

pub(crate) fn validate_quota(q: &QuotaConfig, p: &str, is: &mut Issues) {
    if q.requests == 0 {
        is.add(format!("{p}.requests"), "must be at least 1");
    }
    if q.lease == 0 {
        is.add(format!("{p}.lease"), "must be at least 1");
    }
    match (q.per, &q.header) {
        (LimitKey::Header, None) => is.add(format!("{p}.header"), "`per: header` needs the header name"),
        (LimitKey::Header, Some(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
            is.add(format!("{p}.header"), format!("`{h}` is not a header name"))
        }
        (k, Some(_)) if k != LimitKey::Header => is.add(format!("{p}.header"), "only with `per: header`"),
        _ => {}
    }
}

pub(crate) fn validate_modi(m: &ModiAccess, p: &str, t: &TenantConfig, has_signer: bool, is: &mut Issues) {
    if m.integrity.is_none() && m.audit.is_none() && !m.sign_responses {
        is.add(p.to_owned(), "name an `integrity` or `audit` pattern, or `sign_responses`");
    }
    if m.audience.is_empty() {
        is.add(format!("{p}.audience"), "must not be empty: it is the e-service's URL the ModI JWTs are meant for");
    }
    let needs_kid = m.integrity == Some(IntegrityPattern::Rest02) || m.audit.is_some();
    match &m.keys_issuer {
        None if needs_kid => is.add(
            format!("{p}.keys_issuer"),
            "INTEGRITY_REST_02 and AUDIT_REST_* resolve the signer's key by `kid`: name the tenant issuer whose JWKS holds it",
        ),
        Some(k) if !t.issuers.contains_key(k) => {
            is.add(format!("{p}.keys_issuer"), format!("tenant `{}` has no issuer `{k}`", t.id))
        }
        _ => {}
    }
    if m.integrity == Some(IntegrityPattern::Rest01) && m.trust_anchors.is_none() {
        is.add(format!("{p}.trust_anchors"), "INTEGRITY_REST_01 needs the CA certificates that anchor the x5c chain");
    }
    for (n, a) in m.algorithms.iter().enumerate() {
        if !ALGS.contains(&a.as_str()) {
            is.add(format!("{p}.algorithms[{n}]"), format!("`{a}` is not one of {}", ALGS.join(", ")));
        }
    }
    if m.sign_responses && !has_signer {
        is.add(format!("{p}.sign_responses"), "needs `server.identity_token` (varco's signing key)");
    }
}
