//! W3C trace context (`traceparent`) and `X-Request-Id`.
//!
//! varco continues a caller's trace when it sends a valid `traceparent` (new span id, same trace
//! id) and starts one otherwise. The request id is the caller's `X-Request-Id` when it is sane
//! (visible ASCII, at most 128 bytes), else the trace id: logs, problems and back-offices all see
//! the same ids.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Trace ids for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex chars.
    pub trace_id: String,
    /// varco's own span id (16 hex chars): the parent-id it sends upstream.
    pub span_id: String,
    /// Trace flags of the caller (sampled bit), `01` when varco starts the trace.
    pub flags: String,
    /// The request id (caller's or generated).
    pub request_id: String,
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    loop {
        s.clear();
        for _ in 0..bytes {
            let b = fastrand::u8(..);
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
        // All-zero ids are invalid in W3C trace context.
        if s.bytes().any(|c| c != b'0') {
            return s;
        }
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Parses a `traceparent` header (version 00 form); `None` if invalid.
pub fn parse_traceparent(v: &str) -> Option<(&str, &str, &str)> {
    let mut it = v.trim().split('-');
    let (ver, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if !is_lower_hex(ver, 2) || ver == "ff" || !is_lower_hex(trace, 32) || !is_lower_hex(parent, 16) {
        return None;
    }
    if !is_lower_hex(flags, 2) || (ver == "00" && it.next().is_some()) {
        return None;
    }
    if trace.bytes().all(|c| c == b'0') || parent.bytes().all(|c| c == b'0') {
        return None;
    }
    Some((trace, parent, flags))
}

/// Is this a request id varco may echo in headers and logs?
pub fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|c| c.is_ascii_graphic())
}

impl TraceContext {
    /// From the caller's `traceparent` and `X-Request-Id` header values, if any.
    pub fn from_headers(traceparent: Option<&[u8]>, request_id: Option<&[u8]>) -> Self {
        let parsed = traceparent.and_then(|v| std::str::from_utf8(v).ok()).and_then(parse_traceparent);
        let (trace_id, flags) = match parsed {
            Some((t, _, f)) => (t.to_owned(), f.to_owned()),
            None => (random_hex(16), "01".to_owned()),
        };
        let request_id = match request_id {
            Some(v) if is_sane_request_id(v) => String::from_utf8_lossy(v).into_owned(),
            _ => trace_id.clone(),
        };
        Self { trace_id, span_id: random_hex(8), flags, request_id }
    }

    /// The `traceparent` to send upstream: same trace, varco's span as parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace() {
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let t = TraceContext::from_headers(Some(tp), Some(b"abc-123"));
        assert_eq!(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(t.span_id, "b7ad6b7169203331");
        assert_eq!(t.request_id, "abc-123");
        assert!(t.traceparent().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(t.traceparent().ends_with("-01"));
    }

    #[test]
    fn starts_a_trace_on_garbage() {
        for bad in [
            &b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"[..],
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            b"garbage",
            b"\xff\xfe",
        ] {
            let t = TraceContext::from_headers(Some(bad), None);
            assert!(is_lower_hex(&t.trace_id, 32), "{t:?}");
            assert_ne!(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(t.request_id, t.trace_id);
        }
    }

    #[test]
    fn rejects_insane_request_ids() {
        let long = vec![b'a'; 129];
        for bad in [&b""[..], b"a b", b"a\x00", &long] {
            let t = TraceContext::from_headers(None, Some(bad));
            assert_eq!(t.request_id, t.trace_id);
        }
    }
}
