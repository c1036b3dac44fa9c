//! What a webhook call carries and what its answer means: the two signature schemes (varco's
//! `X-Varco-Signature` and Standard Webhooks) and the classification of answers for retry.

use std::time::Duration;

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The Standard Webhooks signature (standardwebhooks.com): `v1,<base64 HMAC-SHA256(key,
/// "<id>.<t>.<body>")>`. The key is the secret's bytes; a secret written `whsec_<base64>` is
/// decoded first, as the scheme's libraries do, so one secret serves both schemes.
pub fn standard_signature(secret: &[u8], id: &str, t: u64, body: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decoded = secret.strip_prefix(b"whsec_").and_then(|rest| b64.decode(rest).ok());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, decoded.as_deref().unwrap_or(secret));
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", b64.encode(ctx.sign().as_ref()))
}

/// Why one delivery attempt failed, and what to do about it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) why: String,
    /// The receiver refused the event itself (400, 404, 410, 422): dead-letter it at once.
    pub(crate) permanent: bool,
    /// The receiver said when to come back (429, 503 with `Retry-After`).
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn retry(why: impl Into<String>) -> Self {
        Self { why: why.into(), permanent: false, retry_after: None }
    }

    /// The outcome of an HTTP answer.
    pub(crate) fn of_status(status: u16, retry_after: Option<Duration>) -> Result<(), Self> {
        match status {
            200..=299 => Ok(()),
            400 | 404 | 410 | 422 => {
                Err(Self { why: format!("answered {status}"), permanent: true, retry_after: None })
            }
            429 | 503 => Err(Self { why: format!("answered {status}"), permanent: false, retry_after }),
            _ => Err(Self::retry(format!("answered {status}"))),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from back-offices and is ignored).
pub(crate) fn retry_after(h: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        // Reference value from Python: hmac.new(b"s3cret", b"1700000000.{}", sha256).hexdigest()
        let s = super::signature(b"s3cret", 1_700_000_000, b"{}");
        assert_eq!(s, "t=1700000000,v1=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf");
    }

    #[test]
    fn standard_webhooks_signature() {
        // Reference from Python: base64(hmac.new(b"s3cret", b"msg_1.1700000000.{}", sha256).digest())
        let s = super::standard_signature(b"s3cret", "msg_1", 1_700_000_000, b"{}");
        assert_eq!(s, "v1,uNtIplUOMTIs6G1RRPpb6NsRUZZLxUiBZsZiXV3ycuM=");
        // A whsec_ secret is the base64 of the key: the same key, the same signature.
        let w = super::standard_signature(b"whsec_czNjcmV0", "msg_1", 1_700_000_000, b"{}");
        assert_eq!(w, s);
    }

    #[test]
    fn answers_are_classified_for_retry() {
        use super::Failure;
        use std::time::Duration;
        assert!(Failure::of_status(204, None).is_ok());
        for permanent in [400, 404, 410, 422] {
            assert!(Failure::of_status(permanent, None).unwrap_err().permanent, "{permanent}");
        }
        for transient in [401, 403, 408, 500, 502, 504] {
            let f = Failure::of_status(transient, None).unwrap_err();
            assert!(!f.permanent && f.retry_after.is_none(), "{transient}");
        }
        let f = Failure::of_status(429, Some(Duration::from_secs(7))).unwrap_err();
        assert_eq!((f.permanent, f.retry_after), (false, Some(Duration::from_secs(7))));
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static(" 12 "));
        assert_eq!(super::retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(super::retry_after(&h), None);
    }
}
