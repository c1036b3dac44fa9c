//! Pure validation of a parsed [`Config`]: no I/O, every problem with its path.

use crate::issues::{ConfigIssue, Issues};
use crate::model::*;
use crate::validate_rules::{validate_cors, validate_issuer, validate_limit, validate_quota, validate_source, METHODS};
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;

const MAX_BODY_LIMIT: u64 = 1 << 30;

fn is_ipa_code(s: &str) -> bool {
    (2..=32).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((h, p)) => is_hostname(h) && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn looks_like_credential(header: &str) -> bool {
    let h = header.to_ascii_lowercase();
    h == "authorization"
        || h == "cookie"
        || h.contains("token")
        || h.contains("key")
        || h.contains("secret")
        || h.contains("password")
}

impl Config {
    /// Checks the meaning of the configuration. Returns every problem found (empty: valid).
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut is = Issues::default();
        self.validate_server(&mut is);
        if self.server.keepalive_idle.0 < std::time::Duration::from_secs(1) {
            is.add("server.keepalive_idle", "at least 1s");
        }
        crate::validate_rules::validate_connections(self, &mut is);
        for (i, n) in self.server.trusted_proxies.iter().enumerate() {
            if let Err(e) = crate::parse_net(n) {
                is.add(format!("server.trusted_proxies[{i}]"), e);
            }
        }
        crate::validate_rules::validate_events(self, &mut is);
        if let Some(t) = &self.server.tracing {
            crate::validate_rules::validate_tracing(t, &mut is);
        }
        let mut seen_tenants = HashSet::new();
        let mut seen_keys = HashSet::new();
        if self.tenants.is_empty() {
            is.add("tenants", "at least one tenant is needed");
        }
        for (ti, t) in self.tenants.iter().enumerate() {
            let p = format!("tenants[{ti}]");
            if !seen_tenants.insert(t.id.as_str()) {
                is.add(format!("{p}.id"), format!("tenant id `{}` is used twice", t.id));
            }
            validate_tenant(t, &p, self.server.identity_token.as_ref(), self.federation.as_ref(), &mut is);
            if self.server.audit.is_none() {
                for (ri, r) in t.routes.iter().enumerate().filter(|(_, r)| r.audit == Some(true)) {
                    is.add(
                        format!("{p}.routes[{ri}].audit"),
                        format!("route `{}` keeps an audit trail: set `server.audit`", r.name),
                    );
                }
            }
            let hosts: Vec<&str> =
                if t.hosts.is_empty() { vec!["*"] } else { t.hosts.iter().map(String::as_str).collect() };
            for h in hosts {
                let key = (h.to_owned(), t.prefix.clone().unwrap_or_default());
                if !seen_keys.insert(key) {
                    let what = if h == "*" { "any host".to_owned() } else { format!("host `{h}`") };
                    is.add(
                        p.clone(),
                        format!(
                            "another tenant already answers on {what} with prefix `{}`",
                            t.prefix.as_deref().unwrap_or("")
                        ),
                    );
                }
            }
        }
        is.0
    }

    fn validate_server(&self, is: &mut Issues) {
        let s = &self.server;
        if s.threads > 256 {
            is.add("server.threads", "at most 256");
        }
        if s.max_body_bytes == 0 || s.max_body_bytes > MAX_BODY_LIMIT {
            is.add("server.max_body_bytes", "must be between 1 and 1 GiB");
        }
        if let Some(it) = &s.identity_token {
            if http::HeaderName::from_bytes(it.header.as_bytes()).is_err() {
                is.add("server.identity_token.header", "not a header name");
            } else if !it.header.to_ascii_lowercase().starts_with("x-varco-") {
                is.add(
                    "server.identity_token.header",
                    "must start with `X-Varco-`: varco strips those from callers, so they cannot forge it",
                );
            }
            if it.ttl.0.as_secs() == 0 || it.ttl.0.as_secs() > 3600 {
                is.add("server.identity_token.ttl", "between 1s and 1h");
            }
        }
        if s.client_body_timeout.0.is_zero() {
            is.add("server.client_body_timeout", "must be more than zero");
        }
        if s.grace_period.0.as_secs() > 600 || s.shutdown_timeout.0.as_secs() > 600 {
            is.add("server", "grace_period and shutdown_timeout are at most 10m");
        }
        if self.listeners.is_empty() {
            is.add("listeners", "at least one listener is needed");
        }
        let mut addrs = HashSet::new();
        let mut names = HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let p = format!("listeners[{i}]");
            if !is_name(&l.name) || !names.insert(l.name.as_str()) {
                is.add(format!("{p}.name"), "must be a unique name of letters, digits, `-` or `_`");
            }
            match l.address.parse::<SocketAddr>() {
                Ok(a) => {
                    if !addrs.insert(a) {
                        is.add(format!("{p}.address"), format!("{a} is bound twice"));
                    }
                }
                Err(_) => is.add(format!("{p}.address"), format!("`{}` is not an ip:port address", l.address)),
            }
            if let Some(tls) = &l.tls {
                if tls.certificates.is_empty() {
                    is.add(format!("{p}.tls.certificates"), "at least one certificate is needed");
                }
                for (ci, c) in tls.certificates.iter().enumerate() {
                    for (hi, h) in c.hosts.iter().enumerate() {
                        if !is_hostname(h) {
                            is.add(
                                format!("{p}.tls.certificates[{ci}].hosts[{hi}]"),
                                format!("`{h}` is not a lowercase hostname"),
                            );
                        }
                    }
                }
                if tls.client_auth != ClientAuth::None && tls.client_ca.is_none() {
                    is.add(format!("{p}.tls.client_ca"), "client_auth optional/required needs client_ca");
                }
            }
        }
        if let Some(f) = &self.federation {
            for (field, m) in f.validate() {
                is.add(format!("federation.{field}"), m);
            }
        }
        if let Some(r) = &self.redis {
            if !(r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
                is.add("redis.url", "must be a redis:// or rediss:// URL");
            } else if r.url.contains('@') {
                is.add("redis.url", "credentials must not be in the URL: use `password: {env: ...}`");
            }
            if r.timeout.0.is_zero() {
                is.add("redis.timeout", "must be more than zero");
            }
        }
        match self.admin.address.parse::<SocketAddr>() {
            Ok(a) => {
                if addrs.contains(&a) {
                    is.add("admin.address", format!("{a} is also a tenant listener"));
                }
                if !a.ip().is_loopback() && self.admin.token.is_none() {
                    is.add("admin.token", "an admin listener on a non-loopback address needs a token");
                }
            }
            Err(_) => is.add("admin.address", format!("`{}` is not an ip:port address", self.admin.address)),
        }
        if let Some(SecretRef::Env(v)) = &self.admin.token {
            if v.is_empty() {
                is.add("admin.token.env", "names no variable");
            }
        }
    }
}

fn validate_tenant(
    t: &TenantConfig,
    p: &str,
    server_identity: Option<&IdentityTokenConfig>,
    federation: Option<&FederationConfig>,
    is: &mut Issues,
) {
    if !is_ipa_code(&t.id) {
        is.add(format!("{p}.id"), format!("`{}` is not a codice IPA (2-32 of a-z, 0-9, _)", t.id));
    }
    if t.name.trim().is_empty() {
        is.add(format!("{p}.name"), "must not be empty");
    }
    let mut kids = HashSet::new();
    for (ki, k) in t.keys.iter().enumerate() {
        if k.kid.is_empty() || k.kid.len() > 256 || !k.kid.bytes().all(|b| b.is_ascii_graphic()) {
            is.add(format!("{p}.keys[{ki}].kid"), "1 to 256 printable characters");
        } else if !kids.insert(k.kid.as_str()) {
            is.add(format!("{p}.keys[{ki}].kid"), format!("`{}` is used twice", k.kid));
        }
    }
    if let Some(o) = &t.oidc {
        for (f, m) in o.validate(&t.hosts, t.prefix.as_deref()) {
            is.add(format!("{p}.oidc.{f}"), m);
        }
        // Without `federation` the ente publishes its Entity Configuration (to register) but
        // logs nobody in: its session routes are refused below.
        if let Some(fed) = federation {
            for (i, op) in o.login.providers.iter().enumerate() {
                if !fed.providers.iter().any(|p| &p.entity_id == op) {
                    is.add(
                        format!("{p}.oidc.login.providers[{i}]"),
                        format!("`{op}` is not in `federation.providers`"),
                    );
                }
            }
        }
    }
    if let Some(s) = &t.siuss {
        for (f, m) in s.validate() {
            is.add(format!("{p}.siuss.{f}"), m);
        }
    }
    if let Some(d) = &t.pdnd {
        let kids: Vec<&str> = t.keys.iter().map(|k| k.kid.as_str()).collect();
        for (f, m) in d.validate(&kids) {
            is.add(if f.is_empty() { format!("{p}.pdnd") } else { format!("{p}.pdnd.{f}") }, m);
        }
    }
    for (hi, h) in t.hosts.iter().enumerate() {
        if !is_hostname(h) {
            is.add(format!("{p}.hosts[{hi}]"), format!("`{h}` is not a lowercase hostname without port"));
        }
    }
    if let Some(prefix) = &t.prefix {
        let seg = prefix.strip_prefix('/').unwrap_or("");
        if seg.is_empty()
            || !seg.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
            || seg == "."
            || seg == ".."
        {
            is.add(format!("{p}.prefix"), format!("`{prefix}` must be one path segment like `/c_e783`"));
        }
    }
    for (i, l) in t.rate_limits.iter().enumerate() {
        validate_limit(l, &format!("{p}.rate_limits[{i}]"), is);
    }
    for (i, q) in t.quotas.iter().enumerate() {
        validate_quota(q, &format!("{p}.quotas[{i}]"), is);
    }
    // The API-key header is removed once the key is verified, before limits run: a limit keyed
    // on it would put every key in one bucket.
    let key_headers: Vec<&str> = t
        .routes
        .iter()
        .filter_map(|r| match &r.access {
            Access::ApiKey(a) => Some(a.header.as_str()),
            _ => None,
        })
        .collect();
    let on_key_header = |per: LimitKey, header: Option<&str>, at: String, keys: &[&str], is: &mut Issues| {
        if let (LimitKey::Header, Some(h)) = (per, header) {
            if keys.iter().any(|k| k.eq_ignore_ascii_case(h)) {
                is.add(
                    at,
                    format!(
                        "`{h}` carries API keys, which are removed once verified: count per key with `per: client_id`"
                    ),
                );
            }
        }
    };
    for (i, l) in t.rate_limits.iter().enumerate() {
        on_key_header(l.per, l.header.as_deref(), format!("{p}.rate_limits[{i}].header"), &key_headers, is);
    }
    for (i, q) in t.quotas.iter().enumerate() {
        on_key_header(q.per, q.header.as_deref(), format!("{p}.quotas[{i}].header"), &key_headers, is);
    }
    for (ri, r) in t.routes.iter().enumerate() {
        let Access::ApiKey(a) = &r.access else { continue };
        let own = [a.header.as_str()];
        for (i, l) in r.rate_limits.iter().enumerate() {
            on_key_header(l.per, l.header.as_deref(), format!("{p}.routes[{ri}].rate_limits[{i}].header"), &own, is);
        }
        for (i, q) in r.quotas.iter().enumerate() {
            on_key_header(q.per, q.header.as_deref(), format!("{p}.routes[{ri}].quotas[{i}].header"), &own, is);
        }
    }
    if let Some(r) = &t.source {
        validate_source(r, &format!("{p}.source"), is);
    }
    if let Some(c) = &t.cors {
        validate_cors(c, &format!("{p}.cors"), is);
    }
    if t.max_concurrent == Some(0) {
        is.add(format!("{p}.max_concurrent"), "must be at least 1");
    }
    let mut key_names = HashSet::new();
    for (i, k) in t.api_keys.iter().enumerate() {
        let kp = format!("{p}.api_keys[{i}]");
        if !is_name(&k.name) || !key_names.insert(k.name.as_str()) {
            is.add(format!("{kp}.name"), "must be a unique name of letters, digits, `-` or `_`");
        }
        let hex = k.hash.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            is.add(format!("{kp}.hash"), "must be `sha256:` and 64 hex digits (made by `varco apikey`)");
        }
        for (ri, r) in k.routes.iter().enumerate() {
            if !t.routes.iter().any(|x| &x.name == r) {
                is.add(format!("{kp}.routes[{ri}]"), format!("tenant `{}` has no route `{r}`", t.id));
            }
        }
    }
    for (name, iss) in &t.issuers {
        validate_issuer(iss, &format!("{p}.issuers.{name}"), is);
    }
    for (name, u) in &t.upstreams {
        validate_upstream(u, &format!("{p}.upstreams.{name}"), name, is);
    }
    let mut route_names = HashSet::new();
    let mut router = matchit::Router::new();
    let mut claimed: Vec<(String, BTreeSet<&str>)> = Vec::new();
    for (ri, r) in t.routes.iter().enumerate() {
        let rp = format!("{p}.routes[{ri}]");
        if !is_name(&r.name) || !route_names.insert(r.name.as_str()) {
            is.add(format!("{rp}.name"), "must be a unique name of letters, digits, `-` or `_`");
        }
        if !r.path.starts_with('/') {
            is.add(format!("{rp}.path"), "must start with `/`");
        } else if let Some((_, methods)) = claimed.iter_mut().find(|(path, _)| *path == r.path) {
            for m in &r.methods {
                if !methods.insert(m.as_str()) {
                    is.add(format!("{rp}.methods"), format!("{m} {} is already claimed by another route", r.path));
                }
            }
        } else {
            match router.insert(r.path.as_str(), ()) {
                Ok(()) => claimed.push((r.path.clone(), r.methods.iter().map(String::as_str).collect())),
                Err(e) => is.add(format!("{rp}.path"), format!("invalid or conflicting path template: {e}")),
            }
        }
        if r.methods.is_empty() {
            is.add(format!("{rp}.methods"), "list the admitted methods (deny by default)");
        }
        if let Access::ApiKey(k) = &r.access {
            if http::HeaderName::from_bytes(k.header.as_bytes()).is_err() {
                is.add(format!("{rp}.access.api_key.header"), "not a header name");
            }
        }
        if let Access::Session(a) = &r.access {
            if t.oidc.is_none() || federation.is_none() {
                is.add(
                    format!("{rp}.access.session"),
                    "citizens log in with the ente's `tenants[].oidc` through `federation`: set both",
                );
            }
            if a.acr_min.is_some_and(|l| !(1..=3).contains(&l)) {
                is.add(format!("{rp}.access.session.acr_min"), "SPID/CIE levels are 1, 2 or 3");
            }
        }
        if let Access::Jwt(j) = &r.access {
            if j.acr_min.is_some_and(|l| !(1..=3).contains(&l)) {
                is.add(format!("{rp}.access.jwt.acr_min"), "SPID/CIE levels are 1, 2 or 3");
            }
            if j.issuers.is_empty() {
                is.add(format!("{rp}.access.jwt.issuers"), "name at least one of the tenant's issuers");
            }
            for (i, name) in j.issuers.iter().enumerate() {
                if !t.issuers.contains_key(name) {
                    is.add(
                        format!("{rp}.access.jwt.issuers[{i}]"),
                        format!("tenant `{}` has no issuer `{name}`", t.id),
                    );
                }
            }
            if let Some(m) = &j.modi {
                crate::validate_rules::validate_modi(
                    m,
                    &format!("{rp}.access.jwt.modi"),
                    t,
                    server_identity.is_some() || !t.keys.is_empty(),
                    is,
                );
            }
        }
        for (mi, m) in r.methods.iter().enumerate() {
            if !METHODS.contains(&m.as_str()) {
                is.add(format!("{rp}.methods[{mi}]"), format!("`{m}` is not one of {}", METHODS.join(", ")));
            }
        }
        for (i, l) in r.rate_limits.iter().enumerate() {
            validate_limit(l, &format!("{rp}.rate_limits[{i}]"), is);
        }
        for (i, q) in r.quotas.iter().enumerate() {
            validate_quota(q, &format!("{rp}.quotas[{i}]"), is);
        }
        if let Some(b) = r.max_body_bytes {
            if b > MAX_BODY_LIMIT {
                is.add(format!("{rp}.max_body_bytes"), "at most 1 GiB");
            }
        }
        match &r.to {
            RouteTarget::Upstream(u) => {
                if !t.upstreams.contains_key(u) {
                    is.add(format!("{rp}.to.upstream"), format!("tenant `{}` has no upstream `{u}`", t.id));
                }
            }
            RouteTarget::Adapter(a) => {
                crate::validate_adapters::validate_adapter(a, t, r, &rp, server_identity, is);
                if r.strip_prefix.is_some() || r.request_headers.is_some() || r.response_headers.is_some() {
                    is.add(
                        rp.clone(),
                        "strip_prefix, request_headers and response_headers apply to upstream targets only",
                    );
                }
            }
        }
        if let Some(sp) = &r.strip_prefix {
            if !sp.starts_with('/') || sp.ends_with('/') || !r.path.starts_with(sp.as_str()) {
                is.add(format!("{rp}.strip_prefix"), "must start with `/`, not end with `/`, and begin the route path");
            }
        }
        if let Some(h) = &r.request_headers {
            for (name, v) in &h.set {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    is.add(format!("{rp}.request_headers.set.{name}"), "not a valid header name");
                } else if crate::is_identity_header(name) {
                    is.add(
                        format!("{rp}.request_headers.set.{name}"),
                        "X-Varco-* names are reserved for the verified identity varco forwards",
                    );
                }
                if let HeaderValueSource::Inline(v) = v {
                    if looks_like_credential(name) {
                        is.add(
                            format!("{rp}.request_headers.set.{name}"),
                            "credentials must come from `env` or `file`, not inline",
                        );
                    } else if http::HeaderValue::from_str(v).is_err() {
                        is.add(format!("{rp}.request_headers.set.{name}"), "not a valid header value");
                    }
                }
            }
            for (i, name) in h.remove.iter().enumerate() {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    is.add(format!("{rp}.request_headers.remove[{i}]"), "not a valid header name");
                }
            }
        }
        if let Some(src) = &r.source {
            validate_source(src, &format!("{rp}.source"), is);
        }
        if let Some(c) = &r.cors {
            validate_cors(c, &format!("{rp}.cors"), is);
            for (i, m) in c.allow_methods.iter().enumerate() {
                if !r.methods.contains(m) {
                    is.add(format!("{rp}.cors.allow_methods[{i}]"), format!("`{m}` is not one of the route's methods"));
                }
            }
        }
        if let Some(h) = &r.response_headers {
            // Framing and connection headers belong to the proxy: rewriting them would corrupt
            // the answer; X-Request-Id and X-RateLimit-* are varco's promise to callers.
            let owned = |n: &str| {
                [
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "keep-alive",
                    "upgrade",
                    "te",
                    "trailer",
                    "x-request-id",
                ]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(n))
                    || n.to_ascii_lowercase().starts_with("x-ratelimit-")
            };
            for (name, v) in &h.set {
                let at = format!("{rp}.response_headers.set.{name}");
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    is.add(at, "not a valid header name");
                } else if owned(name) {
                    is.add(at, "set by varco itself (framing, request id, rate limits)");
                } else if http::HeaderValue::from_str(v).is_err() {
                    is.add(at, "not a valid header value");
                }
            }
            for (i, name) in h.remove.iter().enumerate() {
                let at = format!("{rp}.response_headers.remove[{i}]");
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    is.add(at, "not a valid header name");
                } else if owned(name) {
                    is.add(at, "set by varco itself (framing, request id, rate limits)");
                }
            }
        }
    }
}

fn validate_upstream(u: &UpstreamConfig, p: &str, name: &str, is: &mut Issues) {
    if !is_name(name) {
        is.add(p.to_owned(), "upstream names are letters, digits, `-` or `_`");
    }
    if u.servers.is_empty() {
        is.add(format!("{p}.servers"), "at least one server is needed");
    }
    for (i, s) in u.servers.iter().enumerate() {
        if !is_host_port(s.address()) {
            is.add(format!("{p}.servers[{i}]"), format!("`{}` is not host:port", s.address()));
        }
        if s.weight() > 1000 {
            is.add(format!("{p}.servers[{i}].weight"), "at most 1000");
        }
    }
    if !u.servers.is_empty() && u.servers.iter().all(|s| s.weight() == 0) {
        is.add(format!("{p}.servers"), "every server has weight 0: nothing would get traffic");
    }
    if let Balance::ConsistentHash { header } = &u.balance {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            is.add(format!("{p}.balance.consistent_hash.header"), format!("`{header}` is not a header name"));
        } else if crate::is_identity_header(header) {
            is.add(
                format!("{p}.balance.consistent_hash.header"),
                "X-Varco-* headers are written after the server is chosen; hash on a header the caller sends",
            );
        }
    }
    if u.retries > 5 {
        is.add(format!("{p}.retries"), "at most 5");
    }
    let t = &u.timeouts;
    for (f, d) in [("connect", t.connect), ("read", t.read), ("write", t.write), ("total", t.total)] {
        if d.0.is_zero() {
            is.add(format!("{p}.timeouts.{f}"), "must be more than zero");
        }
    }
    if u.max_concurrent == Some(0) {
        is.add(format!("{p}.max_concurrent"), "must be at least 1");
    }
    for (i, st) in u.passive.statuses.iter().enumerate() {
        if !(400..=599).contains(st) {
            is.add(format!("{p}.passive.statuses[{i}]"), "an error status, 400 to 599");
        }
    }
    if let Some(cb) = &u.circuit_breaker {
        if cb.consecutive_failures == 0 || cb.half_open_probes == 0 {
            is.add(format!("{p}.circuit_breaker"), "consecutive_failures and half_open_probes must be at least 1");
        }
        if !(0.0..=1.0).contains(&cb.failure_ratio) {
            is.add(format!("{p}.circuit_breaker.failure_ratio"), "must be between 0 and 1");
        }
        if cb.window.0.is_zero() || cb.open_for.0.is_zero() {
            is.add(format!("{p}.circuit_breaker"), "window and open_for must be more than zero");
        }
    }
    if let Some(hc) = &u.health_check {
        if !hc.path.starts_with('/') {
            is.add(format!("{p}.health_check.path"), "must start with `/`");
        }
        if hc.interval.0.as_millis() < 100 {
            is.add(format!("{p}.health_check.interval"), "at least 100ms");
        }
        if hc.timeout.0.is_zero() || hc.timeout > hc.interval {
            is.add(format!("{p}.health_check.timeout"), "must be more than zero and at most the interval");
        }
        if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
            is.add(format!("{p}.health_check"), "thresholds must be at least 1");
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
