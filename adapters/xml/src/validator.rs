//! XSD validation by libxml2, the reference validator (the one `xmllint` uses). libxml2's
//! documents and contexts may not cross threads, so one thread owns the parsed schemas and
//! validates what it is sent, in turn (~50 µs for a small document).

use libxml::parser::Parser;
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use std::sync::mpsc;

/// Errors reported for one document at most.
const MAX_ERRORS: usize = 20;

struct Job {
    schema: usize,
    xml: String,
    reply: tokio::sync::oneshot::Sender<Result<(), Vec<String>>>,
}

/// The door of one validator thread and the schemas it holds.
#[derive(Debug, Clone)]
pub struct Validator {
    tx: mpsc::SyncSender<Job>,
}

fn schema(bytes: &[u8]) -> Result<SchemaValidationContext, String> {
    let mut p = SchemaParserContext::from_buffer(bytes);
    SchemaValidationContext::from_parser(&mut p)
        .map_err(|e| e.iter().filter_map(|x| x.message.clone()).collect::<Vec<_>>().join("; "))
}

impl Validator {
    /// Starts a thread `name` holding `schemas` (XSD documents, used by index in
    /// [`Validator::validate`]). `noise` is taken out of libxml2's messages (a namespace in
    /// braces that only makes them longer).
    pub fn start(name: &str, schemas: Vec<Vec<u8>>, noise: Vec<String>) -> Result<Self, String> {
        let (tx, rx) = mpsc::sync_channel::<Job>(1024);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let loaded: Result<Vec<_>, String> = schemas.iter().map(|s| schema(s)).collect();
                let mut contexts = match loaded {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let clean =
                    |m: &str| noise.iter().fold(m.to_owned(), |m, n| m.replace(n.as_str(), "")).trim().to_owned();
                for job in rx {
                    let Some(ctx) = contexts.get_mut(job.schema) else {
                        let _ = job.reply.send(Err(vec!["no such schema".to_owned()]));
                        continue;
                    };
                    // The binding panics on libxml2's internal errors: one document's failure,
                    // never the thread's.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let doc = Parser::default()
                            .parse_string(&job.xml)
                            .map_err(|e| vec![format!("the document is not well-formed XML: {e:?}")])?;
                        ctx.validate_document(&doc).map_err(|errs| {
                            errs.iter().filter_map(|x| x.message.as_deref()).map(clean).take(MAX_ERRORS).collect()
                        })
                    }))
                    .unwrap_or_else(|_| Err(vec!["the XSD validator failed on this document".to_owned()]));
                    let _ = job.reply.send(outcome);
                }
            })
            .map_err(|e| format!("cannot start the XSD validator: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { tx }),
            Ok(Err(e)) => Err(format!("the XSDs do not load: {e}")),
            Err(_) => Err("the XSD validator stopped".into()),
        }
    }

    /// Validates `xml` against schema number `schema`: `Err` lists libxml2's findings
    /// (element, attribute, facet and value).
    pub async fn validate(&self, schema: usize, xml: String) -> Result<(), Vec<String>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job { schema, xml, reply };
        let tx = self.tx.clone();
        // A full queue waits off the async threads.
        tokio::task::spawn_blocking(move || tx.send(job))
            .await
            .map_err(|e| vec![e.to_string()])?
            .map_err(|_| vec!["the XSD validator stopped".to_owned()])?;
        rx.await.map_err(|_| vec!["the XSD validator stopped".to_owned()])?
    }
}
