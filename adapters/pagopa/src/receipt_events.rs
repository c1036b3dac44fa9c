//! The events a receipt is published as: `…pagamento.ricevuto.v1` (a summary) and `.v2`
//! (the whole receipt, in the contract's words).

use crate::backoffice;
use crate::xml::Element;

/// The v1 event's data: a summary. `dataPagamento` is required there: without
/// `paymentDateTime` it is the `applicationDate`, else the time of arrival, and the log says
/// so (v2 leaves it out).
pub(crate) fn v1(
    id_pa: &str,
    tenant: &str,
    r: &Element,
    iuv: &str,
    receipt_id: &str,
    cents: u64,
    causale: Option<&str>,
) -> serde_json::Value {
    let paid_at = match (r.text_of("paymentDateTime"), r.text_of("applicationDate")) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => {
            tracing::warn!(tenant = %tenant, receipt = receipt_id, "pagoPA receipt without paymentDateTime: v1's dataPagamento is its applicationDate");
            format!("{}T00:00:00", d.get(..10).unwrap_or(d))
        }
        (None, None) => {
            tracing::warn!(tenant = %tenant, receipt = receipt_id, "pagoPA receipt without paymentDateTime or applicationDate: v1's dataPagamento is the time it arrived");
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
        }
    };
    let mut data = serde_json::json!({
        "idPA": id_pa,
        "iuv": iuv,
        "noticeNumber": r.text_of("noticeNumber"),
        "receiptId": receipt_id,
        "importoCentesimi": cents,
        "dataPagamento": paid_at,
        "causale": causale,
    });
    if let Some(cf) = r
        .child("payer")
        .and_then(|p| p.child("uniqueIdentifier"))
        .and_then(|u| u.text_of("entityUniqueIdentifierValue"))
    {
        data["pagatore"] = serde_json::json!({ "codiceFiscale": cf });
    }
    data
}

/// The v2 event's data: the whole receipt, in the contract's words.
pub(crate) fn v2(id_pa: &str, r: &Element, iuv: &str, receipt_id: &str, cents: u64, total: u64) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
        if let Some(v) = v {
            m.insert(key.to_owned(), v);
        }
    }
    let text = |el: &Element, name: &str| el.text_of(name).filter(|t| !t.is_empty()).map(|t| json!(t));
    let money = |el: &Element, name: &str| el.text_of(name).and_then(backoffice::cents).map(|c| json!(c));
    let metadata = |el: &Element| {
        el.child("metadata").map(|m| {
            m.children
                .iter()
                .map(|e| json!({"key": e.text_of("key"), "value": e.text_of("value")}))
                .collect::<Vec<_>>()
                .into()
        })
    };
    let subject = |el: &Element| {
        let mut m = Map::new();
        let uid = el.child("uniqueIdentifier");
        put(&mut m, "tipo", uid.and_then(|u| text(u, "entityUniqueIdentifierType")));
        put(&mut m, "codiceFiscale", uid.and_then(|u| text(u, "entityUniqueIdentifierValue")));
        put(&mut m, "nome", text(el, "fullName"));
        for (k, n) in [
            ("indirizzo", "streetName"),
            ("civico", "civicNumber"),
            ("cap", "postalCode"),
            ("citta", "city"),
            ("provincia", "stateProvinceRegion"),
            ("nazione", "country"),
            ("email", "e-mail"),
        ] {
            put(&mut m, k, text(el, n));
        }
        Value::Object(m)
    };
    let transfers: Vec<Value> = r
        .child("transferList")
        .map(|l| l.children.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let mut m = Map::new();
            put(&mut m, "id", t.text_of("idTransfer").and_then(|i| i.parse::<u8>().ok()).map(|i| json!(i)));
            put(&mut m, "importoCentesimi", money(t, "transferAmount"));
            put(&mut m, "codiceFiscaleEnte", text(t, "fiscalCodePA"));
            put(&mut m, "denominazione", text(t, "companyName"));
            m.insert("proprio".into(), json!(t.text_of("fiscalCodePA") == Some(id_pa)));
            put(&mut m, "iban", text(t, "IBAN"));
            put(&mut m, "marcaDaBollo", text(t, "MBDAttachment"));
            put(&mut m, "causale", text(t, "remittanceInformation"));
            put(&mut m, "categoria", text(t, "transferCategory"));
            put(&mut m, "metadata", metadata(t));
            Value::Object(m)
        })
        .collect();
    let mut psp = Map::new();
    for (k, n) in [
        ("id", "idPSP"),
        ("codiceFiscale", "pspFiscalCode"),
        ("partitaIva", "pspPartitaIVA"),
        ("denominazione", "PSPCompanyName"),
        ("canale", "idChannel"),
        ("descrizioneCanale", "channelDescription"),
    ] {
        put(&mut psp, k, text(r, n));
    }
    let mut primary = Map::new();
    put(&mut primary, "codiceFiscale", text(r, "fiscalCode"));
    put(&mut primary, "denominazione", text(r, "companyName"));
    put(&mut primary, "ufficio", text(r, "officeName"));
    let mut m = Map::new();
    m.insert("idPA".into(), json!(id_pa));
    m.insert("iuv".into(), json!(iuv));
    put(&mut m, "noticeNumber", text(r, "noticeNumber"));
    m.insert("receiptId".into(), json!(receipt_id));
    put(&mut m, "creditorReferenceId", text(r, "creditorReferenceId"));
    m.insert("importoCentesimi".into(), json!(cents));
    m.insert("importoTotaleCentesimi".into(), json!(total));
    put(&mut m, "dataPagamento", text(r, "paymentDateTime"));
    put(&mut m, "dataApplicazione", text(r, "applicationDate"));
    put(&mut m, "dataRiversamento", text(r, "transferDate"));
    put(&mut m, "causale", text(r, "description"));
    m.insert("creditorePrimario".into(), Value::Object(primary));
    put(&mut m, "debitore", r.child("debtor").map(subject));
    put(&mut m, "pagatore", r.child("payer").map(subject));
    m.insert("psp".into(), Value::Object(psp));
    put(&mut m, "metodoPagamento", text(r, "paymentMethod"));
    put(&mut m, "commissioneCentesimi", money(r, "fee"));
    put(&mut m, "commissioneCreditoreCentesimi", money(r, "primaryCiIncurredFee"));
    put(&mut m, "idBundle", text(r, "idBundle"));
    put(&mut m, "idCiBundle", text(r, "idCiBundle"));
    put(&mut m, "nota", text(r, "paymentNote"));
    put(&mut m, "standIn", r.text_of("standIn").map(|v| json!(matches!(v, "true" | "1"))));
    put(&mut m, "metadata", metadata(r));
    m.insert("trasferimenti".into(), Value::Array(transfers));
    Value::Object(m)
}
