//! The access log: one JSON line per request on stdout, in the same envelope as varco's other
//! log lines (`timestamp`, `level`, `target: varco::access`, `fields`).
//!
//! Written by hand into a shared buffer instead of through `tracing`'s JSON formatter: that
//! formatter cost about a third of a proxied request. Lines are flushed when the buffer passes
//! 32 KiB and at least every 200 ms by the access-log service (`services.rs`). Never logged: bodies, query strings,
//! header values (tokens, keys, cookies).

use parking_lot::Mutex;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use varco_core::civil::civil_from_days;

const FLUSH_AT: usize = 32 * 1024;

/// One request's facts.
#[derive(Debug, Default)]
pub struct AccessRecord<'a> {
    pub tenant: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub method: &'a str,
    /// Raw path; the query is cut off here.
    pub path: &'a [u8],
    pub upstream: &'a str,
    pub server: &'a str,
    pub attempts: usize,
    pub latency_us: u64,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub client: &'a str,
    pub error: &'a str,
}

/// The process-wide access log buffer.
#[derive(Debug, Default)]
pub struct AccessLog {
    buf: Mutex<Vec<u8>>,
}

impl AccessLog {
    pub fn write(&self, r: &AccessRecord<'_>) {
        let now = SystemTime::now();
        // Encoded straight into the shared buffer: no line of its own to allocate and copy.
        let full = {
            let mut buf = self.buf.lock();
            if buf.capacity() == 0 {
                buf.reserve(FLUSH_AT + 1024);
            }
            encode(&mut buf, r, now);
            (buf.len() >= FLUSH_AT).then(|| std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT + 1024)))
        };
        if let Some(out) = full {
            let _ = std::io::stdout().lock().write_all(&out);
        }
    }

    pub fn flush(&self) {
        let out = std::mem::take(&mut *self.buf.lock());
        if !out.is_empty() {
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(&out);
            let _ = so.flush();
        }
    }
}

fn encode(out: &mut Vec<u8>, r: &AccessRecord<'_>, now: SystemTime) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{");
    let path = r.path.split(|&c| c == b'?').next().unwrap_or(b"");
    str_field(out, "tenant", r.tenant.as_bytes(), false);
    str_field(out, "route", r.route.as_bytes(), true);
    num_field(out, "status", u64::from(r.status));
    str_field(out, "method", r.method.as_bytes(), true);
    str_field(out, "path", path, true);
    str_field(out, "upstream", r.upstream.as_bytes(), true);
    str_field(out, "server", r.server.as_bytes(), true);
    num_field(out, "attempts", r.attempts as u64);
    num_field(out, "latency_us", r.latency_us);
    str_field(out, "request_id", r.request_id.as_bytes(), true);
    str_field(out, "trace_id", r.trace_id.as_bytes(), true);
    str_field(out, "client", r.client.as_bytes(), true);
    str_field(out, "error", r.error.as_bytes(), true);
    out.extend_from_slice(b"},\"target\":\"varco::access\"}\n");
}

fn str_field(out: &mut Vec<u8>, name: &str, v: &[u8], comma: bool) {
    if comma {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    escape(out, v);
    out.push(b'"');
}

fn num_field(out: &mut Vec<u8>, name: &str, v: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    digits(out, v, 1);
}

/// `v` in decimal, at least `width` digits (zero-padded); `core::fmt` costs several times more.
fn digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    while v > 0 || tmp.len() - i < width {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&tmp[i..]);
}

/// JSON string escaping; invalid UTF-8 becomes U+FFFD so every line stays valid JSON.
fn escape(out: &mut Vec<u8>, v: &[u8]) {
    // Nearly every value is printable ASCII without quotes or backslashes: copied whole.
    if v.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\') {
        out.extend_from_slice(v);
        return;
    }
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-23T19:46:00.760764Z`.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    for (v, w, sep) in [
        (y.max(0) as u64, 4, b'-'),
        (u64::from(m), 2, b'-'),
        (u64::from(dd), 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem / 60 % 60, 2, b':'),
    ] {
        digits(out, v, w);
        out.push(sep);
    }
    digits(out, rem % 60, 2);
    out.push(b'.');
    digits(out, u64::from(d.subsec_micros()), 6);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json_with_escaping_and_no_query() {
        let r = AccessRecord {
            tenant: "c_e783",
            route: "anagrafe",
            status: 200,
            method: "GET",
            path: b"/a/\"x\\y\x01\xff?token=secret",
            latency_us: 1234,
            ..Default::default()
        };
        let mut out = Vec::new();
        encode(&mut out, &r, UNIX_EPOCH + std::time::Duration::from_micros(1_795_462_360_760_764));
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["target"], "varco::access");
        assert_eq!(v["timestamp"], "2026-11-23T19:32:40.760764Z");
        assert_eq!(v["fields"]["path"], "/a/\"x\\y\u{1}\u{fffd}");
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["latency_us"], 1234);
        assert!(!String::from_utf8_lossy(&out).contains("secret"));
    }

    #[test]
    fn timestamps_and_numbers_are_written_by_hand_as_core_fmt_would() {
        for micros in [0u64, 1_795_462_360_760_764, 4_102_444_799_999_999, 951_782_400_000_001] {
            let t = UNIX_EPOCH + std::time::Duration::from_micros(micros);
            let mut out = Vec::new();
            timestamp(&mut out, t);
            let d = t.duration_since(UNIX_EPOCH).unwrap();
            let (days, rem) = (d.as_secs() / 86_400, d.as_secs() % 86_400);
            let (y, m, dd) = civil_from_days(days as i64);
            let want = format!(
                "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
                rem / 3600,
                rem / 60 % 60,
                rem % 60,
                d.subsec_micros()
            );
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
        for v in [0u64, 7, 10, 1234, u64::MAX] {
            let mut out = Vec::new();
            digits(&mut out, v, 1);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
        let mut out = Vec::new();
        escape(&mut out, "città \"x\" \u{7f}".as_bytes());
        assert_eq!(serde_json::from_slice::<String>(&[b"\"", &out[..], b"\""].concat()).unwrap(), "città \"x\" \u{7f}");
    }
}
