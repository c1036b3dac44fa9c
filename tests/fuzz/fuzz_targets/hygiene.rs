//! Request hygiene on whatever header pingora's parser lets through: the first line is
//! `METHOD TARGET`, each further line `name: value`. No check may panic, and after
//! `strip_identity_headers` no spelling of varco's identity headers is left. The target's
//! bytes are also a login's `return_to`: what varco accepts stays a path below the ente's
//! prefix, and the `Cookie` headers are read for varco's session cookie.
#![no_main]

use libfuzzer_sys::fuzz_target;
use varco_core::hygiene;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let mut parts = first.splitn(2, |b| *b == b' ');
    let method = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("GET");
    let target = parts.next().unwrap_or(b"/");
    let Ok(mut req) = pingora_http::RequestHeader::build(method, target, None) else { return };
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) else {
            continue;
        };
        let _ = req.append_header(name, value);
    }
    let _ = hygiene::check_method(&req.method);
    let _ = hygiene::check_path(req.raw_path());
    let _ = hygiene::check_framing(&req.headers);
    let _ = hygiene::check_header_size(&req.headers);
    let _ = hygiene::clean_connection(&mut req);
    hygiene::strip_identity_headers(&mut req);
    for name in req.headers.keys() {
        let n = name.as_str().replace('_', "-");
        assert!(!n.starts_with("x-varco-"), "`{name}` survived the strip");
    }
    let _ = varco_auth::rp::cookie(&req.headers, "varco_session");
    if let Ok(rt) = std::str::from_utf8(target) {
        for base in ["", "/c_e783"] {
            if let Some(ok) = varco_auth::rp::safe_return_to(base, Some(rt)) {
                let path = ok.split(['?', '#']).next().unwrap_or("");
                assert!(ok.starts_with('/') && !ok.starts_with("//") && !ok.contains('\\'), "{ok:?}");
                assert!(path == base || path.starts_with(&format!("{base}/")), "{ok:?} left {base:?}");
                assert!(!ok.bytes().any(|b| b.is_ascii_control()), "{ok:?}");
            }
        }
    }
});
