//! The ente as a pagoPA station: the creditor's SOAP interface `paForNode`, answered from the
//! ente's back-office, with receipts made durable (and published as events) before OK.
//!
//! - Requests are parsed by a strict XML reader (no DTD, bounded depth) and checked against
//!   the XSD's types (`schema`); anything else is `PAA_SINTASSI_XSD` naming the element.
//! - `idPA`, `idBrokerPA`, `idStation` and the notice number (aux digit, segregation code,
//!   mod-93 check digits) are checked against the station's configuration.
//! - Faults are `ctFaultBean`s in an `outcome: KO` answer of the operation, as the node expects;
//!   only a message whose operation cannot be told gets a SOAP 1.1 Fault.
#![forbid(unsafe_code)]

mod answers;
pub mod backoffice;
pub mod gpd;
mod helpers;
pub mod notice;
mod receipt_events;
pub mod receipts;
pub mod schema;
pub mod xml;

use async_trait::async_trait;
use backoffice::{Backoffice, Position, PositionStatus};
use bytes::Bytes;
use cloudevents::EventBuilder as _;
use std::sync::Arc;
use varco_config::{PagopaConfig, ReceiptEvent};
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, Problem};
use varco_events::EventBus;
use varco_traffic::redis_store::{Claim, RedisStore};
use xml::{esc, request_element, Element, SOAP_ENV};

/// The six operations, by request element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Verify,
    GetPayment,
    GetPaymentV2,
    SendRt,
    SendRtV2,
    Demand,
}

impl Op {
    fn from_request(name: &str) -> Option<Self> {
        Some(match name {
            "paVerifyPaymentNoticeReq" => Self::Verify,
            "paGetPaymentReq" => Self::GetPayment,
            "paGetPaymentV2Request" => Self::GetPaymentV2,
            "paSendRTReq" => Self::SendRt,
            "paSendRTV2Request" => Self::SendRtV2,
            "paDemandPaymentNoticeRequest" => Self::Demand,
            _ => return None,
        })
    }

    fn from_action(action: &str) -> Option<Self> {
        Some(match action {
            "paVerifyPaymentNotice" => Self::Verify,
            "paGetPayment" => Self::GetPayment,
            "paGetPaymentV2" => Self::GetPaymentV2,
            "paSendRT" => Self::SendRt,
            "paSendRTV2" => Self::SendRtV2,
            "paDemandPaymentNotice" => Self::Demand,
            _ => return None,
        })
    }

    /// The answer's element name.
    pub fn response(self) -> &'static str {
        match self {
            Self::Verify => "paVerifyPaymentNoticeRes",
            Self::GetPayment => "paGetPaymentRes",
            Self::GetPaymentV2 => "paGetPaymentV2Response",
            Self::SendRt => "paSendRTRes",
            Self::SendRtV2 => "paSendRTV2Response",
            Self::Demand => "paDemandPaymentNoticeResponse",
        }
    }
}

/// A fault the node understands.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub code: &'static str,
    pub string: String,
    pub description: String,
}

fn fault(code: &'static str, string: &str, description: impl Into<String>) -> Fault {
    Fault { code, string: string.to_owned(), description: description.into() }
}

/// The station of one ente.
#[derive(Debug)]
pub struct PagopaAdapter {
    cfg: PagopaConfig,
    tenant: String,
    backoffice: Backoffice,
    receipts: Arc<receipts::ReceiptStore>,
    bus: Arc<EventBus>,
    /// Shared by the instances behind one station: a receipt is stored by one of them.
    redis: Option<Arc<RedisStore>>,
}

/// How long a receipt id is remembered in Redis (ids never recur; 400 days).
const RECEIPT_KEEP_SECS: u64 = 400 * 24 * 3600;
/// How long an instance may take to store a receipt it claimed before another may try.
const RECEIPT_CLAIM_SECS: u64 = 60;

/// The ente's receipt events in its outbox, for settling what a crash left open.
struct BusReceipts<'a> {
    bus: &'a EventBus,
    source: String,
}

impl receipts::Published for BusReceipts<'_> {
    fn position(&self) -> u64 {
        self.bus.position()
    }
    fn published_since(&self, from: u64, id: &str) -> Result<bool, String> {
        // The events of a receipt are stored in one append: either one tells.
        Ok(self.bus.stored_since(from, &self.source, &format!("pagopa-rt-{id}"))?
            || self.bus.stored_since(from, &self.source, &format!("pagopa-rt-{id}-v2"))?)
    }
}

impl PagopaAdapter {
    /// Opens the receipt store (I/O at build time).
    pub fn build(
        tenant: &str,
        cfg: &PagopaConfig,
        bus: Arc<EventBus>,
        client: varco_outbound::HttpsClient,
        redis: Option<Arc<RedisStore>>,
    ) -> Result<Self, String> {
        // The official XSD every message is checked against: a station never runs without it.
        schema::model()?;
        let published = BusReceipts { bus: &bus, source: format!("/enti/{tenant}/pagopa") };
        Ok(Self {
            cfg: cfg.clone(),
            tenant: tenant.to_owned(),
            backoffice: Backoffice::new(&cfg.backoffice_url, cfg.backoffice_timeout.0, client)?,
            receipts: receipts::ReceiptStore::open(&cfg.receipts_dir, tenant, &published)?,
            bus,
            redis,
        })
    }

    /// Answers one SOAP message.
    pub async fn handle(&self, headers: &http::HeaderMap, body: &[u8], traceparent: &str) -> (u16, String) {
        let action = headers
            .get("soapaction")
            .and_then(|v| v.to_str().ok())
            .map(|a| a.trim().trim_matches('"').rsplit('/').next().unwrap_or("").to_owned());
        let action_op = action.as_deref().and_then(Op::from_action);
        let doc = match xml::parse(body) {
            Ok(d) => d,
            Err(why) => return self.unreadable(action_op, &why),
        };
        let req = match request_element(&doc) {
            Ok(r) => r,
            Err(why) => return self.unreadable(action_op, &why),
        };
        let op = match Op::from_request(&req.name) {
            Some(op) => op,
            None => return self.unreadable(action_op, &format!("`{}` is not a paForNode request", req.name)),
        };
        if action_op.is_some_and(|a| a != op) {
            let f = fault(
                "PAA_SINTASSI_XSD",
                "Errore di sintassi XSD",
                format!("SOAPAction `{}` does not match <{}>", action.unwrap_or_default(), req.name),
            );
            return (200, self.envelope(op, &self.ko(&f)));
        }
        let result = match schema::check_request(req) {
            Err(why) => Err(fault("PAA_SINTASSI_XSD", "Errore di sintassi XSD", why)),
            Ok(()) => match self.check_station(req) {
                Err(f) => Err(f),
                Ok(()) => self.operation(op, req, traceparent).await,
            },
        };
        let inner = match result.and_then(|xml| self.fits_xsd(op, xml)) {
            Ok(xml) => xml,
            Err(f) => {
                tracing::info!(tenant = %self.tenant, operation = op.response(), fault = f.code, detail = %f.description, "pagoPA request refused");
                self.ko(&f)
            }
        };
        (200, self.envelope(op, &inner))
    }

    /// The answer if it validates against the operation's XSD type; otherwise (back-office data
    /// the XSD refuses: a bad date, a malformed e-mail, a transfer id outside 1–5, …) a
    /// `PAA_SYSTEM_ERROR`, and a log line naming the element.
    fn fits_xsd(&self, op: Op, inner: String) -> Result<String, Fault> {
        let checked =
            xml::parse(format!("<a>{inner}</a>").as_bytes()).and_then(|doc| schema::check_answer(&doc, op.response()));
        match checked {
            Ok(()) => Ok(inner),
            Err(why) => {
                tracing::error!(tenant = %self.tenant, operation = op.response(), invalid = %why, "pagoPA: the back-office's data does not fit paForNode.xsd; answering PAA_SYSTEM_ERROR");
                Err(fault(
                    "PAA_SYSTEM_ERROR",
                    "Errore generico",
                    format!(
                        "the ente's data for this notice does not fit paForNode.xsd at {}",
                        why.split(':').next().unwrap_or("")
                    ),
                ))
            }
        }
    }

    /// A free-text field of the back-office's position (a causale) as the XSD takes it:
    /// characters XML cannot carry dropped, cut at `max` characters (legacy tributi systems
    /// write longer ones), with a log line when it was cut.
    fn causale(&self, field: &str, text: &str, max: usize) -> String {
        let clean: String = text.chars().filter(|c| xml::is_xml_char(*c)).collect();
        let clean = clean.trim();
        match clean.char_indices().nth(max) {
            Some((at, _)) => {
                tracing::warn!(tenant = %self.tenant, field, max, "pagoPA: a back-office text longer than the XSD allows was cut");
                clean[..at].trim_end().to_owned()
            }
            None => clean.to_owned(),
        }
    }

    /// A message that cannot be read: the operation's KO when SOAPAction tells it, else a SOAP Fault.
    fn unreadable(&self, op: Option<Op>, why: &str) -> (u16, String) {
        match op {
            Some(op) => (200, self.envelope(op, &self.ko(&fault("PAA_SINTASSI_XSD", "Errore di sintassi XSD", why)))),
            None => (
                500,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>PAA_SINTASSI_XSD: {}</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
                    esc(why)
                ),
            ),
        }
    }

    fn check_station(&self, req: &Element) -> Result<(), Fault> {
        let id = |n| req.text_of(n).unwrap_or("");
        if id("idPA") != self.cfg.id_pa {
            return Err(fault(
                "PAA_ID_DOMINIO_ERRATO",
                "Identificativo dominio sconosciuto",
                format!("idPA `{}` is not this station's ente", id("idPA")),
            ));
        }
        if id("idBrokerPA") != self.cfg.id_broker_pa {
            return Err(fault(
                "PAA_ID_INTERMEDIARIO_ERRATO",
                "Identificativo intermediario errato",
                "idBrokerPA is not this station's intermediary",
            ));
        }
        if id("idStation") != self.cfg.id_station {
            return Err(fault(
                "PAA_STAZIONE_INT_ERRATA",
                "Stazione intermediario errata",
                "idStation is not this station",
            ));
        }
        Ok(())
    }

    /// The IUV of a request's notice number (qrCode or receipt), checked against the ente.
    fn iuv(&self, fiscal_code: &str, notice: &str) -> Result<String, Fault> {
        if fiscal_code != self.cfg.id_pa {
            return Err(fault(
                "PAA_ID_DOMINIO_ERRATO",
                "Identificativo dominio sconosciuto",
                "the notice's fiscalCode is not this ente",
            ));
        }
        notice::iuv_of(notice, &self.cfg.segregation_code).map_err(|e| {
            let why = match e {
                notice::NoticeError::AuxDigit => "the notice number's aux digit is not 3",
                notice::NoticeError::Segregation => "the notice number's segregation code is not this ente's",
                notice::NoticeError::CheckDigits => "the notice number's check digits (mod 93) are wrong",
            };
            fault("PAA_SEMANTICA", "Errore semantico", why)
        })
    }

    async fn operation(&self, op: Op, req: &Element, traceparent: &str) -> Result<String, Fault> {
        match op {
            Op::Verify | Op::GetPayment | Op::GetPaymentV2 => {
                let qr =
                    req.child("qrCode").ok_or_else(|| fault("PAA_SINTASSI_XSD", "Errore di sintassi XSD", "qrCode"))?;
                let iuv = self.iuv(qr.text_of("fiscalCode").unwrap_or(""), qr.text_of("noticeNumber").unwrap_or(""))?;
                let pos = self.payable(&iuv).await?;
                Ok(match op {
                    Op::Verify => self.verify_ok(&pos),
                    _ => self.payment_ok(&pos, &iuv, op == Op::GetPaymentV2),
                })
            }
            Op::SendRt | Op::SendRtV2 => {
                let r = req
                    .child("receipt")
                    .ok_or_else(|| fault("PAA_SINTASSI_XSD", "Errore di sintassi XSD", "receipt"))?;
                let fiscal_code = r.text_of("fiscalCode").unwrap_or("");
                let notice = r.text_of("noticeNumber").unwrap_or("");
                let own = self.own_transfers(r);
                let iuv = if fiscal_code == self.cfg.id_pa {
                    self.iuv(fiscal_code, notice)?
                } else {
                    // A multi-beneficiary notice (a Provincia's TEFA on a comune's TARI): the
                    // node sends the primary creditor's receipt to every creditor in its
                    // transfers. The IUV is the primary's.
                    if let Err(f) = &own {
                        return Err(f.clone());
                    }
                    notice.get(1..).unwrap_or_default().to_owned()
                };
                if self.cfg.check_receipts && fiscal_code == self.cfg.id_pa {
                    self.known_position(&iuv).await?;
                }
                if r.text_of("outcome") == Some("KO") {
                    // Not a payment: acknowledged, nothing published.
                    tracing::info!(tenant = %self.tenant, iuv, "pagoPA receipt with outcome KO acknowledged");
                    return Ok("<outcome>OK</outcome>".to_owned());
                }
                self.receipt(r, &iuv, &own.unwrap_or_default(), traceparent).await?;
                Ok("<outcome>OK</outcome>".to_owned())
            }
            Op::Demand => {
                let pos = self
                    .backoffice
                    .demand(
                        req.text_of("idServizio").unwrap_or(""),
                        req.text_of("idSoggettoServizio").unwrap_or(""),
                        req.text_of("datiSpecificiServizioRequest").unwrap_or(""),
                    )
                    .await
                    .map_err(|e| self.backoffice_fault(e))?;
                let notice = pos
                    .notice_number
                    .clone()
                    .filter(|n| notice::iuv_of(n, &self.cfg.segregation_code).is_ok())
                    .ok_or_else(|| {
                        fault("PAA_SYSTEM_ERROR", "Errore generico", "the back-office returned no valid notice number")
                    })?;
                let verify = self.verify_ok(&pos);
                let body = verify.strip_prefix("<outcome>OK</outcome>").unwrap_or(&verify);
                Ok(format!(
                    "<outcome>OK</outcome><qrCode><fiscalCode>{}</fiscalCode><noticeNumber>{}</noticeNumber></qrCode>{body}",
                    esc(&self.cfg.id_pa),
                    esc(&notice)
                ))
            }
        }
    }

    /// The position of an IUV, if it can still be paid.
    async fn payable(&self, iuv: &str) -> Result<Position, Fault> {
        let pos = self.backoffice.position(iuv).await.map_err(|e| self.backoffice_fault(e))?;
        match pos.status {
            PositionStatus::Payable => Ok(pos),
            PositionStatus::Paid => {
                Err(fault("PAA_PAGAMENTO_DUPLICATO", "Pagamento duplicato", "this notice is already paid"))
            }
            PositionStatus::Expired => {
                Err(fault("PAA_PAGAMENTO_SCADUTO", "Pagamento scaduto", "this notice has expired"))
            }
            PositionStatus::Cancelled => {
                Err(fault("PAA_PAGAMENTO_ANNULLATO", "Pagamento annullato", "this notice was cancelled"))
            }
            PositionStatus::InProgress => {
                Err(fault("PAA_PAGAMENTO_IN_CORSO", "Pagamento in corso", "a payment of this notice is in progress"))
            }
        }
    }

    /// `check_receipts`: the back-office must know the position, and it must not be cancelled.
    async fn known_position(&self, iuv: &str) -> Result<(), Fault> {
        let pos = self.backoffice.position(iuv).await.map_err(|e| self.backoffice_fault(e))?;
        match pos.status {
            PositionStatus::Cancelled => {
                Err(fault("PAA_PAGAMENTO_ANNULLATO", "Pagamento annullato", "the back-office cancelled this position"))
            }
            _ => Ok(()),
        }
    }

    fn backoffice_fault(&self, e: backoffice::Error) -> Fault {
        match e {
            backoffice::Error::NotFound => {
                fault("PAA_PAGAMENTO_SCONOSCIUTO", "Pagamento sconosciuto", "the back-office does not know this notice")
            }
            backoffice::Error::Other(why) => {
                tracing::warn!(tenant = %self.tenant, error = %why, "pagoPA: back-office call failed");
                fault("PAA_SYSTEM_ERROR", "Errore generico", "the back-office could not answer; retry later")
            }
        }
    }

    /// The receipt's transfers whose creditor is this ente; none is `PAA_ID_DOMINIO_ERRATO`.
    fn own_transfers<'r>(&self, r: &'r Element) -> Result<Vec<&'r Element>, Fault> {
        let own: Vec<&Element> = r
            .child("transferList")
            .map(|l| l.children.iter().filter(|t| t.text_of("fiscalCodePA") == Some(self.cfg.id_pa.as_str())).collect())
            .unwrap_or_default();
        if own.is_empty() {
            return Err(fault(
                "PAA_ID_DOMINIO_ERRATO",
                "Identificativo dominio sconosciuto",
                "this ente is neither the notice's creditor nor the creditor of one of its transfers",
            ));
        }
        Ok(own)
    }

    /// Stores a receipt durably (as a `it.varco.tributi.pagamento.ricevuto.v1` event in the
    /// outbox) exactly once per `receiptId`.
    /// `own`: the receipt's transfers whose creditor is this ente.
    async fn receipt(&self, r: &Element, iuv: &str, own: &[&Element], traceparent: &str) -> Result<(), Fault> {
        let receipt_id = r.text_of("receiptId").unwrap_or("").to_owned();
        if receipt_id.is_empty() || receipt_id.len() > 64 {
            return Err(fault("PAA_SEMANTICA", "Errore semantico", "receiptId must be 1 to 64 characters"));
        }
        let total = backoffice::cents(r.text_of("paymentAmount").unwrap_or(""))
            .ok_or_else(|| fault("PAA_SEMANTICA", "Errore semantico", "paymentAmount"))?;
        if total == 0 {
            // Not "send again": the node would repeat a 0.00 receipt for ever.
            return Err(fault("PAA_SEMANTICA", "Errore semantico", "a receipt of 0.00 is not a payment"));
        }
        // What concerns this ente: its own transfers (all of them on a single-creditor notice).
        let own_cents: Option<u64> =
            own.iter().map(|t| backoffice::cents(t.text_of("transferAmount").unwrap_or(""))).sum();
        let cents = match own_cents {
            Some(c) if c > 0 => c,
            _ => total,
        };
        let causale = match own {
            [t] if r.text_of("fiscalCode") != Some(self.cfg.id_pa.as_str()) => t.text_of("remittanceInformation"),
            _ => r.text_of("description"),
        };
        let mut events = Vec::new();
        for version in &self.cfg.receipt_events {
            let (ty, id, data) = match version {
                ReceiptEvent::V1 => (
                    "it.varco.tributi.pagamento.ricevuto.v1",
                    format!("pagopa-rt-{receipt_id}"),
                    receipt_events::v1(&self.cfg.id_pa, &self.tenant, r, iuv, &receipt_id, cents, causale),
                ),
                ReceiptEvent::V2 => (
                    "it.varco.tributi.pagamento.ricevuto.v2",
                    format!("pagopa-rt-{receipt_id}-v2"),
                    receipt_events::v2(&self.cfg.id_pa, r, iuv, &receipt_id, cents, total),
                ),
            };
            let event = cloudevents::EventBuilderV10::new()
                .id(id)
                .source(format!("/enti/{}/pagopa", self.tenant))
                .ty(ty)
                .subject(iuv)
                .data("application/json", data)
                .build()
                .map_err(|e| fault("PAA_SYSTEM_ERROR", "Errore generico", e.to_string()))?;
            events.push(event);
        }
        let duplicate = || fault("PAA_RECEIPT_DUPLICATA", "Receipt duplicata", "this receiptId was already received");
        if self.receipts.has(&receipt_id).await {
            return Err(duplicate());
        }
        // Behind one station, another instance may have stored it, or be storing it now.
        let claim_key = format!("pagopa-rt:{}:{receipt_id}", self.tenant);
        let mut claimed = false;
        if let Some(r) = &self.redis {
            match r.claim(&claim_key, RECEIPT_CLAIM_SECS).await {
                Some(Claim::Claimed) => claimed = true,
                Some(Claim::Done) => return Err(duplicate()),
                Some(Claim::Pending) => {
                    return Err(fault(
                        "PAA_SYSTEM_ERROR",
                        "Errore generico",
                        "another instance of the station is storing this receipt; send it again",
                    ))
                }
                // Redis unreachable: this instance's own journal decides.
                None => {}
            }
        }
        let bus = self.bus.clone();
        let tenant = self.tenant.clone();
        let tp = traceparent.to_owned();
        let stored = self
            .receipts
            .record_once(&receipt_id, self.bus.position(), || async move {
                bus.publish(&tenant, events, Some(&tp).filter(|t| !t.is_empty()).map(String::as_str))
                    .await
                    .map_err(|p| p.detail)
            })
            .await;
        if let Some(r) = self.redis.as_ref().filter(|_| claimed) {
            r.settle(&claim_key, stored.is_ok(), RECEIPT_KEEP_SECS).await;
        }
        match stored {
            Ok(true) => {
                tracing::info!(tenant = %self.tenant, iuv, "pagoPA receipt stored");
                Ok(())
            }
            Ok(false) => Err(duplicate()),
            Err(why) => {
                tracing::error!(tenant = %self.tenant, error = %why, "pagoPA receipt could not be stored");
                Err(fault("PAA_SYSTEM_ERROR", "Errore generico", "the receipt could not be stored; send it again"))
            }
        }
    }
}

/// Reads a paForNode message as far as it can be read without an ente: the XML, the
/// envelope, the operation and the XSD's types; the operation's response name on success.
/// (What `handle` does first; the fuzz target's entry point.)
pub fn check_message(body: &[u8]) -> Result<&'static str, String> {
    let doc = xml::parse(body)?;
    let req = request_element(&doc)?;
    let op = Op::from_request(&req.name).ok_or_else(|| format!("`{}` is not a paForNode request", req.name))?;
    schema::check_request(req)?;
    Ok(op.response())
}

impl PagopaAdapter {
    async fn answer(&self, req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem> {
        if req.method == http::Method::GET {
            return self.helpers(req.path, req.query).await;
        }
        let (status, xml) = self.handle(req.headers, &req.body, req.traceparent).await;
        Ok(AdapterResponse {
            status,
            headers: vec![(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/xml; charset=utf-8"))],
            body: Bytes::from(xml),
        })
    }
}

#[async_trait]
impl Adapter for PagopaAdapter {
    fn kind(&self) -> &'static str {
        "pagopa"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        self.answer(req).await.map(Answer::Body)
    }

    /// The station (`POST`) answers SOAP Faults; its JSON helpers (`GET`) problem+json.
    fn problem_answer(
        &self,
        method: &http::Method,
        p: &Problem,
        request_id: &str,
        trace_id: &str,
    ) -> Option<AdapterResponse> {
        (method == http::Method::POST).then(|| Self::soap_fault(p, request_id, trace_id))
    }
}
