//! Structured mode (`application/cloudevents+json`) read in one pass.
//!
//! The SDK's own `Deserialize for Event` reads the body into a `serde_json::Value`, copies it
//! into a map, then copies `data` once more: three walks and three sets of allocations per
//! event, a quarter of what a one-event publish costs. Here the common shape (specversion
//! 1.0, string attributes, JSON `data`, string/boolean/integer extensions) is read straight
//! into the SDK's builder. Anything else (`data_base64`, a null or non-JSON `data`, a repeated
//! attribute, an attribute of the wrong type, a syntax error) is left to the SDK's parser,
//! which decides and words the error: the two always agree (a unit test and the `cloudevents`
//! fuzz target compare them).

use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesWriter, Event, EventBuilder, EventBuilderV10};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// Attributes as read, before the builder.
#[derive(Default)]
struct Fields {
    specversion: bool,
    id: Option<String>,
    source: Option<String>,
    ty: Option<String>,
    subject: Option<String>,
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    data: Option<Value>,
    extensions: Vec<(String, ExtensionValue)>,
}

/// Any reason to leave the event to the SDK's parser; never shown to a caller.
const OTHER_SHAPE: &str = "not the common shape";

struct FieldsVisitor;

/// A key or short string, borrowed from the body unless it holds escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string attribute; `None` when it is null (the SDK treats null as absent).
fn string_or_null<'de, A: MapAccess<'de>>(map: &mut A, slot: &mut Option<String>) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom(OTHER_SHAPE));
    }
    *slot = map.next_value::<Option<String>>()?;
    Ok(())
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        let mut seen_null: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let slot = match key.as_ref() {
                "specversion" => {
                    if f.specversion || map.next_value::<Text<'de>>()?.0 != "1.0" {
                        return Err(de::Error::custom(OTHER_SHAPE));
                    }
                    f.specversion = true;
                    continue;
                }
                "id" => &mut f.id,
                "source" => &mut f.source,
                "type" => &mut f.ty,
                "subject" => &mut f.subject,
                "time" => &mut f.time,
                "datacontenttype" => &mut f.datacontenttype,
                "dataschema" => &mut f.dataschema,
                "data" => {
                    if f.data.is_some() {
                        return Err(de::Error::custom(OTHER_SHAPE));
                    }
                    match map.next_value::<Value>()? {
                        Value::Null => return Err(de::Error::custom(OTHER_SHAPE)),
                        v => f.data = Some(v),
                    }
                    continue;
                }
                "data_base64" => return Err(de::Error::custom(OTHER_SHAPE)),
                _ => {
                    if f.extensions.iter().any(|(n, _)| n == key.as_ref()) || seen_null.contains(&key) {
                        return Err(de::Error::custom(OTHER_SHAPE));
                    }
                    let value = match map.next_value::<Value>()? {
                        Value::Null => {
                            seen_null.push(key);
                            continue;
                        }
                        Value::String(s) => ExtensionValue::String(s),
                        Value::Bool(b) => ExtensionValue::Boolean(b),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => ExtensionValue::Integer(i),
                            None => return Err(de::Error::custom(OTHER_SHAPE)),
                        },
                        _ => return Err(de::Error::custom(OTHER_SHAPE)),
                    };
                    f.extensions.push((key.into_owned(), value));
                    continue;
                }
            };
            // A repeated attribute (even a null one) is the SDK's to judge.
            if slot.is_some() || seen_null.contains(&key) {
                return Err(de::Error::custom(OTHER_SHAPE));
            }
            string_or_null(&mut map, slot)?;
            if slot.is_none() {
                seen_null.push(key);
            }
        }
        Ok(f)
    }
}

impl Fields {
    fn build(self) -> Option<Event> {
        if !self.specversion {
            return None;
        }
        let mut b = EventBuilderV10::new().id(self.id?).source(self.source?).ty(self.ty?);
        if let Some(s) = self.subject {
            b = b.subject(s);
        }
        if let Some(t) = self.time {
            b = b.time(chrono::DateTime::parse_from_rfc3339(&t).ok()?.with_timezone(&chrono::Utc));
        }
        // The SDK reads `data` as JSON under a JSON content type (or none), as text otherwise.
        let ct = self.datacontenttype;
        let json_ct = ct
            .as_deref()
            .is_none_or(|c| c.starts_with("application/json") || c.starts_with("text/json") || c.ends_with("+json"));
        if !json_ct && self.data.is_some() {
            return None;
        }
        for (name, value) in self.extensions {
            b = b.extension(&name, value);
        }
        let mut e = b.build().ok()?;
        // As the SDK reads it: the content type as sent (or none), `data` as JSON.
        e.set_datacontenttype(ct);
        if let Some(d) = self.data {
            e.set_data_unchecked(d);
        }
        if let Some(ds) = self.dataschema {
            e.set_dataschema(Some(url::Url::parse(&ds).ok()?));
        }
        Some(e)
    }
}

/// The event of a structured-mode body in one pass, or `None` to let the SDK's parser decide.
pub fn fast(body: &[u8]) -> Option<Event> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = (&mut de).deserialize_map(FieldsVisitor).ok()?;
    de.end().ok()?;
    fields.build()
}

#[cfg(test)]
mod tests {
    use super::fast;
    use cloudevents::Event;

    /// What the SDK makes of the body.
    fn sdk(body: &str) -> Option<Event> {
        serde_json::from_str::<Event>(body).ok()
    }

    #[test]
    fn the_common_shape_is_read_in_one_pass_exactly_as_the_sdk_reads_it() {
        let common = [
            r#"{"specversion":"1.0","id":"e1","source":"/enti/c_e783/anagrafe","type":"t.v1","data":{"a":[1,2.5,"x"],"b":{"c":null}}}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/enti/c_e783","type":"t.v1","subject":"RSSMRA80A01H501U","time":"2026-11-20T10:00:00+01:00","datacontenttype":"application/json; charset=utf-8","dataschema":"urn:varco:events:t.v1","data":"text is JSON too","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","prio":3,"urgent":true}"#,
            r#"{"data":{"x":1},"type":"t.v1","id":"e\u0031","source":"/enti/c_e783","specversion":"1.0","subject":null,"ext":null}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","datacontenttype":"application/cloudevents+json"}"#,
            r#" {"specversion":"1.0","id":"","source":"/s","type":"t"} "#,
        ];
        for body in common {
            let ours = fast(body.as_bytes()).unwrap_or_else(|| panic!("not read in one pass: {body}"));
            assert_eq!(Some(ours), sdk(body), "{body}");
        }
    }

    #[test]
    fn every_other_shape_is_left_to_the_sdk() {
        let other = [
            r#"{"specversion":"0.3","id":"e1","source":"/s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","data_base64":"eyJhIjoxfQ=="}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","data":null}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi"}"#,
            r#"{"specversion":"1.0","id":"e1","id":"e2","source":"/s","type":"t"}"#,
            r#"{"specversion":"1.0","id":null,"id":"e2","source":"/s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","x":1,"x":2}"#,
            r#"{"specversion":"1.0","id":"e1","source":"","type":"t"}"#,
            r#"{"specversion":"1.0","id":7,"source":"/s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","x":1.5}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","x":[1]}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","time":"yesterday"}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","dataschema":"not a uri"}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s"}"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t"} trailing"#,
            r#"[{"specversion":"1.0","id":"e1","source":"/s","type":"t"}]"#,
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t""#,
        ];
        for body in other {
            assert_eq!(fast(body.as_bytes()), None, "{body}");
        }
    }
}
