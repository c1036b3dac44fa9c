//! A span, continued from a `traceparent` as it travels in HTTP and Kafka headers.

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue, Value};
use std::borrow::Cow;
use std::time::SystemTime;

/// What a span stands for (OpenTelemetry's span kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request varco answers.
    Server,
    /// A call varco makes (an upstream attempt, an e-service, a webhook).
    Client,
    /// An event handed to Kafka.
    Producer,
    /// An event taken from the outbox or Kafka for delivery.
    Consumer,
    /// A step inside varco (authentication, a quota, an adapter).
    Internal,
}

impl From<Kind> for SpanKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
            Kind::Producer => SpanKind::Producer,
            Kind::Consumer => SpanKind::Consumer,
            Kind::Internal => SpanKind::Internal,
        }
    }
}

/// One span; it ends (and is queued for export) when dropped or [`Span::end`]ed.
#[derive(Debug)]
pub struct Span(opentelemetry_sdk::trace::Span);

/// A new span named `name`: a child of `parent` (a `traceparent` value) when that is valid,
/// else the root of a new trace. Whether it is recorded is the sampler's decision (a
/// caller's sampled flag is followed by the `parentbased_*` samplers). `None` when tracing
/// is off.
pub fn start(name: impl Into<Cow<'static, str>>, kind: Kind, parent: Option<&str>) -> Option<Span> {
    let tracer = crate::tracer()?;
    let cx = match parent.and_then(parse) {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => Context::new(),
    };
    Some(Span(SpanBuilder::from_name(name).with_kind(kind.into()).start_with_context(tracer, &cx)))
}

/// A `traceparent` header value as a remote span context, read by varco-core's W3C rules (the
/// same that decide whether varco continues a caller's trace).
fn parse(v: &str) -> Option<SpanContext> {
    let (trace, span, flags) = varco_core::trace::parse_traceparent(v)?;
    let (trace, span) = (TraceId::from_hex(trace).ok()?, SpanId::from_hex(span).ok()?);
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1);
    let sc = SpanContext::new(trace, span, flags, true, TraceState::NONE);
    sc.is_valid().then_some(sc)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [b'0'; N];
    for (i, b) in bytes.iter().enumerate().take(N / 2) {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    out
}

impl Span {
    fn context(&self) -> &SpanContext {
        self.0.span_context()
    }

    /// Whether the span is recorded (sampled); an unrecorded one only carries ids.
    pub fn is_recording(&self) -> bool {
        self.0.is_recording()
    }

    /// The span's trace id and span id in lowercase hex, and its sampled flag.
    pub fn ids(&self) -> ([u8; 32], [u8; 16], bool) {
        let c = self.context();
        (hex(&c.trace_id().to_bytes()), hex(&c.span_id().to_bytes()), c.is_sampled())
    }

    /// The `traceparent` that makes the receiver a child of this span.
    pub fn traceparent(&self) -> [u8; 55] {
        let (t, s, sampled) = self.ids();
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&t);
        out[36..52].copy_from_slice(&s);
        out[53..55].copy_from_slice(if sampled { b"01" } else { b"00" });
        out
    }

    /// [`Span::traceparent`] as a string.
    pub fn traceparent_string(&self) -> String {
        String::from_utf8_lossy(&self.traceparent()).into_owned()
    }

    /// A child span of this one.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: Kind) -> Option<Span> {
        let tracer = crate::tracer()?;
        let c = self.context();
        let parent = SpanContext::new(c.trace_id(), c.span_id(), c.trace_flags(), false, c.trace_state().clone());
        let cx = Context::new().with_remote_span_context(parent);
        Some(Span(SpanBuilder::from_name(name).with_kind(kind.into()).start_with_context(tracer, &cx)))
    }

    /// Sets an attribute (nothing when the span is not recorded).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if self.0.is_recording() {
            self.0.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with a short description (never a secret).
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        self.0.set_status(Status::error(description));
    }

    /// Names the span once what it stands for is known (a request's route).
    pub fn rename(&mut self, name: impl Into<Cow<'static, str>>) {
        self.0.update_name(name);
    }

    /// Ends the span now.
    pub fn end(mut self) {
        self.0.end();
    }

    /// Ends the span at `t`.
    pub fn end_at(mut self, t: SystemTime) {
        self.0.end_with_timestamp(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_by_the_w3c_rules() {
        let sc = parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(format!("{:032x}", sc.trace_id()), "0af7651916cd43dd8448eb211c80319c");
        assert!(sc.is_sampled() && sc.is_remote());
        assert!(!parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap().is_sampled());
        // A later version may add fields.
        assert!(parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more").is_some());
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "garbage",
            "",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn spans_are_none_before_install() {
        // Unit tests never install the process-wide tracer.
        assert!(start("x", Kind::Internal, None).is_none());
    }

    #[test]
    fn ids_are_lowercase_hex() {
        assert_eq!(&hex::<4>(&[0xab, 0x01]), b"ab01");
    }
}
