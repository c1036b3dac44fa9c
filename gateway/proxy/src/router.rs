//! Matching a request to exactly one tenant and one route. Both indexes are built once per
//! configuration: a hash map on (host, first path segment) for tenants, a radix tree per tenant
//! for routes.

use http::Method;
use std::collections::HashMap;
use varco_core::{Problem, ProblemKind};

/// Which tenant answers a host and path.
#[derive(Debug, Default)]
pub struct TenantIndex {
    /// host ("*" = any) -> (prefix segment without '/', or "" for none) -> tenant index
    hosts: HashMap<String, HashMap<String, usize>>,
}

impl TenantIndex {
    pub fn insert(&mut self, host: &str, prefix: Option<&str>, tenant: usize) {
        let seg = prefix.map(|p| p.trim_start_matches('/')).unwrap_or("");
        self.hosts.entry(host.to_owned()).or_default().insert(seg.to_owned(), tenant);
    }

    /// The tenant and the length of the path prefix it owns. A specific host wins over any
    /// host, a prefix over no prefix.
    pub fn lookup(&self, host: &str, path: &str) -> Option<(usize, usize)> {
        let seg = path.strip_prefix('/').map(|p| p.split(['/', '?']).next().unwrap_or("")).unwrap_or("");
        let try_host = |h: &str| -> Option<(usize, usize)> {
            let m = self.hosts.get(h)?;
            if !seg.is_empty() {
                if let Some(&t) = m.get(seg) {
                    return Some((t, seg.len() + 1));
                }
            }
            m.get("").map(|&t| (t, 0))
        };
        try_host(host).or_else(|| try_host("*"))
    }
}

/// Normalises a Host header value: lowercase, without port; `None` if empty or invalid.
pub fn host_of(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let s = std::str::from_utf8(raw).ok()?;
    let host = if s.starts_with('[') { &s[..=s.find(']')?] } else { s.rsplit_once(':').map(|(h, _)| h).unwrap_or(s) };
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|c| c.is_ascii_uppercase()) {
        Some(host.to_ascii_lowercase().into())
    } else {
        Some(host.into())
    }
}

/// A tenant's routes: path template tree, then method.
#[derive(Debug, Default)]
pub struct RouteTable {
    tree: matchit::Router<usize>,
    /// Per distinct path template: (method, route index) and the `Allow` value.
    entries: Vec<(Vec<(Method, usize)>, String)>,
    paths: Vec<String>,
}

impl RouteTable {
    /// Adds a route; templates were validated by the config.
    pub fn insert(&mut self, path: &str, methods: &[Method], route: usize) -> Result<(), String> {
        let entry = match self.paths.iter().position(|p| p == path) {
            Some(i) => i,
            None => {
                self.tree.insert(path, self.entries.len()).map_err(|e| e.to_string())?;
                self.paths.push(path.to_owned());
                self.entries.push((Vec::new(), String::new()));
                self.entries.len() - 1
            }
        };
        let (list, allow) = &mut self.entries[entry];
        list.extend(methods.iter().map(|m| (m.clone(), route)));
        *allow = list.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ");
        Ok(())
    }

    /// The route for a method and path (below the tenant prefix).
    pub fn lookup(&self, method: &Method, path: &str) -> Result<usize, Problem> {
        let path = path.split('?').next().unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };
        let m = self.tree.at(path).map_err(|_| Problem::new(ProblemKind::NoRoute, format!("no route for {path}")))?;
        let (list, allow) = &self.entries[*m.value];
        list.iter().find(|(mm, _)| mm == method).map(|&(_, r)| r).ok_or_else(|| {
            Problem::new(ProblemKind::MethodNotAllowed, format!("{method} is not allowed on {path}; allowed: {allow}"))
                .allow(allow.clone())
        })
    }

    pub fn has_path(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_lookup_prefers_specific_host_and_prefix() {
        let mut ix = TenantIndex::default();
        ix.insert("macerata.example.it", None, 0);
        ix.insert("*", Some("/c_a662"), 1);
        ix.insert("consorzio.example.it", Some("/c_e783"), 2);
        ix.insert("consorzio.example.it", Some("/c_d969"), 3);
        assert_eq!(ix.lookup("macerata.example.it", "/c_a662/x"), Some((0, 0)));
        assert_eq!(ix.lookup("other", "/c_a662/x"), Some((1, 7)));
        assert_eq!(ix.lookup("other", "/c_a662"), Some((1, 7)));
        assert_eq!(ix.lookup("consorzio.example.it", "/c_d969/status"), Some((3, 7)));
        assert_eq!(ix.lookup("consorzio.example.it", "/c_e783?x"), Some((2, 7)));
        // A tenant's prefix on another tenant's host does not leak.
        assert_eq!(ix.lookup("consorzio.example.it", "/c_a662x/status"), None);
        assert_eq!(ix.lookup("other", "/status"), None);
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(host_of(b"Macerata.Example.IT:8080").as_deref(), Some("macerata.example.it"));
        assert_eq!(host_of(b"[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(host_of(b"127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of(b":80"), None);
        assert_eq!(host_of(b"\xff"), None);
    }

    #[test]
    fn route_lookup_404_405_and_allow() {
        let mut t = RouteTable::default();
        t.insert("/anagrafe/{*rest}", &[Method::GET], 0).unwrap();
        t.insert("/anagrafe/{*rest}", &[Method::POST], 1).unwrap();
        t.insert("/status", &[Method::GET, Method::HEAD], 2).unwrap();
        assert_eq!(t.lookup(&Method::GET, "/anagrafe/v1/x?y=1").unwrap(), 0);
        assert_eq!(t.lookup(&Method::POST, "/anagrafe/v1/x").unwrap(), 1);
        let e = t.lookup(&Method::DELETE, "/anagrafe/v1/x").unwrap_err();
        assert_eq!(e.kind, ProblemKind::MethodNotAllowed);
        assert_eq!(e.allow.as_deref(), Some("GET, POST"));
        assert_eq!(t.lookup(&Method::GET, "/nope").unwrap_err().kind, ProblemKind::NoRoute);
        assert_eq!(t.lookup(&Method::HEAD, "/status").unwrap(), 2);
    }
}
