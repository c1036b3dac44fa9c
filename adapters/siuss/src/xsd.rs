//! The official SIUSS schemas (`PS_PSA_SINA201812.xsd`, `SINBA.xsd`, vendored in
//! `contracts/external/inps-siuss`), checked by libxml2 — the reference XSD validator (the
//! one `xmllint` uses). libxml2's documents and contexts may not cross threads, so one thread
//! owns the parsed schemas and validates what it is sent, in turn (~50 µs a flow).

use crate::flow::Tipo;
use libxml::parser::Parser;
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use std::sync::mpsc;
use std::sync::OnceLock;

const PS_XSD: &[u8] = include_bytes!("../../../contracts/external/inps-siuss/PS_PSA_SINA201812.xsd");
const SINBA_XSD: &[u8] = include_bytes!("../../../contracts/external/inps-siuss/SINBA.xsd");
/// Errors reported for one document at most.
const MAX_ERRORS: usize = 20;

struct Job {
    tipo: Tipo,
    xml: String,
    reply: tokio::sync::oneshot::Sender<Result<(), Vec<String>>>,
}

/// The validator thread's door.
#[derive(Debug, Clone)]
pub struct Xsd {
    tx: mpsc::SyncSender<Job>,
}

fn schema(bytes: &[u8]) -> Result<SchemaValidationContext, String> {
    let mut p = SchemaParserContext::from_buffer(bytes);
    SchemaValidationContext::from_parser(&mut p)
        .map_err(|e| e.iter().filter_map(|x| x.message.clone()).collect::<Vec<_>>().join("; "))
}

/// libxml2's message without the namespace noise, one line.
fn clean(message: &str) -> String {
    message.replace("{http://inps.it/Casellario}", "").trim().to_owned()
}

impl Xsd {
    /// The process's validator, started on first use (the schemas are parsed once).
    pub fn shared() -> Result<Self, String> {
        static XSD: OnceLock<Result<Xsd, String>> = OnceLock::new();
        XSD.get_or_init(Self::start).clone()
    }

    fn start() -> Result<Self, String> {
        let (tx, rx) = mpsc::sync_channel::<Job>(1024);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("siuss-xsd".into())
            .spawn(move || {
                let schemas = schema(PS_XSD).and_then(|ps| Ok((ps, schema(SINBA_XSD)?)));
                let (mut ps, mut sinba) = match schemas {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for job in rx {
                    let ctx = match job.tipo {
                        Tipo::PsPsaSina => &mut ps,
                        Tipo::Sinba => &mut sinba,
                    };
                    // The binding panics on libxml2's internal errors: one flow's failure,
                    // never the thread's.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let doc = Parser::default()
                            .parse_string(&job.xml)
                            .map_err(|e| vec![format!("the flow is not well-formed XML: {e:?}")])?;
                        ctx.validate_document(&doc).map_err(|errs| {
                            errs.iter().filter_map(|x| x.message.as_deref()).map(clean).take(MAX_ERRORS).collect()
                        })
                    }))
                    .unwrap_or_else(|_| Err(vec!["the XSD validator failed on this flow".to_owned()]));
                    let _ = job.reply.send(outcome);
                }
            })
            .map_err(|e| format!("cannot start the XSD validator: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { tx }),
            Ok(Err(e)) => Err(format!("the SIUSS XSDs do not load: {e}")),
            Err(_) => Err("the XSD validator stopped".into()),
        }
    }

    /// Validates `xml` against the schema of `tipo`: `Err` lists libxml2's findings (element,
    /// attribute, facet and value).
    pub async fn validate(&self, tipo: Tipo, xml: String) -> Result<(), Vec<String>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job { tipo, xml, reply };
        let tx = self.tx.clone();
        // A full queue waits off the async threads.
        tokio::task::spawn_blocking(move || tx.send(job))
            .await
            .map_err(|e| vec![e.to_string()])?
            .map_err(|_| vec!["the XSD validator stopped".to_owned()])?;
        rx.await.map_err(|_| vec!["the XSD validator stopped".to_owned()])?
    }
}
