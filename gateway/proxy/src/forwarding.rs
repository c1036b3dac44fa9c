//! What the upstream request header carries: forwarding headers replaced (varco is the edge),
//! trace context, the verified identity, and the path without the tenant prefix. Used for
//! proxied and store-and-forward requests alike.

use crate::ctx::RequestCtx;
use crate::runtime::Runtime;
use crate::text::fmt_ip;
use http::HeaderValue;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use varco_core::headers::{FORWARDED, TRACEPARENT, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};

fn internal() -> Box<Error> {
    Error::new(ErrorType::InternalError)
}

/// Rewrites `up` for the route in `ctx`.
pub fn upstream_request(rt: &Runtime, ctx: &RequestCtx, up: &mut RequestHeader) -> Result<()> {
    let (Some(tenant), Some(route)) = (ctx.tenant(rt), ctx.route(rt)) else { return Ok(()) };
    let strip = route.strip_prefix.as_deref().map_or(0, str::len);
    let proto = if ctx.state.tls { "https" } else { "http" };
    // The forwarding and identity headers are written into the `http` parts in one go:
    // pingora's `insert_header` parses each name again and updates two maps (values and the
    // caller's name case), growing both one step at a time, which cost ~1.5k instructions per
    // header. Header-name case is therefore not kept upstream (field names are
    // case-insensitive, RFC 9110 §5.1; pingora does the same for HTTP/2 callers).
    let end_stream = up.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(up, placeholder).into();
    let h = &mut parts.headers;
    let identity = ctx.identity.as_deref().map_or(&[][..], |id| id.headers.as_slice());
    h.reserve(6 + identity.len() + ctx.forward.len());
    h.remove(&FORWARDED);
    if let Some(ip) = ctx.state.client_ip {
        let mut buf = [0u8; 48];
        let ip_text = fmt_ip(ip, &mut buf);
        h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_str(ip_text).map_err(|_| internal())?);
        if rt.forwarded_header {
            let host = ctx.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
            let v = if ip.is_ipv6() {
                format!("for=\"[{ip_text}]\";host={host};proto={proto}")
            } else {
                format!("for={ip_text};host={host};proto={proto}")
            };
            h.insert(FORWARDED.clone(), HeaderValue::from_str(&v).map_err(|_| internal())?);
        }
    } else {
        h.remove(&X_FORWARDED_FOR);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match &ctx.host {
        Some(v) => h.insert(X_FORWARDED_HOST.clone(), v.clone()),
        None => h.remove(&X_FORWARDED_HOST),
    };
    if ctx.trace.is_some() {
        // The upstream attempt's span (tracing on), else varco's span id.
        let tp = crate::spans::traceparent(ctx);
        h.insert(TRACEPARENT.clone(), HeaderValue::from_bytes(&tp).map_err(|_| internal())?);
    }
    if let Some(rid) = &ctx.request_id {
        h.insert(X_REQUEST_ID.clone(), rid.clone());
    }
    // The caller's own `x-varco-*` headers were stripped by hygiene: append is enough.
    for (k, v) in identity.iter().chain(&ctx.forward) {
        if !route.withhold.contains(k) {
            h.append(k.clone(), v.clone());
        }
    }
    if let (Some(signer), Some(v)) = (tenant.identity.as_deref(), &ctx.identity_token) {
        if !route.withhold.contains(&signer.header) {
            h.insert(signer.header.clone(), v.clone());
        }
    }
    *up = RequestHeader::from(parts);
    if let Some(e) = end_stream {
        up.set_send_end_stream(e);
    }
    // The target is origin-form (hygiene rejects others), so it round-trips through the URI;
    // the tenant prefix and the route's `strip_prefix` come off here.
    if ctx.prefix_len + strip > 0 {
        let raw = up.raw_path();
        let mut rest = raw[(ctx.prefix_len + strip).min(raw.len())..].to_vec();
        if rest.first() != Some(&b'/') {
            rest.insert(0, b'/');
        }
        up.set_raw_path(&rest)?;
    }
    Ok(())
}
