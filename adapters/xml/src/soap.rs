//! SOAP 1.1 and 1.2 envelopes and faults: the few rules both versions share, written once.

use crate::reader::{esc, esc_attr, Element};

pub const SOAP11_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Security 1.0 (`wsse:Security`, `UsernameToken`).
pub const WSSE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const PASSWORD_TEXT: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";

/// The SOAP version of a binding or a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V11,
    V12,
}

impl Version {
    pub fn envelope_ns(self) -> &'static str {
        match self {
            Version::V11 => SOAP11_ENV,
            Version::V12 => SOAP12_ENV,
        }
    }

    pub fn from_envelope_ns(ns: &str) -> Option<Self> {
        match ns {
            SOAP11_ENV => Some(Version::V11),
            SOAP12_ENV => Some(Version::V12),
            _ => None,
        }
    }

    /// The request's `Content-Type`; SOAP 1.2 carries the action in it (1.1 in `SOAPAction`).
    pub fn content_type(self, action: Option<&str>) -> String {
        match (self, action) {
            (Version::V11, _) => "text/xml; charset=utf-8".to_owned(),
            (Version::V12, Some(a)) if !a.is_empty() => {
                format!("application/soap+xml; charset=utf-8; action=\"{}\"", a.replace('"', ""))
            }
            (Version::V12, _) => "application/soap+xml; charset=utf-8".to_owned(),
        }
    }

    /// The HTTP status of a fault: 500, except a SOAP 1.2 `Sender` fault (400).
    pub fn fault_status(self, class: FaultClass) -> u16 {
        match (self, class) {
            (Version::V12, FaultClass::Client) => 400,
            _ => 500,
        }
    }
}

/// Whose fault: the sender's request, or the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    Client,
    Server,
}

/// An envelope around `header` (inner XML, may be empty) and `body` (inner XML).
pub fn envelope(v: Version, header: &str, body: &str) -> String {
    let ns = v.envelope_ns();
    let header = if header.is_empty() { String::new() } else { format!("<soap:Header>{header}</soap:Header>") };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{ns}\">{header}<soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// A parsed message: its version, `Header` and the one element of its `Body`.
#[derive(Debug)]
pub struct Message<'a> {
    pub version: Version,
    pub header: Option<&'a Element>,
    pub payload: &'a Element,
}

/// Opens an envelope: an `Envelope` of either version with a `Body` holding exactly one
/// element (a request, an answer or a `Fault`).
pub fn open(doc: &Element) -> Result<Message<'_>, String> {
    let version = doc
        .ns
        .as_deref()
        .filter(|_| doc.name == "Envelope")
        .and_then(Version::from_envelope_ns)
        .ok_or("the root is not a SOAP 1.1 or 1.2 Envelope")?;
    let ns = version.envelope_ns();
    let header = doc.children_named(ns, "Header").next();
    let body = doc.children_named(ns, "Body").next().ok_or("the Envelope has no Body")?;
    let payload = match body.children.as_slice() {
        [one] => one,
        [] => return Err("the Body is empty".into()),
        _ => return Err("the Body holds more than one element".into()),
    };
    Ok(Message { version, header, payload })
}

/// A fault as a peer sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The code's local part (`Client.ResourceNotFound`, `Sender`).
    pub code: String,
    /// SOAP 1.2 subcodes' local parts, outermost first.
    pub subcodes: Vec<String>,
    pub reason: String,
    /// The `detail`/`Detail` element, if any.
    pub detail: Option<Element>,
}

impl Fault {
    /// The sender's fault or the receiver's, by the (sub)code.
    pub fn class(&self) -> FaultClass {
        let c = self.code.to_ascii_lowercase();
        if c.starts_with("client") || c.starts_with("sender") {
            FaultClass::Client
        } else {
            FaultClass::Server
        }
    }

    /// All codes joined with dots (`Client.ResourceNotFound`, `Sender.NotFound`).
    pub fn full_code(&self) -> String {
        std::iter::once(self.code.as_str())
            .chain(self.subcodes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn local(qname: &str) -> String {
    qname.trim().rsplit(':').next().unwrap_or("").to_owned()
}

/// The fault in `m`, if its payload is one.
pub fn fault(m: &Message<'_>) -> Option<Fault> {
    let ns = m.version.envelope_ns();
    let f = m.payload;
    if f.ns.as_deref() != Some(ns) || f.name != "Fault" {
        return None;
    }
    Some(match m.version {
        Version::V11 => Fault {
            code: f.text_of("faultcode").map(local).unwrap_or_default(),
            subcodes: Vec::new(),
            reason: f.text_of("faultstring").unwrap_or_default().to_owned(),
            detail: f.child("detail").cloned(),
        },
        Version::V12 => {
            let mut code = f.children_named(ns, "Code").next();
            let mut codes = Vec::new();
            while let Some(c) = code {
                if let Some(v) = c.children_named(ns, "Value").next() {
                    codes.push(local(&v.text));
                }
                code = c.children_named(ns, "Subcode").next();
            }
            let reason = f
                .children_named(ns, "Reason")
                .next()
                .and_then(|r| r.children_named(ns, "Text").next())
                .map(|t| t.text.trim().to_owned())
                .unwrap_or_default();
            let mut codes = codes.into_iter();
            Fault {
                code: codes.next().unwrap_or_default(),
                subcodes: codes.collect(),
                reason,
                detail: f.children_named(ns, "Detail").next().cloned(),
            }
        }
    })
}

/// A whole fault envelope: `class` as the version spells it, an optional subcode
/// (`Client.<sub>` in 1.1, a `Subcode` in 1.2, in namespace `sub_ns`), the reason, and
/// `detail` (inner XML, may be empty).
pub fn fault_envelope(v: Version, class: FaultClass, sub: Option<(&str, &str)>, reason: &str, detail: &str) -> String {
    let body = match v {
        Version::V11 => {
            let base = match class {
                FaultClass::Client => "Client",
                FaultClass::Server => "Server",
            };
            let code = match sub {
                Some((_, s)) => format!("soap:{base}.{s}"),
                None => format!("soap:{base}"),
            };
            let detail = if detail.is_empty() { String::new() } else { format!("<detail>{detail}</detail>") };
            format!(
                "<soap:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring>{detail}</soap:Fault>",
                esc(&code),
                esc(reason)
            )
        }
        Version::V12 => {
            let base = match class {
                FaultClass::Client => "soap:Sender",
                FaultClass::Server => "soap:Receiver",
            };
            let subcode = match sub {
                Some((ns, s)) => format!(
                    "<soap:Subcode><soap:Value xmlns:v=\"{}\">v:{}</soap:Value></soap:Subcode>",
                    esc_attr(ns),
                    esc(s)
                ),
                None => String::new(),
            };
            let detail = if detail.is_empty() { String::new() } else { format!("<soap:Detail>{detail}</soap:Detail>") };
            format!(
                "<soap:Fault><soap:Code><soap:Value>{base}</soap:Value>{subcode}</soap:Code><soap:Reason><soap:Text xml:lang=\"it\">{}</soap:Text></soap:Reason>{detail}</soap:Fault>",
                esc(reason)
            )
        }
    };
    envelope(v, "", &body)
}

/// A `wsse:Security` header with a `UsernameToken` (password as text: the channel is TLS).
pub fn username_token(user: &str, password: &str) -> String {
    format!(
        "<wsse:Security xmlns:wsse=\"{WSSE}\" soap:mustUnderstand=\"1\"><wsse:UsernameToken><wsse:Username>{}</wsse:Username><wsse:Password Type=\"{PASSWORD_TEXT}\">{}</wsse:Password></wsse:UsernameToken></wsse:Security>",
        esc(user),
        esc(password)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::parse;

    #[test]
    fn faults_of_both_versions_round_trip() {
        for v in [Version::V11, Version::V12] {
            let x =
                fault_envelope(v, FaultClass::Client, Some(("urn:x", "NotFound")), "pratica <1> assente", "<a>1</a>");
            let doc = parse(x.as_bytes()).unwrap();
            let m = open(&doc).unwrap();
            assert_eq!(m.version, v);
            let f = fault(&m).unwrap();
            assert_eq!(f.class(), FaultClass::Client);
            assert_eq!(f.full_code(), if v == Version::V11 { "Client.NotFound" } else { "Sender.NotFound" });
            assert_eq!(f.reason, "pratica <1> assente");
            assert_eq!(f.detail.unwrap().children[0].name, "a");
        }
        let x = fault_envelope(Version::V12, FaultClass::Server, None, "giù", "");
        let doc = parse(x.as_bytes()).unwrap();
        assert_eq!(fault(&open(&doc).unwrap()).unwrap().class(), FaultClass::Server);
    }

    #[test]
    fn envelopes_are_checked() {
        assert!(open(&parse(b"<a/>").unwrap()).is_err());
        let two = format!("<s:Envelope xmlns:s=\"{SOAP11_ENV}\"><s:Body><a/><b/></s:Body></s:Envelope>");
        assert!(open(&parse(two.as_bytes()).unwrap()).unwrap_err().contains("more than one"));
        let x = envelope(Version::V11, &username_token("u<", "p&"), "<x/>");
        let doc = parse(x.as_bytes()).unwrap();
        let m = open(&doc).unwrap();
        let tok = &m.header.unwrap().children[0].children[0];
        assert_eq!(tok.text_of("Username"), Some("u<"));
        assert_eq!(tok.text_of("Password"), Some("p&"));
    }
}
