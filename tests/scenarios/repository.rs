//! The repository stands alone: the official contracts its tests use are vendored, and nothing
//! in the project reads a path outside the clone.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure message

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn vendored_contracts_are_present() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("contracts/external/README.md")).unwrap();
    let files: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(f, _)| f))
        .collect();
    assert!(files.len() >= 4, "the README lists the vendored files: {files:?}");
    for f in files {
        let p = root.join("contracts/external").join(f);
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(meta.len() > 0, "{} is empty", p.display());
    }
}

/// Walks the tracked sources and scripts for a path that climbs out of the repository to the
/// reference material a developer's machine has beside it.
#[test]
fn nothing_reads_outside_the_repository() {
    let needle = ["..", "/shared"].concat();
    let root = root();
    let mut offenders = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name != ".ci" || name == "target" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if ["rs", "py", "sh", "toml", "yaml", "yml", "json"]
                .iter()
                .any(|x| p.extension().is_some_and(|e| e == *x))
                || p.ends_with(".ci/run")
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                if text.contains(&needle) {
                    offenders.push(p.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(offenders.is_empty(), "these files refer to a path outside the repository: {offenders:?}");
}

/// Every API contract in `contracts/` passes `contracts/lint/varco.spectral.yaml` (the ModI
/// rules for OpenAPI, Spectral's for AsyncAPI) with no error or warning; and the ruleset does
/// bite: a contract without `/status`, security and problem+json errors fails it.
#[test]
fn contracts_pass_the_modi_lint() {
    let root = root();
    let mut contracts: Vec<PathBuf> = std::fs::read_dir(root.join("contracts/openapi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "json"))
        .collect();
    contracts.push(root.join("contracts/events/asyncapi.yaml"));
    let ruleset = root.join("contracts/lint/varco.spectral.yaml");
    let lint = |files: &[PathBuf]| {
        std::process::Command::new("spectral")
            .arg("lint")
            .arg("-r")
            .arg(&ruleset)
            .args(["--fail-severity", "warn", "-q"])
            .args(files)
            .output()
            .expect("spectral (npm install -g @stoplight/spectral-cli@6.16)")
    };
    let out = lint(&contracts);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bad = std::env::temp_dir().join(format!("varco-lint-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "openapi: 3.0.3\ninfo: {title: x, version: '1', description: x}\nservers: [{url: 'http://x.example'}]\npaths:\n  /a:\n    get:\n      operationId: a\n      description: a\n      tags: [a]\n      responses:\n        '200': {description: ok}\n        '404': {description: no, content: {application/json: {schema: {type: object}}}}\ntags: [{name: a, description: a}]\n",
    )
    .unwrap();
    let out = lint(std::slice::from_ref(&bad));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_file(bad);
    assert!(!out.status.success(), "{report}");
    for rule in ["paths-status", "security-declared", "use-problem-json-for-errors", "servers-use-https", "use-semver"]
    {
        assert!(report.contains(rule), "`{rule}` did not fire: {report}");
    }
}
