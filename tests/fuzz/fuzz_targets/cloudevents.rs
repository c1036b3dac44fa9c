//! CloudEvents as callers post them: structured, batch or binary mode (the first byte
//! chooses; binary takes `ce-*` headers from the lines before a blank line), then the
//! contract checks. Nothing panics, and the one-pass structured reader agrees with the SDK's
//! parser on every body it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use varco_events::contract::{check_event, Registry};

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry::load().expect("the embedded contracts load"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut headers = http::HeaderMap::new();
    let body = match mode % 3 {
        0 => {
            if let Some(fast) = varco_events::structured::fast(rest) {
                let sdk = serde_json::from_slice::<cloudevents::Event>(rest).ok();
                assert_eq!(Some(fast), sdk, "the one-pass reader and the SDK disagree");
            }
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/cloudevents+json"));
            rest
        }
        1 => {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/cloudevents-batch+json; charset=utf-8"),
            );
            rest
        }
        _ => {
            let split = rest.windows(2).position(|w| w == b"\n\n").unwrap_or(rest.len());
            for line in rest[..split].split(|b| *b == b'\n') {
                let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(&line[..colon]),
                    http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
                ) {
                    headers.append(n, v);
                }
            }
            rest.get(split + 2..).unwrap_or_default()
        }
    };
    if let Ok(events) = varco_events::publish::parse_http(&headers, body) {
        for (i, mut e) in events.into_iter().enumerate() {
            let _ = check_event(
                registry(),
                "c_e783",
                i,
                &mut e,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            );
        }
    }
});
