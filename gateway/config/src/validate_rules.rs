//! Validation of access and traffic policies: issuers, rate limits, quotas, address rules, CORS,
//! and the event bus.

use crate::issues::Issues;
use crate::model::*;

/// Methods a route may admit.
pub(crate) const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

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
    validate_key_header(l.per, l.header.as_deref(), p, is);
}

/// The `header` of a limit or quota keyed `per: header`.
fn validate_key_header(per: LimitKey, header: Option<&str>, p: &str, is: &mut Issues) {
    match (per, header) {
        (LimitKey::Header, None) => is.add(format!("{p}.header"), "`per: header` needs the header name"),
        (LimitKey::Header, Some(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
            is.add(format!("{p}.header"), format!("`{h}` is not a header name"))
        }
        (LimitKey::Header, Some(h)) if crate::is_identity_header(h) => is.add(
            format!("{p}.header"),
            "X-Varco-* headers are written after limits run (a caller's own are removed); \
             use `per: subject` or `per: client_id`",
        ),
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
    validate_key_header(q.per, q.header.as_deref(), p, is);
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
        is.add(format!("{p}.sign_responses"), "needs a signing key: `tenants[].keys` or `server.identity_token`");
    }
}

/// Event types are reverse-DNS names ending in a version: `it.varco.anagrafe.residenza.cambiata.v1`.
pub fn is_event_type(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        && parts.last().is_some_and(|v| v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn validate_events(cfg: &Config, is: &mut Issues) {
    let e = &cfg.server.events;
    if e.max_bytes < 1 << 20 {
        is.add("server.events.max_bytes", "at least 1 MiB");
    }
    if e.segment_bytes < 1 << 16 || e.segment_bytes > e.max_bytes {
        is.add("server.events.segment_bytes", "at least 64 KiB and at most max_bytes");
    }
    if let Some(k) = &e.kafka {
        if k.brokers.trim().is_empty() {
            is.add("server.events.kafka.brokers", "list at least one `host:port`");
        }
        if k.topic.is_empty() || !k.topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            is.add("server.events.kafka.topic", "letters, digits, `.`, `_` and `-` only");
        }
        if k.create_partitions < 0 {
            is.add("server.events.kafka.create_partitions", "0 (never create) or more");
        }
        if let crate::SecretRef::Env(v) = &k.subject_key {
            if v.is_empty() {
                is.add("server.events.kafka.subject_key.env", "names no variable");
            }
        }
        if let Some(id) = &k.instance_id {
            // group.instance.id: printable, no spaces (it appears in broker logs and tools).
            if id.is_empty() || id.len() > 200 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                is.add("server.events.kafka.instance_id", "1-200 printable ASCII characters, no spaces");
            }
        }
        // Kafka refuses topic names over 249 characters: the longest one varco makes.
        let longest = cfg.tenants.iter().map(|t| t.id.len()).max().unwrap_or(0) + ".dead-letter".len() + 32;
        if k.topic.len() + 1 + longest > 249 {
            is.add("server.events.kafka.topic", "too long: the topics made from it would pass Kafka's 249 characters");
        }
    }
    for (ti, t) in cfg.tenants.iter().enumerate() {
        let p = format!("tenants[{ti}].events");
        for (gi, g) in t.events.readers.iter().enumerate() {
            if !cfg.tenants.iter().any(|o| o.id == g.tenant) {
                is.add(format!("{p}.readers[{gi}].tenant"), format!("no tenant `{}`", g.tenant));
            }
            for (i, ty) in g.types.iter().enumerate() {
                if !is_event_type(ty) {
                    is.add(
                        format!("{p}.readers[{gi}].types[{i}]"),
                        format!("`{ty}` is not a versioned reverse-DNS event type"),
                    );
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (si, sub) in t.events.subscriptions.iter().enumerate() {
            let sp = format!("{p}.subscriptions[{si}]");
            if sub.name.is_empty()
                || !sub.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || !names.insert(sub.name.as_str())
            {
                is.add(format!("{sp}.name"), "must be a unique name of letters, digits, `-` or `_`");
            }
            if sub.types.is_empty() {
                is.add(format!("{sp}.types"), "list at least one event type");
            }
            if sub.sources.is_empty() {
                is.add(format!("{sp}.sources"), "list at least one ente");
            }
            for (i, src) in sub.sources.iter().enumerate() {
                let Some(owner) = cfg.tenants.iter().find(|o| &o.id == src) else {
                    is.add(format!("{sp}.sources[{i}]"), format!("no tenant `{src}`"));
                    continue;
                };
                for ty in &sub.types {
                    let granted = owner.events.readers.iter().any(|g| g.tenant == t.id && g.types.contains(ty));
                    if !granted && owner.id != t.id {
                        is.add(
                            format!("{sp}.sources[{i}]"),
                            format!("ente `{src}` does not let `{}` read `{ty}` (its events.readers)", t.id),
                        );
                    }
                }
            }
            for (i, ty) in sub.types.iter().enumerate() {
                if !is_event_type(ty) {
                    is.add(format!("{sp}.types[{i}]"), format!("`{ty}` is not a versioned reverse-DNS event type"));
                }
            }
            match (&sub.webhook, &sub.route) {
                (Some(w), None) => {
                    let u = &w.url;
                    if !(u.starts_with("http://") || u.starts_with("https://")) || u.parse::<http::Uri>().is_err() {
                        is.add(format!("{sp}.webhook.url"), "must be an http(s) URL");
                    }
                }
                (None, Some(r)) => {
                    let takes_events = t.routes.iter().any(|x| {
                        &x.name == r
                            && match &x.to {
                                RouteTarget::Adapter(a) => match &**a {
                                    AdapterConfig::Gpd(_) => true,
                                    AdapterConfig::SignalHub(c) => c.deposit.is_some(),
                                    AdapterConfig::Siuss(c) => c.side == SiussSide::BackOffice,
                                    _ => false,
                                },
                                RouteTarget::Upstream(_) => false,
                            }
                    });
                    if !takes_events {
                        is.add(
                            format!("{sp}.route"),
                            format!(
                                "ente `{}` has no route `{r}` whose adapter takes events (gpd, signal_hub with `deposit`, siuss back_office)",
                                t.id
                            ),
                        );
                    }
                }
                _ => is.add(sp.clone(), "give exactly one of `webhook` and `route`"),
            }
            if sub.max_attempts == 0 {
                is.add(format!("{sp}.max_attempts"), "at least 1");
            }
            if sub.backoff.0 > sub.max_backoff.0 || sub.backoff.0.is_zero() {
                is.add(format!("{sp}.backoff"), "more than 0 and at most max_backoff");
            }
        }
    }
}

pub(crate) fn validate_source(r: &SourceRules, p: &str, is: &mut Issues) {
    for (what, list) in [("allow", &r.allow), ("deny", &r.deny)] {
        for (i, n) in list.iter().enumerate() {
            if let Err(e) = crate::parse_net(n) {
                is.add(format!("{p}.{what}[{i}]"), e);
            }
        }
    }
    if r.allow.is_empty() && r.deny.is_empty() {
        is.add(p.to_owned(), "list `allow` or `deny` networks (or leave `source` out)");
    }
}

pub(crate) fn validate_cors(c: &CorsConfig, p: &str, is: &mut Issues) {
    if c.allow_origins.is_empty() {
        is.add(format!("{p}.allow_origins"), "list the web origins admitted, or `*`");
    }
    let any = c.allow_origins.iter().any(|o| o == "*");
    if any && c.allow_origins.len() > 1 {
        is.add(format!("{p}.allow_origins"), "`*` stands alone");
    }
    if any && c.allow_credentials {
        is.add(format!("{p}.allow_credentials"), "not with `*` origins: browsers refuse it; list the origins");
    }
    for (i, o) in c.allow_origins.iter().enumerate().filter(|(_, o)| *o != "*") {
        if !is_origin(o) {
            is.add(format!("{p}.allow_origins[{i}]"), format!("`{o}` is not an origin like https://app.example.it"));
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            is.add(format!("{p}.allow_methods[{i}]"), format!("`{m}` is not one of {}", METHODS.join(", ")));
        }
    }
    for (what, list) in [("allow_headers", &c.allow_headers), ("expose_headers", &c.expose_headers)] {
        for (i, h) in list.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() || h == "*" {
                is.add(format!("{p}.{what}[{i}]"), format!("`{h}` is not a header name"));
            }
        }
    }
    if c.max_age.0 > std::time::Duration::from_secs(86_400) {
        is.add(format!("{p}.max_age"), "at most 24h");
    }
}

/// `scheme://host[:port]`, lower case, nothing after: what a browser sends as `Origin`.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:[]".contains(&b))
}

/// Connection settings: the header deadline, the listeners' connection limits, the PROXY
/// protocol (plain listeners behind listed balancers only).
pub(crate) fn validate_connections(cfg: &Config, is: &mut Issues) {
    if cfg.server.header_timeout.0 < std::time::Duration::from_millis(100) {
        is.add("server.header_timeout", "at least 100ms");
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        if l.max_connections == 0 {
            is.add(format!("listeners[{i}].max_connections"), "at least 1");
        }
        if l.max_connections_per_address == 0 {
            is.add(format!("listeners[{i}].max_connections_per_address"), "at least 1");
        }
        if l.read_buffer_bytes.is_some_and(|b| b > 1 << 20) {
            is.add(format!("listeners[{i}].read_buffer_bytes"), "at most 1048576 (1 MiB)");
        }
        if l.proxy_protocol && l.tls.is_some() {
            is.add(format!("listeners[{i}].proxy_protocol"), "a PROXY header comes before TLS: plain listeners only");
        }
        if l.proxy_protocol && cfg.server.trusted_proxies.is_empty() {
            is.add(
                format!("listeners[{i}].proxy_protocol"),
                "list the load balancers that send the PROXY header in server.trusted_proxies",
            );
        }
    }
}

/// `server.tracing`: a usable collector URL, a ratio that is one, queues that hold something.
pub(crate) fn validate_tracing(t: &crate::TracingConfig, is: &mut Issues) {
    let p = "server.tracing";
    if let Some(e) = &t.endpoint {
        match e.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => is.add(format!("{p}.endpoint"), format!("`{e}` is not an http(s) URL")),
        }
    }
    if let Some(r) = t.ratio {
        if !(0.0..=1.0).contains(&r) {
            is.add(format!("{p}.ratio"), format!("{r} is not a share between 0 and 1"));
        }
    }
    if t.queue_size == Some(0) {
        is.add(format!("{p}.queue_size"), "the queue must hold at least one span");
    }
    if t.batch_size == Some(0) {
        is.add(format!("{p}.batch_size"), "a batch must hold at least one span");
    }
    if let (Some(b), Some(q)) = (t.batch_size, t.queue_size) {
        if b > q {
            is.add(format!("{p}.batch_size"), format!("a batch of {b} cannot be larger than the queue ({q})"));
        }
    }
    if t.timeout.is_some_and(|d| d.0.is_zero()) {
        is.add(format!("{p}.timeout"), "an export needs some time");
    }
    for k in t.headers.keys() {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            is.add(format!("{p}.headers"), format!("`{k}` is not a header name"));
        }
    }
}
