//! Gateway-wide request hygiene, run on every request before a tenant is chosen.
//!
//! These checks close the classic proxy holes: request smuggling shapes, path traversal in raw or
//! percent-encoded form, methods nobody implements, and identity headers a caller tries to spoof.
//! They are pure functions over the request header so that unit tests need no socket.

use crate::{Problem, ProblemKind};
use http::{header, HeaderMap, Method};

/// Header-name prefix reserved for the identity varco forwards to back-offices; a caller's
/// headers with this prefix are always removed.
pub use crate::headers::IDENTITY_PREFIX as IDENTITY_HEADER_PREFIX;

/// Largest total size of request header names and values varco forwards (nginx's default
/// large_client_header_buffers allow 32 KiB; back-offices often less).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Rejects absurd header sections with 431 before they reach a back-office.
pub fn check_header_size(headers: &HeaderMap) -> Result<(), Problem> {
    let total: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if total > MAX_HEADER_BYTES {
        return Err(Problem::new(
            ProblemKind::HeadersTooLarge,
            format!("request headers are {total} bytes; at most {MAX_HEADER_BYTES} are accepted"),
        ));
    }
    Ok(())
}

/// Rejects methods varco does not proxy. `TRACE` (cross-site tracing) and `CONNECT` (tunnels)
/// are refused on purpose.
pub fn check_method(method: &Method) -> Result<(), Problem> {
    match *method {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH | Method::OPTIONS => {
            Ok(())
        }
        _ => Err(Problem::new(
            ProblemKind::MethodNotImplemented,
            format!("method {} is not implemented by this gateway", method.as_str()),
        )),
    }
}

/// Rejects ambiguous body framing (RFC 9112 §6.3): both `Content-Length` and
/// `Transfer-Encoding`, conflicting `Content-Length`s, or a transfer coding other than chunked.
pub fn check_framing(headers: &HeaderMap) -> Result<(), Problem> {
    let te: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let bad = |d: &str| Err(Problem::new(ProblemKind::BadRequest, d.to_owned()));
    if !te.is_empty() && !cl.is_empty() {
        return bad("both Content-Length and Transfer-Encoding are present");
    }
    if te.len() > 1 || te.first().is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        return bad("only a single 'Transfer-Encoding: chunked' is accepted");
    }
    if let Some(first) = cl.first() {
        if cl.iter().any(|v| v != first) {
            return bad("conflicting Content-Length values");
        }
        let ok = std::str::from_utf8(first.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        if ok.is_none() {
            return bad("Content-Length is not a number");
        }
    }
    Ok(())
}

/// Rejects paths that could escape a prefix or confuse a back-office: dot segments (raw or
/// percent-encoded, any case), encoded slashes or backslashes, NUL and control characters.
pub fn check_path(raw_path: &[u8]) -> Result<(), Problem> {
    let path = match raw_path.iter().position(|&c| c == b'?') {
        Some(i) => &raw_path[..i],
        None => raw_path,
    };
    let traversal = |d: &str| Err(Problem::new(ProblemKind::PathTraversal, d.to_owned()));
    if path.first() != Some(&b'/') {
        return Err(Problem::new(ProblemKind::BadRequest, "the request target must be an absolute path"));
    }
    if raw_path.iter().any(|&c| c < 0x21 || c == 0x7f || c == b'\\') {
        return traversal("control characters, spaces and backslashes are not allowed in the path");
    }
    // Decode only the escapes that matter for traversal, then look at segments.
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hex = path.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err(Problem::new(ProblemKind::BadRequest, "malformed percent-encoding in the path"));
            };
            match v {
                b'/' | b'\\' => return traversal("encoded slashes are not allowed in the path"),
                0..=0x1f | 0x7f => return traversal("encoded control characters are not allowed in the path"),
                _ => decoded.push(v),
            }
            i += 3;
        } else {
            decoded.push(path[i]);
            i += 1;
        }
    }
    if decoded.split(|&c| c == b'/').any(|seg| seg == b"." || seg == b"..") {
        return traversal("dot segments ('.' or '..', also percent-encoded) are not allowed in the path");
    }
    Ok(())
}

/// Options a `Connection` header may list, at most (pingora refuses 10 or more).
const MAX_CONNECTION_OPTIONS: usize = 9;

/// Headers varco writes for the upstream itself: a caller listing them in `Connection` (asking
/// the proxy to drop them as hop-by-hop) changes nothing, since varco replaces them anyway.
const OWN_FORWARDING: &[&str] = &["host", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded"];

/// Checks the options of `Connection` (RFC 9110 §7.6.1): each a token, at most nine; the
/// forwarding headers varco writes itself are taken off the list (the request goes on, with
/// varco's own values upstream), so the proxy layer never refuses such a request late.
pub fn clean_connection(req: &mut pingora_http::RequestHeader) -> Result<(), Problem> {
    if !req.headers.contains_key(header::CONNECTION) {
        return Ok(()); // the common case
    }
    // One pass checks every option without allocating (`Connection: keep-alive` is common);
    // the header is rebuilt only when it named one of varco's forwarding headers.
    let options = |req: &pingora_http::RequestHeader| -> Vec<String> {
        req.headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    };
    let mut dropped = false;
    let mut count = 0;
    for value in req.headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty()) {
            count += 1;
            if count > MAX_CONNECTION_OPTIONS {
                return Err(Problem::new(
                    ProblemKind::BadRequest,
                    format!("the Connection header lists more than {MAX_CONNECTION_OPTIONS} options"),
                ));
            }
            if !token.iter().all(|b| is_tchar(*b)) {
                return Err(Problem::new(
                    ProblemKind::BadRequest,
                    "the Connection header lists an option that is not a token",
                ));
            }
            dropped |= OWN_FORWARDING.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(token));
        }
    }
    if dropped {
        let keep: Vec<String> =
            options(req).into_iter().filter(|o| !OWN_FORWARDING.iter().any(|h| h.eq_ignore_ascii_case(o))).collect();
        req.remove_header(&header::CONNECTION);
        if !keep.is_empty() {
            let v = http::HeaderValue::from_str(&keep.join(", "))
                .map_err(|_| Problem::new(ProblemKind::BadRequest, "the Connection header is malformed"))?;
            req.insert_header(header::CONNECTION, v)
                .map_err(|_| Problem::new(ProblemKind::BadRequest, "the Connection header is malformed"))?;
        }
    }
    Ok(())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Removes every header a caller must not set: varco's identity headers, in any spelling a
/// back-office stack could read as one (`crate::headers::is_identity`).
pub fn strip_identity_headers(req: &mut pingora_http::RequestHeader) -> usize {
    if !req.headers.keys().any(|k| crate::headers::is_identity(k.as_str())) {
        return 0; // the common case: no allocation
    }
    let spoofed: Vec<_> = req.headers.keys().filter(|k| crate::headers::is_identity(k.as_str())).cloned().collect();
    for k in &spoofed {
        req.remove_header(k);
    }
    spoofed.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn traversal_shapes_are_rejected() {
        for p in [
            "/a/../b",
            "/..",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E%2e/b",
            "/a/.%2e/b",
            "/a/%2e/b",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a/%2E%2E",
        ] {
            let e = check_path(p.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ProblemKind::PathTraversal, "{p}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for p in ["/", "/status", "/a/b.c/..d/e..", "/a%20b", "/x?y=../z", "/anagrafe/v1/persone/RSSMRA80A01H501U"] {
            assert_eq!(check_path(p.as_bytes()), Ok(()), "{p}");
        }
    }

    #[test]
    fn malformed_escapes_and_relative_targets_are_bad_requests() {
        assert_eq!(check_path(b"/a%zz").unwrap_err().kind, ProblemKind::BadRequest);
        assert_eq!(check_path(b"/a%2").unwrap_err().kind, ProblemKind::BadRequest);
        assert_eq!(check_path(b"a/b").unwrap_err().kind, ProblemKind::BadRequest);
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        assert!(check_framing(&headers(&[("content-length", "5"), ("transfer-encoding", "chunked")])).is_err());
        assert!(check_framing(&headers(&[("content-length", "5"), ("content-length", "6")])).is_err());
        assert!(check_framing(&headers(&[("content-length", "+5")])).is_err());
        assert!(check_framing(&headers(&[("transfer-encoding", "gzip, chunked")])).is_err());
        assert!(check_framing(&headers(&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")])).is_err());
        assert_eq!(check_framing(&headers(&[("content-length", "5"), ("content-length", "5")])), Ok(()));
        assert_eq!(check_framing(&headers(&[("transfer-encoding", "Chunked")])), Ok(()));
        assert_eq!(check_framing(&headers(&[])), Ok(()));
    }

    #[test]
    fn header_size() {
        check_header_size(&headers(&[("a", &"x".repeat(1000))])).unwrap();
        let e = check_header_size(&headers(&[("a", &"x".repeat(MAX_HEADER_BYTES))])).unwrap_err();
        assert_eq!(e.kind, ProblemKind::HeadersTooLarge);
    }

    #[test]
    fn methods() {
        assert_eq!(check_method(&Method::GET), Ok(()));
        assert_eq!(check_method(&Method::PATCH), Ok(()));
        for m in [Method::TRACE, Method::CONNECT, Method::from_bytes(b"FOO").unwrap()] {
            assert_eq!(check_method(&m).unwrap_err().kind, ProblemKind::MethodNotImplemented);
        }
    }

    #[test]
    fn connection_options_are_checked_and_varcos_own_headers_taken_off() {
        let conn = |v: &str| {
            let mut r = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
            r.append_header("connection", v).unwrap();
            let res = clean_connection(&mut r);
            res.map(|()| r.headers.get("connection").map(|v| v.to_str().unwrap().to_owned()))
        };
        assert_eq!(conn("keep-alive").unwrap().as_deref(), Some("keep-alive"), "untouched");
        assert_eq!(conn("X-Forwarded-For").unwrap(), None, "nothing left: the header goes");
        assert_eq!(conn("close, x-forwarded-host,Host").unwrap().as_deref(), Some("close"));
        assert_eq!(conn("te, Forwarded, x-custom").unwrap().as_deref(), Some("te, x-custom"));
        assert!(conn(":authority").is_err());
        assert!(conn("a b").is_err());
        assert!(conn("a,b,c,d,e,f,g,h,i,j").is_err(), "ten options");
        assert!(conn("a,b,c,d,e,f,g,h,i").is_ok(), "nine options");
        let mut r = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        assert!(clean_connection(&mut r).is_ok());
    }

    #[test]
    fn identity_headers_are_stripped() {
        let mut r = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("x-varco-subject", "evil"),
            ("X-Varco-Tenant", "other"),
            ("X_Varco_Fiscal_Code", "RSSMRA80A01H501U"),
            ("x-varco_acr", "https://www.spid.gov.it/SpidL3"),
            ("accept", "*/*"),
            ("x-varcoo", "not ours"),
            ("x_forwarded_for", "not ours either"),
        ] {
            r.append_header(k.to_owned(), v).unwrap();
        }
        assert_eq!(strip_identity_headers(&mut r), 4);
        assert_eq!(r.headers.len(), 3);
        assert!(r.headers.get("x_varco_fiscal_code").is_none());
    }
}
