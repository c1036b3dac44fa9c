//! The writer thread: appends records to each ente's log, seals them into the chain, signs
//! checkpoints, syncs once per batch, rolls files daily and applies retention.

use crate::chain::{files, seal};
use crate::{now, Body, Line, Record};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use varco_auth::KeySet;

/// Records waiting at most; beyond, a record is dropped (counted), never a request delayed.
const QUEUE: usize = 65_536;
/// The chain's first `prev`.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How the trail is kept.
#[derive(Debug, Clone)]
pub struct TrailConfig {
    pub dir: PathBuf,
    /// A checkpoint after this many records of an ente…
    pub checkpoint_every: u64,
    /// …or once this long has passed since the last one with records after it.
    pub checkpoint_interval: Duration,
    /// Days an ente's files are kept (per ente; `None`: kept).
    pub retention_days: HashMap<String, u32>,
    /// Written records are synced at most this long after they were written (zero: after
    /// every batch). A crash loses at most this much.
    pub sync_interval: Duration,
}

enum Msg {
    Append { tenant: String, record: Box<Record>, keys: Option<Arc<KeySet>> },
    Flush(mpsc::Sender<()>),
}

/// The process's audit trail (one writer thread for every ente).
#[derive(Debug)]
pub struct Trail {
    tx: mpsc::SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Trail {
    /// Starts the writer; the directory is made (0700) if missing.
    pub fn open(cfg: TrailConfig) -> Result<Self, String> {
        create_private_dir(&cfg.dir)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || Writer { cfg, entes: HashMap::new(), written: w }.run(rx))
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(Self { tx, dropped: Arc::new(AtomicU64::new(0)), written })
    }

    /// Hands a record over; returns at once.
    pub fn append(&self, tenant: &str, record: Record, keys: Option<Arc<KeySet>>) {
        let msg = Msg::Append { tenant: tenant.to_owned(), record: Box::new(record), keys };
        if self.tx.try_send(msg).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(tenant = %tenant, "audit trail queue full: a record was dropped");
        }
    }

    /// Waits until everything handed over so far is written and synced.
    pub fn flush(&self) {
        let (reply, done) = mpsc::channel();
        if self.tx.send(Msg::Flush(reply)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// One ente's open log.
struct Ente {
    dir: PathBuf,
    file: File,
    /// Lines of the current batch, written with one call.
    buf: Vec<u8>,
    day: String,
    seq: u64,
    head: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    keys: Option<Arc<KeySet>>,
}

struct Writer {
    cfg: TrailConfig,
    entes: HashMap<String, Ente>,
    written: Arc<AtomicU64>,
}

fn today() -> String {
    chrono::Utc::now().format("%Y%m%d").to_string()
}

fn open_file(dir: &Path, day: &str) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(dir.join(format!("audit-{day}.log")))
}

/// Opens an ente's log where it stopped: a torn last line (a crash mid-write) is cut off.
fn open_ente(dir: PathBuf) -> Result<Ente, String> {
    create_private_dir(&dir)?;
    let (mut seq, mut head) = (0, GENESIS.to_owned());
    if let Some(last) = files(&dir).pop() {
        let bytes = std::fs::read(&last).map_err(|e| format!("{}: {e}", last.display()))?;
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < bytes.len() {
            let f = OpenOptions::new().write(true).open(&last).map_err(|e| e.to_string())?;
            f.set_len(keep as u64).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            tracing::warn!(file = %last.display(), cut = bytes.len() - keep, "audit trail: a torn last line (crash) was cut off");
        }
        let text = std::str::from_utf8(&bytes[..keep]).unwrap_or("");
        if let Some(l) = text.lines().rev().find_map(|l| serde_json::from_str::<Line>(l).ok()) {
            seq = l.seq;
            head = l.hash;
        }
    }
    let day = today();
    let file = open_file(&dir, &day).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Ente {
        dir,
        file,
        buf: Vec::new(),
        day,
        seq,
        head,
        since_checkpoint: 0,
        last_checkpoint: Instant::now(),
        keys: None,
    })
}

impl Ente {
    fn push(&mut self, body: &Body) -> Result<(), String> {
        let (text, hash) = seal(self.seq + 1, &self.head, body)?;
        self.buf.extend_from_slice(text.as_bytes());
        self.seq += 1;
        self.head = hash;
        Ok(())
    }

    fn checkpoint(&mut self, tenant: &str) -> Result<(), String> {
        let Some(keys) = self.keys.clone() else { return Ok(()) };
        let k = keys.active();
        let claims = serde_json::json!({"tenant": tenant, "seq": self.seq, "hash": self.head});
        let sig = k.sign(&claims, "JWT", false).map_err(|e| e.to_string())?;
        self.push(&Body::Checkpoint { ts: now(), kid: k.kid.clone(), sig })?;
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Writes the batch's lines.
    fn write_out(&mut self) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf).map_err(|e| e.to_string());
        self.buf.clear();
        r
    }

    /// A new day's file; files past retention removed.
    fn roll(&mut self, retention: Option<u32>) -> Result<(), String> {
        let day = today();
        if day == self.day {
            return Ok(());
        }
        self.write_out()?;
        self.file.sync_data().map_err(|e| e.to_string())?;
        self.file = open_file(&self.dir, &day).map_err(|e| e.to_string())?;
        self.day = day;
        if let Some(days) = retention {
            let cutoff = (chrono::Utc::now() - chrono::Duration::days(i64::from(days))).format("%Y%m%d").to_string();
            for f in files(&self.dir) {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.get(6..14).is_some_and(|d| d < cutoff.as_str()) {
                    let _ = std::fs::remove_file(&f);
                }
            }
        }
        Ok(())
    }
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        // Files written and not yet synced, and since when.
        let mut dirty: HashSet<String> = HashSet::new();
        let mut dirty_since: Option<Instant> = None;
        loop {
            let first = match dirty_since {
                // Something waits to be synced: wake up in time for it.
                Some(t) => match rx.recv_timeout(self.cfg.sync_interval.saturating_sub(t.elapsed())) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            let Some(first) = first else {
                self.sync(&mut dirty);
                dirty_since = None;
                continue;
            };
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut touched: HashSet<String> = HashSet::new();
            let mut flushes = Vec::new();
            for m in batch {
                match m {
                    Msg::Append { tenant, record, keys } => {
                        if let Err(e) = self.append(&tenant, &record, keys) {
                            tracing::error!(tenant = %tenant, error = %e, "audit trail: a record could not be written");
                        }
                        touched.insert(tenant);
                    }
                    Msg::Flush(reply) => flushes.push(reply),
                }
            }
            for (t, e) in self.entes.iter_mut() {
                let due = e.since_checkpoint > 0 && e.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval;
                if due || (!flushes.is_empty() && e.since_checkpoint > 0 && e.keys.is_some()) {
                    if let Err(err) = e.checkpoint(t) {
                        tracing::error!(tenant = %t, error = %err, "audit trail: the checkpoint could not be signed");
                    }
                    touched.insert(t.clone());
                }
            }
            for t in &touched {
                if let Some(e) = self.entes.get_mut(t) {
                    if let Err(err) = e.write_out() {
                        tracing::error!(tenant = %t, error = %err, "audit trail: records could not be written");
                    }
                }
            }
            dirty.extend(touched);
            let due = dirty_since.get_or_insert_with(Instant::now).elapsed() >= self.cfg.sync_interval;
            if due || !flushes.is_empty() {
                self.sync(&mut dirty);
                dirty_since = None;
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
        self.sync(&mut dirty);
    }

    /// `fdatasync` of every file written since the last one.
    fn sync(&mut self, dirty: &mut HashSet<String>) {
        for t in dirty.drain() {
            if let Some(e) = self.entes.get_mut(&t) {
                if let Err(err) = e.file.sync_data() {
                    tracing::error!(tenant = %t, error = %err, "audit trail: sync failed");
                }
            }
        }
    }

    fn append(&mut self, tenant: &str, record: &Record, keys: Option<Arc<KeySet>>) -> Result<(), String> {
        if !self.entes.contains_key(tenant) {
            let e = open_ente(self.cfg.dir.join(tenant))?;
            self.entes.insert(tenant.to_owned(), e);
        }
        let retention = self.cfg.retention_days.get(tenant).copied();
        let Some(e) = self.entes.get_mut(tenant) else { return Ok(()) };
        e.roll(retention)?;
        if keys.is_some() {
            e.keys = keys;
        }
        e.push(&Body::Call(Box::new(record.clone())))?;
        e.since_checkpoint += 1;
        self.written.fetch_add(1, Ordering::Relaxed);
        if e.since_checkpoint >= self.cfg.checkpoint_every {
            e.checkpoint(tenant)?;
        }
        Ok(())
    }
}
