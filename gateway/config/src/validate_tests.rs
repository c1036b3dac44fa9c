//! Unit tests of `validate.rs`: each rule refuses what it should, with its path.

use crate::load_str;

const BASE: &str = r#"
listeners: [{name: public, address: "127.0.0.1:8080"}]
tenants:
  - id: c_e783
    name: Comune di Macerata
    hosts: [macerata.example.it]
    upstreams:
      anagrafe: {servers: ["127.0.0.1:9001"]}
    routes:
      - {name: a, path: "/anagrafe/{*rest}", methods: [GET], access: public, to: {upstream: anagrafe}}
"#;

fn issues(yaml: &str) -> Vec<String> {
    match load_str(yaml) {
        Ok(_) => vec![],
        Err(e) => e.iter().map(|i| format!("{}: {}", i.path, i.message)).collect(),
    }
}

#[test]
fn base_is_valid() {
    assert!(issues(BASE).is_empty(), "{:?}", issues(BASE));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let bad = BASE
        .replace("to: {upstream: anagrafe}", "to: {upstream: tributi}")
        .replace("methods: [GET]", "methods: [GET, BREW]")
        .replace("c_e783", "C E783")
        .replace("127.0.0.1:9001", "nohost");
    let got = issues(&bad);
    let want = [
        "tenants[0].id: `C E783` is not a codice IPA",
        "tenants[0].routes[0].to.upstream: tenant `C E783` has no upstream `tributi`",
        "tenants[0].routes[0].methods[1]: `BREW` is not one of",
        "tenants[0].upstreams.anagrafe.servers[0]: `nohost` is not host:port",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "missing `{w}` in {got:#?}");
    }
}

#[test]
fn semantic_errors_carry_the_line() {
    let bad = BASE.replace("to: {upstream: anagrafe}", "to: {upstream: tributi}");
    let e = load_str(&bad).unwrap_err();
    assert_eq!((e[0].line, e[0].column), (Some(10), Some(83)), "{e:?}");
}

#[test]
fn tenants_may_not_overlap() {
    let two = format!("{BASE}  - {{id: c_a662, name: Bari, hosts: [macerata.example.it]}}\n");
    assert!(
        issues(&two).iter().any(|i| i.contains("another tenant already answers on host `macerata.example.it`")),
        "{:?}",
        issues(&two)
    );
    let prefixed = format!("{BASE}  - {{id: c_a662, name: Bari, hosts: [macerata.example.it], prefix: /bari}}\n");
    assert!(issues(&prefixed).is_empty());
}

#[test]
fn conflicting_routes_are_rejected() {
    let dup = BASE.replace(
            "to: {upstream: anagrafe}}",
            "to: {upstream: anagrafe}}\n      - {name: b, path: \"/anagrafe/{*rest}\", methods: [GET], access: public, to: {upstream: anagrafe}}",
        );
    assert!(issues(&dup).iter().any(|i| i.contains("GET /anagrafe/{*rest} is already claimed")), "{:?}", issues(&dup));
}

#[test]
fn access_must_be_stated() {
    let open = BASE.replace("access: public, ", "");
    assert!(issues(&open).iter().any(|i| i.contains("missing field `access`")), "{:?}", issues(&open));
}

#[test]
fn inline_credentials_are_rejected() {
    let cred = BASE.replace(
        "to: {upstream: anagrafe}}",
        "to: {upstream: anagrafe}, request_headers: {set: {Authorization: \"Bearer abc\", X-Tenant: mc}}}",
    );
    let got = issues(&cred);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("credentials must come from `env` or `file`"));
    let ok = cred.replace("\"Bearer abc\"", "{env: BO_TOKEN}");
    assert!(issues(&ok).is_empty(), "{:?}", issues(&ok));
}

#[test]
fn rate_limits_are_checked() {
    let cfg = BASE.replace(
            "to: {upstream: anagrafe}}",
            "to: {upstream: anagrafe}, rate_limits: [{per: header, requests: 0, period: 1s}, {per: client_ip, header: X-A, requests: 1, period: 1s, burst: 0}]}",
        );
    let got = issues(&cfg);
    for want in ["rate_limits[0].requests", "rate_limits[0].header", "rate_limits[1].header", "rate_limits[1].burst"] {
        assert!(got.iter().any(|g| g.contains(want)), "missing {want} in {got:?}");
    }
}

#[test]
fn identity_headers_are_varco_s_own() {
    let cfg = BASE
        .replace(
            "to: {upstream: anagrafe}}",
            "to: {upstream: anagrafe}, request_headers: {set: {X-Varco-Subject: me}, remove: [X-Varco-Fiscal-Code]}, \
                 rate_limits: [{per: header, header: x-varco-purpose-id, requests: 1, period: 1s}]}",
        )
        .replace(
            "servers: [\"127.0.0.1:9001\"]",
            "servers: [\"127.0.0.1:9001\"], balance: {consistent_hash: {header: X-Varco-Subject}}",
        );
    let got = issues(&cfg);
    assert_eq!(got.len(), 3, "{got:#?}");
    for want in [
        "routes[0].request_headers.set.X-Varco-Subject: X-Varco-* names are reserved",
        "routes[0].rate_limits[0].header: X-Varco-* headers are written after limits run",
        "upstreams.anagrafe.balance.consistent_hash.header: X-Varco-* headers",
    ] {
        assert!(got.iter().any(|g| g.contains(want)), "missing `{want}` in {got:#?}");
    }
}

#[test]
fn event_routes_are_never_public() {
    for kind in ["events", "event_stream"] {
        let cfg = format!(
            "server: {{events: {{dir: /tmp/x}}}}\n{}",
            BASE.replace(
                "methods: [GET], access: public, to: {upstream: anagrafe}",
                &format!("methods: [GET, POST], access: public, to: {{adapter: {{kind: {kind}}}}}"),
            )
        );
        let got = issues(&cfg);
        assert!(got.iter().any(|g| g.starts_with("tenants[0].routes[0].access: event routes")), "{kind}: {got:#?}");
        let ok = cfg.replace("access: public", "access: {api_key: {}}");
        assert!(issues(&ok).is_empty(), "{kind}: {:#?}", issues(&ok));
    }
}

#[test]
fn public_admin_needs_a_token() {
    let cfg = format!("admin: {{address: \"0.0.0.0:9180\"}}\n{BASE}");
    assert!(issues(&cfg).iter().any(|i| i.starts_with("admin.token")));
}

#[test]
fn a_live_stream_is_not_a_modi_route() {
    let yaml = BASE.replace(
        "to: {upstream: anagrafe}}",
        "to: {upstream: anagrafe}}\n      - {name: s, path: /stream, methods: [GET], access: {jwt: {issuers: [i], modi: {integrity: INTEGRITY_REST_02, audience: \"https://x\", keys_issuer: i}}}, to: {adapter: {kind: event_stream}}}",
    ).replace("    upstreams:", "    issuers: {i: {issuer: \"https://i\", audiences: [a], jwks_url: \"https://i/jwks\"}}\n    upstreams:");
    let found = issues(&yaml);
    assert!(found.iter().any(|i| i.starts_with("tenants[0].routes[1].access.jwt.modi: a live stream")), "{found:?}");
}

#[test]
fn kafka_needs_a_subject_key_and_a_sane_layout() {
    let with = |kafka: &str| format!("server: {{events: {{kafka: {kafka}}}}}\n{BASE}");
    let missing = issues(&with("{brokers: \"k:9092\"}"));
    assert!(missing.iter().any(|i| i.contains("subject_key")), "{missing:?}");
    let ok = with("{brokers: \"k:9092\", subject_key: {env: K}}");
    assert!(issues(&ok).is_empty(), "{:?}", issues(&ok));
    let cfg = crate::load_str(&ok).unwrap();
    let k = cfg.server.events.kafka.unwrap();
    assert_eq!(k.layout, crate::TopicLayout::Ente, "topics per ente by default");
    assert_eq!(k.topic_for("c_e783", "it.varco.anagrafe.residenza.cambiata.v1"), "varco.events.c_e783");
    let bad =
        issues(&with("{brokers: \"k:9092\", subject_key: {env: \"\"}, instance_id: \"has space\", layout: per_type}"));
    assert!(bad.iter().any(|i| i.contains("layout")), "{bad:?}");
    let bad = issues(&with("{brokers: \"k:9092\", subject_key: {env: \"\"}, instance_id: \"has space\"}"));
    assert!(bad.iter().any(|i| i.starts_with("server.events.kafka.subject_key.env")), "{bad:?}");
    assert!(bad.iter().any(|i| i.starts_with("server.events.kafka.instance_id")), "{bad:?}");
    let long = format!("{{brokers: \"k:9092\", subject_key: {{env: K}}, topic: {}}}", "t".repeat(230));
    assert!(issues(&with(&long)).iter().any(|i| i.starts_with("server.events.kafka.topic")));
}

#[test]
fn a_limit_on_the_api_key_header_is_refused() {
    let yaml = BASE.replace(
        "access: public, to: {upstream: anagrafe}}",
        "access: {api_key: {}}, to: {upstream: anagrafe}, rate_limits: [{per: header, header: x-api-key, requests: 5, period: 1s}]}",
    )
    .replace("    upstreams:", "    quotas: [{per: header, header: X-Api-Key, requests: 5, window: day}]\n    upstreams:");
    let found = issues(&yaml);
    assert!(
        found.iter().any(|i| i.starts_with("tenants[0].routes[0].rate_limits[0].header: `x-api-key` carries API keys")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|i| i.starts_with("tenants[0].quotas[0].header: `X-Api-Key` carries API keys")),
        "{found:?}"
    );
    let fixed = yaml
        .replace("per: header, header: x-api-key", "per: client_id")
        .replace("per: header, header: X-Api-Key", "per: client_id");
    assert!(issues(&fixed).is_empty(), "{:?}", issues(&fixed));
}

#[test]
fn response_headers_leave_framing_and_varcos_headers_alone() {
    let yaml = BASE.replace(
        "to: {upstream: anagrafe}}",
        "to: {upstream: anagrafe}, response_headers: {set: {Content-Length: \"0\", X-Frame-Options: DENY}, remove: [X-RateLimit-Remaining, Server]}}",
    );
    let found = issues(&yaml);
    assert!(
        found.iter().any(|i| i.starts_with("tenants[0].routes[0].response_headers.set.Content-Length")),
        "{found:?}"
    );
    assert!(found.iter().any(|i| i.starts_with("tenants[0].routes[0].response_headers.remove[0]")), "{found:?}");
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn weighted_servers_are_checked() {
    let with = |servers: &str| BASE.replace("servers: [\"127.0.0.1:9001\"]", servers);
    assert!(issues(&with("servers: [{address: \"127.0.0.1:9001\", weight: 9}, \"127.0.0.1:9002\"]")).is_empty());
    let found = issues(&with("servers: [{address: \"127.0.0.1:9001\", weight: 1001}, {address: nohost, weight: 1}]"));
    assert!(found.iter().any(|i| i.starts_with("tenants[0].upstreams.anagrafe.servers[0].weight")), "{found:?}");
    assert!(found.iter().any(|i| i.starts_with("tenants[0].upstreams.anagrafe.servers[1]: `nohost`")), "{found:?}");
    let found = issues(&with("servers: [{address: \"127.0.0.1:9001\", weight: 0}]"));
    assert!(found.iter().any(|i| i.contains("weight 0")), "{found:?}");
    assert!(!issues(&with("servers: [{address: \"127.0.0.1:9001\", wieght: 2}]")).is_empty(), "typos are refused");
}

#[test]
fn source_rules_and_trusted_proxies_are_networks() {
    let yaml = format!(
        "server: {{trusted_proxies: [10.0.0.0/8, not-a-net]}}\n{}",
        BASE.replace("    upstreams:", "    source: {allow: [10.0.0.0/33], deny: [192.0.2.1]}\n    upstreams:")
            .replace("to: {upstream: anagrafe}}", "to: {upstream: anagrafe}, source: {}}")
    );
    let found = issues(&yaml);
    assert!(found.iter().any(|i| i.starts_with("server.trusted_proxies[1]")), "{found:?}");
    assert!(found.iter().any(|i| i.starts_with("tenants[0].source.allow[0]")), "{found:?}");
    assert!(found.iter().any(|i| i.starts_with("tenants[0].routes[0].source: list")), "{found:?}");
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(crate::parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8", "host bits dropped");
    assert_eq!(crate::parse_net("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
}

#[test]
fn cors_is_checked() {
    let with =
        |cors: &str| BASE.replace("to: {upstream: anagrafe}}", &format!("to: {{upstream: anagrafe}}, cors: {cors}}}"));
    assert!(issues(&with("{allow_origins: [\"https://app.comune.macerata.it\"], allow_headers: [Authorization]}"))
        .is_empty());
    let found = issues(&with(
        "{allow_origins: [\"*\", \"https://app.example.it/path\"], allow_credentials: true, allow_methods: [POST], max_age: 48h}",
    ));
    for want in [
        "tenants[0].routes[0].cors.allow_origins: `*` stands alone",
        "tenants[0].routes[0].cors.allow_credentials",
        "tenants[0].routes[0].cors.allow_origins[1]",
        "tenants[0].routes[0].cors.allow_methods[0]: `POST` is not one of the route's methods",
        "tenants[0].routes[0].cors.max_age",
    ] {
        assert!(found.iter().any(|i| i.starts_with(want)), "{want}: {found:?}");
    }
    assert!(!issues(&with("{allow_origins: []}")).is_empty());
}

#[test]
fn connection_settings_are_checked() {
    let bad = BASE.replace(
        r#"{name: public, address: "127.0.0.1:8080"}"#,
        r#"{name: public, address: "127.0.0.1:8080", max_connections: 0, max_connections_per_address: 0, proxy_protocol: true, read_buffer_bytes: 2000000}"#,
    );
    let bad = format!("server: {{header_timeout: 10ms}}\n{bad}");
    let got = issues(&bad);
    for w in [
        "server.header_timeout: at least 100ms",
        "listeners[0].max_connections: at least 1",
        "listeners[0].max_connections_per_address: at least 1",
        "listeners[0].proxy_protocol: list the load balancers",
        "listeners[0].read_buffer_bytes: at most 1048576",
    ] {
        assert!(got.iter().any(|g| g.starts_with(w)), "missing `{w}` in {got:#?}");
    }
    let ok = BASE.replace(
        r#"{name: public, address: "127.0.0.1:8080"}"#,
        r#"{name: public, address: "127.0.0.1:8080", proxy_protocol: true}"#,
    );
    let ok = format!("server: {{trusted_proxies: [10.0.0.0/8]}}\n{ok}");
    assert!(issues(&ok).is_empty(), "{:?}", issues(&ok));
}
