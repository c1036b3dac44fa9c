//! JWT/JWS verification of a bearer token, with a JWKS that is itself fuzzed half of the time:
//! the first byte chooses. A token is never accepted (no input is signed by the key), and
//! nothing panics; `crit`, the issuer peek and the ModI `Digest` parser get the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// An RSA public key as a JWKS (its private half was thrown away: nothing can be signed).
const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","e":"AQAB","n":"nugQ_lj6XmQm6sh2nmB98OpeaHr-V-sCLxwg-EVmGtqIMkfA-YFoWMSdgCqGp2aXbLmvfwF9BOEaWHGRxu-Mqqp9T8LvObvF256TSRZVlsEOdROT5nxpeVNgMsfQMH_7SiC-wEPhJ4O6NZTcvfZ0Bwkdf02GbsWg-g5D46p0GKJ1RfLR6p-OfU_E8I5anCoTnC6Cq1odpLyFh3c2-MNkPcKoM-2TXSCdvDXDYcrX6PWAXz_WvaGgWEMA58Uv137jUGvGIWOoMJi3wH4-URMb8JOOQl5wmbMACGHR658UL-MgalCFngpMIbp_L0QQxSnTnYqukDmmSIU0kiYQh--38w"}]}"#;

struct Fixture {
    dir: std::path::PathBuf,
    fixed: varco_auth::jwt::Issuer,
}

fn issuer(dir: &std::path::Path, jwks: &[u8]) -> Option<varco_auth::jwt::Issuer> {
    let file = dir.join(format!("jwks-{}.json", std::process::id()));
    std::fs::write(&file, jwks).ok()?;
    let cfg: varco_config::IssuerConfig = serde_yaml_ng::from_str(&format!(
        "{{issuer: 'https://idp.example', audiences: [varco], jwks_file: '{}', algorithms: [RS256, ES256, PS256]}}",
        file.display()
    ))
    .ok()?;
    varco_auth::jwt::Issuer::new("c_e783", "idp", &cfg).ok()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join("varco-fuzz-jose");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let fixed = issuer(&dir, JWKS.as_bytes()).expect("the fixed JWKS loads");
        Fixture { dir, fixed }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        assert!(f.fixed.verify_uncached(&token, "varco").is_err(), "a token nobody could sign was accepted");
        let _ = varco_auth::jwt::peek_iss(&token);
        let _ = varco_auth::jose::check_crit(&token);
        let _ = varco_auth::modi::parse_digest(&token);
    } else {
        // A fuzzed JWKS, then a well-formed but unsigned-by-it token.
        let Some(i) = issuer(&f.dir, rest) else { return };
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiYXVkIjoidmFyY28iLCJleHAiOjQxMDI0NDQ4MDAsInN1YiI6IngifQ.AAAA";
        assert!(i.verify_uncached(token, "varco").is_err());
    }
});
