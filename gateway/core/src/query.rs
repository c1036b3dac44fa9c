//! The query of a request target, percent-decoded (RFC 3986: `%3A` and `%3a` alike). A `+`
//! stays a `+`, so `from_time=2026-11-20T00:00:00+01:00` works as typed; a malformed escape
//! stays as sent; bytes that are not UTF-8 become U+FFFD.

/// Key-value pairs in the order they were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The query of `raw_path` (everything after the first `?`).
    pub fn of(raw_path: &[u8]) -> Self {
        let raw = String::from_utf8_lossy(raw_path);
        let query = raw.split_once('?').map_or("", |(_, q)| q);
        let decode = |x: &str| percent_encoding::percent_decode_str(x).decode_utf8_lossy().into_owned();
        Self(
            query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Every pair.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn queries_are_percent_decoded_and_plus_is_kept() {
        let q = Query::of(
            b"/admin/events/replay?tenant=c_a662&subscription=anagrafe%20bis&from_time=2026-11-20T00%3a00%3A00+01:00&x",
        );
        assert_eq!(q.get("tenant").as_deref(), Some("c_a662"));
        assert_eq!(q.get("subscription").as_deref(), Some("anagrafe bis"));
        assert_eq!(q.get("from_time").as_deref(), Some("2026-11-20T00:00:00+01:00"));
        assert_eq!(q.get("x").as_deref(), Some(""));
        assert_eq!(Query::of(b"/a?t=%2B01%3A00").get("t").as_deref(), Some("+01:00"));
        assert_eq!(Query::of(b"/a?t=%ZZ%").get("t").as_deref(), Some("%ZZ%"), "malformed escapes stay as sent");
        assert_eq!(Query::of(b"/a").get("t"), None);
        assert_eq!(Query::of(b"/a?t=1&t=2").get("t").as_deref(), Some("1"));
        assert_eq!(Query::of(b"/a?t=%FF").get("t").as_deref(), Some("\u{FFFD}"));
    }
}
