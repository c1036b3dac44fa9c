//! A back-office's submission (JSON) as a SIUSS flow (XML, namespace `http://inps.it/Casellario`).
//! The JSON mirrors the XSD: in an object, a text or number is an attribute of that name, an
//! object a child element, a list of objects repeated elements, a list of texts repeated
//! elements holding them. varco writes `IdentificazioneFlusso` and `Ente`; one beneficiary and
//! one benefit per flow. The XSD then decides (see `xsd.rs`).

use serde_json::{Map, Value};

const NS: &str = "http://inps.it/Casellario";

/// The two flow formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Tipo {
    #[serde(rename = "PS_PSA_SINA")]
    PsPsaSina,
    #[serde(rename = "SINBA")]
    Sinba,
}

impl Tipo {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PsPsaSina => "PS_PSA_SINA",
            Self::Sinba => "SINBA",
        }
    }

    /// The `TIPO` of an `id_flusso` (the contract: "SINBA o PS").
    pub fn id_part(self) -> &'static str {
        match self {
            Self::PsPsaSina => "PS",
            Self::Sinba => "SINBA",
        }
    }
}

/// A submission as the back-office sends it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub tipo: Tipo,
    /// `Ente/@CFOperatore` for this flow. Default: the ente's `cf_operatore`.
    #[serde(default)]
    pub cf_operatore: Option<String>,
    /// `Beneficiario` (PS_PSA_SINA): its attributes, `Anagrafica`, `Indirizzo`, one
    /// `PrestazioniSociali` (with `TipoOperazione` I/V/A…).
    #[serde(default)]
    pub beneficiario: Option<Map<String, Value>>,
    /// `SINBA` (SINBA): its attributes, `Prestazioni`, `Famiglia`.
    #[serde(default)]
    pub sinba: Option<Map<String, Value>>,
}

/// Who the ente is in its flows.
#[derive(Debug, Clone)]
pub struct Ente {
    pub codice: String,
    pub denominazione: String,
    pub indirizzo: String,
    pub cf_operatore: String,
}

/// Children in the order of the XSD's sequences (an object's keys have no order).
fn order(parent: &str) -> &'static [&'static str] {
    match parent {
        "Beneficiario" => &["Anagrafica", "Indirizzo", "PrestazioniSociali"],
        "PrestazioniSociali" => &["SINA"],
        "SINA" => &["NecessitaInterventiSociali", "InvaliditaCivile"],
        "SINBA" => &["Prestazioni", "Famiglia"],
        _ => &[],
    }
}

fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && s.len() <= 64
}

/// XML text of a JSON scalar; `None` for what cannot be one (XML-forbidden characters too).
fn scalar(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    // XML 1.0 carries no control character but tab and newlines, and no U+FFFE / U+FFFF.
    let forbidden =
        |c: char| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}');
    if s.chars().any(forbidden) || s.len() > 4096 {
        return None;
    }
    Some(s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;"))
}

fn element(name: &str, obj: &Map<String, Value>, at: &str, out: &mut String, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("`{at}` nests deeper than any SIUSS flow"));
    }
    out.push('<');
    out.push_str(name);
    let mut children: Vec<(&String, &Value)> = Vec::new();
    for (k, v) in obj {
        if !is_name(k) {
            return Err(format!("`{at}.{k}` is not an XSD element or attribute name"));
        }
        match v {
            Value::Object(_) | Value::Array(_) => children.push((k, v)),
            Value::Null => {}
            v => {
                let text = scalar(v).ok_or_else(|| format!("`{at}.{k}` holds characters XML cannot carry"))?;
                out.push_str(&format!(" {k}=\"{text}\""));
            }
        }
    }
    let rank = |k: &str| order(name).iter().position(|x| *x == k).unwrap_or(usize::MAX);
    children.sort_by_key(|(k, _)| rank(k));
    if children.is_empty() {
        out.push_str("/>");
        return Ok(());
    }
    out.push('>');
    for (k, v) in children {
        let here = format!("{at}.{k}");
        match v {
            Value::Object(o) => element(k, o, &here, out, depth + 1)?,
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(o) => element(k, o, &format!("{here}[{i}]"), out, depth + 1)?,
                        v => {
                            let text = scalar(v).ok_or_else(|| format!("`{here}[{i}]` is not text"))?;
                            out.push_str(&format!("<{k}>{text}</{k}>"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out.push_str(&format!("</{name}>"));
    Ok(())
}

impl Submission {
    /// Reads a submission: JSON, the right part for its `tipo`, one beneficiary and benefit.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let s: Self = serde_json::from_slice(body).map_err(|e| format!("not a SIUSS submission: {e}"))?;
        match (s.tipo, &s.beneficiario, &s.sinba) {
            (Tipo::PsPsaSina, Some(b), None) => {
                if !matches!(b.get("PrestazioniSociali"), Some(Value::Object(_))) {
                    return Err(
                        "`beneficiario.PrestazioniSociali`: one benefit per flow (an object, not a list)".into()
                    );
                }
            }
            (Tipo::Sinba, None, Some(_)) => {}
            (Tipo::PsPsaSina, _, _) => return Err("a PS_PSA_SINA flow carries `beneficiario` (and no `sinba`)".into()),
            (Tipo::Sinba, _, _) => return Err("a SINBA flow carries `sinba` (and no `beneficiario`)".into()),
        }
        if let Some(cf) = &s.cf_operatore {
            if cf.len() != 16 || !cf.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                return Err("`cf_operatore`: a codice fiscale, 16 capital letters and digits".into());
            }
        }
        Ok(s)
    }

    /// The flow's XML, named `id_flusso`.
    pub fn xml(&self, ente: &Ente, id_flusso: &str) -> Result<String, String> {
        let cf = self.cf_operatore.as_deref().unwrap_or(&ente.cf_operatore);
        let attr = |what: &str, v: &str| {
            scalar(&Value::String(v.to_owned()))
                .ok_or_else(|| format!("the ente's `{what}` holds characters XML cannot carry"))
        };
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Flusso xmlns=\"{NS}\"><IdentificazioneFlusso Nome=\"{}\"><Ente Codice=\"{}\" Denominazione=\"{}\" Indirizzo=\"{}\" CFOperatore=\"{}\"/></IdentificazioneFlusso>",
            attr("id_flusso", id_flusso)?,
            attr("codice_ente", &ente.codice)?,
            attr("denominazione", &ente.denominazione)?,
            attr("indirizzo", &ente.indirizzo)?,
            attr("cf_operatore", cf)?
        );
        match (&self.beneficiario, &self.sinba) {
            (Some(b), _) => element("Beneficiario", b, "beneficiario", &mut out, 0)?,
            (_, Some(s)) => element("SINBA", s, "sinba", &mut out, 0)?,
            _ => return Err("nothing to report".into()),
        }
        out.push_str("</Flusso>");
        Ok(out)
    }

    /// The codice fiscale of the beneficiary, for the back-office's own look-ups (never logged).
    pub fn beneficiary(&self) -> Option<&str> {
        self.beneficiario.as_ref()?.get("CodiceFiscale")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ente() -> Ente {
        Ente {
            codice: "E783".into(),
            denominazione: "Comune di Macerata".into(),
            indirizzo: "E783".into(),
            cf_operatore: "RSSMRA80A01H501U".into(),
        }
    }

    #[test]
    fn a_submission_becomes_the_flow_in_xsd_order() {
        let body = json!({"tipo": "PS_PSA_SINA", "beneficiario": {
            "CodiceFiscale": "AAABBB39M66A351C",
            "PrestazioniSociali": {"CodicePrestazione": "A1.16", "SINA": {"Mobilita": 1, "InvaliditaCivile": {"InvCiv": [1, 3]}, "NecessitaInterventiSociali": {"CodicePrestazione": ["A2.17"]}}},
            "Indirizzo": [{"CodiceNazione": "380"}],
            "Anagrafica": {"Cognome": "D'Amico & figli <x>", "AnnoNascita": "1939"}
        }});
        let s = Submission::parse(body.to_string().as_bytes()).unwrap();
        let xml = s.xml(&ente(), "E783.PS.20261203.0000001").unwrap();
        let a = xml.find("<Anagrafica").unwrap();
        let i = xml.find("<Indirizzo").unwrap();
        let p = xml.find("<PrestazioniSociali").unwrap();
        assert!(a < i && i < p, "the XSD's sequence order: {xml}");
        assert!(xml.find("<NecessitaInterventiSociali").unwrap() < xml.find("<InvaliditaCivile").unwrap());
        assert!(xml.contains("Cognome=\"D'Amico &amp; figli &lt;x&gt;\""));
        assert!(xml.contains("<InvCiv>1</InvCiv><InvCiv>3</InvCiv>"));
        assert!(xml.contains("<IdentificazioneFlusso Nome=\"E783.PS.20261203.0000001\"><Ente Codice=\"E783\""));
        assert_eq!(s.beneficiary(), Some("AAABBB39M66A351C"));
    }

    #[test]
    fn what_cannot_be_a_flow_is_refused_before_the_xsd() {
        let refuse =
            |v: Value| Submission::parse(v.to_string().as_bytes()).and_then(|s| s.xml(&ente(), "x")).unwrap_err();
        assert!(refuse(json!({"tipo": "PS_PSA_SINA", "beneficiario": {"PrestazioniSociali": [{}, {}]}}))
            .contains("one benefit"));
        assert!(refuse(json!({"tipo": "SINBA", "beneficiario": {}})).contains("sinba"));
        assert!(refuse(json!({"tipo": "XML"})).contains("not a SIUSS submission"));
        assert!(refuse(json!({"tipo": "SINBA", "sinba": {"bad name": 1}})).contains("not an XSD element"));
        assert!(refuse(json!({"tipo": "SINBA", "sinba": {"IDBeneficiario": "a\u{1}b"}}))
            .contains("characters XML cannot carry"));
        assert!(refuse(json!({"tipo": "SINBA", "sinba": {}, "extra": 1})).contains("unknown field"));
        // Found by the `interop` fuzz target: U+FFFF is no XML 1.0 character, anywhere.
        assert!(refuse(json!({"tipo": "SINBA", "sinba": {"IDBeneficiario": "a\u{FFFF}"}})).contains("XML cannot carry"));
        assert!(refuse(json!({"tipo": "SINBA", "cf_operatore": ">>w\u{FFFF}", "sinba": {}})).contains("cf_operatore"));
        assert!(
            refuse(json!({"tipo": "SINBA", "cf_operatore": "rssmra80a01h501u", "sinba": {}})).contains("cf_operatore")
        );
    }
}
