//! W3C trace context (`traceparent`) and `X-Request-Id`.
//!
//! varco continues a caller's trace when it sends a valid `traceparent` (new span id, same trace
//! id) and starts one otherwise. The request id is the caller's `X-Request-Id` when it is sane
//! (visible ASCII, at most 128 bytes), else the trace id: logs, problems and back-offices all see
//! the same ids. Ids live in fixed-size buffers: no allocation per request.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A lowercase hex id of `N` characters, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId<const N: usize>([u8; N]);

impl<const N: usize> HexId<N> {
    fn random() -> Self {
        loop {
            let mut out = [0u8; N];
            let mut bits = fastrand::u128(..);
            for (i, c) in out.iter_mut().enumerate() {
                if i % 32 == 0 && i > 0 {
                    bits = fastrand::u128(..);
                }
                *c = HEX[(bits & 0xf) as usize];
                bits >>= 4;
            }
            // All-zero ids are invalid in W3C trace context.
            if out.iter().any(|&c| c != b'0') {
                return Self(out);
            }
        }
    }

    fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != N
            || !b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            || b.iter().all(|&c| c == b'0')
        {
            return None;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Some(Self(out))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl<const N: usize> std::fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trace ids for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: HexId<32>,
    /// varco's own span id: the parent-id it sends upstream.
    pub span_id: HexId<16>,
    /// Trace flags of the caller (sampled bit); `01` when varco starts the trace.
    pub flags: HexId<2>,
    /// The caller's request id, when sane.
    caller_request_id: Option<String>,
}

/// Parses a `traceparent` header (version 00 form); `None` if invalid.
pub fn parse_traceparent(v: &str) -> Option<(&str, &str, &str)> {
    let mut it = v.trim().split('-');
    let (ver, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let is_hex =
        |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !is_hex(ver, 2) || ver == "ff" || !is_hex(flags, 2) || (ver == "00" && it.next().is_some()) {
        return None;
    }
    // Both ids must be hex of the right length and not all zeros.
    HexId::<32>::parse(trace)?;
    HexId::<16>::parse(parent)?;
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
        let (trace_id, flags) = match parsed.and_then(|(t, _, f)| Some((HexId::parse(t)?, f))) {
            Some((t, f)) => {
                let mut fl = [0u8; 2];
                fl.copy_from_slice(f.as_bytes());
                (t, HexId(fl))
            }
            None => (HexId::random(), HexId(*b"01")),
        };
        let caller_request_id =
            request_id.filter(|v| is_sane_request_id(v)).map(|v| String::from_utf8_lossy(v).into_owned());
        Self { trace_id, span_id: HexId::random(), flags, caller_request_id }
    }

    /// Takes the ids of varco's own span from the tracer (tracing on): its trace, the span as
    /// the parent of what varco calls, and its sampling decision as the flags.
    pub fn adopt(&mut self, trace_id: [u8; 32], span_id: [u8; 16], sampled: bool) {
        self.trace_id = HexId(trace_id);
        self.span_id = HexId(span_id);
        self.flags = HexId(if sampled { *b"01" } else { *b"00" });
    }

    /// The request id: the caller's, or the trace id.
    pub fn request_id(&self) -> &str {
        self.caller_request_id.as_deref().unwrap_or(self.trace_id.as_str())
    }

    /// The `traceparent` to send upstream: same trace, varco's span as parent.
    pub fn traceparent(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_id.0);
        out[36..52].copy_from_slice(&self.span_id.0);
        out[53..55].copy_from_slice(&self.flags.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace() {
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let t = TraceContext::from_headers(Some(tp), Some(b"abc-123"));
        assert_eq!(t.trace_id.as_str(), "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(t.span_id.as_str(), "b7ad6b7169203331");
        assert_eq!(t.request_id(), "abc-123");
        let up = t.traceparent();
        let up = std::str::from_utf8(&up).unwrap();
        assert!(up.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "{up}");
        assert!(up.ends_with("-01"));
        assert_eq!(parse_traceparent(up).map(|p| p.1), Some(t.span_id.as_str()));
    }

    #[test]
    fn starts_a_trace_on_garbage() {
        for bad in [
            &b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"[..],
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            b"garbage",
            b"\xff\xfe",
        ] {
            let t = TraceContext::from_headers(Some(bad), None);
            assert!(HexId::<32>::parse(t.trace_id.as_str()).is_some(), "{t:?}");
            assert_ne!(t.trace_id.as_str(), "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(t.request_id(), t.trace_id.as_str());
        }
    }

    #[test]
    fn random_ids_differ_and_are_hex() {
        let (a, b) = (TraceContext::from_headers(None, None), TraceContext::from_headers(None, None));
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.trace_id.as_str().len(), 32);
        assert_eq!(a.span_id.as_str().len(), 16);
    }

    #[test]
    fn rejects_insane_request_ids() {
        let long = vec![b'a'; 129];
        for bad in [&b""[..], b"a b", b"a\x00", &long] {
            let t = TraceContext::from_headers(None, Some(bad));
            assert_eq!(t.request_id(), t.trace_id.as_str());
        }
    }
}
