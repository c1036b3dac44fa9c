//! Publishing: CloudEvents over HTTP (structured, batch, binary) are checked against the
//! contracts and the publishing ente, then made durable in the outbox before the 202.

use crate::bus::EventBus;
use async_trait::async_trait;
use cloudevents::{AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV10};
use http::HeaderMap;
use std::sync::Arc;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, Problem, ProblemKind};

/// Most events in one batch request.
pub const MAX_BATCH: usize = 1000;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::EventInvalid, detail)
}

/// Reads the events of an HTTP request: `application/cloudevents+json` (one),
/// `application/cloudevents-batch+json` (an array) or binary mode (`ce-*` headers, the body is
/// `data`).
pub fn parse_http(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, Problem> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/cloudevents+json" => match crate::structured::fast(body) {
            Some(e) => Ok(vec![e]),
            None => serde_json::from_slice::<Event>(body)
                .map(|e| vec![e])
                .map_err(|e| invalid(format!("not a CloudEvent 1.0 in structured mode: {e}"))),
        },
        "application/cloudevents-batch+json" => {
            let items: Vec<serde_json::Value> = serde_json::from_slice(body)
                .map_err(|e| invalid(format!("a batch is a JSON array of CloudEvents: {e}")))?;
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(invalid(format!("a batch holds 1 to {MAX_BATCH} events, not {}", items.len())));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| serde_json::from_value::<Event>(v).map_err(|e| invalid(format!("event [{i}]: {e}"))))
                .collect()
        }
        _ if headers.contains_key("ce-specversion") => parse_binary(headers, body, &ct).map(|e| vec![e]),
        _ => Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            format!(
                "Content-Type `{ct}`: send application/cloudevents+json, application/cloudevents-batch+json, or binary mode (ce-* headers)"
            ),
        )),
    }
}

fn parse_binary(headers: &HeaderMap, body: &[u8], ct: &str) -> Result<Event, Problem> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if h("ce-specversion") != Some("1.0") {
        return Err(invalid("binary mode: `ce-specversion` must be 1.0"));
    }
    let mut b = EventBuilderV10::new();
    for name in ["ce-id", "ce-source", "ce-type"] {
        if h(name).is_none() {
            return Err(invalid(format!("binary mode: the `{name}` header is missing")));
        }
    }
    b = b
        .id(h("ce-id").unwrap_or_default())
        .source(h("ce-source").unwrap_or_default())
        .ty(h("ce-type").unwrap_or_default());
    if let Some(s) = h("ce-subject") {
        b = b.subject(s);
    }
    if let Some(t) = h("ce-time") {
        b = b.time(t.to_owned());
    }
    for (name, value) in headers {
        let Some(ext) = name.as_str().strip_prefix("ce-") else { continue };
        if matches!(ext, "specversion" | "id" | "source" | "type" | "subject" | "time" | "dataschema") {
            continue;
        }
        let v = value.to_str().map_err(|_| invalid(format!("binary mode: `{name}` is not text")))?;
        b = b.extension(ext, v.to_owned());
    }
    if !body.is_empty() {
        b = b.data(if ct.is_empty() { "application/json" } else { ct }, body.to_vec());
    }
    let mut e = b.build().map_err(|e| invalid(format!("binary mode: {e}")))?;
    if let Some(ds) = h("ce-dataschema") {
        let url = url::Url::parse(ds).map_err(|_| invalid("binary mode: `ce-dataschema` is not a URI"))?;
        e.set_dataschema(Some(url));
    }
    Ok(e)
}

/// `POST /events` of an ente: the `events` adapter.
#[derive(Debug)]
pub struct EventsAdapter {
    pub bus: Arc<EventBus>,
}

impl EventsAdapter {
    async fn answer(&self, req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem> {
        let mut events = parse_http(req.headers, &req.body)?;
        let tp = Some(req.traceparent).filter(|t| !t.is_empty());
        for (i, e) in events.iter_mut().enumerate() {
            crate::contract::check_event(&self.bus.registry, req.tenant_id, i, e, tp)?;
        }
        let ids: Vec<String> = events.iter().map(|e| e.id().to_owned()).collect();
        let n = events.len() as u64;
        let last = self.bus.append(events).await?;
        self.bus.metrics.published.with_label_values(&[req.tenant_id]).inc_by(n);
        #[derive(serde::Serialize)]
        struct Receipt<'a> {
            accepted: usize,
            ids: &'a [String],
            sequence: u64,
        }
        let body = serde_json::to_vec(&Receipt { accepted: ids.len(), ids: &ids, sequence: last }).unwrap_or_default();
        Ok(AdapterResponse::json(202, "application/json", body))
    }
}

#[async_trait]
impl Adapter for EventsAdapter {
    fn kind(&self) -> &'static str {
        "events"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        self.answer(req).await.map(Answer::Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_three_http_modes_parse() {
        let one = br#"{"specversion":"1.0","id":"e1","source":"/enti/c_e783/anagrafe","type":"t.x.v1","data":{"a":1}}"#;
        let e = parse_http(&headers(&[("content-type", "application/cloudevents+json; charset=utf-8")]), one).unwrap();
        assert_eq!(e[0].id(), "e1");
        let batch = format!("[{},{}]", std::str::from_utf8(one).unwrap(), std::str::from_utf8(one).unwrap());
        assert_eq!(
            parse_http(&headers(&[("content-type", "application/cloudevents-batch+json")]), batch.as_bytes())
                .unwrap()
                .len(),
            2
        );
        let bin = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "b1"),
            ("ce-source", "/enti/c_e783"),
            ("ce-type", "t.x.v1"),
            ("ce-subject", "RSSMRA80A01H501U"),
            ("ce-traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ]);
        let e = parse_http(&bin, br#"{"a":1}"#).unwrap();
        assert_eq!(e[0].subject(), Some("RSSMRA80A01H501U"));
        assert!(e[0].extension("traceparent").is_some());
        let p = parse_http(&headers(&[("content-type", "text/plain")]), b"x").unwrap_err();
        assert_eq!(p.kind, ProblemKind::UnsupportedMediaType);
        let p =
            parse_http(&headers(&[("content-type", "application/cloudevents+json")]), br#"{"id":"x"}"#).unwrap_err();
        assert_eq!(p.kind, ProblemKind::EventInvalid);
        let p = parse_http(&headers(&[("content-type", "application/cloudevents-batch+json")]), b"[]").unwrap_err();
        assert_eq!(p.kind, ProblemKind::EventInvalid);
    }
}
