//! An ente's SIUSS flows and their outcomes, durable: one append-only log of JSON lines
//! (`flows.log`, readable by varco only), each write synced before it is acknowledged; read
//! back at start, where a torn last line (a crash in the middle of a write) is cut off. Each
//! flow gets an `id_flusso` (`<Belfiore>.<PS|SINBA>.<AAAAMMGG>.<7-digit daily counter>`, the
//! counter never reused) and a `ts_flusso` in milliseconds, distinct and increasing, so that
//! INPS's exclusive `since` never skips a flow.

use crate::flow::Tipo;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// INPS's outcome of a flow, as posted to `/esiti`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Esito {
    pub codice_esito: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descrizione_esito: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_acquisizione_siuss: Option<String>,
    pub ts_acquisizione: String,
}

/// One flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    pub id_flusso: String,
    pub ts_ms: u64,
    pub tipo: Tipo,
    /// The XML, base64 (as INPS receives it).
    pub flusso: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esito: Option<Esito>,
    /// The event it was made from (`source` and `id`), so a redelivered event is one flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_event: Option<String>,
}

/// A line of the log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Line {
    Flow(Flow),
    Esito {
        id_flusso: String,
        esito: Esito,
    },
    /// A day's counter, kept when retention removed that day's flows (ids never repeat).
    Counter {
        date: String,
        n: u64,
    },
}

#[derive(Debug)]
struct Inner {
    file: std::fs::File,
    flows: Vec<Flow>,
    by_id: HashMap<String, usize>,
    /// Flows made from events, by event.
    by_event: HashMap<String, String>,
    /// Highest counter used per creation date (`AAAAMMGG`).
    counters: HashMap<String, u64>,
    last_ts: u64,
    /// Day (ms / 86 400 000) of the last retention pass.
    swept_day: u64,
}

/// The flows of one ente.
#[derive(Debug)]
pub struct Store {
    pub path: PathBuf,
    codice_ente: String,
    inner: Arc<parking_lot::Mutex<Inner>>,
}

/// Why an outcome cannot be recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum EsitoError {
    Unknown(String),
    Io(String),
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn parts(id: &str) -> Option<(&str, u64)> {
    let mut it = id.split('.');
    let (_, _, date, n) = (it.next()?, it.next()?, it.next()?, it.next()?);
    Some((date, n.parse().ok()?))
}

impl Store {
    /// Opens (or creates) the log of ente `codice_ente` in `dir`, replaying it.
    pub fn open(dir: &Path, codice_ente: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let path = dir.join("flows.log");
        let text = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut inner_flows: Vec<Flow> = Vec::new();
        let mut by_id = HashMap::new();
        let mut by_event = HashMap::new();
        let mut counters: HashMap<String, u64> = HashMap::new();
        let mut good = 0usize;
        for line in text.split_inclusive(|b| *b == b'\n') {
            // A line without its newline, or that does not parse, is a write a crash cut short.
            let Some(body) = line.strip_suffix(b"\n") else { break };
            let Ok(l) = serde_json::from_slice::<Line>(body) else { break };
            match l {
                Line::Flow(f) => {
                    if let Some((date, n)) = parts(&f.id_flusso) {
                        let c = counters.entry(date.to_owned()).or_default();
                        *c = (*c).max(n);
                    }
                    if let Some(e) = &f.from_event {
                        by_event.insert(e.clone(), f.id_flusso.clone());
                    }
                    by_id.insert(f.id_flusso.clone(), inner_flows.len());
                    inner_flows.push(f);
                }
                Line::Esito { id_flusso, esito } => {
                    if let Some(&i) = by_id.get(&id_flusso) {
                        inner_flows[i].esito = Some(esito);
                    }
                }
                Line::Counter { date, n } => {
                    let c = counters.entry(date).or_default();
                    *c = (*c).max(n);
                }
            }
            good += line.len();
        }
        if good < text.len() {
            tracing::warn!(path = %path.display(), cut = text.len() - good, "SIUSS log: a torn last write was cut off");
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.set_len(good as u64).map_err(|e| format!("{}: {e}", path.display()))?;
        let last_ts = inner_flows.iter().map(|f| f.ts_ms).max().unwrap_or(0);
        let inner = Inner { file, flows: inner_flows, by_id, by_event, counters, last_ts, swept_day: 0 };
        Ok(Self { path, codice_ente: codice_ente.to_owned(), inner: Arc::new(parking_lot::Mutex::new(inner)) })
    }

    /// Removes flows with an outcome made more than `days` days ago, at most once a day:
    /// the log is rewritten without them (a new file, synced, renamed over the old one),
    /// keeping each day's counter. The number removed.
    pub fn sweep(&self, days: u32) -> Result<usize, String> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        if inner.swept_day == now / 86_400_000 {
            return Ok(0);
        }
        inner.swept_day = now / 86_400_000;
        let cutoff = now.saturating_sub(u64::from(days) * 86_400_000);
        let old = |f: &Flow| f.esito.is_some() && f.ts_ms < cutoff;
        let gone = inner.flows.iter().filter(|f| old(f)).count();
        if gone == 0 {
            return Ok(0);
        }
        let keep: Vec<Flow> = inner.flows.iter().filter(|f| !old(f)).cloned().collect();
        let tmp = self.path.with_extension("log.tmp");
        let write = || -> Result<std::fs::File, String> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (date, n) in &inner.counters {
                out.push(Line::Counter { date: date.clone(), n: *n });
            }
            out.extend(keep.iter().cloned().map(Line::Flow));
            for l in out {
                let mut b = serde_json::to_vec(&l).map_err(|e| e.to_string())?;
                b.push(b'\n');
                f.write_all(&b).map_err(|e| e.to_string())?;
            }
            f.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &self.path).map_err(|e| e.to_string())?;
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(f)
        };
        let file = write().map_err(|e| format!("{}: {e}", self.path.display()))?;
        inner.file = file;
        inner.by_id = keep.iter().enumerate().map(|(i, f)| (f.id_flusso.clone(), i)).collect();
        inner.by_event = keep.iter().filter_map(|f| Some((f.from_event.clone()?, f.id_flusso.clone()))).collect();
        inner.flows = keep;
        Ok(gone)
    }

    fn append(inner: &mut Inner, line: &Line) -> Result<(), String> {
        use std::io::Seek;
        let mut bytes = serde_json::to_vec(line).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        inner.file.seek(std::io::SeekFrom::End(0)).map_err(|e| e.to_string())?;
        inner.file.write_all(&bytes).and_then(|()| inner.file.sync_data()).map_err(|e| e.to_string())
    }

    /// Assigns the next `id_flusso` and `ts_flusso`, builds the XML with that id (`make`),
    /// and makes the flow durable. Blocking (a sync): call off the async threads.
    pub fn add(&self, tipo: Tipo, make: impl FnOnce(&str) -> Result<String, String>) -> Result<Flow, String> {
        self.add_from(tipo, None, make)
    }

    /// As `add`, for a flow made from event `from` (`<source> <id>`): an event seen before
    /// gives its flow again, and no new one.
    pub fn add_from(
        &self,
        tipo: Tipo,
        from: Option<&str>,
        make: impl FnOnce(&str) -> Result<String, String>,
    ) -> Result<Flow, String> {
        use base64::Engine;
        let mut inner = self.inner.lock();
        if let Some(id) = from.and_then(|e| inner.by_event.get(e)) {
            let i = inner.by_id.get(id).copied();
            if let Some(i) = i {
                return Ok(inner.flows[i].clone());
            }
        }
        let now = now_ms();
        let date = varco_core::civil::italy_date((now / 1000) as i64).replace('-', "");
        let n = inner.counters.get(&date).copied().unwrap_or(0) + 1;
        if n > 9_999_999 {
            return Err("the day's 9,999,999 flows are used up".into());
        }
        let id = format!("{}.{}.{date}.{n:07}", self.codice_ente, tipo.id_part());
        let xml = make(&id)?;
        let ts_ms = now.max(inner.last_ts + 1);
        let flow = Flow {
            id_flusso: id.clone(),
            ts_ms,
            tipo,
            flusso: base64::engine::general_purpose::STANDARD.encode(xml.as_bytes()),
            esito: None,
            from_event: from.map(str::to_owned),
        };
        Self::append(&mut inner, &Line::Flow(flow.clone()))?;
        inner.counters.insert(date, n);
        inner.last_ts = ts_ms;
        let at = inner.flows.len();
        if let Some(e) = from {
            inner.by_event.insert(e.to_owned(), id.clone());
        }
        inner.by_id.insert(id, at);
        inner.flows.push(flow.clone());
        Ok(flow)
    }

    /// Flows with `ts_ms` after `since`, oldest first, at most `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<Flow> {
        let inner = self.inner.lock();
        let start = inner.flows.partition_point(|f| f.ts_ms <= since);
        inner.flows[start..].iter().take(limit).cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Flow> {
        let inner = self.inner.lock();
        inner.by_id.get(id).map(|&i| inner.flows[i].clone())
    }

    /// Records outcomes, all or none: an unknown `id_flusso` refuses the lot. An outcome
    /// already recorded is not recorded again (INPS retries). The ones recorded now.
    pub fn record(&self, esiti: Vec<(String, Esito)>) -> Result<Vec<(String, Esito)>, EsitoError> {
        let mut inner = self.inner.lock();
        if let Some((id, _)) = esiti.iter().find(|(id, _)| !inner.by_id.contains_key(id)) {
            return Err(EsitoError::Unknown(id.clone()));
        }
        let mut new = Vec::new();
        for (id, e) in esiti {
            let i = inner.by_id[&id];
            if inner.flows[i].esito.as_ref() == Some(&e) {
                continue;
            }
            Self::append(&mut inner, &Line::Esito { id_flusso: id.clone(), esito: e.clone() })
                .map_err(EsitoError::Io)?;
            inner.flows[i].esito = Some(e.clone());
            new.push((id, e));
        }
        Ok(new)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("varco-siuss-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ids_and_times_never_repeat_and_survive_a_torn_write() {
        let d = dir("torn");
        let s = Store::open(&d, "E783").unwrap();
        let a = s.add(Tipo::PsPsaSina, |id| Ok(format!("<x id='{id}'/>"))).unwrap();
        let b = s.add(Tipo::Sinba, |id| Ok(format!("<x id='{id}'/>"))).unwrap();
        assert!(a.id_flusso.starts_with("E783.PS.") && a.id_flusso.ends_with(".0000001"), "{}", a.id_flusso);
        assert!(b.id_flusso.starts_with("E783.SINBA.") && b.id_flusso.ends_with(".0000002"));
        assert!(b.ts_ms > a.ts_ms);
        assert_eq!(s.since(0, 10).len(), 2);
        assert_eq!(s.since(a.ts_ms, 10)[0].id_flusso, b.id_flusso, "since is exclusive");
        assert_eq!(s.since(0, 1).len(), 1);
        drop(s);
        // A crash in the middle of a line: it is cut off, the counter goes on.
        let mut f = std::fs::OpenOptions::new().append(true).open(d.join("flows.log")).unwrap();
        f.write_all(b"{\"k\":\"flow\",\"id_flus").unwrap();
        drop(f);
        let s = Store::open(&d, "E783").unwrap();
        assert_eq!(s.len(), 2);
        let c = s.add(Tipo::PsPsaSina, |id| Ok(id.to_owned())).unwrap();
        assert!(c.id_flusso.ends_with(".0000003"), "{}", c.id_flusso);
        assert!(c.ts_ms > b.ts_ms);
        let mode = std::fs::metadata(d.join("flows.log")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "readable by varco only");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn retention_removes_answered_flows_and_keeps_the_counter() {
        let d = dir("retention");
        let s = Store::open(&d, "E783").unwrap();
        let a = s.add(Tipo::PsPsaSina, |id| Ok(id.to_owned())).unwrap();
        let b = s.add(Tipo::PsPsaSina, |id| Ok(id.to_owned())).unwrap();
        let ok = Esito {
            codice_esito: "OK".into(),
            descrizione_esito: None,
            id_acquisizione_siuss: None,
            ts_acquisizione: "2026-12-03T10:00:00Z".into(),
        };
        s.record(vec![(a.id_flusso.clone(), ok)]).unwrap();
        // Made "more than 0 days ago" is every answered flow: only `a` has an outcome.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.sweep(0).unwrap(), 1);
        assert!(s.get(&a.id_flusso).is_none() && s.get(&b.id_flusso).is_some());
        assert_eq!(s.sweep(0).unwrap(), 0, "once a day");
        drop(s);
        let s = Store::open(&d, "E783").unwrap();
        assert_eq!(s.len(), 1);
        let c = s.add(Tipo::PsPsaSina, |id| Ok(id.to_owned())).unwrap();
        assert!(c.id_flusso.ends_with(".0000003"), "the counter outlives the removed flows: {}", c.id_flusso);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn an_event_makes_one_flow() {
        let d = dir("events");
        let s = Store::open(&d, "E783").unwrap();
        let a = s.add_from(Tipo::Sinba, Some("/enti/c_e783/sociale pr-1"), |id| Ok(id.to_owned())).unwrap();
        let again = s.add_from(Tipo::Sinba, Some("/enti/c_e783/sociale pr-1"), |_| Err("not called".into())).unwrap();
        assert_eq!(again.id_flusso, a.id_flusso);
        drop(s);
        let s = Store::open(&d, "E783").unwrap();
        let after = s.add_from(Tipo::Sinba, Some("/enti/c_e783/sociale pr-1"), |_| Err("not called".into())).unwrap();
        assert_eq!(after.id_flusso, a.id_flusso, "also after a restart");
        assert_eq!(s.len(), 1);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn outcomes_are_recorded_once_and_all_or_nothing() {
        let d = dir("esiti");
        let s = Store::open(&d, "E783").unwrap();
        let a = s.add(Tipo::PsPsaSina, |id| Ok(id.to_owned())).unwrap();
        let ok = Esito {
            codice_esito: "OK".into(),
            descrizione_esito: None,
            id_acquisizione_siuss: Some("22738".into()),
            ts_acquisizione: "2026-12-03T10:00:00Z".into(),
        };
        let unknown =
            s.record(vec![(a.id_flusso.clone(), ok.clone()), ("E783.PS.20000101.0000009".into(), ok.clone())]);
        assert_eq!(unknown, Err(EsitoError::Unknown("E783.PS.20000101.0000009".into())));
        assert!(s.get(&a.id_flusso).unwrap().esito.is_none(), "nothing recorded");
        assert_eq!(s.record(vec![(a.id_flusso.clone(), ok.clone())]).unwrap().len(), 1);
        assert_eq!(s.record(vec![(a.id_flusso.clone(), ok.clone())]).unwrap().len(), 0, "a retry records nothing new");
        drop(s);
        let s = Store::open(&d, "E783").unwrap();
        assert_eq!(s.get(&a.id_flusso).unwrap().esito, Some(ok));
        let _ = std::fs::remove_dir_all(d);
    }
}
