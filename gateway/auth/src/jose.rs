//! JOSE header rules shared by bearer tokens and ModI JWTs (RFC 7515): how `typ` is compared,
//! and `crit`, which varco never accepts.

/// Whether a JOSE `typ` names the media type `want` (RFC 7515 §4.1.9: the `application/`
/// prefix may be left out, so `at+jwt` and `application/at+jwt` are one type; case-insensitive).
pub fn typ_is(typ: &str, want: &str) -> bool {
    let bare = |t: &str| {
        let t = t.trim();
        match t.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => t[12..].to_owned(),
            _ => t.to_owned(),
        }
    };
    bare(typ).eq_ignore_ascii_case(&bare(want))
}

/// Refuses a JOSE header with `crit` (RFC 7515 §4.1.11): varco understands no extension, so a
/// token that says one must be understood is not one varco may accept.
pub fn check_crit(token: &str) -> Result<(), String> {
    use base64::Engine as _;
    let head = token.split('.').next().unwrap_or("");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| "malformed token header".to_owned())?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| "malformed token header".to_owned())?;
    match header.get("crit") {
        None => Ok(()),
        Some(c) => Err(format!("the header marks extensions varco does not understand as critical (`crit`: {c})")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn typ_with_or_without_the_application_prefix() {
        assert!(super::typ_is("at+jwt", "at+jwt"));
        assert!(super::typ_is("application/at+jwt", "at+jwt"));
        assert!(super::typ_is("AT+JWT", "Application/at+jwt"));
        assert!(super::typ_is("JWT", "application/jwt"));
        assert!(!super::typ_is("jwt", "at+jwt"));
        assert!(!super::typ_is("application/", "at+jwt"));
        assert!(!super::typ_is("text/at+jwt", "at+jwt"));
    }

    #[test]
    fn crit_is_refused() {
        use base64::Engine as _;
        let enc = |h: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h) + ".e30.c2ln";
        assert!(super::check_crit(&enc(r#"{"alg":"RS256","kid":"k"}"#)).is_ok());
        assert!(super::check_crit(&enc(r#"{"alg":"RS256","crit":["x-evil"],"x-evil":1}"#)).is_err());
        assert!(super::check_crit(&enc(r#"{"alg":"RS256","crit":[]}"#)).is_err());
        assert!(super::check_crit("%%%.e30.c2ln").is_err());
    }
}
