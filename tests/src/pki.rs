//! Test certificates made by the `openssl` CLI (an independent implementation).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory for one test's certificates.
pub fn pki_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("varco-pki-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed CA (`ca.crt`, `ca.key`) in `dir`.
pub fn make_ca(dir: &Path, cn: &str) {
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", &subj,
        ],
    );
}

/// A certificate signed by the CA in `dir` for `cn` (with `cn` as DNS or IP SAN), as
/// `<name>.crt/.key`.
pub fn issue(dir: &Path, name: &str, cn: &str, client: bool) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    let ext = if client {
        "extendedKeyUsage=clientAuth".to_owned()
    } else {
        let kind = if cn.parse::<std::net::IpAddr>().is_ok() { "IP" } else { "DNS" };
        format!("subjectAltName={kind}:{cn}\nextendedKeyUsage=serverAuth")
    };
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}
